//! `leakrun diff` on real results: two runs of one scenario through the binary, one of them with a
//! fault, compared in every format.

mod common;

use std::path::Path;

use common::*;

const SCENARIO: &str = r#"
name = "pair"
[[rooms]]
name = "room_a"
  [[rooms.clients]]
  pattern = "steady"
  count = 3
  rate = 50
[run]
duration = "2s"
"#;

/// Runs the pair scenario into `out`, with the layer dropping one message in `drop` if given.
fn run_pair(dir: &Path, out: &Path, drop: Option<u64>) -> std::path::PathBuf {
    let mut text = SCENARIO.to_string();
    if let Some(n) = drop {
        text.push_str(&format!("[server.faults]\ndrop_one_in = {n}\n"));
    }
    let file = scenario(dir, if drop.is_some() { "pair_fault" } else { "pair" }, &text);
    let output = run_scenario(&file, out);
    assert!(matches!(output.status.code(), Some(0 | 1)), "{}", describe(&output));
    out.join("pair.json")
}

#[test]
fn gaps_that_appear_exit_1_and_name_the_room_sender_and_range() {
    let dir = scratch();
    let base = run_pair(dir.path(), &dir.path().join("base"), None);
    let head = run_pair(dir.path(), &dir.path().join("head"), Some(40));
    let (b, h) = (base.to_str().unwrap(), head.to_str().unwrap());

    let text = leakrun(&["diff", b, h]);
    assert_eq!(text.status.code(), Some(1), "{}", describe(&text));
    let stdout = String::from_utf8_lossy(&text.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("gaps: clean → gaps"))
        .expect(&stdout);
    assert!(line.starts_with("WORSE"), "{line}");
    let r = result(&dir.path().join("head"), "pair");
    let first = &r["losses"]["records"][0];
    for needle in [
        format!("first in room {}", first["room"].as_str().unwrap()),
        format!(
            "from sender {} ({})",
            first["sender"],
            first["sender_client"].as_str().unwrap()
        ),
        format!("missed seq {}..={}", first["first_seq"], first["last_seq"]),
    ] {
        assert!(line.contains(&needle), "`{needle}` in {line}");
    }

    let json = leakrun(&["diff", b, h, "--format", "json"]);
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(report["verdicts"][0]["verdict"], "gaps");
    assert_eq!(report["verdicts"][0]["worse"], true);
    assert!(
        report["figures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["figure"] == "messages lost" && f["regression"] == true)
    );

    // The loss forensics' figures: the distinct messages behind the lost deliveries, and their
    // cause (a drop of the layer while delivery kept up is lost while healthy).
    let moved = |name: &str| {
        report["figures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["figure"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} moved: {report}"))
    };
    for name in ["distinct messages lost", "distinct lost while healthy"] {
        let change = moved(name);
        assert_eq!(change["base"], 0.0, "{change}");
        assert!(change["head"].as_f64().unwrap() > 0.0, "{change}");
        assert_eq!(change["regression"], true, "{change}");
    }

    let markdown = leakrun(&["diff", b, h, "--format", "markdown"]);
    assert_eq!(markdown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&markdown.stdout).contains("| gaps | clean | gaps | ❌ worse |"));

    // The other way round the verdict improved: nothing got worse. (Two short runs' delivery
    // latency can differ by more than the default 10% on a busy machine: only the verdicts and
    // the loss figures are the point here.)
    let better = leakrun(&["diff", h, b, "--tolerance", "100"]);
    let stdout = String::from_utf8_lossy(&better.stdout);
    assert!(stdout.contains("better gaps: gaps → clean"), "{stdout}");
    assert_eq!(better.status.code(), Some(0), "{}", describe(&better));
}

