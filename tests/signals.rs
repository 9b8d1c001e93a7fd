//! Signals and the processes a run starts: nothing leakrun starts outlives it, however it ends.
//!
//! SIGKILL to leakrun (no handler, no destructor runs) during a run on a private redis-server and
//! on a private rabbitmq-server: 5 s later none of the processes started for that run is alive.
//! SIGINT to leakrun's whole process group, as a terminal's Ctrl-C sends it: the private servers
//! sit in groups of their own, so the run ends `interrupted` (exit 130), not `error`. SIGTERM
//! and SIGHUP stop a run the same way, with exit codes 143 and 129.

mod common;

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use leakrun::process::procfs::{self, Identity};

/// Every live process below `root`, by name (`/proc/<pid>/comm`), with its identity.
fn descendants(root: u32) -> Vec<(String, Identity)> {
    procfs::descendants(root)
        .into_iter()
        .filter_map(|p| {
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", p.pid)).ok()?;
            Some((comm.trim().to_string(), p))
        })
        .collect()
}

/// Waits (at most `bound`) until every name in `names` runs below `root`; what runs then.
fn wait_for(root: u32, names: &[&str], bound: Duration) -> Vec<(String, Identity)> {
    let deadline = Instant::now() + bound;
    loop {
        let found = descendants(root);
        if names.iter().all(|n| found.iter().any(|(name, _)| name == n)) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{names:?} did not all start below leakrun (pid {root}) within {bound:?}; running: {:?}",
            found.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(target: &str, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), "--", target])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name} {target}");
}

/// A scenario on `kind` that runs far longer than any test waits: a signal ends it.
fn long_run(dir: &Path, name: &str, kind: &str) -> std::path::PathBuf {
    scenario(
        dir,
        name,
        &format!(
            "name = \"{name}\"\n[backend]\nkind = \"{kind}\"\n[run]\nduration = \"120s\"\niterations = 1\n\
             [[rooms]]\nname = \"lobby\"\nclients = [{{ pattern = \"steady\", count = 3, rate = 5 }}]\n"
        ),
    )
}

/// SIGKILLs leakrun once `names` run below it and the run has had `running` to begin; then
/// every process that was below it must be gone within 5 s.
fn sigkill_leaves_nothing(kind: &str, names: &[&str], start_bound: Duration, running: Duration) {
    let dir = scratch();
    let path = long_run(dir.path(), &format!("killed_{}", kind.replace('-', "_")), kind);
    let mut child = spawn_run(&path, dir.path(), |c| {
        c.env_remove("REDIS_URL").env_remove("AMQP_URL");
    });
    let root = child.id();
    wait_for(root, names, start_bound);
    std::thread::sleep(running);
    let started = descendants(root);
    signal(&root.to_string(), "KILL");
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut alive: Vec<&(String, Identity)> = started.iter().collect();
    while !alive.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        alive.retain(|(_, p)| p.is_alive());
    }
    assert!(
        alive.is_empty(),
        "5 s after SIGKILL to leakrun these still run: {:?} (started for the run: {:?})",
        alive,
        started.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for name in names {
        assert!(started.iter().any(|(n, _)| n == name), "{name} was started for the run");
    }
}

#[test]
fn sigkill_during_a_redis_run_leaves_no_redis_server() {
    sigkill_leaves_nothing(
        "redis-lists",
        &["redis-server"],
        Duration::from_secs(10),
        Duration::from_secs(2),
    );
}

#[test]
fn sigkill_during_a_rabbitmq_run_leaves_no_broker_and_no_epmd() {
    // The broker takes about 6 s to accept AMQP; the run has begun a few seconds after that.
    sigkill_leaves_nothing(
        "amqp",
        &["beam.smp", "epmd"],
        Duration::from_secs(20),
        Duration::from_secs(10),
    );
}

#[test]
fn sigint_to_the_whole_process_group_ends_a_redis_run_interrupted() {
    let dir = scratch();
    let path = long_run(dir.path(), "group_interrupted", "redis-lists");
    // leakrun leads a group of its own, as a shell's foreground job does: a terminal's Ctrl-C
    // is SIGINT to that whole group.
    let child = spawn_run(&path, dir.path(), |c| {
        c.env_remove("REDIS_URL").process_group(0);
    });
    let root = child.id();
    let started = wait_for(root, &["redis-server"], Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(3));
    signal(&format!("-{root}"), "INT");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    let r = result(dir.path(), "group_interrupted");
    assert_eq!(r["status"], "interrupted", "{}", r["error"]);
    assert!(r["error"].is_null(), "{}", r["error"]);
    assert!(
        r["iterations"].as_array().unwrap().len() == 1,
        "the interrupted iteration is recorded"
    );
    let redis = started.iter().find(|(n, _)| n == "redis-server").unwrap();
    assert!(!redis.1.is_alive(), "the private redis-server outlived the run");
}

/// Sends `name` to leakrun during a memory-layer run: exit `code` and a partial result.
fn stops_with(name: &str, code: i32) {
    let dir = scratch();
    let scenario_name = format!("stopped_by_{}", name.to_lowercase());
    let path = long_run(dir.path(), &scenario_name, "memory");
    let child = spawn_run(&path, dir.path(), |_| {});
    std::thread::sleep(Duration::from_secs(2));
    signal(&child.id().to_string(), name);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(code), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("SIG{name}: closing clients")), "{stderr}");
    let r = result(dir.path(), &scenario_name);
    assert_eq!(r["status"], "interrupted", "{}", r["error"]);
    let sent = r["iterations"][0]["totals"]["sent"].as_u64().unwrap_or(0);
    assert!(sent > 0, "the partial result holds what was sent: {}", r["iterations"]);
}

#[test]
fn sigterm_stops_a_run_with_143_and_a_partial_result() {
    stops_with("TERM", 143);
}

#[test]
fn sighup_stops_a_run_with_129_and_a_partial_result() {
    stops_with("HUP", 129);
}
