//! Helpers for the end-to-end tests: they run the real `leakrun` binary against its real embedded
//! server on loopback and read the JSON it writes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch folder for scenarios and results.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary folder")
}

/// Writes `text` to `dir/name.toml`.
pub fn scenario(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// Runs leakrun with `args`.
pub fn leakrun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leakrun"))
        .args(args)
        .output()
        .expect("run leakrun")
}

/// Runs a scenario file with results going to `out`.
pub fn run_scenario(path: &Path, out: &Path) -> Output {
    leakrun(&[
        "run",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ])
}

/// Reads `out/<name>.json`.
pub fn result(out: &Path, name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join(format!("{name}.json"))).expect("result file");
    serde_json::from_str(&text).expect("result JSON")
}

/// Exit code, stdout and stderr as text, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
