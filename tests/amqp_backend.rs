//! The private rabbitmq-server a run starts for itself, and the AMQP-only parts of the AMQP
//! layer: the broker starts, answers and stops leaving no broker or epmd process behind; a
//! missing binary fails fast and says what to do; broker-side and local-buffer overflow are both
//! counted in `dropped_full`; `probe` reads the run's queues only; `shutdown` deletes the run's
//! queues and exchange. One private broker serves the whole binary, but the stop test starts its
//! own.

use std::path::Path;
use std::time::{Duration, Instant};

use leakrun::infra::{PrivateRabbitMq, RabbitMqServerError};

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `pid` is running: /proc has it and it is not a zombie. The VM's helpers are
/// reparented to PID 1 when the VM dies, which reaps them a moment later; until then they are
/// zombies, dead but still listed.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// Waits (bounded) until `pid` has left /proc altogether; fails if it still runs.
async fn assert_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_exists(pid) && Instant::now() < deadline {
        assert!(!running(pid), "pid {pid} still running after stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!running(pid), "pid {pid} still running after stop");
}

#[tokio::test]
async fn starts_answers_and_stops_leaving_no_process() {
    let broker = PrivateRabbitMq::start().await.expect("start a private rabbitmq-server");
    assert!(broker.url().starts_with("amqp://guest:guest@127.0.0.1:"), "{}", broker.url());
    assert!(![5672, 25672].contains(&broker.port()));
    assert_ne!(broker.epmd_port(), 4369);
    let mut pids = broker.broker_pids();
    pids.push(broker.pid());
    pids.push(broker.epmd_pid());
    assert!(pids.len() >= 3, "broker script, VM and epmd at least: {pids:?}");
    for &pid in &pids {
        assert!(process_exists(pid), "pid {pid} should be running");
    }
    let conn = lapin::Connection::connect(&broker.url(), lapin::ConnectionProperties::default())
        .await
        .expect("an AMQP connection");
    conn.close(200, "bye".into()).await.expect("close");

    let log = broker.log_path();
    broker.stop().await.expect("stop");
    for &pid in &pids {
        assert_gone(pid).await;
    }
    assert!(log.parent().is_some_and(|dir| !dir.exists()), "its temporary folder is removed");
}

#[tokio::test]
async fn missing_binary_fails_fast_saying_what_to_do() {
    let started = Instant::now();
    let error = PrivateRabbitMq::start_with("/nonexistent/rabbitmq-server")
        .await
        .expect_err("no such binary");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(matches!(error, RabbitMqServerError::NotInstalled { .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains("apt-get install rabbitmq-server"), "{text}");
    assert!(text.contains("AMQP_URL") && text.contains("backend.url"), "{text}");
}
