//! django/channels#1683 at the layer level: with `cancel_shared_receive` on, a channel that
//! closes while messages flow costs its co-located, steady neighbours messages — the SAME
//! messages at every one of them, since one inbox entry carries the message of all the
//! instance's targets (the bug's signature: several clients see a gap at the same moment);
//! with it off the same workload loses none. Runs on a private redis-server (installed
//! redis-server required).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use leakrun::infra::PrivateRedis;
use leakrun::layer::redis::{RedisListsConfig, run_prefix};
use leakrun::layer::{ChannelLayer, ChannelReceiver, RedisListsLayer};

const ROOM: &str = "room_a";
const STEADY: usize = 3;
const MESSAGES: u64 = 200;
const SEND_EVERY: Duration = Duration::from_millis(10);
const CHURN_LIFETIME: Duration = Duration::from_millis(120);
/// A steady receiver that hears nothing for this long has everything it will get.
const IDLE: Duration = Duration::from_millis(1500);

struct Outcome {
    /// Per steady receiver, the sequence numbers it got, in order.
    received: Vec<Vec<u64>>,
    churn_cycles: u64,
    cancelled_receives: u64,
    dropped_full: u64,
}

impl Outcome {
    fn missing(&self) -> u64 {
        self.received.iter().map(|got| MESSAGES - got.len() as u64).sum()
    }

    /// Per steady receiver, the sequence numbers it did not get.
    fn missing_sets(&self) -> Vec<BTreeSet<u64>> {
        self.received
            .iter()
            .map(|got| {
                let got: BTreeSet<u64> = got.iter().copied().collect();
                (0..MESSAGES).filter(|seq| !got.contains(seq)).collect()
            })
            .collect()
    }
}

async fn collect(mut channel: ChannelReceiver) -> (ChannelReceiver, Vec<u64>) {
    let mut got = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(IDLE, channel.recv()).await {
        let seq = std::str::from_utf8(&message)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .expect("a sequence number");
        got.push(seq);
        if seq + 1 == MESSAGES {
            break;
        }
    }
    (channel, got)
}

/// Three steady receivers in one room on one instance, a sender at 100 msg/s, and one more
/// channel in the room created and closed over and over while the messages flow.
async fn churn_workload(cancel_shared_receive: bool) -> Outcome {
    let redis = PrivateRedis::start().await.expect("start a private redis-server");
    let config =
        RedisListsConfig::new(redis.url(), run_prefix(), 1000).with_cancel_shared_receive(cancel_shared_receive);
    let layer = Arc::new(RedisListsLayer::connect(config).await.expect("lists layer"));

    let mut collectors = Vec::new();
    for _ in 0..STEADY {
        let channel = layer.new_channel().await.expect("steady channel");
        layer.group_add(ROOM, &channel.name).await.expect("add");
        collectors.push(tokio::spawn(collect(channel)));
    }

    let sender = {
        let layer = layer.clone();
        tokio::spawn(async move {
            for seq in 0..MESSAGES {
                layer
                    .group_send(ROOM, Bytes::from(seq.to_string()))
                    .await
                    .expect("group_send");
                tokio::time::sleep(SEND_EVERY).await;
            }
        })
    };

    // The reconnecting client: join, stay a moment while messages flow, leave.
    let mut churn_cycles = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sender.is_finished() && Instant::now() < deadline {
        let channel = layer.new_channel().await.expect("churn channel");
        layer.group_add(ROOM, &channel.name).await.expect("add");
        tokio::time::sleep(CHURN_LIFETIME).await;
        layer.group_discard(ROOM, &channel.name).await.expect("discard");
        layer.close_channel(channel).await.expect("close");
        churn_cycles += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    sender.await.expect("sender task");

    let mut received = Vec::new();
    for collector in collectors {
        let (channel, got) = collector.await.expect("collector task");
        layer.group_discard(ROOM, &channel.name).await.expect("discard");
        layer.close_channel(channel).await.expect("close");
        received.push(got);
    }
    let outcome = Outcome {
        received,
        churn_cycles,
        cancelled_receives: layer.cancelled_receives(),
        dropped_full: layer.stats().dropped_full,
    };
    eprintln!(
        "cancel_shared_receive={cancel_shared_receive}: {} churn cycles, {} cancelled receives, {} messages missing",
        outcome.churn_cycles,
        outcome.cancelled_receives,
        outcome.missing()
    );
    layer.shutdown().await;
    redis.stop().await.expect("stop redis-server");
    outcome
}

fn assert_in_order_without_duplicates(outcome: &Outcome) {
    for got in &outcome.received {
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "out of order or duplicated: {got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_shared_receive_loses_messages_for_steady_receivers() {
    let outcome = churn_workload(true).await;
    assert!(outcome.churn_cycles >= 5, "too little churn: {}", outcome.churn_cycles);
    assert!(outcome.cancelled_receives > 0, "no shared receive was cancelled");
    assert!(
        outcome.missing() > 0,
        "the fault lost nothing in {} churn cycles ({} cancelled receives)",
        outcome.churn_cycles,
        outcome.cancelled_receives
    );
    // The signature: an abandoned receive throws away an entry meant for every receiver of the
    // instance, so each steady receiver misses exactly the same messages, and some.
    let missing = outcome.missing_sets();
    assert_eq!(missing.len(), STEADY);
    assert!(!missing[0].is_empty(), "steady receiver 0 missed nothing");
    for (i, set) in missing.iter().enumerate().skip(1) {
        assert_eq!(
            set, &missing[0],
            "steady receiver {i} missed other messages than receiver 0"
        );
    }
    // The loss is a gap for a receiver that stayed connected, not a full channel.
    assert_eq!(outcome.dropped_full, 0);
    assert_in_order_without_duplicates(&outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_fault_the_same_churn_loses_nothing() {
    let outcome = churn_workload(false).await;
    assert!(outcome.churn_cycles >= 5, "too little churn: {}", outcome.churn_cycles);
    assert_eq!(outcome.cancelled_receives, 0);
    let expected: Vec<u64> = (0..MESSAGES).collect();
    for (i, got) in outcome.received.iter().enumerate() {
        assert_eq!(got, &expected, "steady receiver {i} missed messages");
    }
    assert_eq!(outcome.dropped_full, 0);
}
