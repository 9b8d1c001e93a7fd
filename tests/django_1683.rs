//! django/channels#1683 on the real stack, the tutorial chat (examples/django_chat) under daphne
//! with a private Redis:
//!
//! - `django_1683.toml` (channels 3.0.3, channels-redis 3.2.0's core layer) finds the silent drop
//!   while daphne keeps up, each lost message missed by every receiver owed it;
//! - `django_1683_pubsub.toml`, the same churn on today's pub/sub layer, loses nothing.
//!
//! Each run has the machine to itself: these tests take turns, and cargo runs this binary apart
//! from tests/django.rs's. Beside another daphne, a slow two-core machine's fell seconds behind
//! (a delivery p99 of 7.9 s once, 2.02 s over the pub/sub example's 2 s limit another time):
//! overload, which is neither the race nor its absence.

mod common;

use std::sync::Mutex;

use common::describe;
use common::django::{run_example, run_example_as_is};

/// Held by the test whose daphne runs.
static MACHINE: Mutex<()> = Mutex::new(());

#[test]
fn the_1683_drop_is_found_on_the_reported_versions() {
    let _alone = MACHINE.lock().unwrap_or_else(|e| e.into_inner());
    // The drop is a race between a churner's cancelled receive and the next group message, and
    // how often it happens follows how busy daphne is: at 10 messages a second a slow machine
    // lost 10 to 13 in 30 s while a fast one (delivery p99 48 ms) lost none in a minute, and CI
    // once ran on the fast one. At the example's 20 a second both found it (31 distinct in a
    // minute on the fast one, p99 118 ms). So the test hunts as a person would: a minute at the
    // example's load, then, if nothing was lost, a minute at twice its message rate (46 lost on
    // the fast machine at 40, p99 458 ms, within the 2 s limit), and one more minute at that rate
    // if the second found nothing either: on a quiet two-core machine on 2026-12-06 one minute at
    // 20 found 10, 4, 0 and 0 distinct lost in four runs (two builds, the same odds), and one at
    // 40 found 1. Each minute is a fresh try of a rare race, not a repeat of a failed one.
    let mut tries = Vec::new();
    let mut found = None;
    for rate in ["20", "40", "40"] {
        let rate_key = format!("rooms[*].clients[0].rate={rate}");
        let (output, r) = run_example_as_is("examples/django_1683.toml", &["run.duration=60s", rate_key.as_str()]);
        let gaps = &r["verdicts"]["gaps"];
        tries.push(format!(
            "rate {rate}: exit {:?}, {}",
            output.status.code(),
            gaps["summary"]
        ));
        if gaps["outcome"] == "gaps" {
            // Found: every other verdict must be as the example expects.
            assert_eq!(output.status.code(), Some(0), "{}: {}", describe(&output), r["error"]);
            found = Some(r);
            break;
        }
        // Not found in this try: the latency must have been within its limits (an overloaded
        // daphne is not a try of the race) and nothing but the expected gaps may have failed.
        assert_eq!(
            r["verdicts"]["latency"]["outcome"], "within",
            "{tries:?}: {}",
            r["verdicts"]["latency"]["summary"]
        );
    }
    let r = found.unwrap_or_else(|| panic!("the drop was not found: {tries:?}"));
    eprintln!("{tries:?}");
    let gaps = &r["verdicts"]["gaps"];
    let distinct = gaps["distinct_lost"].as_u64().unwrap();
    assert!(distinct > 0, "{}", gaps["summary"]);
    // Lost while daphne kept up: the silent drop, not overload.
    assert!(
        gaps["causes"]["while_healthy"].as_u64().unwrap() > 0,
        "{}",
        gaps["causes"]
    );
    // The signature of the bug: every receiver owed the message missed it. channels-redis 3.2.0
    // pushes one copy of a group message per daphne process, naming all its receivers, so a copy
    // lost between Redis and the consumers is missed by all of them. On a quiet machine every
    // lost message has it; with other Django runs on the same two cores a third of them once
    // were missed by one receiver only (34 every, 15 one), so the test asks that most have it.
    let missed_by = &gaps["missed_by"];
    let every = missed_by["every"].as_u64().unwrap();
    assert!(every > 0, "{missed_by}");
    assert!(
        every > missed_by["some"].as_u64().unwrap() + missed_by["one"].as_u64().unwrap(),
        "most lost messages were missed by every receiver owed them: {missed_by}"
    );
    // Every loss record says when it happened. How soon the first one comes is the race's own
    // rate (3 s to over 30 s in past runs), a figure for a benchmark, not an assertion here.
    let records = r["losses"]["records"].as_array().unwrap();
    assert!(!records.is_empty(), "{}", r["losses"]);
    let first = records
        .iter()
        .map(|l| l["at_s"].as_f64().expect("every loss record has its time"))
        .fold(f64::INFINITY, f64::min);
    eprintln!("the first loss came at {first:.1} s");
    // The Redis the app uses was probed; its group members came (nearly) back down — an
    // overloaded daphne may miss a disconnect, which the scenario tolerates up to 5.
    let members = r["verdicts"]["leak"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "redis_group_members")
        .expect("the Redis the app uses is probed");
    assert!(members["after"][0].as_f64().unwrap() <= 5.0, "{}", members["evidence"]);
}

#[test]
fn the_same_churn_on_todays_pubsub_layer_loses_nothing() {
    let _alone = MACHINE.lock().unwrap_or_else(|e| e.into_inner());
    let r = run_example("examples/django_1683_pubsub.toml", &[]);
    let gaps = &r["verdicts"]["gaps"];
    assert_eq!(gaps["outcome"], "clean", "{}", gaps["summary"]);
    assert!(
        gaps["totals"]["received"].as_u64().unwrap() > 5000,
        "{}",
        gaps["totals"]
    );
}
