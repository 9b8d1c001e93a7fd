//! External targets end to end: the real `leakrun` binary against a server it did not write — the
//! Python broadcast chat server in `tests/support/ws_chat_server.py` (the `websockets` package, in
//! the virtual environment `scripts/install-services` makes) — started by `command`, on loopback,
//! with real WebSocket clients. The server's own fault switches prove the detectors from outside:
//! its dropped deliveries are found frame for frame, its per-connection leak is found from RSS.
//! Whatever happens, the server must not outlive leakrun.

mod common;

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::python_server::*;
use common::*;

/// A `sh -c` line that runs the chat server and keeps the shell waiting for it: the server is a
/// grandchild of leakrun, and the process tree has two processes.
fn python_behind_a_shell(port: u16, pid_file: &Path) -> String {
    format!(
        "{:?} {:?} --port {port} --pid-file {:?}; true",
        python().display().to_string(),
        server_script().display().to_string(),
        pid_file.display().to_string()
    )
}

/// The parent of process `pid`.
fn parent_of(pid: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// The chat server's `/stats` document, read with leakrun's own HTTP probe.
fn server_stats(url: &str) -> Option<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let (status, body) = runtime
        .block_on(leakrun::target::http_probe::HttpGet::new(url).ok()?.get())
        .ok()?;
    (status == 200).then(|| serde_json::from_slice(&body).ok()).flatten()
}

/// Polls `condition` every 50ms for at most `bound`; whether it came true.
fn eventually(bound: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills a process by id when dropped: a failing test must not leave a server behind.
struct KillOnDrop(u64);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0 > 1 && alive(self.0) {
            let _ = Command::new("kill").args(["-9", &self.0.to_string()]).status();
        }
    }
}

const CHURN_ROOMS: &str = r#"
[[rooms]]
name = "room_a"
  [[rooms.clients]]
  pattern = "steady"
  count = 2
  rate = 20
  payload = 128
  [[rooms.clients]]
  pattern = "cycle"
  rate = 20
  payload = 128
  up = "400ms"
  down = "50ms"
  close = "abrupt"

[[rooms]]
name = "room_b"
  [[rooms.clients]]
  pattern = "steady"
  count = 2
  rate = 20
  payload = 128
  [[rooms.clients]]
  pattern = "cycle"
  rate = 20
  payload = 128
  up = "300ms"
  down = "50ms"
  close = "graceful"
"#;

#[test]
fn churn_through_a_python_chat_server_loses_nothing_and_the_server_is_stopped() {
    let dir = scratch();
    let port = free_port();
    let text = format!(
        r#"name = "py_churn"
[server]
target = "external"
command = {command}
ready_url = "http://127.0.0.1:{port}/stats"
ws_url = "ws://127.0.0.1:{port}/ws/chat/{{room}}/"
send_template = '{{"message": "{{{{envelope}}}}"}}'
stats_url = "http://127.0.0.1:{port}/stats"
stats_counters = ["opened", "closed", "frames_*", "deliveries", "dropped"]
{CHURN_ROOMS}
[run]
duration = "3s"
iterations = 2
warmup = 0
settle = "3s"
sample_interval = "250ms"
"#,
        command = command(port, &["--chat-json", "--greet"]),
    );
    let output = run_scenario(&scenario(dir.path(), "py_churn", &text), dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let r = result(dir.path(), "py_churn");
    let totals = &r["verdicts"]["gaps"]["totals"];
    assert_eq!(r["verdicts"]["gaps"]["outcome"], "clean", "{totals}");
    for key in ["gaps", "tail_loss", "duplicates", "reordered", "misrouted"] {
        assert_eq!(totals[key], 0, "{key}: {totals}");
    }
    assert!(
        totals["received"].as_u64().unwrap() > totals["sent"].as_u64().unwrap(),
        "{totals}"
    );
    // Churn happened: more sessions than clients.
    let sessions: u64 = r["iterations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sessions"].as_u64().unwrap())
        .sum();
    assert!(sessions > 2 * 6, "{sessions} sessions");
    // The server's greeting carries no envelope: counted, not an error.
    let greetings = totals["frames_without_envelope"].as_u64().unwrap();
    assert!(
        greetings > 0 && greetings <= sessions,
        "{greetings} frames without an envelope, {sessions} sessions"
    );
    let summary = r["verdicts"]["gaps"]["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("{greetings} received frame(s) held no envelope")),
        "{summary}"
    );
    // Its own counters are state series, back to zero; its running totals are for reference.
    let after = &r["iterations"][1]["after"];
    assert_eq!(after["state"]["connections"], 0, "{after}");
    assert_eq!(after["info"]["opened"], after["info"]["closed"], "{after}");
    assert!(
        r["iterations"][0]["server_after"].is_null(),
        "no embedded counters for an external server"
    );
    let target = &r["target"];
    assert_eq!(target["kind"], "external");
    assert_eq!(target["started"], true);
    let pid = stopped_server_pid(&r);
    assert_eq!(target["memory_source"], format!("rss of pid {pid}"));
    assert!(
        target["stopped"].as_str().unwrap().starts_with("stopped by SIGTERM"),
        "{target}"
    );
    let log = std::fs::read_to_string(target["log"].as_str().unwrap()).unwrap();
    assert!(
        log.contains("stats {"),
        "the server printed its counters when stopped: {log}"
    );
}

