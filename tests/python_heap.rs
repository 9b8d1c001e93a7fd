//! The heap inside a Python server (`server.heap = "python"`): tracemalloc started by leakrun's
//! `sitecustomize` helper in the real chat server of `tests/support/`, no change to the server.
//!
//! Positive control: the server keeping a 4 KiB bytearray per closed connection is a `leak` from
//! the traced heap, at the very line that keeps it, with the bytes per connection it keeps.
//! Negative controls: the same waves without the switch are `clean`; memory held while a
//! connection is open and freed on close is `retention` (RSS up, traced heap flat). Workers: each
//! process answers, the series is their sum. Bad input: a server that is not Python is exit 3 and
//! stopped; a heap probe for a watched pid is exit 2 naming the key.

mod common;

use std::path::Path;

use common::python_server::*;
use common::*;
use serde_json::Value;

/// Bytes the leaking server keeps per closed connection.
const KEPT: u64 = 4096;

/// Waves of 100 browser tabs against the chat server with `switches` and the heap probe on.
fn waves(name: &str, switches: &[&str], iterations: u32, expect: &str) -> Value {
    waves_with(name, switches, "", iterations, expect)
}

/// The same, with more `[server]` keys.
fn waves_with(name: &str, switches: &[&str], server_keys: &str, iterations: u32, expect: &str) -> Value {
    let dir = scratch();
    let port = free_port();
    let text = format!(
        r#"name = "{name}"
[server]
target = "external"
command = {command}
ws_url = "ws://127.0.0.1:{port}/ws/chat/{{room}}/"
heap = "python"
{server_keys}

[[rooms]]
name = "lobby"
  [[rooms.clients]]
  pattern = "tabs"
  count = 100
  ramp = "300ms"
  hold = "300ms"

[run]
duration = "1s"
iterations = {iterations}
warmup = 1
settle = "3s"
sample_interval = "250ms"

[expect]
{expect}
"#,
        command = command(port, switches),
    );
    let output = run_scenario(&scenario(dir.path(), name, &text), dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(dir.path(), name);
    stopped_server_pid(&r);
    r
}

/// The line of the chat server that keeps the bytes: the site the verdict must name.
fn keeping_line() -> String {
    let text = std::fs::read_to_string(server_script()).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("LEAKED.append(bytearray(args.leak_per_connection))"))
        .expect("the keeping line")
        + 1;
    format!("{}:{line}", server_script().display())
}

fn heap_series(r: &Value) -> &Value {
    r["verdicts"]["leak"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "heap_bytes")
        .expect("a heap series")
}

#[test]
fn a_bytearray_kept_per_closed_connection_is_a_leak_at_its_line() {
    let r = waves(
        "py_heap_leak",
        &["--leak-per-connection", &KEPT.to_string()],
        11,
        "leak = true",
    );
    let leak = &r["verdicts"]["leak"];
    assert_eq!(leak["outcome"], "leak", "{}", leak["summary"]);
    assert_eq!(leak["judged_iterations"], 10);
    let heap = heap_series(&r);
    assert_eq!(heap["class"], "leak", "{}", heap["evidence"]);
    assert!(
        heap["evidence"]
            .as_str()
            .unwrap()
            .starts_with("traced Python heap (tracemalloc in pid"),
        "{}",
        heap["evidence"]
    );
    // A bytearray is its object and its buffer: N bytes plus a few dozen.
    let per_connection = leak["bytes_per_connection"].as_f64().unwrap();
    assert!(
        per_connection >= KEPT as f64 * 0.95 && per_connection <= (KEPT + 128) as f64 * 1.2,
        "{per_connection} B per closed connection for a server that keeps {KEPT}"
    );
    let site = &leak["sites"][0];
    assert_eq!(site["site"], keeping_line(), "{}", leak["sites"]);
    let site_per_connection = site["bytes_per_connection"].as_f64().unwrap();
    assert!(
        (site_per_connection - per_connection).abs() <= 0.2 * per_connection,
        "the site holds the growth: {site_per_connection} of {per_connection}"
    );
    assert!(
        leak["summary"].as_str().unwrap().contains("ws_chat_server.py:"),
        "{}",
        leak["summary"]
    );
    // The snapshots were taken after each settle and cost what the result says.
    for iteration in r["iterations"].as_array().unwrap() {
        let probe = &iteration["heap_probe"];
        assert!(probe["took_s"].as_f64().unwrap() > 0.0, "{probe}");
        assert_eq!(iteration["after"]["heap_bytes"], probe["bytes"]);
        assert!(iteration["after"]["heap_blocks"].as_i64().unwrap() > 1000);
    }
}