/// The figures `diff` reported moved, by name, from `base` to `head` as JSON.
fn moved_figures(base: &Path, head: &Path) -> Vec<serde_json::Value> {
    let output = leakrun(&[
        "diff",
        base.to_str().unwrap(),
        head.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(matches!(output.status.code(), Some(0 | 1)), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    report["figures"].as_array().unwrap().clone()
}

#[test]
fn unconfirmed_and_causes_are_compared_and_an_old_result_without_them_is_read() {
    let dir = scratch();
    let base = run_pair(dir.path(), dir.path(), None);
    let original: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&base).unwrap()).unwrap();
    assert_eq!(original["verdicts"]["gaps"]["distinct_lost"], 0, "a clean run");
    let mut changed = original.clone();
    let gaps = &mut changed["verdicts"]["gaps"];
    gaps["totals"]["unconfirmed"] = 12.into();
    gaps["distinct_unconfirmed"] = 4.into();
    gaps["causes"]["under_backlog"] = 3.into();
    let head = dir.path().join("head.json");
    std::fs::write(&head, changed.to_string()).unwrap();
    let figures = moved_figures(&base, &head);
    for (name, value) in [
        ("messages unconfirmed", 12.0),
        ("distinct messages unconfirmed", 4.0),
        ("distinct lost under backlog", 3.0),
    ] {
        let change = figures
            .iter()
            .find(|f| f["figure"] == name)
            .unwrap_or_else(|| panic!("{name} in {figures:?}"));
        assert_eq!(
            (change["base"].as_f64(), change["head"].as_f64()),
            (Some(0.0), Some(value))
        );
        assert_eq!(change["regression"], true, "{change}");
    }
    assert!(
        !figures.iter().any(|f| f["figure"] == "distinct lost while healthy"),
        "unchanged figures are not reported: {figures:?}"
    );
    // A result written before the forensics has none of these fields: it is read, and its
    // missing counts are not compared as zeros.
    let mut old = changed.clone();
    let gaps = old["verdicts"]["gaps"].as_object_mut().unwrap();
    for key in [
        "distinct_lost",
        "distinct_unconfirmed",
        "causes",
        "missed_by",
        "signature",
    ] {
        gaps.remove(key);
    }
    let old_path = dir.path().join("old.json");
    std::fs::write(&old_path, old.to_string()).unwrap();
    let figures = moved_figures(&old_path, &base);
    assert!(
        !figures
            .iter()
            .any(|f| f["figure"].as_str().unwrap().contains("distinct") || f["figure"] == "messages unconfirmed"),
        "{figures:?}"
    );
}

#[test]
fn identical_results_exit_0() {
    let dir = scratch();
    let base = run_pair(dir.path(), dir.path(), None);
    let output = leakrun(&["diff", base.to_str().unwrap(), base.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("verdicts: unchanged") && stdout.contains("figures: none moved"),
        "{stdout}"
    );
}

#[test]
fn results_of_other_schemas_or_scenarios_are_refused() {
    let dir = scratch();
    let base = run_pair(dir.path(), dir.path(), None);
    let mut old: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&base).unwrap()).unwrap();
    old["schema_version"] = 1.into();
    old.as_object_mut().unwrap().remove("timeline");
    let old_path = dir.path().join("old.json");
    std::fs::write(&old_path, old.to_string()).unwrap();
    let output = leakrun(&["diff", old_path.to_str().unwrap(), base.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("has result schema 1"));

    let mut other: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&base).unwrap()).unwrap();
    other["scenario"]["name"] = "other".into();
    let other_path = dir.path().join("other.json");
    std::fs::write(&other_path, other.to_string()).unwrap();
    let output = leakrun(&["diff", base.to_str().unwrap(), other_path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is scenario `other`"));

    let missing = leakrun(&["diff", base.to_str().unwrap(), "nowhere.json"]);
    assert_eq!(missing.status.code(), Some(2));
    let bad = leakrun(&[
        "diff",
        base.to_str().unwrap(),
        base.to_str().unwrap(),
        "--tolerance",
        "-1",
    ]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn a_baseline_keeps_only_portable_figures_and_catches_new_gaps() {
    let dir = scratch();
    let base = run_pair(dir.path(), &dir.path().join("base"), None);
    let head = run_pair(dir.path(), &dir.path().join("head"), Some(40));
    let baselines = dir.path().join("baseline");
    let made = leakrun(&["baseline", base.to_str().unwrap(), "--out", baselines.to_str().unwrap()]);
    assert_eq!(made.status.code(), Some(0), "{}", describe(&made));
    let kept = baselines.join("pair.json");
    let baseline: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&kept).unwrap()).unwrap();
    assert_eq!(baseline["kind"], "leakrun-baseline");
    assert_eq!(baseline["verdicts"]["gaps"]["outcome"], "clean");
    let names: Vec<&str> = baseline["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"lost per 1000 deliveries"), "{names:?}");
    assert!(
        names.iter().all(|n| !n.contains("p99") && !n.contains("per second")),
        "no machine-dependent figure in a baseline: {names:?}"
    );

    let (k, b, h) = (kept.to_str().unwrap(), base.to_str().unwrap(), head.to_str().unwrap());
    let same = leakrun(&["diff", k, b]);
    assert_eq!(same.status.code(), Some(0), "{}", describe(&same));
    let worse = leakrun(&["diff", k, h]);
    assert_eq!(worse.status.code(), Some(1), "{}", describe(&worse));
    let stdout = String::from_utf8_lossy(&worse.stdout);
    assert!(stdout.contains("WORSE  gaps: clean → gaps"), "{stdout}");
    assert!(stdout.contains("WORSE  lost per 1000 deliveries: 0 →"), "{stdout}");

    let not_a_result = leakrun(&["baseline", "nowhere.json", "--out", baselines.to_str().unwrap()]);
    assert_eq!(not_a_result.status.code(), Some(2), "{}", describe(&not_a_result));
}
