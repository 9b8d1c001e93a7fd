//! The channels_redis-style core layer: what most Django Channels deployments run, and where
//! django/channels#1683 (messages lost by *other* clients when one client disconnects) lives.
//!
//! Layout in Redis, every key under the run's prefix, as channels_redis (v3.3+ / v4) lays out
//! process-specific channels:
//! - `group:<name>` — a sorted set of channel names scored by join time. Members older than
//!   `group_expiry` are removed by `group_send` before it fans out, as channels_redis does.
//! - `inbox:<instance>` — ONE sorted set per layer instance (channels_redis: one key per
//!   process) holding every message for the instance's channels, scored by a run-wide sequence
//!   so order and uniqueness hold, expiring `expiry` after the last send to it. Channels are
//!   named `lists.<instance>!<n>` (channels_redis's `<process>!<local>`); the inbox is found
//!   from the part before `!`.
//! - `seq` — the sequence, expiring with the last message stored (so it outlives every inbox
//!   and order holds).
//!
//! An inbox entry is `<seq>:<n1>,<n2>,...:<payload>`: the decimal sequence, the decimal local
//! parts of its target channels separated by commas, then the payload bytes unchanged. Sequence
//! and targets hold only digits and commas, so the first two colons end them and everything
//! after the second colon is the payload, colons and all.
//!
//! `group_send` is one round trip: a Lua script expires old members, reads the group, groups
//! the members by instance and stores ONE entry per instance inbox listing that instance's
//! targets — channels_redis's per-process message with its `__asgi_channel__` list. An inbox
//! that already holds `capacity` entries is skipped, never waited on, and every target in it
//! counts as `dropped_full`. `send` stores a one-target entry the same way.
//!
//! Receiving: ONE shared receive per layer instance, a task that blocks in BZPOPMIN on the
//! instance's inbox on a connection of its own, takes up to a batch more with ZPOPMIN, and
//! hands each entry's payload to the local buffer (a bounded tokio channel) of every listed
//! channel still open: full or closed counts as `dropped_full`, a channel closed since the
//! send is skipped. So one popped entry is the message of every co-located receiver it names —
//! which is why the issue-1683 fault (see `close_channel`) costs all of them the same messages
//! at once, the reporter's "several clients fail at the same moment, even in other groups".

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;

use super::{OP_TIMEOUT, RedisLayerError, RedisProbe, command_error, connect, now_secs, open_client, query, unique_id};
use crate::layer::{ChannelLayer, ChannelName, ChannelReceiver, LayerCounters, LayerError, LayerStats};

/// channels_redis's default message expiry.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(60);

/// channels_redis's default group expiry.
pub const DEFAULT_GROUP_EXPIRY: Duration = Duration::from_secs(86_400);

/// How long one BZPOPMIN blocks; also bounds how late the receiver notices a stop.
const BLOCK: Duration = Duration::from_secs(1);

/// Most inbox entries taken in one turn: the BZPOPMIN one plus up to `DRAIN - 1` by ZPOPMIN.
const DRAIN: usize = 64;

/// Pause after a failed receive before the next try, so a dead Redis is not hammered.
const RECEIVE_RETRY: Duration = Duration::from_millis(100);

/// What every channel name of this layer starts with, before the instance.
const CHANNEL_PREFIX: &str = "lists.";

/// Expire stale members, then store ONE entry per instance inbox under `capacity`, listing that
/// instance's target channels (one round trip). Members that are not `lists.<instance>!<n>`
/// are ignored. Returns {receivers given the message, receivers skipped because full}.
/// KEYS: group, seq. ARGV: now, group_expiry, capacity, expiry, inbox key prefix, payload.
const GROUP_SEND: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local capacity = tonumber(ARGV[3])
local instances, targets = {}, {}
for _, channel in ipairs(members) do
  local instance, n = string.match(channel, '^lists%.([^!]+)!(%d+)$')
  if instance then
    if targets[instance] == nil then
      targets[instance] = {}
      table.insert(instances, instance)
    end
    table.insert(targets[instance], n)
  end
end
local sent, full = 0, 0
for _, instance in ipairs(instances) do
  local key = ARGV[5] .. instance
  local locals = targets[instance]
  if redis.call('ZCARD', key) >= capacity then
    full = full + #locals
  else
    local seq = redis.call('INCR', KEYS[2])
    redis.call('ZADD', key, seq, seq .. ':' .. table.concat(locals, ',') .. ':' .. ARGV[6])
    redis.call('EXPIRE', key, ARGV[4])
    sent = sent + #locals
  end
