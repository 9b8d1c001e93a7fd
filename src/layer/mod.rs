//! The channel layer: the contract Django Channels defines and every backend implements.
//!
//! A connection gets its own channel with a fixed `capacity`; groups are sets of channels;
//! `group_send` puts a message into every member's channel and, when a channel is full, drops the
//! message for that member and counts it — it never blocks the sender. Backends live one per file
//! and all pass the same behaviour tests; `faults` wraps any of them with the switches that prove
//! leakrun's detectors.

pub mod amqp;
pub mod faults;
pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use self::redis::{RedisListsLayer, RedisPubSubLayer};
pub use amqp::AmqpLayer;
pub use faults::FaultyLayer;
pub use memory::MemoryLayer;

/// A channel name, unique within a layer.
pub type ChannelName = Arc<str>;

/// Why a layer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The backend could not be reached or answered with an error.
    #[error("channel layer backend failed: {0}")]
    Backend(String),
}

/// The receiving end of one connection's channel.
#[derive(Debug)]
pub struct ChannelReceiver {
    /// The channel's name, used for group membership.
    pub name: ChannelName,
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelReceiver {
    /// Wraps a tokio receiver as a named channel.
    pub fn new(name: ChannelName, rx: mpsc::Receiver<Bytes>) -> Self {
        Self { name, rx }
    }

    /// Waits for the next message; `None` once the layer closed the channel.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    /// Takes a message that is already waiting, if any.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        self.rx.try_recv().ok()
    }
}

/// The channels contract.
#[async_trait]
pub trait ChannelLayer: Send + Sync {
    /// Creates a new channel for one connection, holding at most the layer's capacity.
    async fn new_channel(&self) -> Result<ChannelReceiver, LayerError>;
    /// Adds `channel` to `group`.
    async fn group_add(&self, group: &str, channel: &ChannelName) -> Result<(), LayerError>;
    /// Removes `channel` from `group`.
    async fn group_discard(&self, group: &str, channel: &ChannelName) -> Result<(), LayerError>;
    /// Sends `message` to every channel in `group`; full channels drop it and count the drop.
    async fn group_send(&self, group: &str, message: Bytes) -> Result<(), LayerError>;
    /// Closes a channel for good, freeing its buffer.
    async fn close_channel(&self, receiver: ChannelReceiver) -> Result<(), LayerError>;
    /// A snapshot of the layer's state and counters.
    fn stats(&self) -> LayerStats;
}

/// What a layer's server said when it failed, kept with its type.
pub type ServerError = Box<dyn std::error::Error + Send + Sync>;

/// A layer whose state lives on a server of its own (Redis, RabbitMQ): leakrun reads what the
/// server holds for the run after every iteration, and the layer removes it when the run ends.
/// Each backend implements it in its own file.
#[async_trait]
pub trait ServerLayer: ChannelLayer {
    /// The server's name in messages: `Redis`, `RabbitMQ`.
    fn server_name(&self) -> &'static str;
    /// The server's product and version, e.g. `redis 7.0.15`.
    async fn server_version(&self) -> Result<String, ServerError>;
    /// What the server holds for the run: state series that must return to their start when
    /// every client is gone, and reference figures.
    async fn held(&self) -> Result<crate::observe::sampler::StateReading, ServerError>;
    /// Stops the layer's tasks and removes what it holds on the server.
    async fn shutdown(&self);
}

/// State and counters of a channel layer, as `/stats` reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerStats {
    /// Groups with at least one member.
    pub groups: u64,
    /// Channel memberships across all groups.
    pub memberships: u64,
    /// Open channels.
    pub channels: u64,
    /// Messages waiting in channel buffers.
    pub buffered: u64,
    /// `group_send` calls.
    pub group_sends: u64,
    /// Messages placed into a member's channel.
    pub delivered: u64,
    /// Messages dropped because a member's channel was full.
    pub dropped_full: u64,
    /// Messages dropped on purpose by the `drop_one_in` fault switch.
    pub fault_dropped: u64,
    /// Envelopes (`[sender, seq]`) of the messages the fault switch dropped, first 10,000.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fault_dropped_envelopes: Vec<[u64; 2]>,
}

