//! The private redis-server a run starts for itself, and the Redis-only parts of the Redis
//! layers: it starts and answers, `stop` leaves no process behind, a missing binary fails fast
//! and says what to do; `redis_version` / `probe` read the real server; direct `send`, message
//! and group expiry, the lists layer's one-inbox-per-instance layout (one entry per instance per
//! `group_send`, capacity per inbox counted per receiver, payload bytes exact), and `shutdown`
//! leaving nothing of its instance behind.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use leakrun::infra::{PrivateRedis, RedisServerError};
use leakrun::layer::redis::{RedisListsConfig, RedisPubSubConfig, redis_version, run_prefix};
use leakrun::layer::{ChannelLayer, RedisListsLayer, RedisPubSubLayer};

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits until a dropped lists layer's receiver has left Redis: only `watcher`'s own receiver
/// may still be blocked in BZPOPMIN, so nothing the dead instance's inbox receives is popped.
async fn wait_for_receiver_gone(watcher: &RedisListsLayer) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let probe = watcher.probe().await.expect("probe");
        if probe.blocked_clients <= 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the dropped layer's receiver is still blocked: {probe:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The raw entries of the lists inbox that `channel` (`lists.<instance>!<n>`) belongs to.
async fn inbox_entries(url: &str, prefix: &str, channel: &str) -> Vec<Vec<u8>> {
    let instance = channel
        .strip_prefix("lists.")
        .and_then(|rest| rest.split_once('!'))
        .map(|(instance, _)| instance)
        .expect("a lists channel name");
    let client = redis::Client::open(url).expect("url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
    redis::cmd("ZRANGE")
        .arg(format!("{prefix}inbox:{instance}"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("ZRANGE inbox")
}

#[tokio::test]
async fn starts_answers_and_stops_by_pid() {
    let redis = PrivateRedis::start().await.expect("start a private redis-server");
    let pid = redis.pid();
    assert_ne!(redis.port(), 6379, "a private server never takes the shared port");
    assert!(redis.url().starts_with("redis://127.0.0.1:"), "{}", redis.url());
    assert!(process_exists(pid), "redis-server pid {pid} should be running");

    let version = redis_version(&redis.url()).await.expect("INFO server");
    assert!(
        version
            .split('.')
            .next()
            .and_then(|major| major.parse::<u32>().ok())
            .is_some(),
        "version {version:?}"
    );

    let log = redis.log_path();
    redis.stop().await.expect("stop");
    assert!(!process_exists(pid), "redis-server pid {pid} still exists after stop");
    assert!(
        log.parent().is_some_and(|dir| !dir.exists()),
        "its temporary folder is removed"
    );
}

#[tokio::test]
async fn dropping_it_kills_the_process() {
    let redis = PrivateRedis::start().await.expect("start a private redis-server");
    let pid = redis.pid();
    drop(redis);
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_exists(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!process_exists(pid), "redis-server pid {pid} outlived its PrivateRedis");
}

#[tokio::test]
async fn a_missing_binary_fails_fast_with_what_to_do() {
    let started = Instant::now();
    let error = PrivateRedis::start_with("leakrun-no-such-redis-server")
        .await
        .expect_err("a binary that does not exist cannot start");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(error, RedisServerError::NotInstalled { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("apt-get install redis-server"), "{message}");
    assert!(
        message.contains("REDIS_URL") && message.contains("backend.url"),
        "{message}"
    );
}

#[tokio::test]
async fn a_binary_that_is_not_redis_fails_within_five_seconds() {
    // `true` exits at once: the start must report that, not wait for a PING forever.
    let started = Instant::now();
    let error = PrivateRedis::start_with("true")
        .await
        .expect_err("`true` is no redis-server");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(error, RedisServerError::Exited { .. }), "{error:?}");
}

#[tokio::test]
async fn probe_counts_keys_and_subscriptions_of_the_run_only() {
    let redis = PrivateRedis::start().await.expect("start a private redis-server");
    let pubsub = RedisPubSubLayer::connect(RedisPubSubConfig::new(redis.url(), run_prefix(), 10))
        .await
        .expect("pub/sub layer");
    let lists = RedisListsLayer::connect(RedisListsConfig::new(redis.url(), run_prefix(), 10))
        .await
        .expect("lists layer");

    let a = pubsub.new_channel().await.expect("channel");
    let b = pubsub.new_channel().await.expect("channel");
    pubsub.group_add("room", &a.name).await.expect("add");
    pubsub.group_add("room", &b.name).await.expect("add");
    let probe = pubsub.probe().await.expect("probe");
    // Two channel subscriptions and one group subscription; one membership set of two.
    assert_eq!(
        (probe.subscribers, probe.keys, probe.groups, probe.memberships),
        (3, 1, 1, 2),
        "{probe:?}"
    );
    assert!(probe.used_memory > 0 && probe.connected_clients >= 4, "{probe:?}");

    // The other run's prefix sees none of that; its receiver is blocked in BZPOPMIN.
    let l = lists.new_channel().await.expect("channel");
    lists.group_add("room", &l.name).await.expect("add");
    lists.group_send("room", Bytes::from_static(b"x")).await.expect("send");
    let probe = lists.probe().await.expect("probe");
    assert_eq!(
        (probe.subscribers, probe.groups, probe.memberships),
        (0, 1, 1),
        "{probe:?}"
    );
    // Between two BZPOPMINs the receiver is briefly not blocked: look again for a while.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut blocked = probe.blocked_clients;
    while blocked == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        blocked = lists.probe().await.expect("probe").blocked_clients;
    }
    assert!(blocked >= 1, "the lists receiver never showed as blocked in BZPOPMIN");

    pubsub.shutdown().await;
    lists.shutdown().await;
    assert!(
        pubsub.group_send("room", Bytes::from_static(b"late")).await.is_err(),
        "closed layer must refuse"
    );
    redis.stop().await.expect("stop");
}

#[tokio::test]
async fn lists_members_older_than_group_expiry_are_ignored_and_removed() {
    let redis = PrivateRedis::start().await.expect("start a private redis-server");
    let mut config = RedisListsConfig::new(redis.url(), run_prefix(), 10);
    config.group_expiry = Duration::from_secs(1);
    let lists = RedisListsLayer::connect(config).await.expect("lists layer");
    let mut old = lists.new_channel().await.expect("channel");
    lists.group_add("room", &old.name).await.expect("add");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut fresh = lists.new_channel().await.expect("channel");
    lists.group_add("room", &fresh.name).await.expect("add");

    lists.group_send("room", Bytes::from_static(b"hi")).await.expect("send");
    let got = tokio::time::timeout(Duration::from_secs(3), fresh.recv())
        .await
        .ok()
        .flatten();
    assert_eq!(got.as_deref(), Some(&b"hi"[..]));
    let stale = tokio::time::timeout(Duration::from_millis(300), old.recv())
        .await
        .ok()
        .flatten();
    assert!(stale.is_none(), "an expired member got {stale:?}");
    let probe = lists.probe().await.expect("probe");
    assert_eq!(
        probe.memberships, 1,
        "the expired member is removed from Redis: {probe:?}"
    );

    lists.shutdown().await;
    redis.stop().await.expect("stop");
}

#[tokio::test]
async fn direct_send_reaches_one_channel_on_any_instance() {
    let redis = PrivateRedis::start().await.expect("start a private redis-server");
    let prefix = run_prefix();
    let pubsub_one = RedisPubSubLayer::connect(RedisPubSubConfig::new(redis.url(), prefix.clone(), 10))
        .await
        .expect("pub/sub layer");
    let pubsub_two = RedisPubSubLayer::connect(RedisPubSubConfig::new(redis.url(), prefix, 10))
        .await
        .expect("pub/sub layer");
    let prefix = run_prefix();
    let lists_one = RedisListsLayer::connect(RedisListsConfig::new(redis.url(), prefix.clone(), 2))
        .await
        .expect("lists layer");
    let lists_two = RedisListsLayer::connect(RedisListsConfig::new(redis.url(), prefix, 2))
        .await
        .expect("lists layer");
    assert_eq!(
        pubsub_one.redis_version().await.expect("version"),
        redis_version(&redis.url()).await.expect("version")
    );

    let mut target = pubsub_two.new_channel().await.expect("channel");
    let mut bystander = pubsub_two.new_channel().await.expect("channel");
    pubsub_one
        .send(&target.name, Bytes::from_static(b"direct"))
        .await
        .expect("send");
    let got = tokio::time::timeout(Duration::from_secs(3), target.recv())
        .await
        .ok()
        .flatten();
    assert_eq!(got.as_deref(), Some(&b"direct"[..]));
    let other = tokio::time::timeout(Duration::from_millis(300), bystander.recv())
        .await
        .ok()
        .flatten();
    assert!(other.is_none(), "{other:?}");

    // The lists layer checks capacity on the instance's inbox: an instance whose receiver is
    // gone leaves its inbox full after two sends, and the third is skipped and counted.
    let gone = lists_two.new_channel().await.expect("channel");
    lists_two.shutdown().await;
    for i in 0..3 {
        lists_one
            .send(&gone.name, Bytes::from(format!("m{i}")))
            .await
            .expect("send");
    }
    assert_eq!(lists_one.stats().dropped_full, 1, "{:?}", lists_one.stats());
    let mut live = lists_one.new_channel().await.expect("channel");
    lists_one
        .send(&live.name, Bytes::from_static(b"direct"))
        .await
        .expect("send");
    let got = tokio::time::timeout(Duration::from_secs(3), live.recv())
        .await
        .ok()
        .flatten();
    assert_eq!(got.as_deref(), Some(&b"direct"[..]));

    for layer in [&pubsub_one, &pubsub_two] {
        layer.shutdown().await;
    }
    lists_one.shutdown().await;
    redis.stop().await.expect("stop");
}

#[tokio::test]
async fn lists_messages_nobody_receives_expire() {
    let redis = PrivateRedis::start().await.expect("start a private redis-server");
    let prefix = run_prefix();
    let mut config = RedisListsConfig::new(redis.url(), prefix.clone(), 10);
    config.expiry = Duration::from_secs(1);
    let sender = RedisListsLayer::connect(config.clone()).await.expect("lists layer");
    let gone = RedisListsLayer::connect(config).await.expect("lists layer");
    for _ in 0..2 {
        let channel = gone.new_channel().await.expect("channel");
        gone.group_add("room", &channel.name).await.expect("add");
    }
    // Its server dies without cleaning up: the memberships stay, nobody receives.
    drop(gone);
    wait_for_receiver_gone(&sender).await;

    sender
        .group_send("room", Bytes::from_static(b"into the void"))
        .await
        .expect("send");
    let probe = sender.probe().await.expect("probe");
    // The group and the dead instance's ONE inbox (both members' message in one entry); the
    // run-wide sequence counter is the layer's bookkeeping and not counted.
    assert_eq!(probe.keys, 2, "{probe:?}");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let probe = sender.probe().await.expect("probe");
    assert_eq!(
        probe.keys, 1,
        "only the group is left once the inbox expired: {probe:?}"
    );

    sender.shutdown().await;
    redis.stop().await.expect("stop");
}

#[tokio::test]
async fn shutdown_leaves_nothing_of_its_instance_in_redis() {
    let redis = PrivateRedis::start().await.expect("start a private redis-server");
    let prefix = run_prefix();
    let watcher = RedisListsLayer::connect(RedisListsConfig::new(redis.url(), prefix.clone(), 10))
        .await
        .expect("lists layer");
    let lists = RedisListsLayer::connect(RedisListsConfig::new(redis.url(), prefix.clone(), 10))
        .await
        .expect("lists layer");
    let pubsub = RedisPubSubLayer::connect(RedisPubSubConfig::new(redis.url(), prefix, 10))
        .await
        .expect("pub/sub layer");
    let mut left_open = Vec::new();
    for layer in [&lists as &dyn ChannelLayer, &pubsub] {
        // Channels left open and in their groups, as a run cut short leaves them.
        let channel = layer.new_channel().await.expect("channel");
        layer.group_add("room", &channel.name).await.expect("add");
        layer.group_add("lobby", &channel.name).await.expect("add");
        left_open.push(channel);
    }
    let probe = watcher.probe().await.expect("probe");
    assert!(probe.memberships == 2 && probe.subscribers == 3, "{probe:?}");

    lists.shutdown().await;
    pubsub.shutdown().await;
    let probe = watcher.probe().await.expect("probe");
    assert_eq!(
        (probe.keys, probe.memberships, probe.subscribers),
        (0, 0, 0),
        "{probe:?}"
    );

    watcher.shutdown().await;
    redis.stop().await.expect("stop");
}

#[tokio::test]
async fn lists_group_send_stores_one_entry_per_instance_and_counts_full_per_receiver() {
    let redis = PrivateRedis::start().await.expect("start a private redis-server");
    let prefix = run_prefix();
    let config = RedisListsConfig::new(redis.url(), prefix.clone(), 2);
    let sender = RedisListsLayer::connect(config.clone()).await.expect("lists layer");
    let gone = RedisListsLayer::connect(config).await.expect("lists layer");
    let mut locals = Vec::new();
    let mut names = Vec::new();
    for group in ["room", "room", "elsewhere"] {
        let channel = gone.new_channel().await.expect("channel");
        gone.group_add(group, &channel.name).await.expect("add");
        if group == "room" {
            let (_, local) = channel.name.split_once('!').expect("process!local");
            locals.push(local.to_string());
        }
        names.push(channel.name.clone());
    }
    // Nobody receives for that instance any more, so its inbox fills up.
    drop(gone);
    wait_for_receiver_gone(&sender).await;

    for i in 0..3 {
        sender
            .group_send("room", Bytes::from(format!("m{i}")))
            .await
            .expect("send");
    }
    // Two sends fit the inbox (capacity 2, whatever the number of targets); the third is
    // skipped for both receivers of the instance and counted once per receiver.
    assert_eq!(sender.stats().dropped_full, 2, "{:?}", sender.stats());
    let entries = inbox_entries(&redis.url(), &prefix, &names[0]).await;
    assert_eq!(entries.len(), 2, "one entry per group_send: {entries:?}");
    locals.sort();
    for (i, entry) in entries.iter().enumerate() {
        let text = String::from_utf8(entry.clone()).expect("ASCII entry");
        let mut parts = text.splitn(3, ':');
        let (seq, targets, payload) = (parts.next(), parts.next(), parts.next());
        assert!(seq.is_some_and(|s| s.parse::<u64>().is_ok()), "sequence of {text:?}");
        let mut targets: Vec<String> = targets.expect("targets").split(',').map(str::to_string).collect();
        targets.sort();
        assert_eq!(targets, locals, "the entry names both room members: {text:?}");
        assert_eq!(payload, Some(format!("m{i}").as_str()), "{text:?}");
    }

    sender.shutdown().await;
    redis.stop().await.expect("stop");
}

#[tokio::test]
async fn lists_payload_bytes_arrive_exact_through_group_send_and_send() {
    let redis = PrivateRedis::start().await.expect("start a private redis-server");
    let prefix = run_prefix();
    let sender = RedisListsLayer::connect(RedisListsConfig::new(redis.url(), prefix.clone(), 10))
        .await
        .expect("lists layer");
    let receiver = RedisListsLayer::connect(RedisListsConfig::new(redis.url(), prefix, 10))
        .await
        .expect("lists layer");
    let mut a = receiver.new_channel().await.expect("channel");
    let mut b = receiver.new_channel().await.expect("channel");
    receiver.group_add("room", &a.name).await.expect("add");
    receiver.group_add("room", &b.name).await.expect("add");
    // Colons, commas, a zero byte and bytes that are not UTF-8: the encoding's separators and
    // what a lossy conversion would mangle.
    let payload = Bytes::from_static(b"1:0,1:\x00\xff\xfe,:end");

    sender.group_send("room", payload.clone()).await.expect("group_send");
    for channel in [&mut a, &mut b] {
        let got = tokio::time::timeout(Duration::from_secs(3), channel.recv())
            .await
            .ok()
            .flatten();
        assert_eq!(got.as_ref(), Some(&payload), "{}", channel.name);
    }
    sender.send(&b.name, payload.clone()).await.expect("send");
    let got = tokio::time::timeout(Duration::from_secs(3), b.recv())
        .await
        .ok()
        .flatten();
    assert_eq!(got.as_ref(), Some(&payload));
    let other = tokio::time::timeout(Duration::from_millis(300), a.recv())
        .await
        .ok()
        .flatten();
    assert!(other.is_none(), "a direct send reached another channel: {other:?}");
    assert_eq!(receiver.stats().delivered, 3, "{:?}", receiver.stats());
    assert!(
        sender.send(&"not-a-lists-channel".into(), payload).await.is_err(),
        "a name that is not lists.<instance>!<n> is refused"
    );

    sender.shutdown().await;
    receiver.shutdown().await;
    redis.stop().await.expect("stop");
}