end
if sent > 0 then
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return {sent, full}
";

/// One channel's send: a one-target entry in its instance's inbox.
/// KEYS: inbox, seq. ARGV: capacity, expiry, local part, payload. 1 sent, 0 full.
const SEND: &str = r"
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
local seq = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], seq, seq .. ':' .. ARGV[3] .. ':' .. ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
";

/// How to build a [`RedisListsLayer`].
#[derive(Debug, Clone)]
pub struct RedisListsConfig {
    /// `redis://host:port/db` of the Redis to use.
    pub url: String,
    /// Prefix of every key, unique per run (see [`crate::naming::run_prefix`]).
    pub prefix: String,
    /// Most messages an instance's inbox holds in Redis (one entry per `group_send`, whatever
    /// the number of its targets there), and most a channel's local buffer holds.
    pub capacity: usize,
    /// How long an instance's inbox lives after the last send to it.
    pub expiry: Duration,
    /// How long a group membership lives after its `group_add`.
    pub group_expiry: Duration,
    /// The issue-1683 fault: the shared receive belongs to a connection and is cancelled, with
    /// the entry Redis already popped (the message of every co-located receiver it names), when
    /// that connection's channel closes.
    pub cancel_shared_receive: bool,
}

impl RedisListsConfig {
    /// channels_redis defaults (expiry 60 s, group expiry 1 day), fault off.
    pub fn new(url: impl Into<String>, prefix: impl Into<String>, capacity: usize) -> Self {
        Self {
            url: url.into(),
            prefix: prefix.into(),
            capacity,
            expiry: DEFAULT_EXPIRY,
            group_expiry: DEFAULT_GROUP_EXPIRY,
            cancel_shared_receive: false,
        }
    }

    /// The same with the issue-1683 fault switched `on` or off.
    pub fn with_cancel_shared_receive(mut self, on: bool) -> Self {
        self.cancel_shared_receive = on;
        self
    }
}

/// The channels_redis core layer on a real Redis. One instance per embedded server; instances
/// sharing a Redis and a prefix deliver to one another's members. `stats()` counts this
/// instance only; [`probe`](Self::probe) reads what Redis holds for the whole run.
pub struct RedisListsLayer {
    shared: Arc<Shared>,
    conn: Mutex<Option<MultiplexedConnection>>,
    /// The receiver's own connection (BZPOPMIN blocks it), handed to each receive loop.
    receive_conn: Mutex<Option<MultiplexedConnection>>,
    receive: Mutex<Receive>,
    group_send_script: redis::Script,
    send_script: redis::Script,
    instance: String,
    next_channel: AtomicU64,
    capacity: usize,
    expiry_secs: u64,
    group_expiry_secs: u64,
    cancel_shared_receive: bool,
}

/// The running receive loop and, with the fault on, the channel it belongs to.
#[derive(Default)]
struct Receive {
    task: Option<JoinHandle<()>>,
    owner: Option<ChannelName>,
}

struct Shared {
    prefix: String,
    group_prefix: String,
    /// `<prefix>inbox:`, followed by an instance id.
    inbox_prefix: String,
    /// This instance's inbox.
    inbox_key: String,
    /// `lists.<instance>!`: this instance's channel names without the local part.
    channel_base: String,
    seq_key: String,
    local: Mutex<Local>,
    counters: LayerCounters,
    stop: AtomicBool,
    receive_errors: AtomicU64,
    cancelled_receives: AtomicU64,
}

#[derive(Default)]
struct Local {
    /// Open channels: buffer and creation number (newest is largest).
    channels: FxHashMap<ChannelName, (mpsc::Sender<Bytes>, u64)>,
    /// Memberships made through this instance.
    groups: crate::layer::LocalGroups,
}

