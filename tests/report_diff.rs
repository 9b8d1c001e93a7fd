//! The diff report and a folder run's index, from real runs of the binary on its embedded server:
//! `leakrun report BASE.json HEAD.json` holds both runs' iteration markers and loss marks and the
//! verdict change `leakrun diff` finds; a pair `diff` refuses (another scenario, another schema)
//! is refused with exit 2; a baseline side is compared by verdicts and figures only, and the page
//! says so; a folder run's `index.html` lists every scenario and its links resolve.

mod common;

use std::path::{Path, PathBuf};

use common::html::{count, data, layers};
use common::{describe, leakrun, result, scenario, scratch};

/// The gaps control, short; with `as_clean`, the clean churn control under the gaps control's
/// name, so the two results are of one scenario (the clean one is the base).
fn short_run(out: &Path, as_clean: bool) -> PathBuf {
    let file = if as_clean {
        "scenarios/controls/clean_churn.toml"
    } else {
        "scenarios/controls/drop_one_in_200.toml"
    };
    let mut args = vec![
        "run",
        file,
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
        "--no-report",
        "--set",
        "run.duration=2s",
    ];
    if as_clean {
        args.extend(["--set", "name=drop_one_in_200"]);
    }
    let output = leakrun(&args);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    out.join("drop_one_in_200.json")
}

/// The layers of `class` in `chart` that belong to `run`.
fn of_run<'a>(html: &'a str, chart: &str, class: &str, run: &str) -> Vec<&'a str> {
    layers(html, chart, class)
        .into_iter()
        .filter(|l| data(l, "run") == Some(run))
        .collect()
}

/// Nothing is fetched: no script, no source, no remote address.
fn self_contained(html: &str) {
    assert!(!html.contains("<script"), "no script");
    for fetch in ["src=", "url(", "@import"] {
        assert!(!html.contains(fetch), "nothing fetched ({fetch})");
    }
    let outside = html.replace("http://www.w3.org/2000/svg", "");
    assert!(
        !outside.contains("http://") && !outside.contains("https://"),
        "no remote address"
    );
}

