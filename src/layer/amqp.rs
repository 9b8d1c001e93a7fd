//! A channel layer on a real RabbitMQ through `lapin`: the backend of chat servers whose
//! channel layer is AMQP (channels_rabbitmq and friends), so leakrun can reproduce the loss and
//! leaks that only show up behind a broker — a queue that fills while its consumer stalls, broker
//! objects left behind by instances that went away.
//!
//! Layout on the broker, every name carrying the run's prefix:
//! - `<prefix>groups` — ONE direct exchange per run (not auto-delete). A group is a routing key
//!   on it; `group_send` publishes once there with the group as routing key.
//! - `<prefix>inbox.<instance>` — ONE queue per layer instance, that is per embedded server
//!   instance. It is bound to the exchange with a group's routing key when the first local member
//!   joins (`group_add`) and unbound when the last local member leaves (`group_discard`), so the
//!   broker delivers a group message once per instance that has members in it.
//!
//!   Why per instance and not per connection: a queue per connection would cost a declare, a
//!   bind per group and a delete round trip per browser tab, and a consumer per connection; per
//!   instance mirrors the process inbox of the channels layers (channels_redis's process-specific
//!   channels, the Redis lists layer's inbox) and keeps the number of broker objects constant
//!   while clients churn, so a growing queue count in the probe is a real leak, not load.
//!
//! Receiving: one consumer per instance (prefetch [`PREFETCH`], manual ack) demultiplexes each
//! delivery by its routing key — the group it was published for — to the bounded tokio buffers
//! (capacity messages each) of that group's local members only; a direct [`AmqpLayer::send`]
//! goes through the default exchange to the target instance's queue with a `leakrun-channel`
//! header naming the local channel. A full or closed local buffer drops the message for that
//! member and counts it in `dropped_full`. The delivery is acked after it was handed on (or
//! dropped): a message is lost only once it was counted; one that the instance had received but
//! not yet handed on when its connection died would be requeued by the broker (and deleted with
//! the queue at shutdown).
//!
//! Capacity on the broker: the instance queue has `x-max-length` = capacity × [`INBOX_FACTOR`]
//! (1: one queued message per `group_send`, whatever the number of local targets, exactly as the
//! Redis lists layer caps an instance inbox at `capacity` entries, so the same scenario overflows
//! at the same depth on both backends) and `x-overflow = reject-publish`: a full queue refuses
//! the NEW message, as a full channels channel does (drop-head would drop the oldest instead,
//! silently). Publishes are confirmed (publisher confirms): a nack means a queue refused it, and
//! the sending instance counts one `dropped_full` per nacked publish. RabbitMQ nacks a message if
//! any of its target queues refused it, so with several instances behind one group this counts
//! one drop per publish, not one per receiver: a lower bound of the receivers that missed it. Up
//! to [`PREFETCH`] more messages sit unacked at the consumer, outside the limit.
//!
//! `stats()` is a local synchronous read of this instance; what the broker holds for the run
//! (queues, their depth, consumers, the exchange) comes from the async [`AmqpLayer::probe`].
//! [`AmqpLayer::shutdown`] stops the consumer, deletes the instance queue, and deletes the run's
//! exchange once no instance of the run is left in this process (and no queue is bound to it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{ChannelLayer, ChannelName, ChannelReceiver, LayerCounters, LayerError, LayerStats};
use crate::naming::unique_id;

/// How long any single broker operation may take before it fails.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Unacked deliveries the broker pushes to an instance's consumer ahead of its acks.
pub const PREFETCH: u16 = 64;

/// The instance queue holds at most `capacity × INBOX_FACTOR` ready messages (see the module
/// documentation for why 1).
pub const INBOX_FACTOR: usize = 1;

/// Header naming the local channel of a direct `send`.
const CHANNEL_HEADER: &str = "leakrun-channel";

/// What every channel name of this layer starts with, before the instance.
const CHANNEL_PREFIX: &str = "amqp.";