impl Shared {
    fn local(&self) -> MutexGuard<'_, Local> {
        // Every critical section leaves the maps consistent, so a poisoned lock is still usable.
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands each popped inbox entry's payload to the local buffer of every target it lists.
    fn dispatch(&self, entries: Vec<Vec<u8>>) {
        let local = self.local();
        let mut name = String::with_capacity(self.channel_base.len() + 20);
        for entry in entries {
            let Some((targets, payload)) = parse_entry(Bytes::from(entry)) else {
                // Not written by this layer's scripts: nothing can be delivered from it.
                self.receive_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            for target in targets.split(|&b| b == b',') {
                name.clear();
                name.push_str(&self.channel_base);
                // Targets are ASCII digits (parse_entry checked).
                name.extend(target.iter().map(|&b| char::from(b)));
                // A channel closed since the send gets nothing, as in the in-process layer.
                let Some((tx, _)) = local.channels.get(name.as_str()) else {
                    continue;
                };
                match tx.try_send(payload.clone()) {
                    Ok(()) => LayerCounters::bump(&self.counters.delivered),
                    Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                        LayerCounters::bump(&self.counters.dropped_full)
                    }
                }
            }
        }
    }
}

/// Splits an inbox entry `<seq>:<n1>,<n2>,...:<payload>` into its target list (`n1,n2,...`)
/// and its payload, without copying; `None` when it is not in that form.
fn parse_entry(entry: Bytes) -> Option<(Bytes, Bytes)> {
    let first = entry.iter().position(|&b| b == b':')?;
    let second = first + 1 + entry[first + 1..].iter().position(|&b| b == b':')?;
    let (seq, targets) = (&entry[..first], &entry[first + 1..second]);
    let digits = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_digit);
    if !digits(seq) || !targets.split(|&b| b == b',').all(digits) {
        return None;
    }
    Some((entry.slice(first + 1..second), entry.slice(second + 1..)))
}

/// The instance id and the local part of a channel name `lists.<instance>!<n>`.
fn split_channel(channel: &str) -> Option<(&str, &str)> {
    let (process, local) = channel.strip_prefix(CHANNEL_PREFIX)?.split_once('!')?;
    let valid = !process.is_empty() && !local.is_empty() && local.bytes().all(|b| b.is_ascii_digit());
    valid.then_some((process, local))
}

/// Appends the members of a ZPOPMIN-with-count reply: member, score, member, score, ... in
/// RESP2, or [member, score] pairs in RESP3.
fn popped_members(reply: redis::Value, members: &mut Vec<Vec<u8>>) {
    use redis::Value;
    let Value::Array(items) = reply else { return };
    if items.iter().all(|item| matches!(item, Value::Array(_))) {
        for item in items {
            if let Value::Array(pair) = item
                && let Some(Value::BulkString(member)) = pair.into_iter().next()
            {
                members.push(member);
            }
        }
    } else {
        for item in items.into_iter().step_by(2) {
            if let Value::BulkString(member) = item {
                members.push(member);
            }
        }
    }
}

/// A BZPOPMIN reply: key, member, score.
type Popped = (String, Vec<u8>, redis::Value);

