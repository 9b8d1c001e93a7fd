//! Whole folders of scenarios, as CI runs them: one table at the end, the worst exit code,
//! `list --json` for a matrix, and JUnit XML.

mod common;

use common::*;

const PASSING: &str = r#"
name = "passing"
[[rooms]]
name = "room_a"
  [[rooms.clients]]
  pattern = "steady"
  count = 2
  rate = 20
[run]
duration = "1s"
"#;

const LEAK_CONTROL: &str = r#"
name = "leak_control"
[server.faults]
keep_membership_on_disconnect = true
[[rooms]]
name = "hello"
  [[rooms.clients]]
  pattern = "tabs"
  count = 10
  rate = 0
[run]
duration = "500ms"
iterations = 4
[expect]
leak = true
"#;

/// Loses messages but expects none: the failing one.
const FAILING: &str = r#"
name = "failing"
[server.faults]
drop_one_in = 20
[[rooms]]
name = "room_a"
  [[rooms.clients]]
  pattern = "steady"
  count = 2
  rate = 50
[run]
duration = "1s"
"#;

#[test]
fn a_folder_runs_every_scenario_and_reports_one_table_and_the_worst_exit() {
    let dir = scratch();
    let folder = dir.path().join("scenarios");
    std::fs::create_dir_all(folder.join("controls")).unwrap();
    scenario(&folder, "passing", PASSING);
    scenario(&folder, "failing", FAILING);
    scenario(&folder.join("controls"), "leak_control", LEAK_CONTROL);
    let out = dir.path().join("results");
    let junit = dir.path().join("junit.xml");
    let output = leakrun(&[
        "run",
        folder.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("scenario"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(table.len(), 4, "{stdout}");
    let row = |name: &str| -> Vec<&str> {
        let line = table
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {stdout}"));
        line.split_whitespace().collect()
    };
    // Files of the folder first, sorted, then the subfolder.
    assert!(table[1].starts_with("failing") && table[2].starts_with("passing") && table[3].starts_with("leak_control"));
    assert_eq!(row("failing")[..3], ["failing", "memory", "gaps"]);
    assert!(row("failing").contains(&"!"), "the failing verdict is marked");
    assert!(row("failing").contains(&"NO"));
    assert!(row("passing").contains(&"yes") && !row("passing").contains(&"!"));
    let leak = row("leak_control");
    assert!(leak.contains(&"leak") && leak.contains(&"yes"), "{leak:?}");
    for name in ["passing", "failing", "leak_control"] {
        assert!(out.join(format!("{name}.json")).exists(), "{name}");
    }

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<testsuite name=\"failing\""), "{xml}");
    assert_eq!(
        xml.matches("<testcase").count(),
        9,
        "three verdicts per scenario: {xml}"
    );
    assert_eq!(xml.matches("<failure").count(), 1, "{xml}");

    // Only the passing scenario: exit 0 and no table for a single run.
    let single = leakrun(&[
        "run",
        folder.join("passing.toml").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ]);
    assert_eq!(single.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&single.stdout).contains("scenario  backend"));
}

#[test]
fn list_json_gives_what_a_ci_matrix_needs() {
    let output = leakrun(&["list", "scenarios", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let entries = list.as_array().unwrap();
    let shipped =
        std::fs::read_dir("scenarios").unwrap().count() - 1 + std::fs::read_dir("scenarios/controls").unwrap().count();
    assert_eq!(entries.len(), shipped);
    let mechanism = entries.iter().find(|e| e["name"] == "issue1683_mechanism").unwrap();
    assert_eq!(mechanism["file"], "scenarios/issue1683_mechanism.toml");
    assert_eq!(mechanism["backend"], "redis-lists");
    assert_eq!(mechanism["services"], serde_json::json!(["redis-server"]));
    assert_eq!(mechanism["expect"]["gaps"], true);
    let tabs = entries.iter().find(|e| e["name"] == "django_tabs").unwrap();
    assert_eq!(tabs["services"], serde_json::json!([]));
    let empty = scratch();
    let none = leakrun(&["list", empty.path().to_str().unwrap()]);
    assert_eq!(none.status.code(), Some(2));
}

/// Each scenario of a folder runs in a process of its own: the retention control run twice in one
/// folder is retention both times. In one shared process the second would reuse the pages the
/// first left with the allocator, and its resident memory would not rise.
#[test]
fn each_scenario_of_a_folder_runs_in_a_fresh_process() {
    let dir = scratch();
    let control = std::fs::read_to_string("scenarios/controls/retention.toml").expect("the shipped control");
    for name in ["retention_a", "retention_b"] {
        scenario(
            dir.path(),
            name,
            &control.replace("name = \"retention\"", &format!("name = \"{name}\"")),
        );
    }
    let out = dir.path().join("results");
    let output = leakrun(&[
        "run",
        dir.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    for name in ["retention_a", "retention_b"] {
        let r = result(&out, name);
        let leak = &r["verdicts"]["leak"];
        assert_eq!(leak["outcome"], "retention", "{name}: {}", leak["summary"]);
    }
}

/// Ctrl-C during a folder run reaches the running scenario's process, which writes a partial
/// result; the scenarios after it do not start.
#[test]
fn ctrl_c_in_a_folder_run_interrupts_the_running_scenario_and_starts_no_other() {
    let dir = scratch();
    let long = PASSING.replace("duration = \"1s\"", "duration = \"60s\"");
    scenario(
        dir.path(),
        "a_first",
        &long.replace("name = \"passing\"", "name = \"first\""),
    );
    scenario(
        dir.path(),
        "b_second",
        &long.replace("name = \"passing\"", "name = \"second\""),
    );
    let out = dir.path().join("results");
    let child = spawn_run(dir.path(), &out, |_| {});
    std::thread::sleep(std::time::Duration::from_secs(3));
    interrupt(&child);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    let first = result(&out, "first");
    assert_eq!(first["status"], "interrupted", "{first}");
    // The interrupted iteration is recorded (not judged: its in-flight messages are no loss).
    assert!(
        first["iterations"][0]["totals"]["received"].as_u64().unwrap() > 0,
        "{first}"
    );
    assert!(!out.join("second.json").exists(), "{}", describe(&output));
}
