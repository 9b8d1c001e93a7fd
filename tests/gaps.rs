//! The gaps detector against the real server and clients: its positive control (a layer that
//! drops one message in N) must be found message for message, and its negative control (churn,
//! no fault) must find nothing.

mod common;

use std::collections::BTreeSet;

use common::*;

const TOPOLOGY: &str = r#"
[[rooms]]
name = "room_a"
  [[rooms.clients]]
  pattern = "steady"
  count = 3
  rate = 100
  [[rooms.clients]]
  pattern = "cycle"
  count = 1
  rate = 100
  up = "400ms"
  down = "50ms"
  close = "abrupt"

[[rooms]]
name = "room_b"
  [[rooms.clients]]
  pattern = "steady"
  count = 2
  rate = 100
  [[rooms.clients]]
  pattern = "cycle"
  count = 1
  rate = 100
  up = "300ms"
  down = "50ms"
  close = "graceful"

[run]
duration = "3s"
"#;

#[test]
fn dropped_messages_are_found_message_for_message() {
    let dir = scratch();
    let text = format!("name = \"drops\"\n[server.faults]\ndrop_one_in = 50\n[expect]\ngaps = true\n{TOPOLOGY}");
    let output = run_scenario(&scenario(dir.path(), "drops", &text), dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let r = result(dir.path(), "drops");
    assert_eq!(r["status"], "pass");
    assert_eq!(r["verdicts"]["gaps"]["outcome"], "gaps");
    assert_eq!(r["losses"]["truncated"], false);
    let dropped: BTreeSet<(u64, u64)> = r["server"]["layer"]["fault_dropped_envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| (pair[0].as_u64().unwrap(), pair[1].as_u64().unwrap()))
        .collect();
    // A dropped message that was an abruptly closed churner's last is unconfirmed: nobody got it,
    // and its sender is gone, so it cannot be told from a frame in flight.
    let mut lost = BTreeSet::new();
    let mut unconfirmed = BTreeSet::new();
    for record in r["losses"]["records"].as_array().unwrap() {
        let sender = record["sender"].as_u64().unwrap();
        let into = if record["kind"] == "unconfirmed" {
            &mut unconfirmed
        } else {
            &mut lost
        };
        for seq in record["first_seq"].as_u64().unwrap()..=record["last_seq"].as_u64().unwrap() {
            into.insert((sender, seq));
        }
    }
    assert!(
        unconfirmed.is_subset(&dropped),
        "nothing in flight was lost: {unconfirmed:?}"
    );
    assert_eq!(
        r["verdicts"]["gaps"]["distinct_lost"].as_u64().unwrap(),
        lost.len() as u64
    );
    let lost: BTreeSet<_> = lost.union(&unconfirmed).copied().collect();
    assert!(
        dropped.len() >= 20,
        "the control must drop enough to mean something: {}",
        dropped.len()
    );
    assert_eq!(
        r["server"]["layer"]["fault_dropped"].as_u64().unwrap(),
        dropped.len() as u64
    );
    assert_eq!(
        lost, dropped,
        "every dropped message is reported lost, and nothing else"
    );
}

#[test]
fn churn_without_a_fault_loses_nothing() {
    let dir = scratch();
    let text = format!("name = \"clean\"\n{TOPOLOGY}\niterations = 2\nwarmup = 0\n");
    let output = run_scenario(&scenario(dir.path(), "clean", &text), dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let r = result(dir.path(), "clean");
    let totals = &r["verdicts"]["gaps"]["totals"];
    assert_eq!(r["verdicts"]["gaps"]["outcome"], "clean", "{totals}");
    for key in [
        "gaps",
        "tail_loss",
        "duplicates",
        "reordered",
        "misrouted",
        "forged",
        "foreign",
    ] {
        assert_eq!(totals[key], 0, "{key}: {totals}");
    }
    assert!(totals["received"].as_u64().unwrap() > 5_000, "{totals}");
    // Churn really happened: several sessions per cycling client per iteration.
    let sessions: u64 = r["iterations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sessions"].as_u64().unwrap())
        .sum();
    assert!(sessions > 2 * (5 + 2 * 4), "{sessions} sessions");
    assert!(
        r["events"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "close_abrupt")
    );
    assert_eq!(r["server"]["live_connections"], 0);
}

#[test]
fn an_unexpected_gap_fails_the_run_with_exit_1() {
    let dir = scratch();
    let text = format!("name = \"surprise\"\n[server.faults]\ndrop_one_in = 100\n{TOPOLOGY}");
    let output = run_scenario(&scenario(dir.path(), "surprise", &text), dir.path());
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let r = result(dir.path(), "surprise");
    assert_eq!(r["status"], "fail");
    assert_eq!(r["expectation_met"], false);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("FAIL gaps"),
        "{}",
        describe(&output)
    );
}

#[test]
fn a_full_channel_drops_and_counts_instead_of_hanging() {
    let dir = scratch();
    let text = r#"
name = "overflow"
# 64 slots: a reader that keeps up absorbs a 100ms stall of a loaded CI machine, while the paused
# reader overflows once the loopback socket buffers (about 640 frames of 16 KiB) are full.
[server]
capacity = 64
[[rooms]]
name = "room"
  [[rooms.clients]]
  pattern = "steady"
  count = 2
  rate = 300
  payload = "16KiB"
  [[rooms.clients]]
  pattern = "steady"
  count = 1
  rate = 0
  reader = "paused"
[run]
duration = "3s"
drain = "2s"
"#;
    let started = std::time::Instant::now();
    let output = run_scenario(&scenario(dir.path(), "overflow", text), dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "bounded: {:?}",
        started.elapsed()
    );
    let r = result(dir.path(), "overflow");
    let dropped = r["server"]["layer"]["dropped_full"].as_u64().unwrap();
    assert!(dropped > 0, "the paused reader's channel overflowed: {}", r["server"]);
    assert_eq!(r["verdicts"]["gaps"]["server_dropped_full"].as_u64().unwrap(), dropped);
    assert!(
        r["verdicts"]["gaps"]["summary"]
            .as_str()
            .unwrap()
            .contains("for full channels")
    );
    // The readers that kept up lost nothing.
    assert_eq!(r["verdicts"]["gaps"]["totals"]["gaps"], 0);
}