/// The shared receive: BZPOPMIN on the instance's inbox, then hand on what it popped.
///
/// Runs until the layer stops it (checked at least every `BLOCK`) or aborts it.
async fn receive_loop(shared: Arc<Shared>, mut conn: MultiplexedConnection) {
    while !shared.stop.load(Ordering::Relaxed) {
        let popped: redis::RedisResult<Option<Popped>> = redis::cmd("BZPOPMIN")
            .arg(&shared.inbox_key)
            .arg(BLOCK.as_secs_f64())
            .query_async(&mut conn)
            .await;
        let first = match popped {
            Ok(Some((_key, entry, _score))) => entry,
            Ok(None) => continue,
            Err(_) => {
                shared.receive_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(RECEIVE_RETRY).await;
                continue;
            }
        };
        // Redis has popped `first`, the message of every local channel it lists: from here
        // until `dispatch` it exists only in this task. Like channels_redis, which awaits again
        // before the popped message reaches the receive buffers, we await once more here — for
        // the rest of the inbox's backlog.
        let mut entries = vec![first];
        let rest: redis::RedisResult<redis::Value> = redis::cmd("ZPOPMIN")
            .arg(&shared.inbox_key)
            .arg(DRAIN - 1)
            .query_async(&mut conn)
            .await;
        match rest {
            Ok(reply) => popped_members(reply, &mut entries),
            Err(_) => {
                shared.receive_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        shared.dispatch(entries);
    }
}

impl RedisListsLayer {
    /// Connects to Redis and, with the fault off, starts the shared receive.
    pub async fn connect(config: RedisListsConfig) -> Result<Self, RedisLayerError> {
        let client = open_client(&config.url)?;
        let conn = connect(&client, &config.url, "commands", OP_TIMEOUT).await?;
        // Replies to BZPOPMIN come up to BLOCK late by design.
        let receive_conn = connect(&client, &config.url, "receiver", BLOCK + OP_TIMEOUT).await?;
        let prefix = config.prefix;
        let instance = unique_id();
        let shared = Arc::new(Shared {
            group_prefix: format!("{prefix}group:"),
            inbox_prefix: format!("{prefix}inbox:"),
            inbox_key: format!("{prefix}inbox:{instance}"),
            channel_base: format!("{CHANNEL_PREFIX}{instance}!"),
            seq_key: format!("{prefix}seq"),
            prefix,
            local: Mutex::new(Local::default()),
            counters: LayerCounters::default(),
            stop: AtomicBool::new(false),
            receive_errors: AtomicU64::new(0),
            cancelled_receives: AtomicU64::new(0),
        });
        let layer = Self {
            shared,
            conn: Mutex::new(Some(conn)),
            receive_conn: Mutex::new(Some(receive_conn)),
            receive: Mutex::new(Receive::default()),
            group_send_script: redis::Script::new(GROUP_SEND),
            send_script: redis::Script::new(SEND),
            instance,
            next_channel: AtomicU64::new(0),
            capacity: config.capacity.max(1),
            expiry_secs: config.expiry.as_secs().max(1),
            group_expiry_secs: config.group_expiry.as_secs().max(1),
            cancel_shared_receive: config.cancel_shared_receive,
        };
        if !layer.cancel_shared_receive {
            // Fault off: one receive for the layer's whole life, owned by no connection, so no
            // disconnect can ever cancel it.
            let mut receive = layer.receive();
            layer.start_receive(&mut receive, None);
        }
        Ok(layer)
    }

    /// The prefix of every key this layer uses.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// Whether the issue-1683 fault is on.
    pub fn cancel_shared_receive(&self) -> bool {
        self.cancel_shared_receive
    }

    /// Shared receives cancelled by a disconnect (always 0 with the fault off).
    pub fn cancelled_receives(&self) -> u64 {
        self.shared.cancelled_receives.load(Ordering::Relaxed)
    }

    /// Receive attempts that failed (Redis errors or timeouts), plus popped inbox entries that
    /// were not in this layer's format, since the start.
    pub fn receive_errors(&self) -> u64 {
        self.shared.receive_errors.load(Ordering::Relaxed)
    }

    /// Sends `message` to one channel (of any instance), as the channels `send` does: a
    /// one-target entry in the channel's instance inbox, skipped and counted in `dropped_full`
    /// when that inbox already holds `capacity` messages. Fails for a name that is not
    /// `lists.<instance>!<n>`.
    pub async fn send(&self, channel: &ChannelName, message: Bytes) -> Result<(), LayerError> {
        let Some((instance, local)) = split_channel(channel) else {
            return Err(LayerError::Backend(format!(
                "not a channel of the Redis lists layer: {channel:?}"
            )));
        };
        let mut conn = self.conn()?;
        let sent: u64 = self
            .send_script
            .key(format!("{}{instance}", self.shared.inbox_prefix))
            .key(&self.shared.seq_key)
            .arg(self.capacity)
            .arg(self.expiry_secs)
            .arg(local)
            .arg(&message[..])
            .invoke_async(&mut conn)
            .await
            .map_err(|e| command_error("send script", e))?;
        if sent == 0 {
            LayerCounters::bump(&self.shared.counters.dropped_full);
        }
        Ok(())
    }

    /// What Redis holds for this run: memory, keys, group sets and blocked clients.
    pub async fn probe(&self) -> Result<RedisProbe, RedisLayerError> {
        let mut conn = self.conn()?;
        super::probe_common(&mut conn, &self.shared.prefix, &self.shared.group_prefix, "ZCARD").await
    }

    /// The Redis server's version (INFO server).
    pub async fn redis_version(&self) -> Result<String, RedisLayerError> {
        super::version_on(&mut self.conn()?).await
    }

    /// Stops the shared receive (waiting for its current BZPOPMIN, at most about a second),
    /// removes what this instance still holds in Redis — its inbox and the memberships made
    /// through it — best effort and bounded by the operation timeout, and releases the
    /// connections; later operations fail.
    pub async fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut conn) = conn {
            let mut pipe = redis::pipe();
            pipe.cmd("DEL").arg(&self.shared.inbox_key).ignore();
            {
                let local = self.shared.local();
                for (group, members) in &local.groups {
                    let key = format!("{}{group}", self.shared.group_prefix);
                    for member in members {
                        pipe.cmd("ZREM").arg(&key).arg(&**member).ignore();
                    }
                }
            }
            let _ = tokio::time::timeout(OP_TIMEOUT, pipe.query_async::<()>(&mut conn)).await;
        }
        self.receive_conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        let task = self.receive().task.take();
        if let Some(mut task) = task {
            if tokio::time::timeout(BLOCK + OP_TIMEOUT, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
    }

    fn conn(&self) -> Result<MultiplexedConnection, RedisLayerError> {
        self.conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| RedisLayerError::Closed("shut down".into()))
    }

    fn receive(&self) -> MutexGuard<'_, Receive> {
        self.receive.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a receive loop owned by `owner` (None: by the layer), unless shut down.
    fn start_receive(&self, receive: &mut Receive, owner: Option<ChannelName>) {
        if self.shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let Some(conn) = self.receive_conn.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return;
        };
        receive.task = Some(tokio::spawn(receive_loop(self.shared.clone(), conn)));
        receive.owner = owner;
    }
}

