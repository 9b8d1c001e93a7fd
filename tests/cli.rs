//! The command line as a user meets it: bad scenarios exit 2 with file, line, column and key;
//! `leakrun FILE` means `leakrun run FILE`; Ctrl-C writes a partial result and exits 130.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const MINIMAL: &str = r#"name = "tiny"
[[rooms]]
name = "room"
  [[rooms.clients]]
  pattern = "steady"
  count = 2
  rate = 20
[run]
duration = "1s"
"#;

/// Each bad input with the (line, column, key, words) the error must contain.
const BAD_INPUTS: &[(&str, &str, &str)] = &[
    // (replace this, with this, expected fragment "line:col: `key`")
    (
        "rate = 20",
        "rate = 1e-300",
        "7:10: `rooms[0].clients[0].rate`: 1e-300 is out of range",
    ),
    (
        "rate = 20",
        "rate = 1e-300",
        "valid: 0 (listen only), or 0.001 to 10000 messages per second per client",
    ),
    (
        "duration = \"1s\"",
        "duration = \"1s\"\niterations = 1001",
        "10:14: `run.iterations`: 1001 is out of range; valid: 1 to 1000",
    ),
    (
        "[run]",
        "[[http]]\npath = \"/\"\nrate = 1e-300\n[run]",
        "10:8: `http[0].rate`: 1e-300 is out of range; valid: 0.001 to 1000000 requests per second",
    ),
    (
        "rate = 20",
        "rate = 20\nspeed = 3",
        "8:1: `rooms[0].clients[0].speed`: unknown key `speed` in [rooms.clients]; valid keys: pattern, count, rate",
    ),
    (
        "count = 2",
        "count = 0",
        "6:11: `rooms[0].clients[0].count`: 0 is out of range; valid: 1 to 10000",
    ),
    (
        "count = 2",
        "count = \"two\"",
        "6:11: `rooms[0].clients[0].count`: invalid type",
    ),
    (
        "pattern = \"steady\"",
        "pattern = \"sometimes\"",
        "5:13: `rooms[0].clients[0].pattern`: `sometimes` is not one of the valid values: \"steady\", \"cycle\", \"tabs\"",
    ),
    (
        "duration = \"1s\"",
        "duration = \"1 fortnight\"",
        "9:12: `run.duration`: `1 fortnight` is not a duration",
    ),
    (
        "duration = \"1s\"",
        "duration = 5",
        "9:12: `run.duration`: invalid type",
    ),
    (
        "name = \"room\"",
        "name = \"room a\"",
        "3:8: `rooms[0].name`: `room a` is not a valid room name",
    ),
    (
        "rate = 20",
        "rate = 20\nup = \"1s\"",
        "8:6: `rooms[0].clients[0].up`: only applies to pattern = \"cycle\"",
    ),
    (
        "[run]",
        "[backend]\nkind = \"postgres\"\n[run]",
        "9:8: `backend.kind`: `postgres` is not one of the valid values: \"memory\"",
    ),
    (
        "[run]",
        "[server]\ncapacity = -5\n[run]",
        "9:12: `server.capacity`: -5 is out of range",
    ),
    (
        "[run]",
        "[server.faults]\ndrop_one_in = 1\n[run]",
        "9:15: `server.faults.drop_one_in`: 1 is out of range; valid: 2 to",
    ),
    (
        "[run]",
        "[expect]\nleak = true\nretention = true\n[run]",
        "10:13: `expect.retention`: contradicts expect.leak = true",
    ),
    ("[run]", "[run\n", "TOML syntax"),
];

