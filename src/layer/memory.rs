//! The in-process channel layer: the default, needing nothing installed. Groups and channels live
//! in one map behind a mutex held only for non-blocking work (`try_send` never waits).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::{ChannelLayer, ChannelName, ChannelReceiver, LayerCounters, LayerError, LayerStats};

/// In-process channel layer.
pub struct MemoryLayer {
    capacity: usize,
    next_channel: AtomicU64,
    state: Mutex<State>,
    counters: LayerCounters,
}

#[derive(Default)]
struct State {
    groups: super::LocalGroups,
    channels: FxHashMap<ChannelName, mpsc::Sender<Bytes>>,
}

impl MemoryLayer {
    /// A layer whose channels hold at most `capacity` messages each.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            next_channel: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            counters: LayerCounters::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the maps half-updated in a way that
        // matters to counting, so a poisoned lock is still used.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl ChannelLayer for MemoryLayer {
    async fn new_channel(&self) -> Result<ChannelReceiver, LayerError> {
        let n = self.next_channel.fetch_add(1, Ordering::Relaxed);
        let name: ChannelName = format!("memory!{n}").into();
        let (tx, rx) = mpsc::channel(self.capacity);
        self.state().channels.insert(name.clone(), tx);
        Ok(ChannelReceiver::new(name, rx))
    }

    async fn group_add(&self, group: &str, channel: &ChannelName) -> Result<(), LayerError> {
        super::join(&mut self.state().groups, group, channel);
        Ok(())
    }

    async fn group_discard(&self, group: &str, channel: &ChannelName) -> Result<(), LayerError> {
        super::leave(&mut self.state().groups, group, channel);
        Ok(())
    }

    async fn group_send(&self, group: &str, message: Bytes) -> Result<(), LayerError> {
        LayerCounters::bump(&self.counters.group_sends);
        let state = self.state();
        let Some(members) = state.groups.get(group) else {
            return Ok(());
        };
        for member in members {
            let Some(tx) = state.channels.get(member) else { continue };
            match tx.try_send(message.clone()) {
                Ok(()) => LayerCounters::bump(&self.counters.delivered),
                // A closed receiver is a channel whose connection is gone: the same loss to the
                // member as a full one, and counted with it.
                Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                    LayerCounters::bump(&self.counters.dropped_full)
                }
            }
        }
        Ok(())
    }

    async fn close_channel(&self, receiver: ChannelReceiver) -> Result<(), LayerError> {
        self.state().channels.remove(&receiver.name);
        drop(receiver);
        Ok(())
    }

    fn stats(&self) -> LayerStats {
        let state = self.state();
        super::local_stats(&state.groups, state.channels.values(), &self.counters)
    }
}
