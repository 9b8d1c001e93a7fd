//! One behaviour suite that every channel layer passes: the in-process layer, Redis pub/sub,
//! the channels_redis-style Redis layer and the AMQP layer. The Redis backends run on a private
//! `redis-server` that each test starts and stops itself; the AMQP layer runs on ONE private
//! `rabbitmq-server` for the whole binary (it takes seconds to start), each test with a run
//! prefix of its own (never a mock, never skipped: both servers must be installed).

mod amqp_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use leakrun::infra::PrivateRedis;
use leakrun::layer::amqp::{AmqpConfig, AmqpProbe};
use leakrun::layer::redis::{RedisListsConfig, RedisProbe, RedisPubSubConfig, run_prefix};
use leakrun::layer::{
    AmqpLayer, ChannelLayer, ChannelReceiver, LayerStats, MemoryLayer, RedisListsLayer, RedisPubSubLayer,
};

/// Capacity of the channels in every case but the full-channel one.
const CAPACITY: usize = 100;

/// How long a message may take to arrive.
const ARRIVAL: Duration = Duration::from_secs(3);

/// How long we watch for a message that must not arrive.
const SILENCE: Duration = Duration::from_millis(300);

#[derive(Clone, Copy, Debug)]
enum Kind {
    Memory,
    PubSub,
    Lists,
    Amqp,
}

/// A backend under test: one layer instance, and for Redis a second instance on the same Redis.
struct Fixture {
    layer: Arc<dyn ChannelLayer>,
    other: Option<Arc<dyn ChannelLayer>>,
    pubsub: Vec<Arc<RedisPubSubLayer>>,
    lists: Vec<Arc<RedisListsLayer>>,
    amqp: Vec<Arc<AmqpLayer>>,
    redis: Option<PrivateRedis>,
}

impl Fixture {
    async fn new(kind: Kind, capacity: usize) -> Self {
        match kind {
            Kind::Memory => Self {
                layer: Arc::new(MemoryLayer::new(capacity)),
                other: None,
                pubsub: Vec::new(),
                lists: Vec::new(),
                amqp: Vec::new(),
                redis: None,
            },
            Kind::PubSub => {
                let redis = PrivateRedis::start().await.expect("start a private redis-server");
                let prefix = run_prefix();
                let mut pubsub = Vec::new();
                for _ in 0..2 {
                    let config = RedisPubSubConfig::new(redis.url(), prefix.clone(), capacity);
                    pubsub.push(Arc::new(
                        RedisPubSubLayer::connect(config).await.expect("pub/sub layer"),
                    ));
                }
                Self {
                    layer: pubsub[0].clone(),
                    other: Some(pubsub[1].clone()),
                    pubsub,
                    lists: Vec::new(),
                    amqp: Vec::new(),
                    redis: Some(redis),
                }
            }
            Kind::Lists => {
                let redis = PrivateRedis::start().await.expect("start a private redis-server");
                let prefix = run_prefix();
                let mut lists = Vec::new();
                for _ in 0..2 {
                    let config = RedisListsConfig::new(redis.url(), prefix.clone(), capacity);
                    lists.push(Arc::new(RedisListsLayer::connect(config).await.expect("lists layer")));
                }
                Self {
                    layer: lists[0].clone(),
                    other: Some(lists[1].clone()),
                    pubsub: Vec::new(),
                    lists,
                    amqp: Vec::new(),
                    redis: Some(redis),
                }
            }
            Kind::Amqp => {
                let prefix = run_prefix();
                let mut amqp = Vec::new();
                for _ in 0..2 {
                    let config = AmqpConfig::new(amqp_support::broker_url(), prefix.clone(), capacity);
                    amqp.push(Arc::new(AmqpLayer::connect(config).await.expect("AMQP layer")));
                }
                Self {
                    layer: amqp[0].clone(),
                    other: Some(amqp[1].clone()),
                    pubsub: Vec::new(),
                    lists: Vec::new(),
                    amqp,
                    redis: None,
                }
            }
        }
    }

