//! The pub/sub Redis layer: one Redis pub/sub channel per group and per connection channel, and
//! ONE shared subscriber connection per layer instance (= per embedded server) that
//! demultiplexes what Redis pushes into the local channels' bounded buffers.
//!
//! `group_send` publishes once to the group's Redis channel; every instance with a local member
//! in that group is subscribed to it and fans the message out to its local members with
//! `try_send` (a full or closed buffer drops the message and counts it in `dropped_full`; the
//! sender never waits). Membership is also written to a Redis set per group, so what Redis holds
//! can be probed and several instances on one Redis see one another's groups.
//!
//! Queues: the local buffers are tokio channels bounded by `capacity`. The only other queue is
//! the `redis` crate's own per-connection hand-off from its socket reader to our demultiplexer,
//! which the demultiplexer drains without ever waiting on anything else.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use rustc_hash::FxHashMap;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;

use super::{OP_TIMEOUT, RedisLayerError, RedisProbe, command_error, connect, open_client, query, redact, unique_id};
use crate::layer::{ChannelLayer, ChannelName, ChannelReceiver, LayerCounters, LayerError, LayerStats};

/// How to build a [`RedisPubSubLayer`].
#[derive(Debug, Clone)]
pub struct RedisPubSubConfig {
    /// `redis://host:port/db` of the Redis to use.
    pub url: String,
    /// Prefix of every key and Redis channel, unique per run (see [`crate::naming::run_prefix`]).
    pub prefix: String,
    /// Most messages a channel's local buffer holds.
    pub capacity: usize,
}

impl RedisPubSubConfig {
    /// A configuration for `url`, with keys under `prefix` and channels of `capacity` messages.
    pub fn new(url: impl Into<String>, prefix: impl Into<String>, capacity: usize) -> Self {
        Self {
            url: url.into(),
            prefix: prefix.into(),
            capacity,
        }
    }
}

/// A channel layer on Redis pub/sub. One instance per embedded server; instances sharing a Redis
/// and a prefix deliver to one another's members.
///
/// Delivery follows each instance's local membership, so `group_add` must be called on the
/// instance that created the channel (as the embedded server always does). `stats()` counts
/// this instance only; [`probe`](Self::probe) reads what Redis holds for the whole run.
pub struct RedisPubSubLayer {
    shared: Arc<Shared>,
    conn: Mutex<Option<MultiplexedConnection>>,
    sink: PubSubSink,
    /// Serialises membership changes with the SUBSCRIBE/UNSUBSCRIBE they cause.
    membership: tokio::sync::Mutex<()>,
    instance: String,
    next_channel: AtomicU64,
    capacity: usize,
    demux: Mutex<Option<JoinHandle<()>>>,
}

/// What the layer and its demultiplexer share.
struct Shared {
    group_prefix: String,
    channel_prefix: String,
    members_prefix: String,
    prefix: String,
    local: Mutex<Local>,
    counters: LayerCounters,
    subscriber_alive: AtomicBool,
}

#[derive(Default)]
struct Local {
    channels: FxHashMap<ChannelName, mpsc::Sender<Bytes>>,
    /// Groups with at least one member on this instance, and those members.
    groups: crate::layer::LocalGroups,
}

impl Shared {
    fn local(&self) -> MutexGuard<'_, Local> {
        // Every critical section leaves the maps consistent, so a poisoned lock is still usable.
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deliver(&self, tx: &mpsc::Sender<Bytes>, message: Bytes) {
        match tx.try_send(message) {
            Ok(()) => LayerCounters::bump(&self.counters.delivered),
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => LayerCounters::bump(&self.counters.dropped_full),
        }
    }

    fn dispatch(&self, redis_channel: &str, payload: &[u8]) {
        let local = self.local();
        if let Some(group) = redis_channel.strip_prefix(&self.group_prefix) {
            let Some(members) = local.groups.get(group) else { return };
            let message = Bytes::copy_from_slice(payload);
            for member in members {
                // A member that was closed without leaving the group gets nothing, as in the
                // in-process layer.
                if let Some(tx) = local.channels.get(member) {
                    self.deliver(tx, message.clone());
                }
            }
        } else if let Some(channel) = redis_channel.strip_prefix(&self.channel_prefix)
            && let Some(tx) = local.channels.get(channel)
        {
            self.deliver(tx, Bytes::copy_from_slice(payload));
        }
    }
}