#[test]
fn dropped_deliveries_are_found_frame_for_frame() {
    let dir = scratch();
    let port = free_port();
    let text = format!(
        r#"name = "py_drops"
[server]
target = "external"
command = {command}
ws_url = "ws://127.0.0.1:{port}/ws/chat/{{room}}/"
stats_url = "http://127.0.0.1:{port}/stats"
stats_counters = ["opened", "closed", "frames_*", "deliveries", "dropped"]

[[rooms]]
name = "room_a"
  [[rooms.clients]]
  pattern = "steady"
  count = 3
  rate = 20
[[rooms]]
name = "room_b"
  [[rooms.clients]]
  pattern = "steady"
  count = 3
  rate = 20

[run]
duration = "3s"
settle = "3s"
sample_interval = "250ms"

[expect]
gaps = true
"#,
        command = command(port, &["--drop-one-in", "53"]),
    );
    let output = run_scenario(&scenario(dir.path(), "py_drops", &text), dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let r = result(dir.path(), "py_drops");
    assert_eq!(r["verdicts"]["gaps"]["outcome"], "gaps");
    let totals = &r["verdicts"]["gaps"]["totals"];
    let lost = totals["gaps"].as_u64().unwrap() + totals["tail_loss"].as_u64().unwrap();
    // What the server says it dropped: from its /stats after the iteration, and as it printed
    // when stopped.
    let dropped = r["iterations"][0]["after"]["info"]["dropped"].as_u64().unwrap();
    let log = std::fs::read_to_string(r["target"]["log"].as_str().unwrap()).unwrap();
    let printed: serde_json::Value = serde_json::from_str(
        log.lines()
            .find_map(|l| l.strip_prefix("stats "))
            .expect("the server's final counters"),
    )
    .unwrap();
    assert_eq!(printed["dropped"].as_u64(), Some(dropped), "{log}");
    assert!(dropped > 0, "the switch must drop something: {printed}");
    assert_eq!(
        lost, dropped,
        "every dropped delivery is one lost message, and nothing else: {totals}"
    );
    assert_eq!(
        r["losses"]["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["count"].as_u64().unwrap())
            .sum::<u64>(),
        lost
    );
    assert_eq!(totals["duplicates"], 0);
    stopped_server_pid(&r);
}

/// Ten waves of 200 browser tabs (and one warm-up wave), against the chat server with
/// `--leak-per-connection` bytes kept per closed connection (0: a clean server).
fn tab_waves(name: &str, leak: u64) -> serde_json::Value {
    let dir = scratch();
    let port = free_port();
    let text = format!(
        r#"name = "{name}"
[server]
target = "external"
command = {command}
ws_url = "ws://127.0.0.1:{port}/ws/chat/{{room}}/"

[[rooms]]
name = "lobby"
  [[rooms.clients]]
  pattern = "tabs"
  count = 200
  ramp = "400ms"
  hold = "300ms"

[run]
duration = "1s"
iterations = 11
warmup = 1
settle = "3s"
sample_interval = "250ms"

[expect]
leak = {expect}
"#,
        command = command(port, &["--leak-per-connection", &leak.to_string()]),
        expect = leak > 0,
    );
    let output = run_scenario(&scenario(dir.path(), name, &text), dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(dir.path(), name);
    stopped_server_pid(&r);
    r
}

#[test]
fn a_per_connection_leak_is_a_leak_verdict_from_rss() {
    let leak_per_connection = 64 * 1024;
    let r = tab_waves("py_leak", leak_per_connection);
    let verdict = &r["verdicts"]["leak"];
    assert_eq!(verdict["outcome"], "leak", "{}", verdict["summary"]);
    assert_eq!(verdict["judged_iterations"], 10);
    let rss = &verdict["series"][0];
    assert_eq!(rss["name"], "rss_bytes");
    assert_eq!(rss["class"], "leak", "{}", rss["evidence"]);
    assert!(
        rss["evidence"]
            .as_str()
            .unwrap()
            .starts_with("resident memory of the external server (rss of pid"),
        "{}",
        rss["evidence"]
    );
    assert_eq!(verdict["connections_closed_per_iteration"], 200.0);
    let per_connection = verdict["bytes_per_connection"].as_f64().unwrap();
    assert!(
        per_connection >= 0.9 * leak_per_connection as f64,
        "{per_connection} B per closed connection for a server that keeps {leak_per_connection}: {}",
        rss["evidence"]
    );
    assert!(
        verdict["series"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["name"] != "heap_bytes")
    );
}

#[test]
fn the_same_waves_on_a_clean_server_are_no_leak() {
    let r = tab_waves("py_clean_waves", 0);
    let verdict = &r["verdicts"]["leak"];
    assert_eq!(verdict["outcome"], "clean", "{}", verdict["summary"]);
    assert_eq!(verdict["series"][0]["class"], "clean");
}

#[test]
fn killing_leakrun_midway_stops_the_server_and_its_children() {
    let dir = scratch();
    let port = free_port();
    let pid_file = dir.path().join("server.pid");
    // A shell line that keeps the shell waiting: Python runs as leakrun's grandchild, which the
    // parent-death signal alone would not reach.
    let line = python_behind_a_shell(port, &pid_file);
    let text = format!(
        r#"name = "py_killed"
[server]
target = "external"
command = '{line}'
ws_url = "ws://127.0.0.1:{port}/ws/chat/{{room}}/"
{CHURN_ROOMS}
[run]
duration = "60s"
"#
    );
    let path = scenario(dir.path(), "py_killed", &text);
    let mut leakrun = spawn_run(&path, dir.path(), |_| {});
    let read_pid = || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    let started = eventually(Duration::from_secs(20), || {
        read_pid().is_some() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let pid = read_pid();
    let _cleanup = KillOnDrop(pid.unwrap_or(0));
    if !started {
        let _ = leakrun.kill();
        let mut stderr = String::new();
        let _ = leakrun.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
        panic!("the server never came up: {stderr}");
    }
    let pid = pid.unwrap();
    let shell = parent_of(pid).expect("the server's parent");
    assert_ne!(
        shell,
        leakrun.id() as u64,
        "Python must run below the shell, as a grandchild"
    );
    let _cleanup_shell = KillOnDrop(shell);
    // Let the clients connect and the run get going, then kill leakrun without warning.
    let stats = format!("http://127.0.0.1:{port}/stats");
    let connected = eventually(Duration::from_secs(10), || {
        server_stats(&stats).is_some_and(|s| s["connections"].as_u64().is_some_and(|n| n > 0))
    });
    assert!(connected, "leakrun's clients never reached the server");
    leakrun.kill().expect("SIGKILL leakrun");
    leakrun.wait().expect("reap leakrun");
    assert!(
        eventually(Duration::from_secs(5), || !alive(pid) && !alive(shell)),
        "the server (pid {pid}, alive: {}) or its shell (pid {shell}, alive: {}) outlived a SIGKILLed leakrun",
        alive(pid),
        alive(shell)
    );
    assert!(
        !dir.path().join("py_killed.json").exists(),
        "a killed run writes no result"
    );
}

#[test]
fn a_watched_server_is_measured_and_left_running() {
    let dir = scratch();
    let port = free_port();
    let pid_file = dir.path().join("server.pid");
    let mut server = Command::new(python())
        .arg(server_script())
        .args(["--port", &port.to_string(), "--pid-file", pid_file.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .expect("start the chat server");
    let _cleanup = KillOnDrop(server.id() as u64);
    assert!(
        eventually(Duration::from_secs(20), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "the chat server did not come up"
    );
    let text = format!(
        r#"name = "py_watched"
[server]
target = "external"
pid_file = {pid_file:?}
ws_url = "ws://127.0.0.1:{port}/ws/chat/{{room}}/"

[[rooms]]
name = "lobby"
  [[rooms.clients]]
  count = 3
  rate = 20

[run]
duration = "1s"
settle = "2s"
"#,
        pid_file = pid_file.display().to_string()
    );
    let output = run_scenario(&scenario(dir.path(), "py_watched", &text), dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(dir.path(), "py_watched");
    assert_eq!(r["target"]["pid"].as_u64(), Some(server.id() as u64));
    assert_eq!(r["target"]["started"], false);
    assert!(r["iterations"][0]["after"]["rss_bytes"].as_u64().unwrap() > 0);
    assert_eq!(r["verdicts"]["gaps"]["outcome"], "clean");
    assert!(server.try_wait().unwrap().is_none(), "a watched server is left running");
    let _ = server.kill();
    let _ = server.wait();
}

/// A scenario whose command never listens: a shell that writes its pid to `pid_file` and sleeps
/// two minutes; `server_keys` are added to `[server]`.
fn sleeper_scenario(name: &str, port: u16, pid_file: &Path, server_keys: &str) -> String {
    format!(
        r#"name = "{name}"
[server]
target = "external"
command = 'echo $$ > {pid_file:?}; exec sleep 120'
{server_keys}
ws_url = "ws://127.0.0.1:{port}/ws/chat/{{room}}/"

[[rooms]]
name = "lobby"
  [[rooms.clients]]
  count = 1
"#,
        pid_file = pid_file.display().to_string()
    )
}

#[test]
fn a_command_that_never_gets_ready_is_an_error_and_is_stopped() {
    let dir = scratch();
    let port = free_port();
    let pid_file = dir.path().join("sleeper.pid");
    let text = sleeper_scenario(
        "never_ready",
        port,
        &pid_file,
        "ready_timeout = \"1s\"\nstop_grace = \"1s\"",
    );
    let output = run_scenario(&scenario(dir.path(), "never_ready", &text), dir.path());
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let r = result(dir.path(), "never_ready");
    assert_eq!(r["status"], "error");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("did not become ready within server.ready_timeout = 1s"),
        "{error}"
    );
    assert!(
        error.contains(&format!("127.0.0.1:{port} accepting a connection")),
        "{error}"
    );
    let pid: u64 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let _cleanup = KillOnDrop(pid);
    assert!(!alive(pid), "the command (pid {pid}) was left running: {error}");
    assert!(error.contains("stopped by SIGTERM"), "{error}");
}

#[test]
fn a_program_missing_from_target_says_to_run_install_services() {
    let dir = scratch();
    let text = format!(
        "name = \"no_venv\"\n[server]\ntarget = \"external\"\ncommand = [\"target/no-such-venv/bin/python\", \"app.py\"]\nws_url = \"ws://127.0.0.1:{}/ws/chat/{{room}}/\"\n{CHURN_ROOMS}",
        free_port()
    );
    let output = run_scenario(&scenario(dir.path(), "no_venv", &text), dir.path());
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let error = result(dir.path(), "no_venv")["error"].as_str().unwrap().to_string();
    assert!(error.contains("cannot run `target/no-such-venv/bin/python`"), "{error}");
    assert!(error.contains("run scripts/install-services first"), "{error}");
}

#[test]
fn bad_external_settings_are_exit_2_naming_the_key() {
    let dir = scratch();
    let remote = scenario(
        dir.path(),
        "remote",
        "name = \"remote\"\n[server]\ntarget = \"external\"\npid = 42\nws_url = \"ws://192.0.2.7:8000/ws/chat/{room}/\"\n[[rooms]]\nname = \"a\"\n  [[rooms.clients]]\n  count = 1\n",
    );
    let output = run_scenario(&remote, dir.path());
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("remote.toml:5:10: `server.ws_url`"), "{stderr}");
    assert!(stderr.contains("server.allow_remote = true"), "{stderr}");

    let both = scenario(
        dir.path(),
        "both",
        "name = \"both\"\n[server]\ntarget = \"external\"\ncommand = \"./serve\"\npid = 42\nws_url = \"ws://127.0.0.1:8000/ws/chat/{room}/\"\n[[rooms]]\nname = \"a\"\n  [[rooms.clients]]\n  count = 1\n",
    );
    let output = run_scenario(&both, dir.path());
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("both.toml:5:7: `server.pid`"), "{stderr}");
    assert!(stderr.contains("`command` and `pid` are both set"), "{stderr}");
    let written: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .collect();
    assert!(
        written.is_empty(),
        "no result for a scenario that does not validate: {written:?}"
    );
}

#[test]
fn ctrl_c_stops_a_server_tree_and_the_result_names_its_processes() {
    let dir = scratch();
    let port = free_port();
    let pid_file = dir.path().join("server.pid");
    // Python below a waiting shell: two processes whose resident memory is summed.
    let line = python_behind_a_shell(port, &pid_file);
    let text = format!(
        r#"name = "py_interrupted"
[server]
target = "external"
command = '{line}'
ws_url = "ws://127.0.0.1:{port}/ws/chat/{{room}}/"
stats_url = "http://127.0.0.1:{port}/stats"
stats_counters = ["opened", "closed", "frames_*", "deliveries", "dropped"]
{CHURN_ROOMS}
[run]
duration = "60s"
sample_interval = "100ms"
"#
    );
    let path = scenario(dir.path(), "py_interrupted", &text);
    let leakrun = spawn_run(&path, dir.path(), |_| {});
    let stats = format!("http://127.0.0.1:{port}/stats");
    let connected = eventually(Duration::from_secs(20), || {
        server_stats(&stats).is_some_and(|s| s["connections"].as_u64().is_some_and(|n| n > 0))
    });
    let server = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    let _cleanup = KillOnDrop(server.unwrap_or(0));
    interrupt(&leakrun);
    let output = leakrun.wait_with_output().unwrap();
    assert!(
        connected,
        "leakrun's clients never reached the server: {}",
        describe(&output)
    );
    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    let r = result(dir.path(), "py_interrupted");
    assert_eq!(r["status"], "interrupted");
    let shell = stopped_server_pid(&r);
    assert!(!alive(server.unwrap()), "the Python server outlived the run");
    assert_eq!(
        r["target"]["memory_source"],
        format!("rss of pid {shell} and 1 child process, summed over its process tree")
    );
    assert!(
        r["target"]["stopped"]
            .as_str()
            .unwrap()
            .starts_with("stopped by SIGTERM"),
        "{}",
        r["target"]
    );
    let timeline = r["timeline"]["samples"].as_array().unwrap();
    assert!(
        timeline.iter().any(|s| s["rss_processes"] == 2),
        "the timeline sums both processes"
    );
}

#[test]
fn a_server_that_dies_mid_run_is_exit_3_with_its_last_output() {
    let dir = scratch();
    let port = free_port();
    // The shell starts the server, stops it a second into the run, and exits with its own status.
    let line = format!(
        "{:?} {:?} --port {port} & P=$!; sleep 1; kill $P; wait; echo the server went away; exit 4",
        python().display().to_string(),
        server_script().display().to_string(),
    );
    let text = format!(
        r#"name = "py_dies"
[server]
target = "external"
command = '{line}'
ws_url = "ws://127.0.0.1:{port}/ws/chat/{{room}}/"

[[rooms]]
name = "lobby"
  [[rooms.clients]]
  count = 2
  rate = 10

[run]
duration = "30s"
"#
    );
    let output = run_scenario(&scenario(dir.path(), "py_dies", &text), dir.path());
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let r = result(dir.path(), "py_dies");
    assert_eq!(r["status"], "error");
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("exited during the run (exit status: 4)"), "{error}");
    assert!(error.contains("the server went away"), "{error}");
    stopped_server_pid(&r);
}

#[test]
fn ctrl_c_while_waiting_for_ready_stops_the_command_at_once() {
    let dir = scratch();
    let port = free_port();
    let pid_file = dir.path().join("sleeper.pid");
    let text = sleeper_scenario("interrupted_start", port, &pid_file, "ready_timeout = \"60s\"");
    let path = scenario(dir.path(), "interrupted_start", &text);
    let leakrun = spawn_run(&path, dir.path(), |_| {});
    let started = eventually(Duration::from_secs(10), || pid_file.exists());
    let pid: Option<u64> = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.trim().parse().ok());
    let _cleanup = KillOnDrop(pid.unwrap_or(0));
    interrupt(&leakrun);
    let output = leakrun.wait_with_output().unwrap();
    assert!(started, "the command never ran: {}", describe(&output));
    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    let r = result(dir.path(), "interrupted_start");
    assert_eq!(r["status"], "interrupted");
    assert_eq!(r["iterations"].as_array().map(Vec::len), Some(0));
    let pid = pid.unwrap();
    assert!(!alive(pid), "the command (pid {pid}) outlived the interrupted start");
}
