//! The RabbitMQ backend end to end: the real binary, its embedded servers and real clients, on a
//! real rabbitmq-server — a private one leakrun starts itself, the test binary's shared one, or
//! one the test starts and then stops under the run.

mod amqp_support;
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use leakrun::infra::PrivateRabbitMq;
use serde_json::Value;

fn pids_in_source(r: &Value) -> Vec<u64> {
    // "private rabbitmq-server (pid N, epmd pid M) for this run"
    let source = r["backend"]["source"].as_str().unwrap();
    assert!(source.starts_with("private rabbitmq-server (pid "), "{source}");
    source
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

#[test]
fn the_tabs_waves_are_clean_on_a_private_broker_that_leaves_nothing_behind() {
    let dir = scratch();
    let output = leakrun_with(
        &[
            "run",
            "scenarios/django_tabs_amqp.toml",
            "--out",
            dir.path().to_str().unwrap(),
            "--no-progress",
        ],
        |c| {
            c.env_remove("AMQP_URL");
        },
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(dir.path(), "django_tabs_amqp");
    assert!(
        r["backend"]["version"].as_str().unwrap().starts_with("rabbitmq 3."),
        "{}",
        r["backend"]
    );
    let leak = &r["verdicts"]["leak"];
    assert_eq!(leak["outcome"], "clean", "{}", leak["summary"]);
    assert_eq!(r["verdicts"]["gaps"]["outcome"], "clean");
    let queues = leak["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "amqp_queues")
        .unwrap();
    assert_eq!(queues["class"], "clean", "{}", queues["evidence"]);
    for pid in pids_in_source(&r) {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} of the private broker is still there"
        );
    }
}

#[test]
fn churners_over_two_instances_lose_nothing() {
    let dir = scratch();
    let path = scenario(dir.path(), "amqp_churn", &issue1683_churn("amqp_churn", "amqp"));
    let output = leakrun_with(
        &[
            "run",
            path.to_str().unwrap(),
            "--out",
            dir.path().to_str().unwrap(),
            "--no-progress",
        ],
        |c| {
            c.env("AMQP_URL", amqp_support::broker_url());
        },
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(dir.path(), "amqp_churn");
    assert_eq!(r["backend"]["source"], "AMQP_URL");
    let gaps = &r["verdicts"]["gaps"];
    assert_eq!(gaps["outcome"], "clean", "{}", gaps["summary"]);
    assert!(
        gaps["totals"]["received"].as_u64().unwrap() > 1000,
        "{}",
        gaps["totals"]
    );
    assert!(r["iterations"][0]["sessions"].as_u64().unwrap() > 20);
    assert_eq!(r["server"]["layer"]["dropped_full"], 0);
}

#[test]
fn issue1683_runs_on_amqp_with_the_backend_flag() {
    let dir = scratch();
    let text = std::fs::read_to_string("scenarios/issue1683.toml")
        .unwrap()
        .replace("duration = \"20s\"", "duration = \"2s\"");
    let path = scenario(dir.path(), "issue1683", &text);
    let output = leakrun_with(
        &[
            "run",
            path.to_str().unwrap(),
            "--backend",
            "amqp",
            "--out",
            dir.path().to_str().unwrap(),
            "--no-progress",
        ],
        |c| {
            c.env("AMQP_URL", amqp_support::broker_url());
        },
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(dir.path(), "issue1683");
    assert_eq!(r["backend"]["kind"], "amqp");
    assert_eq!(r["verdicts"]["gaps"]["outcome"], "clean");
}

#[test]
fn the_broker_going_away_mid_run_is_exit_3_with_a_partial_result() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let broker = runtime
        .block_on(PrivateRabbitMq::start())
        .expect("rabbitmq-server starts");
    let dir = scratch();
    let text = issue1683_churn("amqp_goes_away", "amqp")
        .replace("duration = \"4s\"", "duration = \"30s\"")
        .replace("iterations = 2", "iterations = 3");
    let path = scenario(dir.path(), "amqp_goes_away", &text);
    let child = spawn_run(&path, dir.path(), |command| {
        command.env("AMQP_URL", broker.url());
    });
    std::thread::sleep(Duration::from_secs(3));
    runtime.block_on(broker.stop()).expect("the broker stops");
    let stopped = Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(stopped.elapsed() < Duration::from_secs(25), "{:?}", stopped.elapsed());
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("panicked"),
        "{}",
        describe(&output)
    );
    let r = result(dir.path(), "amqp_goes_away");
    assert_eq!(r["status"], "error");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("RabbitMQ at amqp://") && error.contains("went away"),
        "{error}"
    );
}
