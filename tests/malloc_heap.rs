//! `server.heap = "malloc"`: leakrun preloads its counting allocator into a native server it
//! starts and judges that server's exact malloc heap, naming where it grew.
//!
//! The server is `leakrun serve` started as a separate process (a Rust binary on the system
//! allocator, under the preloaded library): its unbounded cache is the positive control (every
//! 10,000-byte PUT stays), the bounded one the negative. A tiny C server built here shows the
//! servers the library cannot see: statically linked, linking its own `malloc` (a bump allocator,
//! and Debian's real jemalloc archive), or allocating through a prefixed jemalloc; linked against
//! the shared libjemalloc instead, it is counted and its leak found. A SIGKILLed leakrun leaves
//! neither the server nor its shared-memory pages behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// `leakrun-glibc serve --cache <cache>` as an external target with the preloaded heap: leakrun's
/// own server on glibc's malloc (the `leakrun` binary's jemalloc is out of a preload's sight).
fn serve_scenario(name: &str, cache: &str, expect_leak: bool) -> String {
    serve_cache_scenario(
        env!("CARGO_BIN_EXE_leakrun-glibc"),
        name,
        cache,
        expect_leak,
        "heap = \"malloc\"\nheap_sample = \"64KiB\"",
    )
}

fn run(dir: &Path, name: &str, text: &str) -> (std::process::Output, PathBuf) {
    let path = scenario(dir, name, text);
    let out = dir.join("results");
    (run_scenario(&path, &out), out)
}

