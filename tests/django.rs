//! The seeds against the real stack: a Django Channels chat (examples/django_chat) under daphne,
//! with the Redis leakrun starts for it, as the examples in examples/ run it.
//!
//! - `django_1683.toml` (channels 3.0.3, channels-redis 3.2.0 core layer): the silent drop of
//!   django/channels#1683 is found, each lost message missed by every receiver owed it.
//! - `django_1683_pubsub.toml` (today's pub/sub layer): the same load loses nothing.
//! - `django_tabs.toml` (the django-channels-leak report, with the Python heap probe): no leak,
//!   the traced heap and its sites read.
//!
//! Afterwards neither the daphne nor the redis-server started for a run is alive. Needs the
//! virtual environments scripts/install-services makes (target/django-1683, target/django-current).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// True while process `pid` exists and is not a zombie.
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// Runs the example `file` as it is (but `set`), with a private Redis; its result.
fn run_example(file: &str, set: &[&str]) -> Value {
    for venv in ["target/django-1683/bin/daphne", "target/django-current/bin/daphne"] {
        assert!(
            Path::new(venv).exists(),
            "{venv} is missing: run scripts/install-services (it makes the Django virtual environments)"
        );
    }
    let dir = scratch();
    let mut args = vec!["run", file, "--out", dir.path().to_str().unwrap(), "--no-progress"];
    for s in set {
        args.extend(["--set", s]);
    }
    let output = leakrun_with(&args, |c: &mut Command| {
        c.env_remove("REDIS_URL");
    });
    let name = Path::new(file).file_stem().unwrap().to_str().unwrap();
    let r = result(dir.path(), name);
    assert_eq!(output.status.code(), Some(0), "{}: {}", describe(&output), r["error"]);
    // Nothing started for the run outlives it: the server, then its private Redis.
    let server = r["target"]["pid"].as_u64().unwrap();
    assert!(!alive(server), "daphne (pid {server}) still runs");
    let source = r["backend"]["source"].as_str().unwrap();
    let redis: u64 = source
        .strip_prefix("private redis-server (pid ")
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("a private Redis was started for the run: {source}"));
    assert!(!alive(redis), "redis-server (pid {redis}) still runs");
    assert!(source.ends_with("passed to the server as REDIS_URL"), "{source}");
    r
}

#[test]
fn the_1683_drop_is_found_on_the_reported_versions() {
    // Two minutes, not the example's one: the drop is a race whose rate varies from run to run
    // (52 distinct in 45 s once, 5 in 30 s another, none in a whole minute once on a quiet CI).
    let r = run_example("examples/django_1683.toml", &["run.duration=120s"]);
    let gaps = &r["verdicts"]["gaps"];
    assert_eq!(gaps["outcome"], "gaps", "{}", gaps["summary"]);
    let distinct = gaps["distinct_lost"].as_u64().unwrap();
    assert!(distinct > 0, "{}", gaps["summary"]);
    // The signature of the bug: every receiver owed the message missed it.
    assert_eq!(
        gaps["missed_by"]["every"].as_u64().unwrap(),
        distinct,
        "{}",
        gaps["missed_by"]
    );
    // Every loss record says when it happened. How soon the first one comes is the race's own
    // rate (3 s to over 30 s in past runs), a figure for a benchmark, not an assertion here.
    let records = r["losses"]["records"].as_array().unwrap();
    assert!(!records.is_empty(), "{}", r["losses"]);
    let first = records
        .iter()
        .map(|l| l["at_s"].as_f64().expect("every loss record has its time"))
        .fold(f64::INFINITY, f64::min);
    eprintln!("the first loss came at {first:.1} s");
    // The Redis the app uses was probed; its group members came (nearly) back down — an
    // overloaded daphne may miss a disconnect, which the scenario tolerates up to 5.
    let members = r["verdicts"]["leak"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "redis_group_members")
        .expect("the Redis the app uses is probed");
    assert!(members["after"][0].as_f64().unwrap() <= 5.0, "{}", members["evidence"]);
}

#[test]
fn the_same_churn_on_todays_pubsub_layer_loses_nothing() {
    let r = run_example("examples/django_1683_pubsub.toml", &[]);
    let gaps = &r["verdicts"]["gaps"];
    assert_eq!(gaps["outcome"], "clean", "{}", gaps["summary"]);
    assert!(
        gaps["totals"]["received"].as_u64().unwrap() > 5000,
        "{}",
        gaps["totals"]
    );
}

#[test]
fn waves_of_tabs_keep_no_memory_of_the_apps_and_the_heap_has_sites() {
    // Six waves instead of the example's eleven, to keep CI in bounds.
    let r = run_example("examples/django_tabs.toml", &["run.iterations=6"]);
    let leak = &r["verdicts"]["leak"];
    assert_ne!(leak["outcome"], "leak", "{}", leak["summary"]);
    let heap = leak["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "heap_bytes")
        .expect("the traced heap of daphne");
    assert_eq!(heap["class"], "clean", "{}", heap["evidence"]);
    assert!(heap["evidence"].as_str().unwrap().starts_with("traced Python heap"));
    assert!(
        r["iterations"][1]["heap_probe"]["blocks"].as_i64().unwrap() > 10_000,
        "a real app's heap was snapshotted"
    );
}