/// Reads the shared subscriber connection until it closes or the layer stops it.
async fn demultiplex(shared: Arc<Shared>, mut stream: PubSubStream) {
    while let Some(message) = stream.next().await {
        shared.dispatch(message.get_channel_name(), message.get_payload_bytes());
    }
    shared.subscriber_alive.store(false, Ordering::Relaxed);
}

impl RedisPubSubLayer {
    /// Connects the command and subscriber connections and starts the demultiplexer.
    pub async fn connect(config: RedisPubSubConfig) -> Result<Self, RedisLayerError> {
        let client = open_client(&config.url)?;
        let conn = connect(&client, &config.url, "commands", OP_TIMEOUT).await?;
        let pubsub = match tokio::time::timeout(OP_TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(source)) => {
                return Err(RedisLayerError::Connect {
                    url: redact(&config.url),
                    purpose: "subscriber",
                    source,
                });
            }
            Err(_) => {
                return Err(RedisLayerError::Timeout {
                    op: format!("subscriber connection to {}", redact(&config.url)),
                });
            }
        };
        let (sink, stream) = pubsub.split();
        let prefix = config.prefix;
        let shared = Arc::new(Shared {
            group_prefix: format!("{prefix}group:"),
            channel_prefix: format!("{prefix}chan:"),
            members_prefix: format!("{prefix}members:"),
            prefix,
            local: Mutex::new(Local::default()),
            counters: LayerCounters::default(),
            subscriber_alive: AtomicBool::new(true),
        });
        let demux = tokio::spawn(demultiplex(shared.clone(), stream));
        Ok(Self {
            shared,
            conn: Mutex::new(Some(conn)),
            sink,
            membership: tokio::sync::Mutex::new(()),
            instance: unique_id(),
            next_channel: AtomicU64::new(0),
            capacity: config.capacity.max(1),
            demux: Mutex::new(Some(demux)),
        })
    }

    /// The prefix of every key and Redis channel this layer uses.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// Sends `message` to one channel (of any instance), as the channels `send` does.
    pub async fn send(&self, channel: &ChannelName, message: Bytes) -> Result<(), LayerError> {
        let mut conn = self.conn()?;
        let target = format!("{}{channel}", self.shared.channel_prefix);
        let _: u64 = query(
            &mut conn,
            "PUBLISH (send)",
            redis::cmd("PUBLISH").arg(target).arg(&message[..]),
        )
        .await?;
        Ok(())
    }

    /// What Redis holds for this run: memory, keys, membership sets and subscriptions.
    pub async fn probe(&self) -> Result<RedisProbe, RedisLayerError> {
        let mut conn = self.conn()?;
        super::probe_common(&mut conn, &self.shared.prefix, &self.shared.members_prefix, "SCARD").await
    }

    /// The Redis server's version (INFO server).
    pub async fn redis_version(&self) -> Result<String, RedisLayerError> {
        super::version_on(&mut self.conn()?).await
    }

    /// Stops the demultiplexer, removes the memberships made through this instance from Redis
    /// (best effort, bounded by the operation timeout) and releases both connections; later
    /// operations fail.
    pub async fn shutdown(&self) {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut conn) = conn {
            let mut pipe = redis::pipe();
            for (group, members) in &self.shared.local().groups {
                let key = format!("{}{group}", self.shared.members_prefix);
                for member in members {
                    pipe.cmd("SREM").arg(&key).arg(&**member).ignore();
                }
            }
            let _ = tokio::time::timeout(OP_TIMEOUT, pipe.query_async::<()>(&mut conn)).await;
        }
        let demux = self.demux.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(demux) = demux {
            demux.abort();
            let _ = demux.await;
        }
        self.shared.subscriber_alive.store(false, Ordering::Relaxed);
    }

    fn conn(&self) -> Result<MultiplexedConnection, RedisLayerError> {
        self.conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| RedisLayerError::Closed("shut down".into()))
    }

    fn check_subscriber(&self) -> Result<(), RedisLayerError> {
        if self.shared.subscriber_alive.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(RedisLayerError::Closed("the shared subscriber connection ended".into()))
        }
    }

    async fn subscription(&self, op: &str, subscribe: bool, redis_channel: String) -> Result<(), RedisLayerError> {
        self.check_subscriber()?;
        let mut sink = self.sink.clone();
        let result = if subscribe {
            tokio::time::timeout(OP_TIMEOUT, sink.subscribe(&redis_channel)).await
        } else {
            tokio::time::timeout(OP_TIMEOUT, sink.unsubscribe(&redis_channel)).await
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(command_error(op, source)),
            Err(_) => Err(RedisLayerError::Timeout { op: op.to_string() }),
        }
    }
}

