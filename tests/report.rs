//! The HTML report of the controls holds what their results hold: as many iteration markers as
//! iterations, as many loss marks as kept loss records, every state series; and a result of
//! another schema version is refused with exit 2. The runs are real (the binary, its embedded
//! server); the counts are read from the chart layers' class names, drawn by plotters.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::html::{count, data, layers};
use common::{describe, leakrun, result, run_scenario, scratch};

/// Everything the report must hold of its result.
fn check_report(html: &str, json: &serde_json::Value) {
    let iterations = json["iterations"].as_array().expect("iterations").len();
    assert!(iterations > 0);
    // Iteration markers: one line per iteration, in the memory chart and in every other.
    let marks = layers(html, "memory", "iteration-marks");
    assert_eq!(marks.len(), 1, "one marker layer in the memory chart");
    assert_eq!(count(marks[0], "polyline"), iterations, "{}", marks[0]);
    let after = layers(html, "memory", "after-points");
    assert_eq!(count(after[0], "circle"), iterations, "an after point per iteration");
    // Loss marks: one triangle per kept record, whatever its kind.
    let records = json["losses"]["records"].as_array().expect("records");
    let loss_layers = layers(html, "churn", "loss-marks");
    let drawn: usize = loss_layers.iter().map(|l| count(l, "polygon")).sum();
    assert_eq!(drawn, records.len(), "a mark per kept loss record");
    for layer in &loss_layers {
        let kind = data(layer, "kind").expect("a kind");
        let of_kind = records.iter().filter(|r| r["kind"] == kind).count();
        assert_eq!(count(layer, "polygon"), of_kind, "{kind}");
    }
    // Every state series the samples hold, with a line of its points.
    let mut names = BTreeSet::new();
    for sample in json["timeline"]["samples"].as_array().expect("samples") {
        names.extend(sample["state"].as_object().expect("state").keys().cloned());
    }
    assert!(!names.is_empty());
    for name in &names {
        let series = layers(html, &format!("state:{name}"), "state-series");
        assert_eq!(series.len(), 1, "state series {name}");
        assert_eq!(data(series[0], "series"), Some(name.as_str()));
        assert_eq!(count(series[0], "polyline"), 1, "{name} drawn as a line");
    }
    // The verdict lines at the top, one per verdict, met or not as the result says.
    let verdicts = &json["verdicts"];
    for name in ["gaps", "latency", "leak"] {
        let met = verdicts[name]["met"].as_bool().expect("met");
        assert!(
            html.contains(&format!("data-verdict=\"{name}\" data-met=\"{met}\"")),
            "verdict {name}"
        );
    }
    // Self-contained: no script, nothing fetched.
    assert!(!html.contains("<script"), "no script");
    for fetch in ["src=", "href=", "url(", "@import"] {
        assert!(!html.contains(fetch), "nothing fetched ({fetch})");
    }
    let outside = html.replace("http://www.w3.org/2000/svg", "");
    assert!(
        !outside.contains("http://") && !outside.contains("https://"),
        "no remote address"
    );
}

#[test]
fn the_membership_leak_report_holds_its_iterations_and_state_series() {
    let dir = scratch();
    let out = dir.path().join("results");
    let output = run_scenario(Path::new("scenarios/controls/membership_leak.toml"), &out);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let json = result(&out, "membership_leak");
    let html =
        std::fs::read_to_string(out.join("membership_leak.html")).expect("run writes the report beside the result");
    check_report(&html, &json);
    // The growth the leak verdict judged is drawn as a fit steeper than its threshold.
    let fit = layers(&html, "memory", "fit");
    let slope: f64 = data(fit[0], "slope").expect("slope").parse().expect("a number");
    let threshold: f64 = data(fit[0], "threshold").expect("threshold").parse().expect("a number");
    assert!(slope > threshold, "slope {slope} over threshold {threshold}");
    let memberships = layers(&html, "state:memberships", "state-series");
    assert_eq!(data(memberships[0], "kind"), Some("state"));
}

#[test]
fn the_gap_control_report_marks_every_kept_loss() {
    let dir = scratch();
    let out = dir.path().join("results");
    let output = common::leakrun(&[
        "run",
        "scenarios/controls/drop_one_in_200.toml",
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
        "--no-report",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(!out.join("drop_one_in_200.html").exists(), "--no-report writes none");
    let json = result(&out, "drop_one_in_200");
    assert!(
        !json["losses"]["records"].as_array().expect("records").is_empty(),
        "the control loses messages"
    );
    let target = dir.path().join("report.html");
    let output = leakrun(&[
        "report",
        out.join("drop_one_in_200.json").to_str().unwrap(),
        "-o",
        target.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let html = std::fs::read_to_string(&target).expect("the report");
    check_report(&html, &json);
    assert_eq!(layers(&html, "latency", "series").len(), 2, "p50 and p99 over time");
}

#[test]
fn a_result_of_another_schema_or_no_result_is_refused_with_exit_2() {
    let dir = scratch();
    let old = dir.path().join("old.json");
    let result = serde_json::json!({
        "schema_version": 1,
        "tool": {"name": "leakrun", "version": "0.0.1"},
        "scenario": {"name": "x"}
    });
    std::fs::write(&old, result.to_string()).unwrap();
    let output = leakrun(&["report", old.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("schema version 1, written by leakrun 0.0.1"),
        "{stderr}"
    );
    assert!(stderr.contains("run the scenario again"), "{stderr}");
    assert!(!dir.path().join("old.html").exists(), "no report of a refused result");

    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"schema_version\": 2, \"tool\": 7}").unwrap();
    let output = leakrun(&["report", garbage.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a leakrun result"));

    let missing = dir.path().join("missing.json");
    let output = leakrun(&["report", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));

    let output = leakrun(&["report", old.to_str().unwrap(), "-o", "/nonexistent-folder/x.html"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
}
