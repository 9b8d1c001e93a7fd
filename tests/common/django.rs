//! Running the Django Channels examples (examples/django_*.toml) as they are: a private Redis,
//! daphne from the virtual environments scripts/install-services makes, and a check that
//! nothing started for a run outlives it.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use super::{describe, leakrun_with, result, scratch};

/// True while process `pid` exists and is not a zombie.
pub fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// Runs the example `file` as it is (but `set`), with a private Redis; how leakrun exited and
/// the result. Checks that nothing started for the run outlives it, whatever the verdicts.
pub fn run_example_as_is(file: &str, set: &[&str]) -> (Output, Value) {
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
    // Nothing started for the run outlives it: the server, then its private Redis.
    let server = r["target"]["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("{}: {}", describe(&output), r["error"]));
    assert!(!alive(server), "daphne (pid {server}) still runs");
    let source = r["backend"]["source"].as_str().unwrap();
    let redis: u64 = source
        .strip_prefix("private redis-server (pid ")
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("a private Redis was started for the run: {source}"));
    assert!(!alive(redis), "redis-server (pid {redis}) still runs");
    assert!(source.ends_with("passed to the server as REDIS_URL"), "{source}");
    (output, r)
}

/// [`run_example_as_is`], asking that every verdict came out as the example expects (exit 0).
pub fn run_example(file: &str, set: &[&str]) -> Value {
    let (output, r) = run_example_as_is(file, set);
    assert_eq!(output.status.code(), Some(0), "{}: {}", describe(&output), r["error"]);
    r
}