    /// What Redis holds for the run (None for the in-process layer).
    async fn probe(&self) -> Option<RedisProbe> {
        if let Some(layer) = self.pubsub.first() {
            return Some(layer.probe().await.expect("probe"));
        }
        if let Some(layer) = self.lists.first() {
            return Some(layer.probe().await.expect("probe"));
        }
        None
    }

    /// What RabbitMQ holds for the run (None for the other layers).
    async fn amqp_probe(&self) -> Option<AmqpProbe> {
        match self.amqp.first() {
            Some(layer) => Some(layer.probe().await.expect("probe")),
            None => None,
        }
    }

    async fn finish(self) {
        for layer in &self.amqp {
            layer.shutdown().await;
        }
        for layer in &self.pubsub {
            layer.shutdown().await;
        }
        for layer in &self.lists {
            layer.shutdown().await;
        }
        if let Some(redis) = self.redis {
            redis.stop().await.expect("stop redis-server");
        }
    }
}

async fn recv_within(channel: &mut ChannelReceiver, within: Duration) -> Option<Bytes> {
    tokio::time::timeout(within, channel.recv()).await.ok().flatten()
}

async fn expect_message(channel: &mut ChannelReceiver, expected: &str) {
    let got = recv_within(channel, ARRIVAL).await;
    assert_eq!(
        got.as_deref(),
        Some(expected.as_bytes()),
        "{} should have received {expected:?}",
        channel.name
    );
}

async fn expect_silence(channel: &mut ChannelReceiver) {
    let got = recv_within(channel, SILENCE).await;
    assert!(
        got.is_none(),
        "{} should have received nothing, got {got:?}",
        channel.name
    );
}