/// How long an instance queue survives unused (no consumer, e.g. its process crashed) before the
/// broker deletes it: so a crashed run leaves no queue on a shared broker for long.
const QUEUE_EXPIRES_MS: i64 = 60_000;

/// Queues of live (or not cleanly deleted) instances, by run prefix: the names `probe` asks the
/// broker about. Process-wide because all instances of a run live in one leakrun process.
static RUN_QUEUES: Mutex<BTreeMap<String, BTreeSet<String>>> = Mutex::new(BTreeMap::new());

fn run_queues() -> MutexGuard<'static, BTreeMap<String, BTreeSet<String>>> {
    RUN_QUEUES.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why the AMQP layer could not be built or probed.
#[derive(Debug, thiserror::Error)]
pub enum AmqpLayerError {
    /// Connecting failed.
    #[error("cannot connect to RabbitMQ at {url}: {source}")]
    Connect {
        /// The URL, without credentials.
        url: String,
        /// What the client said.
        source: lapin::Error,
    },
    /// A broker operation failed.
    #[error("AMQP {op} failed: {source}")]
    Operation {
        /// The operation.
        op: String,
        /// What the client said.
        source: lapin::Error,
    },
    /// A broker operation did not answer in time.
    #[error("AMQP {op} timed out after {} s", OP_TIMEOUT.as_secs())]
    Timeout {
        /// The operation.
        op: String,
    },
    /// The layer was shut down.
    #[error("AMQP layer is closed: {0}")]
    Closed(String),
}

impl From<AmqpLayerError> for LayerError {
    fn from(error: AmqpLayerError) -> Self {
        LayerError::Backend(error.to_string())
    }
}

/// What the broker holds for one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AmqpProbe {
    /// Instance queues of the run that exist on the broker.
    pub queues: u64,
    /// Ready messages waiting in them (not counting those delivered and not yet acked).
    pub messages: u64,
    /// Consumers on them.
    pub consumers: u64,
    /// Whether the run's exchange exists (0 or 1).
    pub exchanges: u64,
}

impl AmqpProbe {
    /// The probe as series, each of which must return to its start.
    pub fn reading(&self) -> crate::observe::sampler::StateReading {
        crate::observe::sampler::StateReading {
            state: std::collections::BTreeMap::from([
                ("amqp_queues".to_string(), self.queues),
                ("amqp_messages".to_string(), self.messages),
                ("amqp_consumers".to_string(), self.consumers),
                ("amqp_exchanges".to_string(), self.exchanges),
            ]),
            info: std::collections::BTreeMap::new(),
        }
    }
}