#[test]
fn every_kind_of_bad_scenario_exits_2_with_a_position() {
    let dir = scratch();
    for (i, (from, to, expected)) in BAD_INPUTS.iter().enumerate() {
        assert!(MINIMAL.contains(from));
        let path = scenario(dir.path(), &format!("bad{i}"), &MINIMAL.replacen(from, to, 1));
        let (file, out) = (path.to_str().unwrap(), dir.path().to_str().unwrap());
        for args in [vec!["check", file], vec!["run", file, "--out", out]] {
            let command = args[0];
            let output = leakrun(&args);
            assert_eq!(output.status.code(), Some(2), "{command} {to}: {}", describe(&output));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(&format!("bad{i}.toml:")), "names the file: {stderr}");
            assert!(
                stderr.contains(expected),
                "{command} with `{to}`:\nexpected `{expected}` in\n{stderr}"
            );
        }
    }
    // No result file, half-written or whole, for a scenario that did not run.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json" || x == "tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn all_problems_in_a_file_are_reported_at_once() {
    let dir = scratch();
    let text = MINIMAL
        .replace("count = 2", "count = 0\ncolour = \"red\"")
        .replace("duration = \"1s\"", "duration = \"later\"\ndrian = \"1s\"");
    let output = leakrun(&["check", scenario(dir.path(), "many", &text).to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("4 problems"), "{stderr}");
    for key in [
        "`rooms[0].clients[0].count`",
        "`rooms[0].clients[0].colour`",
        "`run.duration`",
        "`run.drian`",
    ] {
        assert!(stderr.contains(key), "{key} in {stderr}");
    }
}

#[test]
fn check_stops_at_the_first_bad_file() {
    let dir = scratch();
    let good = scenario(dir.path(), "good", MINIMAL);
    let bad = scenario(dir.path(), "bad", &MINIMAL.replace("count = 2", "count = -1"));
    let output = leakrun(&[
        "check",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).matches("ok ").count(),
        1,
        "{}",
        describe(&output)
    );
    let missing = leakrun(&["check", dir.path().join("absent.toml").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("absent.toml: cannot read the scenario"));
}

#[test]
fn unknown_flags_are_usage_errors() {
    let output = leakrun(&["run", "x.toml", "--frobnicate"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
}

#[test]
fn a_bare_file_argument_runs_it() {
    let dir = scratch();
    let path = scenario(dir.path(), "tiny", MINIMAL);
    let output = Command::new(env!("CARGO_BIN_EXE_leakrun"))
        .args([path.to_str().unwrap(), "--no-progress"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(&dir.path().join("results"), "tiny");
    assert_eq!(r["schema_version"], 2);
    assert_eq!(r["status"], "pass");
    assert_eq!(r["scenario"]["resolved"]["server"]["capacity"], 100);
    assert_eq!(r["scenario"]["hash"].as_str().unwrap().len(), 64);
    assert!(r["host"]["cpus"].as_u64().unwrap() >= 1);
    assert_eq!(r["iterations"].as_array().unwrap().len(), 1);
    assert!(
        r["verdicts"]["latency"]["delivery"][0]["delivery"]["count"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn ctrl_c_closes_clients_and_writes_a_partial_result() {
    let dir = scratch();
    let path = scenario(
        dir.path(),
        "long",
        &MINIMAL.replace("duration = \"1s\"", "duration = \"60s\"\niterations = 5"),
    );
    let child = spawn_run(&path, dir.path(), |_| {});
    std::thread::sleep(Duration::from_secs(2));
    interrupt(&child);
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stops promptly: {:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    let r = result(dir.path(), "tiny");
    assert_eq!(r["status"], "interrupted");
    assert_eq!(r["iterations"].as_array().unwrap().len(), 1);
    assert!(r["iterations"][0]["send_s"].as_f64().unwrap() < 10.0);
    // Reported, not judged: its in-flight messages would pass for tail loss.
    assert_eq!(r["iterations"][0]["interrupted"], true);
    assert!(r["iterations"][0]["totals"]["received"].as_u64().unwrap() > 0);
    assert!(
        r["verdicts"].is_null(),
        "an interrupted iteration was judged: {}",
        r["verdicts"]
    );
    assert_eq!(r["server"]["live_connections"], 0, "clients were closed");
}
