//! The private rabbitmq-server a run starts for itself, and the AMQP-only parts of the AMQP
//! layer: the broker starts, answers and stops leaving no broker or epmd process behind; a
//! missing binary fails fast and says what to do; broker-side and local-buffer overflow are both
//! counted in `dropped_full`; `probe` reads the run's queues only; `shutdown` deletes the run's
//! queues and exchange. One private broker serves the whole binary, but the stop test starts its
//! own.

mod amqp_support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use leakrun::infra::{PrivateRabbitMq, RabbitMqServerError};
use leakrun::layer::amqp::{AmqpConfig, PREFETCH};
use leakrun::layer::redis::run_prefix;
use leakrun::layer::{AmqpLayer, ChannelLayer, LayerStats};

async fn layer(prefix: &str, capacity: usize) -> AmqpLayer {
    AmqpLayer::connect(AmqpConfig::new(amqp_support::broker_url(), prefix, capacity))
        .await
        .expect("AMQP layer")
}

/// Whether the broker has `queue` / `exchange`, asked on a fresh connection of the test's own
/// (passive declares on throwaway channels: a missing name closes the channel).
async fn broker_has(queue: Option<&str>, exchange: Option<&str>) -> bool {
    let conn = Connection::connect(amqp_support::broker_url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    let found = match (queue, exchange) {
        (Some(queue), _) => channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .is_ok(),
        (None, Some(exchange)) => channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .is_ok(),
        (None, None) => false,
    };
    let _ = conn.close(200, "bye".into()).await;
    found
}

async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn sum(a: &LayerStats, b: &LayerStats) -> LayerStats {
    let mut total = a.clone();
    total.add(b);
    total
}

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
    assert!(
        broker.url().starts_with("amqp://guest:guest@127.0.0.1:"),
        "{}",
        broker.url()
    );
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
    assert!(
        log.parent().is_some_and(|dir| !dir.exists()),
        "its temporary folder is removed"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_broker_version_and_direct_send_reaches_one_channel() {
    let prefix = run_prefix();
    let (one, two) = (layer(&prefix, 10).await, layer(&prefix, 10).await);
    let version = one.broker_version().expect("server properties carry a version");
    assert!(
        version.split('.').next().and_then(|m| m.parse::<u32>().ok()).is_some(),
        "{version:?}"
    );

    let mut target = two.new_channel().await.expect("channel");
    let mut other = two.new_channel().await.expect("channel");
    one.send(&target.name, Bytes::from_static(b"direct"))
        .await
        .expect("send");
    let got = tokio::time::timeout(Duration::from_secs(3), target.recv())
        .await
        .ok()
        .flatten();
    assert_eq!(got.as_deref(), Some(&b"direct"[..]));
    assert!(other.try_recv().is_none());

    // A channel of an instance that does not exist: nowhere to go, counted as a drop.
    let before = one.stats().dropped_full;
    one.send(&"amqp.nosuchinstance!0".into(), Bytes::from_static(b"lost"))
        .await
        .expect("send");
    assert_eq!(one.stats().dropped_full, before + 1);
    assert!(
        one.send(&"lists.x!0".into(), Bytes::new()).await.is_err(),
        "not an AMQP channel"
    );
    one.shutdown().await;
    two.shutdown().await;
}

/// Both kinds of overflow land in `dropped_full`: the local buffer of a receiver that does not
/// read (counted by the receiving instance's consumer), and the instance queue of a consumer that
/// does not keep up (refused by the broker, nacked, counted by the sending instance). Every
/// message is accounted for exactly once: delivered, dropped locally, or refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_in_the_broker_and_in_local_buffers_is_counted() {
    const CAPACITY: usize = 2;
    let prefix = run_prefix();
    let (receiver, sender) = (layer(&prefix, CAPACITY).await, layer(&prefix, CAPACITY).await);
    let slow = receiver.new_channel().await.expect("channel");
    receiver.group_add("room", &slow.name).await.expect("add");

    // Local buffer: the consumer keeps up, the receiver does not read.
    for i in 0..5 {
        sender
            .group_send("room", Bytes::from(format!("a{i}")))
            .await
            .expect("send");
    }
    wait_for("five accounted for", || {
        let s = receiver.stats();
        s.delivered + s.dropped_full == 5
    })
    .await;
    let local = receiver.stats();
    assert_eq!(
        (local.delivered, local.dropped_full, local.buffered),
        (2, 3, 2),
        "{local:?}"
    );
    assert_eq!(sender.stats().dropped_full, 0, "nothing refused by the broker yet");

    // Broker: the consumer stalls; PREFETCH messages go out unacked, CAPACITY wait in the queue,
    // the rest are refused.
    receiver.set_paused(true);
    let burst = usize::from(PREFETCH) + CAPACITY + 20;
    let started = Instant::now();
    for i in 0..burst {
        sender
            .group_send("room", Bytes::from(format!("b{i}")))
            .await
            .expect("send");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "sends must not block: {:?}",
        started.elapsed()
    );
    let refused = sender.stats().dropped_full;
    assert!(
        refused >= 20,
        "at least the messages beyond prefetch + queue limit are refused: {refused}"
    );
    let probe = receiver.probe().await.expect("probe");
    assert_eq!(
        probe.messages, CAPACITY as u64,
        "the queue stops at its limit: {probe:?}"
    );

    receiver.set_paused(false);
    let total = (5 + burst) as u64;
    wait_for("every message accounted for", || {
        let s = sum(&receiver.stats(), &sender.stats());
        s.delivered + s.dropped_full == total
    })
    .await;
    let after = receiver.stats();
    assert_eq!(after.delivered, 2, "the buffer was full all along: {after:?}");
    assert!(
        after.dropped_full > local.dropped_full,
        "local drops after the stall: {after:?}"
    );
    assert_eq!(receiver.probe().await.expect("probe").messages, 0);
    receiver.shutdown().await;
    sender.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_counts_the_runs_queues_only() {
    let (run, other_run) = (run_prefix(), run_prefix());
    let mine = [layer(&run, 10).await, layer(&run, 10).await];
    let theirs = layer(&other_run, 10).await;
    let probe = mine[0].probe().await.expect("probe");
    assert_eq!((probe.queues, probe.consumers, probe.exchanges), (2, 2, 1), "{probe:?}");
    assert_eq!(probe.messages, 0, "{probe:?}");
    let probe = theirs.probe().await.expect("probe");
    assert_eq!((probe.queues, probe.consumers, probe.exchanges), (1, 1, 1), "{probe:?}");

    // A run's queue deleted behind its back (a leak's opposite) is simply not counted.
    mine[1].shutdown().await;
    let probe = mine[0].probe().await.expect("probe");
    assert_eq!((probe.queues, probe.consumers), (1, 1), "{probe:?}");
    for layer in mine.iter().chain([&theirs]) {
        layer.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_deletes_the_runs_queues_and_exchange() {
    let prefix = run_prefix();
    let (one, two) = (Arc::new(layer(&prefix, 10).await), Arc::new(layer(&prefix, 10).await));
    let channel = one.new_channel().await.expect("channel");
    one.group_add("room", &channel.name).await.expect("add");
    let (queue_one, queue_two) = (one.queue_name().to_string(), two.queue_name().to_string());
    let exchange = one.exchange_name().to_string();
    assert!(queue_one.starts_with(&prefix) && queue_two.starts_with(&prefix) && exchange.starts_with(&prefix));
    assert!(broker_has(Some(&queue_one), None).await && broker_has(Some(&queue_two), None).await);
    assert!(broker_has(None, Some(&exchange)).await);

    one.shutdown().await;
    assert!(
        !broker_has(Some(&queue_one), None).await,
        "queue of the stopped instance deleted"
    );
    assert!(
        broker_has(None, Some(&exchange)).await,
        "the exchange stays while an instance runs"
    );
    assert!(one.new_channel().await.is_err(), "a shut-down layer refuses work");
    assert!(one.probe().await.is_err());

    two.shutdown().await;
    assert!(!broker_has(Some(&queue_two), None).await);
    assert!(
        !broker_has(None, Some(&exchange)).await,
        "the run's exchange is deleted with its last instance"
    );
}