impl Drop for RedisPubSubLayer {
    fn drop(&mut self) {
        if let Some(demux) = self.demux.lock().unwrap_or_else(|p| p.into_inner()).take() {
            demux.abort();
        }
    }
}

redis_server_layer!(RedisPubSubLayer);

#[async_trait]
impl ChannelLayer for RedisPubSubLayer {
    async fn new_channel(&self) -> Result<ChannelReceiver, LayerError> {
        let n = self.next_channel.fetch_add(1, Ordering::Relaxed);
        let name: ChannelName = format!("pubsub.{}!{n}", self.instance).into();
        let (tx, rx) = mpsc::channel(self.capacity);
        self.shared.local().channels.insert(name.clone(), tx);
        let redis_channel = format!("{}{name}", self.shared.channel_prefix);
        if let Err(error) = self.subscription("SUBSCRIBE (new channel)", true, redis_channel).await {
            self.shared.local().channels.remove(&name);
            return Err(error.into());
        }
        Ok(ChannelReceiver::new(name, rx))
    }

    async fn group_add(&self, group: &str, channel: &ChannelName) -> Result<(), LayerError> {
        let _serial = self.membership.lock().await;
        let mut conn = self.conn()?;
        let key = format!("{}{group}", self.shared.members_prefix);
        let _: u64 = query(
            &mut conn,
            "SADD (group_add)",
            redis::cmd("SADD").arg(&key).arg(&**channel),
        )
        .await?;
        let first_here = crate::layer::join(&mut self.shared.local().groups, group, channel);
        if first_here {
            let redis_channel = format!("{}{group}", self.shared.group_prefix);
            if let Err(error) = self.subscription("SUBSCRIBE (group_add)", true, redis_channel).await {
                self.shared.local().groups.remove(group);
                let _: Result<u64, _> = query(
                    &mut conn,
                    "SREM (group_add undo)",
                    redis::cmd("SREM").arg(&key).arg(&**channel),
                )
                .await;
                return Err(error.into());
            }
        }
        Ok(())
    }

    async fn group_discard(&self, group: &str, channel: &ChannelName) -> Result<(), LayerError> {
        let _serial = self.membership.lock().await;
        let mut conn = self.conn()?;
        let key = format!("{}{group}", self.shared.members_prefix);
        let _: u64 = query(
            &mut conn,
            "SREM (group_discard)",
            redis::cmd("SREM").arg(&key).arg(&**channel),
        )
        .await?;
        let last_here = crate::layer::leave(&mut self.shared.local().groups, group, channel);
        if last_here {
            let redis_channel = format!("{}{group}", self.shared.group_prefix);
            self.subscription("UNSUBSCRIBE (group_discard)", false, redis_channel)
                .await?;
        }
        Ok(())
    }

    async fn group_send(&self, group: &str, message: Bytes) -> Result<(), LayerError> {
        LayerCounters::bump(&self.shared.counters.group_sends);
        let mut conn = self.conn()?;
        let target = format!("{}{group}", self.shared.group_prefix);
        let _: u64 = query(
            &mut conn,
            "PUBLISH (group_send)",
            redis::cmd("PUBLISH").arg(target).arg(&message[..]),
        )
        .await?;
        Ok(())
    }

    async fn close_channel(&self, receiver: ChannelReceiver) -> Result<(), LayerError> {
        self.shared.local().channels.remove(&receiver.name);
        let redis_channel = format!("{}{}", self.shared.channel_prefix, receiver.name);
        drop(receiver);
        self.subscription("UNSUBSCRIBE (close_channel)", false, redis_channel)
            .await?;
        Ok(())
    }

    fn stats(&self) -> LayerStats {
        let local = self.shared.local();
        crate::layer::local_stats(&local.groups, local.channels.values(), &self.shared.counters)
    }
}
