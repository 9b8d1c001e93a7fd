//! The GitHub workflow is only run on GitHub, so nothing here would notice it breaking: this test
//! runs the workflow's own `list` step (its shell text, with the binary this build made) and checks
//! that the matrix it makes gives every `matrix.X` the `scenario` job reads, that the outputs and
//! needs are wired by the names the job uses, and that the commands the job runs exist and take
//! the flags they are given (`scripts/scenarios`, and `leakrun` as the workflow, that script and
//! `.ci/run` call it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

const WORKFLOW: &str = ".github/workflows/scenarios.yml";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn workflow() -> Yaml {
    serde_yaml_ng::from_str(&read(WORKFLOW)).unwrap_or_else(|e| panic!("{WORKFLOW} is not YAML: {e}"))
}

fn text(value: &Yaml) -> &str {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value:?}"))
}

/// `${{ steps.list.outputs.scenarios }}` → `steps.list.outputs.scenarios`.
fn expression(value: &str) -> &str {
    value
        .trim()
        .strip_prefix("${{")
        .and_then(|v| v.strip_suffix("}}"))
        .unwrap_or_else(|| panic!("`{value}` is not a ${{{{ }}}} expression"))
        .trim()
}

/// Every `matrix.<key>` written in `text`.
fn matrix_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (at, _) in text.match_indices("matrix.") {
        let rest = &text[at + "matrix.".len()..];
        let key: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if !key.is_empty() {
            keys.insert(key);
        }
    }
    keys
}

/// Runs the `list` job's step that makes the matrix, as GitHub would (`bash -e -o pipefail`), with
/// this build's binary in place of `target/debug/leakrun`; returns what it wrote to
/// `$GITHUB_OUTPUT`, as names and values.
fn run_list_step(jobs: &Yaml) -> Vec<(String, String)> {
    let steps = jobs["list"]["steps"].as_sequence().expect("list job steps");
    let step = steps
        .iter()
        .find(|s| s["id"].as_str() == Some("list"))
        .expect("a step with id `list`");
    let script = text(&step["run"]);
    assert!(
        script.contains("target/debug/leakrun"),
        "the list step no longer calls target/debug/leakrun, so this test would not run it:\n{script}"
    );
    let script = script.replace("target/debug/leakrun", env!("CARGO_BIN_EXE_leakrun"));
    let scratch = tempfile::tempdir().expect("scratch folder");
    let output_file = scratch.path().join("github_output");
    std::fs::write(&output_file, "").expect("GITHUB_OUTPUT");
    let run = Command::new("bash")
        .args(["--noprofile", "--norc", "-e", "-o", "pipefail", "-c", &script])
        .current_dir(root())
        .env("GITHUB_OUTPUT", &output_file)
        .output()
        .expect("run bash");
    assert!(run.status.success(), "the list step failed: {run:?}");
    let written = std::fs::read_to_string(&output_file).expect("read GITHUB_OUTPUT");
    written
        .lines()
        .map(|line| {
            let (name, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("GITHUB_OUTPUT line without `name=`: {line}"));
            (name.to_string(), value.to_string())
        })
        .collect()
}

#[test]
fn the_matrix_gives_every_key_the_scenario_job_reads() {
    let workflow = workflow();
    let jobs = &workflow["jobs"];
    // The scenario job's matrix is the list job's output, by the names both sides use.
    let matrix = expression(text(&jobs["scenario"]["strategy"]["matrix"]));
    let output_name = matrix
        .strip_prefix("fromJSON(needs.list.outputs.")
        .and_then(|m| m.strip_suffix(')'))
        .unwrap_or_else(|| panic!("the scenario job's matrix is `{matrix}`, not fromJSON(needs.list.outputs.X)"));
    let needs = &jobs["scenario"]["needs"];
    assert!(
        needs.as_str() == Some("list")
            || needs
                .as_sequence()
                .is_some_and(|n| n.iter().any(|n| n.as_str() == Some("list"))),
        "the scenario job reads needs.list but does not need it: {needs:?}"
    );
    let source = expression(text(&jobs["list"]["outputs"][output_name]));
    let step_output = source
        .strip_prefix("steps.list.outputs.")
        .unwrap_or_else(|| panic!("list job output `{output_name}` is `{source}`, not steps.list.outputs.X"));

    let outputs = run_list_step(jobs);
    let value = outputs
        .iter()
        .find(|(name, _)| name == step_output)
        .map(|(_, value)| value)
        .unwrap_or_else(|| panic!("the list step wrote no `{step_output}` to GITHUB_OUTPUT: {outputs:?}"));
    let matrix: Json = serde_json::from_str(value).unwrap_or_else(|e| panic!("the matrix is not JSON ({e}): {value}"));
    let entries = matrix["include"]
        .as_array()
        .unwrap_or_else(|| panic!("the matrix has no `include` array: {matrix}"));
    assert!(entries.len() >= 10, "only {} scenarios in the matrix", entries.len());

    let scenario_job = serde_yaml_ng::to_string(&jobs["scenario"]).expect("the job as text");
    let keys = matrix_keys(&scenario_job);
    for expected in ["file", "name", "backend"] {
        assert!(
            keys.contains(expected),
            "the scenario job no longer reads matrix.{expected}: {keys:?}"
        );
    }
    for entry in entries {
        for key in &keys {
            let present = match &entry[key] {
                Json::Null => false,
                Json::String(s) => !s.is_empty(),
                _ => true,
            };
            assert!(present, "the job reads matrix.{key}, which this entry lacks: {entry}");
        }
        let file = entry["file"].as_str().expect("file is a string");
        assert!(root().join(file).is_file(), "matrix file {file} does not exist");
    }
    // Artifacts are named by matrix.name: two jobs with one name would overwrite each other.
    let names: BTreeSet<&str> = entries.iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(names.len(), entries.len(), "scenario names in the matrix repeat");
}

