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
    // Loss marks: one shape per kept record, a layer per kind and cause.
    let records = json["losses"]["records"].as_array().expect("records");
    let loss_layers = layers(html, "churn", "loss-marks");
    let drawn: usize = loss_layers.iter().map(|l| count(l, "polygon")).sum();
    assert_eq!(drawn, records.len(), "a mark per kept loss record");
    let marks_where = |key: &str, value: &str| -> usize {
        loss_layers
            .iter()
            .filter(|l| data(l, key) == Some(value))
            .map(|l| count(l, "polygon"))
            .sum()
    };
    for kind in ["gap", "tail_loss", "unconfirmed"] {
        let of_kind = records.iter().filter(|r| r["kind"] == kind).count();
        assert_eq!(marks_where("kind", kind), of_kind, "{kind}");
    }
    // Each mark carries its record's cause: as many per cause as records with it, a lost record
    // always with one, an unconfirmed one never.
    let cause_of = |r: &serde_json::Value| r["cause"].as_str().unwrap_or("none").to_string();
    for record in records {
        let lost = record["kind"] != "unconfirmed";
        assert_eq!(lost, record["cause"].is_string(), "{record}");
    }
    for cause in ["while_healthy", "under_backlog", "none"] {
        let with_cause = records.iter().filter(|r| cause_of(r) == cause).count();
        assert_eq!(marks_where("cause", cause), with_cause, "{cause}");
    }
    for layer in &loss_layers {
        let (kind, cause) = (
            data(layer, "kind").expect("a kind"),
            data(layer, "cause").expect("a cause"),
        );
        let of_group = records
            .iter()
            .filter(|r| r["kind"] == kind && cause_of(r) == cause)
            .count();
        assert_eq!(count(layer, "polygon"), of_group, "{kind} {cause}");
        assert_eq!(data(layer, "marks"), Some(of_group.to_string().as_str()));
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
    // Delivery p99 per room: a line per room the result has windows for, named after it.
    let rooms: Vec<&str> = json["delivery_timeline_per_room"]
        .as_array()
        .map_or(&[][..], |rooms| rooms.as_slice())
        .iter()
        .filter(|room| !room["windows"].as_array().expect("windows").is_empty())
        .map(|room| room["room"].as_str().expect("a room name"))
        .collect();
    let delivered = !json["delivery_timeline"].as_array().expect("windows").is_empty();
    assert_eq!(
        !rooms.is_empty(),
        delivered,
        "rooms have windows when the run delivered"
    );
    // Each room's windows hold every delivery its histogram holds.
    for room in json["delivery_timeline_per_room"].as_array().into_iter().flatten() {
        let in_windows: u64 = room["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["count"].as_u64().unwrap())
            .sum();
        let summary = json["verdicts"]["latency"]["delivery"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["room"] == room["room"])
            .expect("the room's latency");
        assert_eq!(
            in_windows,
            summary["delivery"]["count"].as_u64().unwrap(),
            "{}",
            room["room"]
        );
    }
    // Every message sent has its send lag measured, in its room.
    let lagged: u64 = json["verdicts"]["latency"]["delivery"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["send_lag"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        lagged,
        json["verdicts"]["gaps"]["totals"]["sent"].as_u64().unwrap(),
        "a send lag per message sent"
    );
    // Samples carry the delivery latency of their window once anything was delivered.
    let samples = json["timeline"]["samples"].as_array().unwrap();
    let with_latency = samples.iter().filter(|s| s["delivery_p99_us"].is_u64()).count();
    assert_eq!(
        with_latency > 0,
        delivered,
        "samples with delivery latency: {with_latency}"
    );
    let lines = layers(html, "latency-rooms", "room");
    let drawn: Vec<&str> = lines.iter().map(|l| data(l, "room").expect("a room")).collect();
    assert_eq!(drawn, rooms, "a line per room with windows");
    assert!(
        lines.iter().all(|l| count(l, "polyline") == 1),
        "each room drawn as a line"
    );
    // Connect time: a point per window for p50 and for p99, when the run opened WebSockets.
    let sessions: u64 = json["iterations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sessions"].as_u64().unwrap())
        .sum();
    let connect = json["connect_timeline"].as_array().map_or(0, |w| w.len());
    assert_eq!(connect > 0, sessions > 0, "connect windows when sessions connected");
    let series = layers(html, "latency-connect", "series");
    assert_eq!(series.len(), if sessions > 0 { 2 } else { 0 }, "p50 and p99");
    for layer in series {
        assert_eq!(count(layer, "circle"), connect, "{:?}", data(layer, "series"));
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
fn the_cache_leak_report_draws_its_route_per_iteration_and_its_sites() {
    let dir = scratch();
    let out = dir.path().join("results");
    let output = run_scenario(Path::new("scenarios/cache_unbounded.toml"), &out);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let json = result(&out, "cache_unbounded");
    let html = std::fs::read_to_string(out.join("cache_unbounded.html")).expect("the report");
    check_report(&html, &json);
    // HTTP: a chart per figure, a line with a point per iteration for each route.
    let iterations = json["iterations"].as_array().unwrap();
    let routes: BTreeSet<String> = iterations
        .iter()
        .flat_map(|i| i["http"].as_array().unwrap().iter())
        .map(|r| r["route"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(routes.len(), 1, "{routes:?}");
    for chart in ["http-rate", "http-p99", "http-failed"] {
        let series = layers(&html, chart, "http-series");
        let drawn: BTreeSet<String> = series.iter().map(|l| data(l, "route").unwrap().to_string()).collect();
        assert_eq!(drawn, routes, "{chart}");
        for layer in series {
            assert_eq!(
                count(layer, "circle"),
                iterations.len(),
                "{chart}: a point per iteration"
            );
        }
    }
    // Allocation sites: a bar per site the leak verdict lists (at most 15), each named.
    let sites = json["verdicts"]["leak"]["sites"].as_array().expect("sites");
    assert!(!sites.is_empty(), "the leak verdict names where the cache grew");
    let bars = sites.len().min(15);
    assert!(
        html.contains(&format!("data-chart=\"sites\" data-bars=\"{bars}\"")),
        "{bars} bars"
    );
    let first = sites[0]["site"].as_str().unwrap();
    assert!(first.chars().count() > 90 || html.contains(first), "{first} is drawn");
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