#[test]
fn the_diff_report_overlays_both_runs_and_puts_the_verdict_change_first() {
    let dir = scratch();
    let base = short_run(&dir.path().join("base"), true);
    let head = short_run(&dir.path().join("head"), false);
    let (b, h) = (base.to_str().unwrap(), head.to_str().unwrap());
    let target = dir.path().join("diff.html");
    let output = leakrun(&["report", b, h, "-o", target.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let html = std::fs::read_to_string(&target).expect("the diff report");
    let (bj, hj) = (
        result(&dir.path().join("base"), "drop_one_in_200"),
        result(&dir.path().join("head"), "drop_one_in_200"),
    );

    // The verdict change, in leakrun diff's words, before any chart.
    let text = leakrun(&["diff", b, h]);
    assert_eq!(text.status.code(), Some(1), "{}", describe(&text));
    let stdout = String::from_utf8_lossy(&text.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("gaps: clean → gaps"))
        .expect(&stdout);
    assert!(
        html.contains("data-verdict=\"gaps\" data-worse=\"true\""),
        "the gaps change"
    );
    let change = line.trim_start_matches("WORSE").trim();
    assert!(html.contains(&format!("WORSE {change}")), "`{change}` on the page");
    let first_chart = html.find("<svg class=\"chart\"").expect("charts");
    assert!(html.find("gaps: clean → gaps").expect("the change") < first_chart);

    // Both runs' iteration markers, in every overlaid chart.
    for (run, json) in [("base", &bj), ("head", &hj)] {
        let iterations = json["iterations"].as_array().expect("iterations").len();
        assert!(iterations > 0);
        for chart in ["memory", "churn", "latency"] {
            let marks = of_run(&html, chart, "iteration-marks", run);
            assert_eq!(marks.len(), 1, "{run}'s markers in {chart}");
            assert_eq!(count(marks[0], "polyline"), iterations, "{run} in {chart}");
        }
        let after = of_run(&html, "memory", "after-points", run);
        assert_eq!(count(after[0], "circle"), iterations, "{run}'s after points");
        // A loss mark per kept record of each run: none in the clean base.
        let records = json["losses"]["records"].as_array().expect("records").len();
        let marks = of_run(&html, "churn", "loss-marks", run);
        assert_eq!(count(marks[0], "polygon"), records, "{run}'s loss marks");
        let series = of_run(&html, "latency", "series", run);
        let names: Vec<_> = series.iter().filter_map(|l| data(l, "series")).collect();
        assert_eq!(names, ["p50", "p99"], "{run}'s latency");
    }
    assert!(
        !hj["losses"]["records"].as_array().unwrap().is_empty(),
        "the head loses"
    );
    // Every state series both runs hold, one line each.
    let names = |json: &serde_json::Value| -> std::collections::BTreeSet<String> {
        json["timeline"]["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .flat_map(|s| s["state"].as_object().expect("state").keys().cloned())
            .collect()
    };
    let shared: Vec<String> = names(&bj).intersection(&names(&hj)).cloned().collect();
    assert!(shared.iter().any(|n| n == "live_connections"), "{shared:?}");
    for name in &shared {
        for run in ["base", "head"] {
            let line = of_run(&html, &format!("state:{name}"), "series", run);
            assert_eq!(line.len(), 1, "{run}'s {name}");
            assert_eq!(count(line[0], "polyline"), 1);
        }
    }
    // The legend names both runs.
    assert!(html.contains("</span>base</li>") && html.contains("</span>head</li>"));
    self_contained(&html);

    // Without -o, beside the head.
    let output = leakrun(&["report", b, h]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(dir.path().join("head/drop_one_in_200.diff.html").is_file());

    // A baseline on the base side: verdicts and figures only, and the page says so.
    let kept = dir.path().join("baseline");
    let output = leakrun(&["baseline", b, "--out", kept.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let against = dir.path().join("against-baseline.html");
    let output = leakrun(&[
        "report",
        kept.join("drop_one_in_200.json").to_str().unwrap(),
        h,
        "-o",
        against.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let html = std::fs::read_to_string(&against).expect("the baseline diff report");
    assert!(
        html.contains("data-verdict=\"gaps\" data-worse=\"true\""),
        "the gaps change"
    );
    assert!(
        html.contains("class=\"baseline\" data-baseline=\"base\""),
        "says the base is a baseline"
    );
    assert!(html.contains("compares verdicts and figures only"));
    assert!(!html.contains("<svg class=\"chart\""), "no timeline to overlay");
    assert!(html.contains("data-base-iterations=\"baseline\""));
    self_contained(&html);
}

#[test]
fn a_diff_report_of_another_scenario_or_schema_is_refused_with_exit_2_as_diff_is() {
    let dir = scratch();
    let out = dir.path().join("results");
    let file = scenario(
        dir.path(),
        "pair",
        "name = \"pair\"\n[[rooms]]\nname = \"r\"\n  [[rooms.clients]]\n  pattern = \"steady\"\n  count = 2\n  rate = 20\n[run]\nduration = \"1s\"\n",
    );
    let output = common::run_scenario(&file, &out);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let real = result(&out, "pair");
    let good = out.join("pair.json");
    let write = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut value = real.clone();
        edit(&mut value);
        let path = dir.path().join(name);
        std::fs::write(&path, value.to_string()).unwrap();
        path
    };
    let other = write("other.json", &|v| v["scenario"]["name"] = "other".into());
    let old = write("old.json", &|v| v["schema_version"] = 1.into());
    for (head, says) in [
        (&other, "diff compares two results of one scenario"),
        (&old, "has schema 1"),
    ] {
        let target = dir.path().join("refused.html");
        let (g, h) = (good.to_str().unwrap(), head.to_str().unwrap());
        let output = leakrun(&["report", g, h, "-o", target.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{stderr}");
        assert!(!target.exists(), "no report of a refused pair");
        // leakrun diff refuses the same pair with the same words.
        let diff = leakrun(&["diff", g, h]);
        assert_eq!(diff.status.code(), Some(2), "{}", describe(&diff));
        assert!(String::from_utf8_lossy(&diff.stderr).contains(says));
    }
    // Three files are a usage error, as is a file that is no result.
    let three = leakrun(&[
        "report",
        good.to_str().unwrap(),
        good.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_eq!(three.status.code(), Some(2), "{}", describe(&three));
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "not json").unwrap();
    let output = leakrun(&["report", good.to_str().unwrap(), garbage.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a leakrun result"));
}

const TINY: &str = "[[rooms]]\nname = \"r\"\n  [[rooms.clients]]\n  pattern = \"steady\"\n  count = 2\n  rate = 20\n[run]\nduration = \"700ms\"\n";

#[test]
fn a_folder_run_writes_an_index_linking_every_scenario_to_its_report() {
    let dir = scratch();
    let folder = dir.path().join("scenarios");
    std::fs::create_dir_all(folder.join("nested")).unwrap();
    scenario(&folder, "quiet", &format!("name = \"quiet\"\n{TINY}"));
    scenario(
        &folder.join("nested"),
        "lossy",
        &format!("name = \"lossy\"\n[server.faults]\ndrop_one_in = 10\n{TINY}"),
    );
    let out = dir.path().join("results");
    let output = leakrun(&[
        "run",
        folder.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "lossy expects no gaps: {}",
        describe(&output)
    );
    let index = std::fs::read_to_string(out.join("index.html")).expect("index.html beside the results");
    assert!(index.contains("data-scenarios=\"2\""));
    for name in ["quiet", "lossy"] {
        let json = result(&out, name);
        let at = index
            .find(&format!("data-scenario=\"{name}\""))
            .unwrap_or_else(|| panic!("{name} listed"));
        let row = &index[at..at + index[at..].find("</tr>").expect("row ends")];
        for verdict in ["gaps", "latency", "leak"] {
            let met = json["verdicts"][verdict]["met"].as_bool().expect("met");
            let outcome = json["verdicts"][verdict]["outcome"].as_str().expect("outcome");
            let mark = if met { "" } else { " !" };
            assert!(
                row.contains(&format!(
                    "data-verdict=\"{verdict}\" data-met=\"{met}\">{outcome}{mark}</td>"
                )),
                "{name} {verdict}: {row}"
            );
        }
        let status = if name == "quiet" { "PASS" } else { "FAIL" };
        assert!(row.contains(&format!(">{status}</td>")), "{row}");
        // Its link is relative and resolves to its report.
        let at = row.find("href=\"").expect("a link") + "href=\"".len();
        let href = &row[at..at + row[at..].find('"').unwrap()];
        assert!(!href.contains('/') && !href.contains(':'), "relative: {href}");
        let report = out.join(href);
        assert!(report.is_file(), "{} exists", report.display());
        assert!(
            std::fs::read_to_string(&report)
                .unwrap()
                .contains(&format!("<title>leakrun: {name}</title>"))
        );
    }
    self_contained(&index);

    // --no-report: no reports, no index.
    let out = dir.path().join("bare");
    let output = leakrun(&[
        "run",
        folder.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
        "--no-report",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(out.join("quiet.json").is_file(), "{}", describe(&output));
    assert!(!out.join("index.html").exists() && !out.join("quiet.html").exists());
}