#[test]
fn an_unbounded_cache_leaks_the_value_size_per_put_at_the_cache_insert() {
    let dir = scratch();
    let (output, out) = run(
        dir.path(),
        "malloc_unbounded",
        &serve_scenario("malloc_unbounded", "unbounded", true),
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(&out, "malloc_unbounded");
    let leak = &r["verdicts"]["leak"];
    let summary = leak["summary"].as_str().unwrap();
    assert_eq!(leak["outcome"], "leak", "{summary}");
    assert!(summary.contains("live malloc heap"), "{summary}");
    // The exact heap: a 10,000-byte value per PUT, plus its key and the map's share.
    let per_request = leak["bytes_per_request"].as_f64().unwrap();
    assert!(
        (10_000.0..11_000.0).contains(&per_request),
        "{per_request} bytes per PUT: {summary}"
    );
    let first = &leak["sites"][0];
    let site = first["site"].as_str().unwrap();
    assert!(site.contains("src/server/cache.rs:"), "first site {site}: {first}");
    let traceback: Vec<&str> = first["traceback"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        traceback
            .iter()
            .any(|l| l.contains("leakrun::server::cache::Cache::put")),
        "{traceback:#?}"
    );
    // The sampled estimate accounts for most of the exact growth.
    let site_bytes = first["bytes_per_iteration"].as_f64().unwrap();
    let total = leak["bytes_per_iteration"].as_f64().unwrap();
    assert!(site_bytes > 0.8 * total, "site {site_bytes} of {total} per iteration");
    assert!(summary.contains(site), "the summary names the first site: {summary}");
}

#[test]
fn a_bounded_cache_is_never_a_leak() {
    let dir = scratch();
    let (output, out) = run(
        dir.path(),
        "malloc_bounded",
        &serve_scenario("malloc_bounded", "bounded", false),
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(&out, "malloc_bounded");
    let leak = &r["verdicts"]["leak"];
    // Clean once the cache is full; RSS the allocator keeps up beside a flat heap is retention.
    let outcome = leak["outcome"].as_str().unwrap();
    assert!(
        ["clean", "retention"].contains(&outcome),
        "{outcome}: {}",
        leak["summary"]
    );
    assert!(leak["summary"].as_str().unwrap().contains("live malloc heap"));
}

/// Builds `tests/support/tiny_server.c` into `dir` with `flags`, linking `libs` after it.
fn build_tiny_server(dir: &Path, name: &str, flags: &[&str], libs: &[&str]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tiny_server.c");
    let binary = dir.join(name);
    let status = Command::new("gcc")
        .args(flags)
        .arg("-O1")
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .args(libs)
        .status()
        .expect("gcc (scripts/install-services installs it)");
    assert!(status.success(), "gcc {flags:?} {libs:?} failed");
    binary
}

/// A scenario around a tiny server on `port`; `command` is the TOML value of `server.command`.
fn tiny_scenario(name: &str, command: &str, port: u16) -> String {
    format!(
        r#"name = "{name}"
[server]
target = "external"
command = {command}
ws_url = "ws://127.0.0.1:{port}/{{room}}"
ready_port = {port}
heap = "malloc"

[[rooms]]
name = "a"
  [[rooms.clients]]
  count = 1
  rate = 1

[run]
duration = "1s"
"#
    )
}

fn refused(name: &str, flags: &[&str], libs: &[&str]) -> String {
    let dir = scratch();
    let binary = build_tiny_server(dir.path(), name, flags, libs);
    let port = free_port();
    let command = format!("[{:?}, \"{port}\"]", binary.display().to_string());
    let (output, out) = run(dir.path(), name, &tiny_scenario(name, &command, port));
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let r = result(&out, name);
    assert_eq!(r["status"], "error");
    assert!(r["verdicts"].is_null(), "never judged: {}", r["verdicts"]);
    // The error is on the run's report (stdout) and in the result.
    assert!(
        r["error"].as_str().is_some_and(|e| e.contains("server.heap")),
        "{}",
        r["error"]
    );
    describe(&output)
}

#[test]
fn a_static_server_is_refused_not_judged() {
    let said = refused("tiny_static", &["-static"], &[]);
    assert!(said.contains("server.heap = \"malloc\""), "{said}");
    assert!(said.contains("statically linked"), "{said}");
}

#[test]
fn a_static_server_behind_a_shell_that_did_load_the_library_is_refused() {
    // `sh -c "server; true"` forks the server and waits: the shell loads the library and counts
    // its own heap, the server (static) never does. The shell's page must not pass for it.
    let dir = scratch();
    let binary = build_tiny_server(dir.path(), "tiny_wrapped", &["-static"], &[]);
    let port = free_port();
    let command = format!("\"{} {port}; true\"", binary.display());
    let text = tiny_scenario("tiny_wrapped", &command, port);
    let (output, out) = run(dir.path(), "tiny_wrapped", &text);
    assert_eq!(output.status.code(), Some(3), "{}\n{text}", describe(&output));
    let said = result(&out, "tiny_wrapped")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        said.contains(&format!("listens on port {port} but never loaded")),
        "{said}"
    );
}

#[test]
fn a_server_with_its_own_malloc_is_refused_not_judged() {
    let said = refused("tiny_own_malloc", &["-DOWN_MALLOC"], &[]);
    assert!(said.contains("server.heap = \"malloc\""), "{said}");
    assert!(
        said.contains("has an allocator of its own linked in as its `malloc`"),
        "{said}"
    );
}

#[test]
fn a_server_on_a_prefixed_jemalloc_is_refused_not_judged() {
    let said = refused("tiny_prefixed", &["-DPREFIXED_ALLOCATOR"], &[]);
    assert!(said.contains("uses jemalloc (symbol `je_malloc`)"), "{said}");
}

#[test]
fn leakrun_itself_on_its_jemalloc_is_refused_and_leakrun_glibc_is_the_one_to_probe() {
    // The `leakrun` binary allocates from tikv-jemallocator under `_rjem_` names a preload never
    // sees; the cache tests above probe `leakrun-glibc serve` for that reason.
    let dir = scratch();
    let text = serve_cache_scenario(
        env!("CARGO_BIN_EXE_leakrun"),
        "leakrun_on_jemalloc",
        "unbounded",
        true,
        "heap = \"malloc\"",
    );
    let (output, out) = run(dir.path(), "leakrun_on_jemalloc", &text);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let r = result(&out, "leakrun_on_jemalloc");
    assert!(r["verdicts"].is_null(), "never judged: {}", r["verdicts"]);
    let error = r["error"].as_str().unwrap_or_default();
    assert!(error.contains("server.heap"), "{error}");
    assert!(error.contains("tikv-jemallocator"), "{error}");
}

/// Debian's jemalloc archive (libjemalloc-dev), found by gcc as the linker would find it.
fn jemalloc_archive() -> String {
    let printed = Command::new("gcc")
        .arg("-print-file-name=libjemalloc_pic.a")
        .output()
        .expect("gcc (scripts/install-services installs it)");
    let path = String::from_utf8(printed.stdout).unwrap().trim().to_string();
    // gcc prints the bare name back when no library folder holds it.
    assert!(
        Path::new(&path).is_file(),
        "no libjemalloc_pic.a (scripts/install-services installs libjemalloc-dev)"
    );
    path
}

/// The symbols `binary` defines in its text (`nm --defined-only`, type T).
fn defined_functions(binary: &Path) -> Vec<String> {
    let listed = Command::new("nm")
        .arg("--defined-only")
        .arg(binary)
        .output()
        .expect("nm (binutils, with gcc)");
    assert!(listed.status.success(), "nm {}", binary.display());
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|line| match line.split_whitespace().collect::<Vec<_>>()[..] {
            [_, "T", name] => Some(name.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_server_statically_linked_with_jemalloc_is_refused_not_judged() {
    // The real jemalloc 5.3 archive linked into the executable: its `malloc` is jemalloc's and
    // comes before the preloaded library's in the lookup, so the library never sees an
    // allocation.
    let archive = jemalloc_archive();
    let libs = [archive.as_str(), "-lpthread", "-ldl", "-lm"];
    let probe = scratch();
    let binary = build_tiny_server(probe.path(), "tiny_jemalloc_static", &[], &libs);
    let defined = defined_functions(&binary);
    for symbol in ["malloc", "free", "mallctl", "je_jemalloc_prefork"] {
        assert!(
            defined.iter().any(|d| d == symbol),
            "{} does not define {symbol}",
            binary.display()
        );
    }
    let said = refused("tiny_jemalloc_static", &[], &libs);
    assert!(said.contains("server.heap = \"malloc\""), "{said}");
    assert!(
        said.contains("has jemalloc (symbol `mallctl`) linked in as its `malloc`"),
        "{said}"
    );
}

#[test]
fn a_server_on_the_shared_jemalloc_is_counted_and_judged() {
    // Linked against libjemalloc.so.2: the executable defines no allocator, the preloaded
    // library comes before jemalloc in the lookup and forwards to it, so every allocation is
    // counted (by jemalloc's malloc_usable_size) and the heap is judged as any other. The tiny
    // server keeps 64 bytes per connection it accepts: 1,000 connections an iteration are
    // 1,000 blocks and 64,000 bytes, exactly.
    let dir = scratch();
    // It also frees a pvalloc block per connection, which jemalloc does not define: the block
    // must come from jemalloc too, or jemalloc's free would get glibc's block.
    let binary = build_tiny_server(dir.path(), "tiny_jemalloc_shared", &["-DPVALLOC_TOO"], &["-ljemalloc"]);
    let defined = defined_functions(&binary);
    assert!(
        !defined.iter().any(|d| d == "malloc" || d == "mallctl"),
        "{} defines an allocator itself",
        binary.display()
    );
    let port = free_port();
    let name = "tiny_jemalloc_shared";
    let text = format!(
        r#"name = "{name}"
[server]
target = "external"
command = [{binary:?}, "{port}"]
http_url = "http://127.0.0.1:{port}"
heap = "malloc"

[[http]]
method = "GET"
path = "/"
requests = 1000
workers = 4
keep_alive = false

[run]
duration = "10s"
iterations = 4

[expect]
leak = true

[thresholds]
heap_growth = "16KiB"
http_errors = 1000000
"#,
        binary = binary.display().to_string(),
    );
    let (output, out) = run(dir.path(), name, &text);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(&out, name);
    assert_eq!(r["status"], "pass", "{}", describe(&output));
    let leak = &r["verdicts"]["leak"];
    let summary = leak["summary"].as_str().unwrap();
    assert_eq!(leak["outcome"], "leak", "{summary}");
    assert!(summary.contains("live malloc heap"), "{summary}");
    let after: Vec<(i64, i64)> = r["iterations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let a = &i["after"];
            (a["heap_bytes"].as_i64().unwrap(), a["heap_blocks"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(after.len(), 4, "{after:?}");
    for pair in after.windows(2) {
        let (bytes, blocks) = (pair[1].0 - pair[0].0, pair[1].1 - pair[0].1);
        assert_eq!((bytes, blocks), (64_000, 1_000), "{after:?}: {summary}");
    }
}

#[test]
fn forked_workers_are_summed_and_each_has_its_page() {
    // A Python server that forks a worker: the child allocates and holds 8 MiB, the parent
    // serves the readiness port. Each process has a page of its own; the series is their sum.
    let dir = scratch();
    let port = free_port();
    let script = dir.path().join("forking.py");
    std::fs::write(
        &script,
        format!(
            r#"import os, socket, time
if os.fork() == 0:
    held = [bytes(4096) for _ in range(2048)]
    time.sleep(3600)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {port}))
s.listen(16)
while True:
    c, _ = s.accept()
    c.close()
"#
        ),
    )
    .unwrap();
    let text = format!(
        r#"name = "forking"
[server]
target = "external"
command = ["python3", {script:?}]
ws_url = "ws://127.0.0.1:{port}/{{room}}"
ready_port = {port}
heap = "malloc"

[[http]]
method = "GET"
path = "/"
requests = 1

[run]
duration = "1s"
"#,
        script = script.display().to_string(),
    );
    let (output, out) = run(dir.path(), "forking", &text);
    let r = result(&out, "forking");
    // The HTTP request finds no HTTP server; what matters is the heap series.
    let last = r["iterations"][0]["after"].clone();
    assert_eq!(last["heap_processes"], 2, "{}\n{last}", describe(&output));
    let bytes = last["heap_bytes"].as_i64().unwrap();
    assert!(bytes > 8 << 20, "the child's 8 MiB are in the sum: {bytes}");
}

/// The folder holding `<pid>.page`, among the library's folders in /dev/shm and the temp folder.
fn page_folder_of(pid: u32) -> Option<PathBuf> {
    [PathBuf::from("/dev/shm"), std::env::temp_dir()]
        .iter()
        .filter_map(|root| std::fs::read_dir(root).ok())
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("leakrun-malloc-"))
        })
        .find(|folder| folder.join(format!("{pid}.page")).exists())
}

#[test]
fn a_sigkilled_run_leaves_neither_the_server_nor_its_heap_pages() {
    let dir = scratch();
    let path = scenario(
        dir.path(),
        "killed_malloc",
        &serve_scenario("killed_malloc", "unbounded", true),
    );
    let mut child = spawn_run(&path, dir.path(), |_| {});
    let root = child.id();
    // The server (`leakrun serve`, below the run) and its page.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (server, folder) = loop {
        let found = leakrun::process::procfs::descendants(root)
            .into_iter()
            .find_map(|p| page_folder_of(p.pid).map(|folder| (p, folder)));
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no server with a heap page started below leakrun (pid {root})"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(1));
    let killed = Command::new("kill")
        .args(["-KILL", &root.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    while (server.is_alive() || folder.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !server.is_alive(),
        "the server (pid {}) outlived a SIGKILLed leakrun",
        server.pid
    );
    assert!(!folder.exists(), "{} outlived a SIGKILLed leakrun", folder.display());
}