#[test]
fn the_same_waves_without_the_switch_are_clean() {
    let r = waves("py_heap_clean", &[], 6, "leak = false");
    let leak = &r["verdicts"]["leak"];
    assert_eq!(leak["outcome"], "clean", "{}", leak["summary"]);
    assert_eq!(heap_series(&r)["class"], "clean");
}

#[test]
fn memory_held_while_open_and_freed_on_close_is_retention() {
    let r = waves(
        "py_heap_retention",
        &["--hold-per-connection", &(1 << 20).to_string()],
        6,
        "retention = true",
    );
    let leak = &r["verdicts"]["leak"];
    assert_eq!(leak["outcome"], "retention", "{}", leak["summary"]);
    assert_eq!(heap_series(&r)["class"], "clean");
}

#[test]
fn every_worker_answers_and_the_series_is_their_sum() {
    // With three frames per allocation: the site is still the allocating line, the traceback
    // the path to it, innermost first.
    let r = waves_with(
        "py_heap_workers",
        &["--workers", "2", "--leak-per-connection", &KEPT.to_string()],
        "heap_frames = 3",
        6,
        "leak = true",
    );
    let leak = &r["verdicts"]["leak"];
    assert_eq!(leak["outcome"], "leak", "{}", leak["summary"]);
    assert_eq!(leak["sites"][0]["site"], keeping_line(), "{}", leak["sites"]);
    let traceback = leak["sites"][0]["traceback"].as_array().unwrap();
    assert!(traceback.len() >= 2, "{traceback:?}");
    assert_eq!(traceback[0], keeping_line());
    let supervisor = r["target"]["pid"].as_u64().unwrap();
    let iterations = r["iterations"].as_array().unwrap();
    let workers = |iteration: &Value| -> Vec<(u64, i64)> {
        iteration["heap_probe"]["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["pid"].as_u64().unwrap(), p["bytes"].as_i64().unwrap()))
            .filter(|(pid, _)| *pid != supervisor)
            .collect()
    };
    for iteration in iterations {
        let probe = &iteration["heap_probe"];
        let processes = probe["processes"].as_array().unwrap();
        assert_eq!(processes.len(), 3, "the supervisor and both workers answered: {probe}");
        let sum: i64 = processes.iter().map(|p| p["bytes"].as_i64().unwrap()).sum();
        assert_eq!(probe["bytes"].as_i64().unwrap(), sum);
        assert_eq!(iteration["after"]["heap_bytes"].as_i64().unwrap(), sum);
        assert_eq!(iteration["after"]["heap_processes"], 3);
    }
    // Connections went to both workers, and each kept its own.
    let (first, last) = (workers(&iterations[1]), workers(iterations.last().unwrap()));
    assert_eq!(first.len(), 2);
    for ((pid, before), (same, after)) in first.iter().zip(&last) {
        assert_eq!(pid, same);
        assert!(
            after - before > 10 * KEPT as i64,
            "worker {pid} grew {before} → {after}"
        );
    }
}

#[test]
fn a_server_that_is_not_python_is_exit_3_and_stopped() {
    let dir = scratch();
    let port = free_port();
    let text = format!(
        r#"name = "not_python"
[server]
target = "external"
command = [{leakrun:?}, "serve", "--port", "{port}"]
ws_url = "ws://127.0.0.1:{port}/ws/chat/{{room}}"
heap = "python"
[[rooms]]
name = "lobby"
clients = [{{ pattern = "steady", count = 2, rate = 5 }}]
[run]
duration = "1s"
"#,
        leakrun = env!("CARGO_BIN_EXE_leakrun"),
    );
    let output = run_scenario(&scenario(dir.path(), "not_python", &text), dir.path());
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let r = result(dir.path(), "not_python");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("server.heap = \"python\": no Python process of the server answered"),
        "{error}"
    );
    assert!(error.contains("the server was stopped by SIGTERM"), "{error}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server still listens on {port}"
    );
}

#[test]
fn a_heap_probe_for_a_watched_pid_is_exit_2_naming_file_line_and_key() {
    let dir = scratch();
    let path = scenario(
        dir.path(),
        "watched_heap",
        "name = \"watched_heap\"\n[server]\ntarget = \"external\"\npid = 42\nws_url = \"ws://127.0.0.1:1/{room}\"\nheap = \"python\"\n[[rooms]]\nname = \"a\"\nclients = [{ pattern = \"steady\", count = 1 }]\n",
    );
    let output = leakrun(&["check", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("watched_heap.toml:6:8: `server.heap`: \"python\" needs a server leakrun starts"),
        "{stderr}"
    );
    assert!(Path::new(&path).exists());
}