impl Drop for RedisListsLayer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.receive().task.take() {
            task.abort();
        }
    }
}

redis_server_layer!(RedisListsLayer);

#[async_trait]
impl ChannelLayer for RedisListsLayer {
    async fn new_channel(&self) -> Result<ChannelReceiver, LayerError> {
        // Nothing to do in Redis (the inbox is the instance's), but a shut-down layer refuses.
        self.conn()?;
        let n = self.next_channel.fetch_add(1, Ordering::Relaxed);
        // Like channels_redis's process-specific channels: the instance is in the name.
        let name: ChannelName = format!("lists.{}!{n}", self.instance).into();
        let (tx, rx) = mpsc::channel(self.capacity);
        self.shared.local().channels.insert(name.clone(), (tx, n));
        if self.cancel_shared_receive {
            // The newest connection is the one waiting in receive (see close_channel).
            let mut receive = self.receive();
            if receive.task.as_ref().is_none_or(|task| task.is_finished()) {
                self.start_receive(&mut receive, Some(name.clone()));
            } else {
                receive.owner = Some(name.clone());
            }
        }
        Ok(ChannelReceiver::new(name, rx))
    }

    async fn group_add(&self, group: &str, channel: &ChannelName) -> Result<(), LayerError> {
        let mut conn = self.conn()?;
        let key = format!("{}{group}", self.shared.group_prefix);
        let _: () = redis::pipe()
            .cmd("ZADD")
            .arg(&key)
            .arg(now_secs())
            .arg(&**channel)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(self.group_expiry_secs)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(|e| command_error("ZADD (group_add)", e))?;
        crate::layer::join(&mut self.shared.local().groups, group, channel);
        Ok(())
    }

    async fn group_discard(&self, group: &str, channel: &ChannelName) -> Result<(), LayerError> {
        let mut conn = self.conn()?;
        let key = format!("{}{group}", self.shared.group_prefix);
        let _: u64 = query(
            &mut conn,
            "ZREM (group_discard)",
            redis::cmd("ZREM").arg(&key).arg(&**channel),
        )
        .await?;
        crate::layer::leave(&mut self.shared.local().groups, group, channel);
        Ok(())
    }

    async fn group_send(&self, group: &str, message: Bytes) -> Result<(), LayerError> {
        LayerCounters::bump(&self.shared.counters.group_sends);
        let mut conn = self.conn()?;
        let (_sent, full): (u64, u64) = self
            .group_send_script
            .key(format!("{}{group}", self.shared.group_prefix))
            .key(&self.shared.seq_key)
            .arg(now_secs())
            .arg(self.group_expiry_secs)
            .arg(self.capacity)
            .arg(self.expiry_secs)
            .arg(&self.shared.inbox_prefix)
            .arg(&message[..])
            .invoke_async(&mut conn)
            .await
            .map_err(|e| command_error("group_send script", e))?;
        self.shared.counters.dropped_full.fetch_add(full, Ordering::Relaxed);
        Ok(())
    }