impl LayerStats {
    /// Adds another layer object's state and counters to these (instances with a layer each).
    pub fn add(&mut self, other: &LayerStats) {
        self.groups += other.groups;
        self.memberships += other.memberships;
        self.channels += other.channels;
        self.buffered += other.buffered;
        self.group_sends += other.group_sends;
        self.delivered += other.delivered;
        self.dropped_full += other.dropped_full;
        self.fault_dropped += other.fault_dropped;
        self.fault_dropped_envelopes
            .extend_from_slice(&other.fault_dropped_envelopes);
    }
}

/// Groups of local members, as every layer keeps them: group name to member channels.
pub type LocalGroups = rustc_hash::FxHashMap<String, rustc_hash::FxHashSet<ChannelName>>;

/// Adds `channel` to `group`; true when it is the group's first local member (the moment a layer
/// subscribes or binds the group).
pub fn join(groups: &mut LocalGroups, group: &str, channel: &ChannelName) -> bool {
    match groups.get_mut(group) {
        Some(members) => {
            members.insert(channel.clone());
            false
        }
        None => {
            groups.insert(group.to_string(), rustc_hash::FxHashSet::from_iter([channel.clone()]));
            true
        }
    }
}

/// Removes `channel` from `group`, dropping the group once empty; true when this call removed its
/// last local member (the moment a layer unsubscribes or unbinds the group).
pub fn leave(groups: &mut LocalGroups, group: &str, channel: &ChannelName) -> bool {
    let Some(members) = groups.get_mut(group) else {
        return false;
    };
    let removed = members.remove(channel);
    if !members.is_empty() {
        return false;
    }
    groups.remove(group);
    removed
}

/// [`LayerStats`] from a layer's local maps — its groups and the send ends of its open channels —
/// and its counters: the one way every backend reports its state.
pub fn local_stats<'a>(
    groups: &LocalGroups,
    channels: impl Iterator<Item = &'a mpsc::Sender<Bytes>>,
    counters: &LayerCounters,
) -> LayerStats {
    let (open, buffered) = channels.fold((0u64, 0u64), |(open, buffered), tx| {
        (open + 1, buffered + (tx.max_capacity() - tx.capacity()) as u64)
    });
    let mut stats = LayerStats {
        groups: groups.len() as u64,
        memberships: groups.values().map(|m| m.len() as u64).sum(),
        channels: open,
        buffered,
        ..LayerStats::default()
    };
    counters.fill(&mut stats);
    stats
}

/// The counters every backend keeps, shared so `stats` is a plain read.
#[derive(Debug, Default)]
pub struct LayerCounters {
    /// `group_send` calls.
    pub group_sends: AtomicU64,
    /// Messages placed into a member's channel.
    pub delivered: AtomicU64,
    /// Messages dropped because a channel was full.
    pub dropped_full: AtomicU64,
}

impl LayerCounters {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Copies the counters into `stats`.
    pub fn fill(&self, stats: &mut LayerStats) {
        stats.group_sends = self.group_sends.load(Ordering::Relaxed);
        stats.delivered = self.delivered.load(Ordering::Relaxed);
        stats.dropped_full = self.dropped_full.load(Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_leave_report_the_first_and_last_local_member() {
        let mut groups = LocalGroups::default();
        let (a, b): (ChannelName, ChannelName) = ("a".into(), "b".into());
        assert!(join(&mut groups, "room", &a));
        assert!(!join(&mut groups, "room", &b));
        assert!(!join(&mut groups, "room", &a), "joining twice is not a first member");
        assert!(!leave(&mut groups, "room", &a));
        assert!(!leave(&mut groups, "other", &a), "no such group");
        assert!(leave(&mut groups, "room", &b));
        assert!(groups.is_empty(), "an empty group is dropped");
        assert!(!leave(&mut groups, "room", &b), "already gone");
    }
}