/// How to build an [`AmqpLayer`].
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost` of the broker.
    pub url: String,
    /// Prefix of every exchange and queue name, unique per run (see
    /// [`crate::naming::run_prefix`]).
    pub prefix: String,
    /// Most messages a channel's local buffer holds; the instance queue holds
    /// `capacity × INBOX_FACTOR`.
    pub capacity: usize,
}

impl AmqpConfig {
    /// A configuration for `url`, names under `prefix`, channels of `capacity` messages.
    pub fn new(url: impl Into<String>, prefix: impl Into<String>, capacity: usize) -> Self {
        Self {
            url: url.into(),
            prefix: prefix.into(),
            capacity,
        }
    }
}

/// The channel layer on RabbitMQ. One instance per embedded server; instances sharing a broker
/// and a prefix deliver to one another's members.
pub struct AmqpLayer {
    shared: Arc<Shared>,
    conn: Connection,
    /// Declares, binds, unbinds.
    control: Channel,
    /// Publishes, in confirm mode.
    publish: Channel,
    consume: Channel,
    consumer_tag: String,
    consumer_task: Mutex<Option<JoinHandle<()>>>,
    pause: watch::Sender<bool>,
    /// Serialises bind/unbind with the local membership change that decides them.
    topology: tokio::sync::Mutex<()>,
    /// The channel probes declare on, reused from probe to probe and reopened only after a
    /// passive declare of a missing object closed it. A channel opened per probe leaves state
    /// behind in the client's connection (about 120 bytes each, measured with leakrun itself),
    /// which a 100ms sampler would report as the layer's own leak.
    probe_channel: tokio::sync::Mutex<Option<Channel>>,
    url: String,
    exchange: String,
    queue: String,
    instance: String,
    version: Option<String>,
    next_channel: AtomicU64,
    capacity: usize,
    closed: AtomicBool,
}

struct Shared {
    prefix: String,
    local: Mutex<Local>,
    counters: LayerCounters,
    receive_errors: AtomicU64,
}

#[derive(Default)]
struct Local {
    channels: FxHashMap<ChannelName, mpsc::Sender<Bytes>>,
    groups: crate::layer::LocalGroups,
}

impl Shared {
    fn local(&self) -> MutexGuard<'_, Local> {
        // Every critical section leaves the maps consistent, so a poisoned lock is still usable.
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands one delivery to its local targets: the channel its header names (direct send) or
    /// the local members of the group its routing key names.
    fn dispatch(&self, delivery: &lapin::message::Delivery) {
        let payload = Bytes::copy_from_slice(&delivery.data);
        let local = self.local();
        let offer = |tx: &mpsc::Sender<Bytes>| match tx.try_send(payload.clone()) {
            Ok(()) => LayerCounters::bump(&self.counters.delivered),
            Err(_) => LayerCounters::bump(&self.counters.dropped_full),
        };
        if let Some(channel) = channel_header(&delivery.properties) {
            // A channel closed since the send gets nothing, as in the in-process layer.
            if let Some(tx) = local.channels.get(channel.as_str()) {
                offer(tx);
            }
            return;
        }
        let Some(members) = local.groups.get(delivery.routing_key.as_str()) else {
            return;
        };
        for member in members {
            if let Some(tx) = local.channels.get(member) {
                offer(tx);
            }
        }
    }
}

fn channel_header(properties: &BasicProperties) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(CHANNEL_HEADER)? {
        AMQPValue::LongString(name) => Some(String::from_utf8_lossy(name.as_bytes()).into_owned()),
        _ => None,
    }
}

/// `url` with any `user:password@` removed, for messages.
fn redact(url: &str) -> String {
    crate::naming::redact(url)
}

/// Runs a broker operation with the operation timeout, naming `op` in any error.
async fn op<T>(op: &str, future: impl std::future::Future<Output = lapin::Result<T>>) -> Result<T, AmqpLayerError> {
    match tokio::time::timeout(OP_TIMEOUT, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(AmqpLayerError::Operation {
            op: op.to_string(),
            source,
        }),
        Err(_) => Err(AmqpLayerError::Timeout { op: op.to_string() }),
    }
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert(ShortString::from(*key), value.clone());
    }
    table
}

/// The consumer: hands each delivery on, then acks it. Ends when the consumer stream ends (the
/// channel or connection closed, or the consumer was cancelled at shutdown).
async fn consume_loop(shared: Arc<Shared>, mut consumer: lapin::Consumer, mut pause: watch::Receiver<bool>) {
    loop {
        // Paused (the stalled-consumer switch): do not take deliveries; the broker keeps the
        // rest in the queue, which fills up to its limit.
        while *pause.borrow_and_update() {
            if pause.changed().await.is_err() {
                return;
            }
        }
        let next = tokio::select! {
            next = consumer.next() => next,
            changed = pause.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        match next {
            Some(Ok(delivery)) => {
                shared.dispatch(&delivery);
                if delivery.acker.ack(BasicAckOptions::default()).await.is_err() {
                    shared.receive_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(Err(_)) => {
                shared.receive_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
            None => return,
        }
    }
}

impl AmqpLayer {
    /// Connects, declares the run's exchange and this instance's queue, and starts consuming.
    pub async fn connect(config: AmqpConfig) -> Result<Self, AmqpLayerError> {
        let url = config.url;
        let conn =
            match tokio::time::timeout(OP_TIMEOUT, Connection::connect(&url, ConnectionProperties::default())).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(source)) => {
                    return Err(AmqpLayerError::Connect {
                        url: redact(&url),
                        source,
                    });
                }
                Err(_) => {
                    return Err(AmqpLayerError::Timeout {
                        op: format!("connect to {}", redact(&url)),
                    });
                }
            };
        let version = broker_version_of(&url).await;
        let capacity = config.capacity.max(1);
        let prefix = config.prefix;
        let instance = unique_id();
        let exchange = format!("{prefix}groups");
        let queue = format!("{prefix}inbox.{instance}");

        let control = op("channel.open", conn.create_channel()).await?;
        let publish = op("channel.open", conn.create_channel()).await?;
        let consume = op("channel.open", conn.create_channel()).await?;
        op(
            "confirm.select",
            publish.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        declare_exchange(&control, &exchange).await?;
        let max_length = i64::try_from(capacity.saturating_mul(INBOX_FACTOR)).unwrap_or(i64::MAX);
        op(
            "queue.declare",
            control.queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::default(),
                table(&[
                    ("x-max-length", AMQPValue::LongLongInt(max_length)),
                    ("x-overflow", AMQPValue::LongString(LongString::from("reject-publish"))),
                    ("x-expires", AMQPValue::LongLongInt(QUEUE_EXPIRES_MS)),
                ]),
            ),
        )
        .await?;
        run_queues().entry(prefix.clone()).or_default().insert(queue.clone());

        op("basic.qos", consume.basic_qos(PREFETCH, BasicQosOptions::default())).await?;
        let consumer_tag = format!("leakrun-{instance}");
        let consumer = op(
            "basic.consume",
            consume.basic_consume(
                queue.as_str().into(),
                consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        let shared = Arc::new(Shared {
            prefix,
            local: Mutex::new(Local::default()),
            counters: LayerCounters::default(),
            receive_errors: AtomicU64::new(0),
        });
        let (pause, paused) = watch::channel(false);
        let task = tokio::spawn(consume_loop(shared.clone(), consumer, paused));
        Ok(Self {
            shared,
            conn,
            control,
            publish,
            consume,
            consumer_tag,
            consumer_task: Mutex::new(Some(task)),
            pause,
            topology: tokio::sync::Mutex::new(()),
            probe_channel: tokio::sync::Mutex::new(None),
            url,
            exchange,
            queue,
            instance,
            version,
            next_channel: AtomicU64::new(0),
            capacity,
            closed: AtomicBool::new(false),
        })
    }

    /// The prefix of every name this layer uses.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// This instance's queue.
    pub fn queue_name(&self) -> &str {
        &self.queue
    }

    /// The run's exchange.
    pub fn exchange_name(&self) -> &str {
        &self.exchange
    }

    /// The broker's version from its server properties (`version`), when the broker told it.
    ///
    /// lapin keeps the server properties of the `connection.start` to itself, so `connect`
    /// reads them from a second, bare handshake that it abandons after the first frame.
    pub fn broker_version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Deliveries that failed (ack errors, a consumer stream error) since the start.
    pub fn receive_errors(&self) -> u64 {
        self.shared.receive_errors.load(Ordering::Relaxed)
    }

    /// The stalled-consumer switch: while paused the instance takes no deliveries from the
    /// broker (beyond the [`PREFETCH`] already pushed), so its queue fills and further publishes
    /// to it are refused and counted — the AMQP face of a blocked event loop or a GC pause.
    pub fn set_paused(&self, paused: bool) {
        self.pause.send_replace(paused);
    }

    /// Sends `message` to one channel (of any instance of the run) through the default exchange
    /// to its instance's queue; a full queue refuses it and it counts in `dropped_full`, as does
    /// a channel whose instance queue no longer exists. Fails for a name that is not
    /// `amqp.<instance>!<n>`.
    pub async fn send(&self, channel: &ChannelName, message: Bytes) -> Result<(), LayerError> {
        let Some(instance) = channel
            .strip_prefix(CHANNEL_PREFIX)
            .and_then(|rest| rest.split_once('!'))
            .map(|(instance, _)| instance)
            .filter(|instance| !instance.is_empty())
        else {
            return Err(LayerError::Backend(format!(
                "not a channel of the AMQP layer: {channel:?}"
            )));
        };
        self.check_open()?;
        let queue = format!("{}inbox.{instance}", self.shared.prefix);
        let properties = BasicProperties::default().with_headers(table(&[(
            CHANNEL_HEADER,
            AMQPValue::LongString(LongString::from(channel.as_bytes())),
        )]));
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        self.publish_confirmed("", &queue, options, &message, properties).await
    }

    /// What the broker holds for this run: its instance queues (passive declares on the names
    /// of the run's instances, each on a throwaway channel because a declare of a missing queue
    /// closes the channel), their ready depth and consumers, and whether the exchange exists.
    pub async fn probe(&self) -> Result<AmqpProbe, AmqpLayerError> {
        self.check_open()?;
        let names: Vec<String> = run_queues()
            .get(&self.shared.prefix)
            .map(|queues| queues.iter().cloned().collect())
            .unwrap_or_default();
        let mut probe = AmqpProbe::default();
        let mut reusable = self.probe_channel.lock().await;
        for name in names {
            let channel = self.probe_channel(&mut reusable).await?;
            let options = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            let declared = tokio::time::timeout(
                OP_TIMEOUT,
                channel.queue_declare(name.as_str().into(), options, FieldTable::default()),
            )
            .await;
            match declared {
                Ok(Ok(queue)) => {
                    probe.queues += 1;
                    probe.messages += u64::from(queue.message_count());
                    probe.consumers += u64::from(queue.consumer_count());
                }
                // NOT_FOUND: the broker closed the channel; the next declare opens another.
                Ok(Err(_)) => *reusable = None,
                Err(_) => {
                    return Err(AmqpLayerError::Timeout {
                        op: "queue.declare (passive)".into(),
                    });
                }
            }
        }
        let channel = self.probe_channel(&mut reusable).await?;
        match exchange_exists(&channel, &self.exchange).await? {
            true => probe.exchanges = 1,
            false => *reusable = None,
        }
        Ok(probe)
    }

    /// The reusable probe channel, opened again if a passive declare closed it.
    async fn probe_channel(&self, reusable: &mut Option<Channel>) -> Result<Channel, AmqpLayerError> {
        if let Some(channel) = reusable.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        let channel = op("channel.open", self.conn.create_channel()).await?;
        *reusable = Some(channel.clone());
        Ok(channel)
    }

    /// Stops the consumer, deletes this instance's queue and — when no instance of the run is
    /// left in this process and no queue is bound to it — the run's exchange, then closes the
    /// connection; best effort and bounded by the operation timeout per step. Later operations
    /// fail.
    pub async fn shutdown(&self) {
        if self.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        let _ = op(
            "basic.cancel",
            self.consume
                .basic_cancel(self.consumer_tag.as_str().into(), BasicCancelOptions::default()),
        )
        .await;
        let task = self.consumer_task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut task) = task {
            if tokio::time::timeout(OP_TIMEOUT, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
        let deleted = op(
            "queue.delete",
            self.control
                .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default()),
        )
        .await
        .is_ok();
        let last = {
            let mut queues = run_queues();
            if deleted && let Some(set) = queues.get_mut(&self.shared.prefix) {
                set.remove(&self.queue);
            }
            let empty = queues.get(&self.shared.prefix).is_none_or(BTreeSet::is_empty);
            if empty {
                queues.remove(&self.shared.prefix);
            }
            empty
        };
        if last {
            // if_unused: another process's instance still bound to it keeps it (the refusal
            // closes only this throwaway channel).
            if let Ok(channel) = op("channel.open", self.conn.create_channel()).await {
                let options = ExchangeDeleteOptions {
                    if_unused: true,
                    ..ExchangeDeleteOptions::default()
                };
                let _ = op(
                    "exchange.delete",
                    channel.exchange_delete(self.exchange.as_str().into(), options),
                )
                .await;
            }
        }
        let _ = tokio::time::timeout(OP_TIMEOUT, self.conn.close(200, "shutdown".into())).await;
    }

    fn check_open(&self) -> Result<(), AmqpLayerError> {
        if self.closed.load(Ordering::Relaxed) {
            Err(AmqpLayerError::Closed("shut down".into()))
        } else {
            Ok(())
        }
    }

    /// Publishes and waits for the broker's confirm; a nack (a full queue refused it) or a
    /// return (no queue to take it) counts one `dropped_full`.
    async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        options: BasicPublishOptions,
        message: &[u8],
        properties: BasicProperties,
    ) -> Result<(), LayerError> {
        let confirm = op(
            "basic.publish",
            self.publish
                .basic_publish(exchange.into(), routing_key.into(), options, message, properties),
        )
        .await?;
        let confirmation = op("publisher confirm", confirm).await?;
        match confirmation {
            Confirmation::Nack(_) | Confirmation::Ack(Some(_)) => {
                LayerCounters::bump(&self.shared.counters.dropped_full);
            }
            Confirmation::Ack(None) | Confirmation::NotRequested => {}
        }
        Ok(())
    }
}

impl Drop for AmqpLayer {
    fn drop(&mut self) {
        if let Some(task) = self.consumer_task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), AmqpLayerError> {
    op(
        "exchange.declare",
        channel.exchange_declare(
            exchange.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
}

/// Whether `exchange` exists: a passive declare on `channel` (a missing one closes the channel).
async fn exchange_exists(channel: &Channel, exchange: &str) -> Result<bool, AmqpLayerError> {
    let options = ExchangeDeclareOptions {
        passive: true,
        ..ExchangeDeclareOptions::default()
    };
    let declared = tokio::time::timeout(
        OP_TIMEOUT,
        channel.exchange_declare(exchange.into(), ExchangeKind::Direct, options, FieldTable::default()),
    )
    .await;
    match declared {
        Ok(Ok(())) => Ok(true),
        Ok(Err(_)) => Ok(false),
        Err(_) => Err(AmqpLayerError::Timeout {
            op: "exchange.declare (passive)".into(),
        }),
    }
}

/// The broker's `version` server property, from a bare handshake: connect, send the protocol
/// header, read the `connection.start` frame, hang up. `None` when anything is off.
pub async fn broker_version_of(url: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let uri: lapin::uri::AMQPUri = url.parse().ok()?;
    let address = (uri.authority.host.as_str(), uri.authority.port);
    let read = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        stream.write_all(b"AMQP\x00\x00\x09\x01").await.ok()?;
        // Frame: type (1 = method), channel (2 bytes), size (4 bytes), payload, 0xCE.
        let mut header = [0u8; 7];
        stream.read_exact(&mut header).await.ok()?;
        let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
        if header[0] != 1 || size > 1 << 20 {
            return None;
        }
        let mut payload = vec![0u8; size];
        stream.read_exact(&mut payload).await.ok()?;
        // Class 10 (connection), method 10 (start), then its arguments.
        if payload.get(..4)? != [0, 10, 0, 10] {
            return None;
        }
        let (_, start) = lapin::protocol::connection::parse_start(&payload[4..]).ok()?;
        match start.server_properties.inner().get("version")? {
            AMQPValue::LongString(version) => Some(String::from_utf8_lossy(version.as_bytes()).into_owned()),
            _ => None,
        }
    };
    tokio::time::timeout(OP_TIMEOUT, read).await.ok().flatten()
}

#[async_trait]
impl super::ServerLayer for AmqpLayer {
    fn server_name(&self) -> &'static str {
        "RabbitMQ"
    }

    async fn server_version(&self) -> Result<String, super::ServerError> {
        Ok(format!(
            "rabbitmq {}",
            self.broker_version().unwrap_or("(version not reported)")
        ))
    }

    async fn held(&self) -> Result<crate::observe::sampler::StateReading, super::ServerError> {
        Ok(self.probe().await?.reading())
    }

    async fn shutdown(&self) {
        AmqpLayer::shutdown(self).await;
    }
}

#[async_trait]
impl ChannelLayer for AmqpLayer {
    async fn new_channel(&self) -> Result<ChannelReceiver, LayerError> {
        self.check_open()?;
        let n = self.next_channel.fetch_add(1, Ordering::Relaxed);
        let name: ChannelName = format!("{CHANNEL_PREFIX}{}!{n}", self.instance).into();
        let (tx, rx) = mpsc::channel(self.capacity);
        self.shared.local().channels.insert(name.clone(), tx);
        Ok(ChannelReceiver::new(name, rx))
    }

    async fn group_add(&self, group: &str, channel: &ChannelName) -> Result<(), LayerError> {
        self.check_open()?;
        let _topology = self.topology.lock().await;
        let first = !self.shared.local().groups.contains_key(group);
        if first {
            // The exchange may have been deleted by the run's last instance elsewhere: declaring
            // is idempotent, and only the first local member pays for it.
            declare_exchange(&self.control, &self.exchange).await?;
            op(
                "queue.bind",
                self.control.queue_bind(
                    self.queue.as_str().into(),
                    self.exchange.as_str().into(),
                    group.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await?;
        }
        // Recorded only once bound, so a failed bind leaves no member behind.
        crate::layer::join(&mut self.shared.local().groups, group, channel);
        Ok(())
    }

    async fn group_discard(&self, group: &str, channel: &ChannelName) -> Result<(), LayerError> {
        self.check_open()?;
        let _topology = self.topology.lock().await;
        let last = crate::layer::leave(&mut self.shared.local().groups, group, channel);
        if last {
            op(
                "queue.unbind",
                self.control.queue_unbind(
                    self.queue.as_str().into(),
                    self.exchange.as_str().into(),
                    group.into(),
                    FieldTable::default(),
                ),
            )
            .await?;
        }
        Ok(())
    }

    async fn group_send(&self, group: &str, message: Bytes) -> Result<(), LayerError> {
        LayerCounters::bump(&self.shared.counters.group_sends);
        self.check_open()?;
        // Not mandatory: a group with no members anywhere routes nowhere, which is no loss.
        self.publish_confirmed(
            &self.exchange,
            group,
            BasicPublishOptions::default(),
            &message,
            BasicProperties::default(),
        )
        .await
    }

    async fn close_channel(&self, receiver: ChannelReceiver) -> Result<(), LayerError> {
        self.shared.local().channels.remove(&receiver.name);
        drop(receiver);
        Ok(())
    }

    fn stats(&self) -> LayerStats {
        let local = self.shared.local();
        crate::layer::local_stats(&local.groups, local.channels.values(), &self.shared.counters)
    }
}

impl std::fmt::Debug for AmqpLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpLayer")
            .field("url", &redact(&self.url))
            .field("queue", &self.queue)
            .field("exchange", &self.exchange)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_channel_header() {
        let properties = BasicProperties::default().with_headers(table(&[(
            CHANNEL_HEADER,
            AMQPValue::LongString(LongString::from("amqp.x!3")),
        )]));
        assert_eq!(channel_header(&properties).as_deref(), Some("amqp.x!3"));
        assert_eq!(channel_header(&BasicProperties::default()), None);
    }
}