    async fn close_channel(&self, receiver: ChannelReceiver) -> Result<(), LayerError> {
        let name = receiver.name.clone();
        self.shared.local().channels.remove(&name);
        drop(receiver);
        if self.cancel_shared_receive {
            // THE ISSUE-1683 MECHANISM (django/channels#1683), on only with the fault switch.
            //
            // In channels_redis the shared receive is not a task of its own: it runs inside
            // the `receive()` call of whichever consumer is waiting for it, under a lock. When
            // that consumer's client disconnects, Channels cancels the consumer — and with it
            // the in-flight BZPOPMIN (or the awaits between the pop and the hand-off to the
            // receive buffers). Redis has already popped the message, or pops it for the
            // abandoned request moments later; another consumer then takes over the receive.
            //
            // What is lost is not one receiver's message. channels_redis keeps ONE key per
            // process for all its process-specific channels, and its group_send writes ONE
            // message per process carrying the list of that process's target channels
            // (`__asgi_channel__`), which the receive fans out after the pop. The popped entry
            // thrown away is therefore the message of EVERY co-located receiver it names, in
            // whatever groups they are: the same gap appears at all of them at the same moment,
            // which is what the 1683 reporter saw (several clients, even in different rooms,
            // erroring out together) and why only a disconnect, never steady load, triggers it.
            //
            // This layer has the same layout (one inbox per instance, one entry per instance
            // per group_send listing its targets). The receive loop belongs to a channel (the
            // newest: the connection that came in last is the one waiting, the worst case of
            // the lock hand-off, which turns minutes of churn into seconds). Closing that
            // channel aborts the loop's task at its await: the abandoned BZPOPMIN stays blocked
            // in Redis on the receiver's connection, pops the next inbox entry, and its reply
            // is thrown away; a popped batch awaiting its ZPOPMIN is dropped likewise. Then a
            // new loop starts, owned by the newest live channel, queued behind the abandoned
            // command. With the fault off the loop belongs to the layer and no close touches it.
            let mut receive = self.receive();
            if receive.owner.as_ref() == Some(&name) {
                if let Some(task) = receive.task.take() {
                    task.abort();
                    self.shared.cancelled_receives.fetch_add(1, Ordering::Relaxed);
                }
                let next_owner = self
                    .shared
                    .local()
                    .channels
                    .iter()
                    .max_by_key(|(_, (_, n))| *n)
                    .map(|(name, _)| name.clone());
                receive.owner = None;
                if next_owner.is_some() {
                    self.start_receive(&mut receive, next_owner);
                }
            }
        }
        // Nothing to remove in Redis: entries in the inbox that still name this channel are
        // skipped when they are dispatched.
        Ok(())
    }

    fn stats(&self) -> LayerStats {
        let local = self.shared.local();
        crate::layer::local_stats(
            &local.groups,
            local.channels.values().map(|(tx, _)| tx),
            &self.shared.counters,
        )
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use redis::Value;

    use super::{parse_entry, popped_members, split_channel};

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn reads_zpopmin_replies_in_both_protocols() {
        let mut members = Vec::new();
        popped_members(
            Value::Array(vec![bulk("1:a"), bulk("1"), bulk("2:b"), bulk("2")]),
            &mut members,
        );
        popped_members(
            Value::Array(vec![Value::Array(vec![bulk("3:c"), Value::Double(3.0)])]),
            &mut members,
        );
        popped_members(Value::Array(Vec::new()), &mut members);
        assert_eq!(members, vec![b"1:a".to_vec(), b"2:b".to_vec(), b"3:c".to_vec()]);
    }

    #[test]
    fn parses_inbox_entries_keeping_payload_bytes_exact() {
        let payload: &[u8] = b"a:b,c\xff\x00:";
        let mut entry = b"17:0,12,3:".to_vec();
        entry.extend_from_slice(payload);
        let (targets, got) = parse_entry(Bytes::from(entry)).expect("well formed");
        assert_eq!((&targets[..], &got[..]), (&b"0,12,3"[..], payload));

        let (targets, got) = parse_entry(Bytes::from_static(b"1:5:")).expect("empty payload");
        assert_eq!((&targets[..], &got[..]), (&b"5"[..], &b""[..]));

        for bad in [&b"1:5"[..], b"x:5:p", b"1::p", b"1:5,:p", b"1:a:p", b":5:p", b""] {
            assert!(parse_entry(Bytes::from_static(bad)).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn splits_channel_names_into_instance_and_local_part() {
        assert_eq!(split_channel("lists.1a-2b-0!42"), Some(("1a-2b-0", "42")));
        for bad in ["lists.x!", "lists.!1", "lists.x!1a", "other.x!1", "lists.x", "x!1"] {
            assert_eq!(split_channel(bad), None, "{bad}");
        }
    }
}
