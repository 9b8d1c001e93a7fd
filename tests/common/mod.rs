//! Helpers for the end-to-end tests: they run the real `leakrun` binary against its real embedded
//! server on loopback and read the JSON it writes.
#![allow(dead_code)]

pub mod chromium;
pub mod django;
pub mod html;
pub mod python_server;

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

/// Runs leakrun with `args` after `setup` has adjusted the command (environment, folder).
pub fn leakrun_with(args: &[&str], setup: impl FnOnce(&mut Command)) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leakrun"));
    command.args(args);
    setup(&mut command);
    command.output().expect("run leakrun")
}

/// The shipped issue-1683 topology on backend `kind`, shortened (4s, two iterations, cycling
/// every 500ms) and spread over two server instances, named `name`.
pub fn issue1683_churn(name: &str, kind: &str) -> String {
    std::fs::read_to_string("scenarios/issue1683.toml")
        .expect("the shipped scenario")
        .replace("name = \"issue1683\"", &format!("name = \"{name}\""))
        .replace("kind = \"redis-lists\"", &format!("kind = \"{kind}\""))
        .replace("capacity = 1000", "capacity = 1000\ninstances = 2")
        .replace("duration = \"20s\"", "duration = \"4s\"")
        .replace("iterations = 1", "iterations = 2")
        .replace("up = \"1s\"", "up = \"500ms\"")
}

/// Starts `leakrun run <target> --out <out> --no-progress` in the background with its output
/// captured, after `setup` has adjusted the command (environment).
pub fn spawn_run(target: &Path, out: &Path, setup: impl FnOnce(&mut Command)) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leakrun"));
    command
        .args([
            "run",
            target.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-progress",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    setup(&mut command);
    command.spawn().expect("start leakrun")
}

/// Sends `child` SIGINT, as Ctrl-C at a terminal does.
pub fn interrupt(child: &std::process::Child) {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -INT {}", child.id());
}

/// A loopback port free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The HTTP-only external scenario around `<bin> serve --cache <cache>` (`bin`: `leakrun` or
/// `leakrun-glibc`) on a free port: four
/// workers PUT 1,500 values of 10,000 bytes per iteration, five iterations, one of warm-up.
/// `server_extra` goes at the end of `[server]` (a heap probe, say).
pub fn serve_cache_scenario(bin: &str, name: &str, cache: &str, expect_leak: bool, server_extra: &str) -> String {
    let port = free_port();
    format!(
        r#"name = "{name}"
[server]
target = "external"
command = [{bin:?}, "serve", "--port", "{port}", "--cache", "{cache}"]
http_url = "http://127.0.0.1:{port}/"
ready_timeout = "10s"
{server_extra}

[[http]]
method = "PUT"
path = "/cache/{{key}}"
keys = 1000000000
body = 10000
workers = 4
requests = 1500

[run]
duration = "20s"
iterations = 5
warmup = 1

[expect]
leak = {expect_leak}
"#,
    )
}
