//! Fault switches, as a wrapper around any channel layer.
//!
//! They exist only so that each detector has a positive control: a scenario that turns one on
//! must get the bad verdict, or the detector is not trusted. Off unless a scenario sets them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ChannelLayer, ChannelName, ChannelReceiver, LayerError, LayerStats};
use crate::envelope::Envelope;

const MAX_RECORDED_DROPS: usize = 10_000;

/// A channel layer with deliberate faults.
pub struct FaultyLayer {
    inner: Arc<dyn ChannelLayer>,
    drop_one_in: Option<u64>,
    keep_membership_on_disconnect: bool,
    send_delay: Option<std::time::Duration>,
    sends: AtomicU64,
    dropped: AtomicU64,
    dropped_envelopes: Mutex<Vec<[u64; 2]>>,
    kept_channels: Mutex<Vec<ChannelReceiver>>,
}

impl FaultyLayer {
    /// Wraps `inner`. `drop_one_in = Some(n)` silently drops every nth group message;
    /// `keep_membership_on_disconnect` turns `group_discard` and `close_channel` into no-ops that
    /// keep the membership and the channel's buffer.
    pub fn new(inner: Arc<dyn ChannelLayer>, drop_one_in: Option<u64>, keep_membership_on_disconnect: bool) -> Self {
        Self {
            inner,
            drop_one_in,
            keep_membership_on_disconnect,
            send_delay: None,
            sends: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            dropped_envelopes: Mutex::new(Vec::new()),
            kept_channels: Mutex::new(Vec::new()),
        }
    }

    /// Delays each group send by `delay` before it is passed on (a slow server: the connection
    /// that sends cannot write out its own channel meanwhile, so channels fill under load).
    pub fn with_send_delay(mut self, delay: Option<std::time::Duration>) -> Self {
        self.send_delay = delay;
        self
    }
}

#[async_trait]
impl ChannelLayer for FaultyLayer {
    async fn new_channel(&self) -> Result<ChannelReceiver, LayerError> {
        self.inner.new_channel().await
    }

    async fn group_add(&self, group: &str, channel: &ChannelName) -> Result<(), LayerError> {
        self.inner.group_add(group, channel).await
    }

    async fn group_discard(&self, group: &str, channel: &ChannelName) -> Result<(), LayerError> {
        if self.keep_membership_on_disconnect {
            return Ok(());
        }
        self.inner.group_discard(group, channel).await
    }

    async fn group_send(&self, group: &str, message: Bytes) -> Result<(), LayerError> {
        if let Some(delay) = self.send_delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(n) = self.drop_one_in {
            let count = self.sends.fetch_add(1, Ordering::Relaxed) + 1;
            if count % n == 0 {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                let envelope = std::str::from_utf8(&message).ok().and_then(Envelope::find);
                if let Some(env) = envelope {
                    let mut recorded = self.dropped_envelopes.lock().unwrap_or_else(|p| p.into_inner());
                    if recorded.len() < MAX_RECORDED_DROPS {
                        recorded.push([env.sender, env.seq]);
                    }
                }
                return Ok(());
            }
        }
        self.inner.group_send(group, message).await
    }

    async fn close_channel(&self, receiver: ChannelReceiver) -> Result<(), LayerError> {
        if self.keep_membership_on_disconnect {
            self.kept_channels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(receiver);
            return Ok(());
        }
        self.inner.close_channel(receiver).await
    }

    fn stats(&self) -> LayerStats {
        let mut stats = self.inner.stats();
        stats.fault_dropped = self.dropped.load(Ordering::Relaxed);
        stats.fault_dropped_envelopes = self.dropped_envelopes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        stats
    }
}