/// Waits until `done(stats)` holds, or fails with the last stats.
async fn wait_for_stats(layer: &dyn ChannelLayer, what: &str, done: impl Fn(&LayerStats) -> bool) -> LayerStats {
    let deadline = Instant::now() + ARRIVAL;
    loop {
        let stats = layer.stats();
        if done(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; stats: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn group_send_reaches_every_member_and_only_members(fx: &Fixture) {
    let layer = &fx.layer;
    let mut a = layer.new_channel().await.expect("channel a");
    let mut b = layer.new_channel().await.expect("channel b");
    let mut c = layer.new_channel().await.expect("channel c");
    layer.group_add("room", &a.name).await.expect("add a");
    layer.group_add("room", &b.name).await.expect("add b");
    layer.group_add("other", &c.name).await.expect("add c");

    layer
        .group_send("room", Bytes::from_static(b"hello room"))
        .await
        .expect("send");
    expect_message(&mut a, "hello room").await;
    expect_message(&mut b, "hello room").await;
    expect_silence(&mut c).await;

    layer
        .group_send("other", Bytes::from_static(b"hello other"))
        .await
        .expect("send");
    expect_message(&mut c, "hello other").await;
    expect_silence(&mut a).await;
    expect_silence(&mut b).await;

    let stats = layer.stats();
    assert_eq!(
        (stats.group_sends, stats.delivered, stats.dropped_full),
        (2, 3, 0),
        "{stats:?}"
    );
}

async fn discard_stops_delivery(fx: &Fixture) {
    let layer = &fx.layer;
    let mut a = layer.new_channel().await.expect("channel a");
    let mut b = layer.new_channel().await.expect("channel b");
    layer.group_add("room", &a.name).await.expect("add a");
    layer.group_add("room", &b.name).await.expect("add b");
    layer
        .group_send("room", Bytes::from_static(b"one"))
        .await
        .expect("send");
    expect_message(&mut a, "one").await;
    expect_message(&mut b, "one").await;

    layer.group_discard("room", &b.name).await.expect("discard b");
    layer
        .group_send("room", Bytes::from_static(b"two"))
        .await
        .expect("send");
    expect_message(&mut a, "two").await;
    expect_silence(&mut b).await;

    // Discarding twice, or from a group it is not in, is harmless.
    layer.group_discard("room", &b.name).await.expect("discard b again");
    layer
        .group_discard("nowhere", &b.name)
        .await
        .expect("discard from unknown group");
}

/// A receiver that never reads: its channel holds `capacity` (4) messages and the other six are
/// dropped and counted. For the Redis lists layer the receive keeps emptying the instance's
/// inbox, so the limit hit is the channel's local buffer, and the drops are counted at dispatch
/// (an inbox that is full is skipped by the sender instead: see `redis_backend.rs`).
async fn full_channel_drops_and_counts_without_blocking(fx: &Fixture) {
    let layer = &fx.layer;
    let mut slow = layer.new_channel().await.expect("channel");
    layer.group_add("room", &slow.name).await.expect("add");
    let started = Instant::now();
    for i in 0..10 {
        tokio::time::timeout(
            Duration::from_secs(1),
            layer.group_send("room", Bytes::from(format!("m{i}"))),
        )
        .await
        .expect("group_send must not block on a full channel")
        .expect("send");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "ten sends took {:?}",
        started.elapsed()
    );

    let stats = wait_for_stats(layer.as_ref(), "all ten sends accounted for", |s| {
        s.delivered + s.dropped_full == 10
    })
    .await;
    assert_eq!((stats.delivered, stats.dropped_full), (4, 6), "{stats:?}");
    assert_eq!(stats.buffered, 4, "{stats:?}");
    for i in 0..4 {
        expect_message(&mut slow, &format!("m{i}")).await;
    }
    expect_silence(&mut slow).await;
}

async fn close_channel_frees(fx: &Fixture) {
    let layer = &fx.layer;
    let keep = layer.new_channel().await.expect("channel");
    let closing = layer.new_channel().await.expect("channel");
    layer.group_add("room", &closing.name).await.expect("add");
    for i in 0..3 {
        layer
            .group_send("room", Bytes::from(format!("m{i}")))
            .await
            .expect("send");
    }
    wait_for_stats(layer.as_ref(), "three buffered messages", |s| s.buffered == 3).await;
    assert_eq!(layer.stats().channels, 2);

    layer.group_discard("room", &closing.name).await.expect("discard");
    layer.close_channel(closing).await.expect("close");
    let stats = layer.stats();
    assert_eq!((stats.channels, stats.buffered), (1, 0), "{stats:?}");

    layer.close_channel(keep).await.expect("close");
    assert_eq!(layer.stats().channels, 0);
    if let Some(probe) = fx.probe().await {
        // Nothing of the closed channels is left in Redis but bookkeeping (the lists layer's
        // sequence counter).
        assert!(probe.keys <= 1, "keys left in Redis after close: {probe:?}");
        assert_eq!(probe.subscribers, 0, "{probe:?}");
    }
    if let Some(probe) = fx.amqp_probe().await {
        // One queue per instance whatever the channels, nothing waiting in them.
        assert_eq!((probe.queues, probe.messages, probe.exchanges), (2, 0, 1), "{probe:?}");
    }

    // The layer still works after closing.
    let mut again = layer.new_channel().await.expect("channel");
    layer.group_add("room", &again.name).await.expect("add");
    layer
        .group_send("room", Bytes::from_static(b"after"))
        .await
        .expect("send");
    expect_message(&mut again, "after").await;
}

async fn stats_report_state_and_return_to_zero(fx: &Fixture) {
    let layer = &fx.layer;
    let mut channels = Vec::new();
    for _ in 0..3 {
        channels.push(layer.new_channel().await.expect("channel"));
    }
    let (a, b, c) = (
        channels[0].name.clone(),
        channels[1].name.clone(),
        channels[2].name.clone(),
    );
    layer.group_add("g1", &a).await.expect("add");
    layer.group_add("g1", &b).await.expect("add");
    layer.group_add("g2", &a).await.expect("add");
    layer.group_add("g2", &c).await.expect("add");
    // Adding twice is one membership.
    layer.group_add("g2", &c).await.expect("add again");
    let stats = layer.stats();
    assert_eq!(
        (stats.groups, stats.memberships, stats.channels),
        (2, 4, 3),
        "{stats:?}"
    );
    if let Some(probe) = fx.probe().await {
        assert_eq!(
            (probe.groups, probe.memberships),
            (2, 4),
            "membership visible in Redis: {probe:?}"
        );
        assert!(probe.used_memory > 0, "{probe:?}");
    }
    if let Some(probe) = fx.amqp_probe().await {
        assert_eq!(
            (probe.queues, probe.consumers),
            (2, 2),
            "one consumer per instance: {probe:?}"
        );
    }

    layer.group_send("g1", Bytes::from_static(b"x")).await.expect("send");
    wait_for_stats(layer.as_ref(), "two deliveries", |s| s.delivered == 2).await;

    for (group, member) in [("g1", &a), ("g1", &b), ("g2", &a), ("g2", &c)] {
        layer.group_discard(group, member).await.expect("discard");
    }
    for channel in channels {
        layer.close_channel(channel).await.expect("close");
    }
    let stats = layer.stats();
    assert_eq!(
        (stats.groups, stats.memberships, stats.channels, stats.buffered),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    if let Some(probe) = fx.probe().await {
        assert_eq!(
            (probe.groups, probe.memberships, probe.subscribers),
            (0, 0, 0),
            "{probe:?}"
        );
    }
}

async fn instances_on_one_backend_deliver_to_each_other(fx: &Fixture) {
    let (one, two) = (&fx.layer, fx.other.as_ref().expect("a second instance"));
    let mut on_one = one.new_channel().await.expect("channel");
    let mut on_two = two.new_channel().await.expect("channel");
    let mut two_elsewhere = two.new_channel().await.expect("channel");
    one.group_add("room", &on_one.name).await.expect("add");
    two.group_add("room", &on_two.name).await.expect("add");
    two.group_add("elsewhere", &two_elsewhere.name).await.expect("add");
    assert_ne!(
        on_one.name, on_two.name,
        "channel names must be unique across instances"
    );

    one.group_send("room", Bytes::from_static(b"from one"))
        .await
        .expect("send");
    expect_message(&mut on_one, "from one").await;
    expect_message(&mut on_two, "from one").await;
    two.group_send("room", Bytes::from_static(b"from two"))
        .await
        .expect("send");
    expect_message(&mut on_one, "from two").await;
    expect_message(&mut on_two, "from two").await;
    expect_silence(&mut two_elsewhere).await;

    two.group_discard("room", &on_two.name).await.expect("discard");
    one.group_send("room", Bytes::from_static(b"after discard"))
        .await
        .expect("send");
    expect_message(&mut on_one, "after discard").await;
    expect_silence(&mut on_two).await;
}

/// Runs `case` on a fresh fixture of `kind`, then shuts it down.
macro_rules! case {
    ($name:ident, $kind:expr, $capacity:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let fx = Fixture::new($kind, $capacity).await;
            super::$name(&fx).await;
            fx.finish().await;
        }
    };
}

/// The suite every backend passes, plus `extra` cases for the backends that support them.
macro_rules! suite {
    ($backend:ident, $kind:expr $(, $extra:ident)*) => {
        mod $backend {
            use super::*;
            case!(group_send_reaches_every_member_and_only_members, $kind, CAPACITY);
            case!(discard_stops_delivery, $kind, CAPACITY);
            case!(full_channel_drops_and_counts_without_blocking, $kind, 4);
            case!(close_channel_frees, $kind, CAPACITY);
            case!(stats_report_state_and_return_to_zero, $kind, CAPACITY);
            $(case!($extra, $kind, CAPACITY);)*
        }
    };
}

suite!(memory, Kind::Memory);
// Several embedded servers share one Redis: only the Redis layers have a second instance.
suite!(
    redis_pubsub,
    Kind::PubSub,
    instances_on_one_backend_deliver_to_each_other
);
suite!(redis_lists, Kind::Lists, instances_on_one_backend_deliver_to_each_other);
suite!(amqp, Kind::Amqp, instances_on_one_backend_deliver_to_each_other);