#[test]
fn the_matrix_key_scan_finds_what_a_job_reads() {
    let keys = matrix_keys("name: ${{ matrix.name }} (${{ matrix.backend }})\nrun: x \"${{ matrix.file }}\"");
    let expected: BTreeSet<String> = ["backend", "file", "name"].iter().map(|s| s.to_string()).collect();
    assert_eq!(keys, expected);
}

/// A `leakrun` call found in a script: its subcommand and the `--flags` it passes.
#[derive(Debug)]
struct Call {
    from: String,
    subcommand: String,
    flags: Vec<String>,
}

/// Every call of leakrun in `text` through one of `markers` (what the script writes for the
/// binary), continuation lines joined.
fn leakrun_calls(from: &str, text: &str, markers: &[&str]) -> Vec<Call> {
    let joined = text.replace("\\\n", " ");
    let mut calls = Vec::new();
    for line in joined.lines() {
        for marker in markers {
            for (at, _) in line.match_indices(marker) {
                let rest = &line[at + marker.len()..];
                let rest = rest.split(['|', ';']).next().unwrap_or_default();
                let mut words = rest.split_whitespace();
                let Some(subcommand) = words.next() else { continue };
                let flags = words
                    .filter(|w| w.starts_with("--"))
                    .map(|w| {
                        w.chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                            .collect()
                    })
                    .collect();
                calls.push(Call {
                    from: from.to_string(),
                    subcommand: subcommand.trim_matches('"').to_string(),
                    flags,
                });
            }
        }
    }
    calls
}

#[test]
fn the_job_commands_exist_and_take_the_flags_they_are_given() {
    let workflow = workflow();
    let jobs = &workflow["jobs"];
    let steps = jobs["scenario"]["steps"].as_sequence().expect("scenario job steps");
    let mut scripts = Vec::new();
    for step in steps {
        let Some(run) = step["run"].as_str() else { continue };
        for line in run.lines() {
            let Some(command) = line.split_whitespace().next() else {
                continue;
            };
            if command.starts_with("scripts/") {
                scripts.push(PathBuf::from(command));
            }
        }
    }
    assert!(
        scripts.contains(&PathBuf::from("scripts/scenarios")),
        "the scenario job no longer runs scripts/scenarios: {scripts:?}"
    );
    for script in &scripts {
        let path = root().join(script);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{} (run by the workflow): {e}", script.display()))
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert!(mode.mode() & 0o111 != 0, "{} is not executable", script.display());
    }

    // The binary the job hands scripts/scenarios is the one the script runs.
    let scenarios = read("scripts/scenarios");
    assert!(
        jobs["scenario"]["env"]["LEAKRUN"].as_str().is_some() && scenarios.contains("${LEAKRUN"),
        "the job sets LEAKRUN and scripts/scenarios reads it"
    );
    let mut calls = leakrun_calls(WORKFLOW, &read(WORKFLOW), &["target/debug/leakrun "]);
    calls.extend(leakrun_calls("scripts/scenarios", &scenarios, &["\"${leakrun[@]}\" "]));
    calls.extend(leakrun_calls(
        ".ci/run",
        &read(".ci/run"),
        &["cargo run --quiet -- ", "target/debug/leakrun "],
    ));
    for from in [WORKFLOW, "scripts/scenarios", ".ci/run"] {
        assert!(calls.iter().any(|c| c.from == from), "no leakrun call found in {from}");
    }
    let flagged: usize = calls.iter().map(|c| c.flags.len()).sum();
    assert!(flagged >= 8, "only {flagged} flags found in the calls: {calls:?}");
    for call in &calls {
        let help = Command::new(env!("CARGO_BIN_EXE_leakrun"))
            .args([&call.subcommand, "--help"])
            .output()
            .expect("run leakrun");
        assert!(
            help.status.success(),
            "{}: `leakrun {}` is not a subcommand: {}",
            call.from,
            call.subcommand,
            String::from_utf8_lossy(&help.stderr)
        );
        let help = String::from_utf8_lossy(&help.stdout);
        for flag in &call.flags {
            let taken = help
                .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
                .any(|word| word == flag || word.starts_with(&format!("{flag}=")));
            assert!(
                taken,
                "{}: `leakrun {} {flag}`: no such flag in\n{help}",
                call.from, call.subcommand
            );
        }
    }
}

#[test]
fn the_call_scan_reads_subcommands_and_flags() {
    let calls = leakrun_calls(
        "x",
        "\"${leakrun[@]}\" run \"$a\" --set \"run.duration=2s\" \\\n  --out \"$out\" --no-progress 2>&1 | tee x --y\n$(leakrun list s/ --json)}\"",
        &["\"${leakrun[@]}\" ", "$(leakrun "],
    );
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].subcommand, "run");
    assert_eq!(calls[0].flags, ["--set", "--out", "--no-progress"]);
    assert_eq!(calls[1].subcommand, "list");
    assert_eq!(calls[1].flags, ["--json"]);
}
