//! Loss forensics against the real server and clients: an abruptly closed sender's in-flight
//! frames are unconfirmed, not lost; a silent drop is lost `while_healthy` and missed by every
//! receiver; a server that falls behind until its channels fill loses `under_backlog`; forged and
//! foreign tokens are counted and never panic the (debug) binary.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio_tungstenite::tungstenite::{self, Message};

fn gaps(r: &serde_json::Value) -> &serde_json::Value {
    &r["verdicts"]["gaps"]
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The kept records that are lost (gap, tail loss) and how many carry each cause, after
/// checking that every one carries one and no unconfirmed record does.
fn record_causes(r: &serde_json::Value) -> (usize, usize, usize) {
    let records = r["losses"]["records"].as_array().expect("records");
    let lost: Vec<&serde_json::Value> = records.iter().filter(|l| l["kind"] != "unconfirmed").collect();
    for record in records {
        let cause = record["cause"].as_str();
        if record["kind"] == "unconfirmed" {
            assert_eq!(cause, None, "{record}");
        } else {
            assert!(
                matches!(cause, Some("while_healthy" | "under_backlog")),
                "a kept lost record carries its cause: {record}"
            );
        }
    }
    let with = |cause: &str| lost.iter().filter(|l| l["cause"] == cause).count();
    (lost.len(), with("while_healthy"), with("under_backlog"))
}

/// Churners that send fast and drop their TCP connection while the server, 30ms per group
/// send, is still behind on what they wrote.
const SLOW_CHURN: &str = r#"
[server.faults]
delay_group_send = "30ms"
[[rooms]]
name = "room_a"
  [[rooms.clients]]
  pattern = "steady"
  count = 2
  rate = 5
  [[rooms.clients]]
  pattern = "cycle"
  count = 4
  rate = 100
  up = "150ms"
  down = "50ms"
  close = "abrupt"
[run]
duration = "3s"
"#;

#[test]
fn an_abrupt_senders_in_flight_frames_are_unconfirmed_not_lost() {
    let dir = scratch();
    let text = format!("name = \"inflight\"\n{SLOW_CHURN}");
    let output = run_scenario(&scenario(dir.path(), "inflight", &text), dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(dir.path(), "inflight");
    let g = gaps(&r);
    let totals = &g["totals"];
    assert_eq!(g["outcome"], "clean", "{}", g["summary"]);
    assert_eq!(u(&totals["gaps"]) + u(&totals["tail_loss"]), 0, "{totals}");
    assert!(
        u(&totals["unconfirmed"]) > 0 && u(&g["distinct_unconfirmed"]) > 0,
        "the slow server had frames in flight when churners dropped: {totals}"
    );
    assert!(
        g["summary"].as_str().unwrap().contains("unconfirmed"),
        "{}",
        g["summary"]
    );
    let kinds: Vec<&str> = r["losses"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.iter().all(|&k| k == "unconfirmed"), "{kinds:?}");
    assert_eq!(record_causes(&r), (0, 0, 0), "unconfirmed records carry no cause");
    eprintln!(
        "inflight: {} unconfirmed deliveries of {} distinct messages, {} sent",
        totals["unconfirmed"], g["distinct_unconfirmed"], totals["sent"]
    );
}

#[test]
fn a_threshold_on_unconfirmed_judges_them() {
    let dir = scratch();
    let text = format!("name = \"strict\"\n[thresholds]\nunconfirmed = 0\n[expect]\ngaps = true\n{SLOW_CHURN}");
    let output = run_scenario(&scenario(dir.path(), "strict", &text), dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(dir.path(), "strict");
    assert_eq!(gaps(&r)["outcome"], "gaps", "{}", gaps(&r)["summary"]);
    assert!(
        gaps(&r)["summary"]
            .as_str()
            .unwrap()
            .contains("unconfirmed (allowed 0)")
    );
}

#[test]
fn a_silent_drop_is_lost_while_healthy_by_every_receiver() {
    let dir = scratch();
    let text = r#"
name = "silent"
[server.faults]
drop_one_in = 25
[expect]
gaps = true
[[rooms]]
name = "room_a"
  [[rooms.clients]]
  pattern = "steady"
  count = 3
  rate = 50
  [[rooms.clients]]
  pattern = "cycle"
  count = 2
  rate = 0
  up = "300ms"
  down = "50ms"
  close = "abrupt"
[[rooms]]
name = "room_b"
  [[rooms.clients]]
  pattern = "steady"
  count = 2
  rate = 50
[run]
duration = "3s"
"#;
    let output = run_scenario(&scenario(dir.path(), "silent", text), dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(dir.path(), "silent");
    let g = gaps(&r);
    let distinct = u(&g["distinct_lost"]);
    let dropped = u(&r["server"]["layer"]["fault_dropped"]);
    assert!(distinct >= 20, "{}", g["summary"]);
    assert_eq!(distinct, dropped, "one distinct loss per dropped group message");
    assert_eq!(u(&g["missed_by"]["every"]), distinct, "{}", g["missed_by"]);
    assert_eq!(u(&g["causes"]["while_healthy"]), distinct, "{}", g["causes"]);
    assert_eq!(u(&g["causes"]["under_backlog"]), 0);
    assert_eq!(u(&g["totals"]["unconfirmed"]), 0, "no sender closed abruptly");
    let (lost, healthy, backlog) = record_causes(&r);
    assert!(lost > 0, "lost records are kept");
    assert_eq!((healthy, backlog), (lost, 0), "every kept record lost while healthy");
    let summary = g["summary"].as_str().unwrap();
    assert!(summary.contains("a silent drop"), "{summary}");
    assert!(!r["delivery_timeline"].as_array().unwrap().is_empty());
    eprintln!("silent: {summary}");
}

#[test]
fn a_server_that_falls_behind_loses_under_backlog() {
    let dir = scratch();
    // Six senders at 100/s, each group send taking 20ms: the server reads each sender at half
    // its rate, delivery latency climbs by half a second a second, and the receivers' channels
    // (8 slots), written out only between sends, overflow.
    let text = r#"
name = "behind"
[server]
capacity = 8
[server.faults]
delay_group_send = "20ms"
[expect]
gaps = true
latency_breach = true
[[rooms]]
name = "room_a"
  [[rooms.clients]]
  pattern = "steady"
  count = 6
  rate = 100
[run]
duration = "4s"
drain = "15s"
"#;
    let output = run_scenario(&scenario(dir.path(), "behind", text), dir.path());
    let r = result(dir.path(), "behind");
    let g = gaps(&r);
    assert!(u(&r["server"]["layer"]["dropped_full"]) > 0, "{}", r["server"]);
    let (healthy, backlog) = (u(&g["causes"]["while_healthy"]), u(&g["causes"]["under_backlog"]));
    assert!(backlog > 0 && backlog >= 9 * healthy, "{}", g["causes"]);
    // The kept records (the earliest, one per receiver and range) carry the causes their first
    // messages were counted under: some under backlog, and none of a cause nothing was counted
    // under.
    let (lost, kept_healthy, kept_backlog) = record_causes(&r);
    assert!(
        lost > 0 && kept_backlog > 0,
        "{lost} kept, {kept_backlog} under backlog"
    );
    assert_eq!(kept_healthy + kept_backlog, lost);
    assert!(
        kept_healthy == 0 || healthy > 0,
        "{kept_healthy} kept while healthy, none counted"
    );
    eprintln!("behind: kept records {kept_healthy} while healthy, {kept_backlog} under backlog");
    assert_eq!(g["outcome"], "gaps");
    let summary = g["summary"].as_str().unwrap();
    assert!(summary.contains("the server fell behind"), "{summary}");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    eprintln!("behind: {summary}");
}

/// A free loopback port (bound and released: the run binds it again straight after).
#[test]
fn forged_and_foreign_tokens_are_counted_and_never_lost_or_panicking() {
    let dir = scratch();
    let port = free_port();
    let text = format!(
        r#"
name = "forged"
[server]
port = {port}
# A forged seq far past what its sender sent makes that sender's next real messages look
# reordered at the receivers (the tracker cannot know yet that the far one was forged).
[thresholds]
reordered = 1000000
[[rooms]]
name = "room_a"
  [[rooms.clients]]
  pattern = "steady"
  count = 2
  rate = 20
[run]
duration = "4s"
"#
    );
    let child = spawn_run(&scenario(dir.path(), "forged", &text), dir.path(), |_| {});
    let url = format!("ws://127.0.0.1:{port}/ws/chat/room_a");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut socket = loop {
        match tungstenite::connect(url.as_str()) {
            Ok((socket, _)) => break socket,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("the run's server never answered on {url}: {e}"),
        }
    };
    // A real token tells the run's nonce and a real sender, as a server would see them. Tokens
    // from both steady clients mean both are in the room and will receive what is injected.
    let mut senders = std::collections::BTreeSet::new();
    let token = loop {
        if let Message::Text(text) = socket.read().expect("a frame")
            && let Some(at) = text.find("lr2|")
        {
            let token = text[at..].to_string();
            senders.insert(token.split('|').nth(2).unwrap_or_default().to_string());
            if senders.len() == 2 {
                break token;
            }
        }
    };
    let fields: Vec<&str> = token.split('|').collect();
    let (nonce, sender) = (fields[1], fields[2]);
    let forged = [
        format!("lr2|{nonce}|{sender}|18446744073709551615|room_a|0|"),
        format!("lr2|{nonce}|{sender}|1000000000|room_a|18446744073709551615|"),
        format!("lr2|{nonce}|18446744073709551615|0|room_a|0|"),
        format!("lr2|{nonce}|999999|5|room_a|0|"),
    ];
    for frame in &forged {
        socket.send(Message::text(frame.as_str())).unwrap();
    }
    socket
        .send(Message::text("lr2|0000000000000000|1|0|room_a|0|"))
        .unwrap();
    socket.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = socket.close(None);
    let _ = socket.flush();
    drop(socket);
    let output = child.wait_with_output().expect("the run ends");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));
    let r = result(dir.path(), "forged");
    let totals = &gaps(&r)["totals"];
    // Each of the two clients received every injected frame.
    assert_eq!(u(&totals["forged"]), 2 * forged.len() as u64, "{totals}");
    assert_eq!(u(&totals["foreign"]), 2, "{totals}");
    assert_eq!(u(&totals["gaps"]) + u(&totals["tail_loss"]), 0, "{totals}");
    assert_eq!(gaps(&r)["outcome"], "clean", "{}", gaps(&r)["summary"]);
}

/// The Python chat server under churn: two rooms of steady clients with a churner each (one
/// closing abruptly, one gracefully), `switches` on the server's command line.
fn python_churn(name: &str, switches: &[&str], expect_gaps: bool) -> (serde_json::Value, std::process::Output) {
    let dir = scratch();
    let port = free_port();
    let text = format!(
        r#"name = "{name}"
[server]
target = "external"
command = {command}
ws_url = "ws://127.0.0.1:{port}/ws/chat/{{room}}/"
stats_url = "http://127.0.0.1:{port}/stats"
stats_counters = ["opened", "closed", "frames_*", "deliveries", "dropped"]
[expect]
gaps = {expect_gaps}
[[rooms]]
name = "room_a"
  [[rooms.clients]]
  pattern = "steady"
  count = 3
  rate = 20
  [[rooms.clients]]
  pattern = "cycle"
  count = 3
  rate = 20
  up = "300ms"
  down = "50ms"
  close = "abrupt"
[[rooms]]
name = "room_b"
  [[rooms.clients]]
  pattern = "steady"
  count = 3
  rate = 20
  [[rooms.clients]]
  pattern = "cycle"
  count = 2
  rate = 20
  up = "250ms"
  down = "50ms"
  close = "graceful"
[run]
duration = "4s"
settle = "3s"
sample_interval = "250ms"
"#,
        command = common::python_server::command(port, switches),
    );
    let output = run_scenario(&scenario(dir.path(), name, &text), dir.path());
    (result(dir.path(), name), output)
}

/// The target's CPU is in every sample after the first, summed over its process tree, and so is
/// leakrun's own.
fn assert_cpu_is_sampled(r: &serde_json::Value) {
    let samples = r["timeline"]["samples"].as_array().unwrap();
    let with_cpu: Vec<&serde_json::Value> = samples.iter().filter(|s| s["target_cpu"].is_number()).collect();
    assert!(
        with_cpu.len() + 1 >= samples.len() && with_cpu.len() >= 8,
        "{} of {}",
        with_cpu.len(),
        samples.len()
    );
    assert!(
        with_cpu
            .iter()
            .all(|s| s["leakrun_cpu"].is_number() && s["cpu_window_s"].as_f64().unwrap() > 0.0)
    );
    assert!(
        with_cpu.iter().any(|s| s["target_cpu"].as_f64().unwrap() > 0.0),
        "the server did some work"
    );
    let pid = r["target"]["pid"].as_u64().unwrap();
    assert!(
        r["target"]["cpu_source"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {pid} and its descendants")),
        "{}",
        r["target"]
    );
}

#[test]
fn the_python_servers_drop_under_churn_is_lost_while_healthy() {
    let (r, output) = python_churn("py_drop_churn", &["--drop-one-in", "97"], true);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let g = gaps(&r);
    let distinct = u(&g["distinct_lost"]);
    let dropped = u(&r["iterations"][0]["after"]["info"]["dropped"]);
    assert!(dropped > 0 && distinct > 0, "{}", g["summary"]);
    // The switch drops one delivery (one frame to one member), never a whole group message.
    let lost = u(&g["totals"]["gaps"]) + u(&g["totals"]["tail_loss"]);
    assert!(
        lost <= dropped,
        "nothing is lost but what the server dropped: {lost} > {dropped}"
    );
    assert_eq!(u(&g["causes"]["while_healthy"]), distinct, "{}", g["causes"]);
    assert_eq!(u(&g["causes"]["under_backlog"]), 0, "{}", g["causes"]);
    // One delivery in 97 dropped, a message going to at most 7 members: never two of one message.
    assert_eq!(u(&g["missed_by"]["one"]), distinct, "{}", g["missed_by"]);
    assert_eq!(u(&g["missed_by"]["every"]), 0, "{}", g["missed_by"]);
    let summary = g["summary"].as_str().unwrap();
    assert!(summary.contains("a silent drop"), "{summary}");
    assert!(summary.contains("and the server used"), "{summary}");
    assert_cpu_is_sampled(&r);
    eprintln!(
        "py_drop_churn: {dropped} dropped, {lost} lost, {} unconfirmed; {summary}",
        g["totals"]["unconfirmed"]
    );
}

#[test]
fn the_same_churn_without_the_switch_loses_nothing() {
    let (r, output) = python_churn("py_clean_churn", &[], false);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let g = gaps(&r);
    assert_eq!(g["outcome"], "clean", "{}", g["summary"]);
    assert_eq!(u(&g["distinct_lost"]), 0, "{}", g["summary"]);
    assert_eq!(
        u(&g["totals"]["gaps"]) + u(&g["totals"]["tail_loss"]),
        0,
        "{}",
        g["totals"]
    );
    assert_eq!(u(&r["iterations"][0]["after"]["info"]["dropped"]), 0);
    let sessions = u(&r["iterations"][0]["sessions"]);
    assert!(sessions > 6 + 5, "churn happened: {sessions} sessions");
    assert_cpu_is_sampled(&r);
    eprintln!(
        "py_clean_churn: {} sent, {} received, {} unconfirmed, {sessions} sessions; {}",
        g["totals"]["sent"], g["totals"]["received"], g["totals"]["unconfirmed"], g["summary"]
    );
}
