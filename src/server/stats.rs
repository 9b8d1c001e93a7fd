//! Server counters: what `/stats` reports and the sampler reads.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::layer::LayerStats;

/// Live counters of one embedded server instance, updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// WebSocket connections currently open.
    pub live_connections: AtomicU64,
    /// WebSocket connections accepted since start.
    pub connections_opened: AtomicU64,
    /// Connections that ended with a close frame from the client.
    pub graceful_closes: AtomicU64,
    /// Connections that ended without a close frame (dropped TCP, reset).
    pub abrupt_closes: AtomicU64,
    /// Connections that ended on a protocol error (bad frame, message over the hard limit).
    pub protocol_errors: AtomicU64,
    /// Text frames received and group-sent.
    pub frames_in: AtomicU64,
    /// Frames written to clients.
    pub frames_out: AtomicU64,
    /// Binary frames received and ignored.
    pub binary_frames: AtomicU64,
    /// Text frames above `max_frame`, ignored.
    pub oversize_frames: AtomicU64,
    /// Upgrade requests refused for an invalid room name.
    pub bad_room_requests: AtomicU64,
    /// Group sends the channel layer refused with an error.
    pub layer_errors: AtomicU64,
}

/// A snapshot of [`ServerCounters`] plus the channel layer's state: the `/stats` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerStats {
    /// WebSocket connections currently open.
    pub live_connections: u64,
    /// WebSocket connections accepted since start.
    pub connections_opened: u64,
    /// Connections that ended with a close frame.
    pub graceful_closes: u64,
    /// Connections that ended without a close frame.
    pub abrupt_closes: u64,
    /// Connections that ended on a protocol error.
    pub protocol_errors: u64,
    /// Text frames received.
    pub frames_in: u64,
    /// Frames written to clients.
    pub frames_out: u64,
    /// Binary frames received and ignored.
    pub binary_frames: u64,
    /// Oversize text frames ignored.
    pub oversize_frames: u64,
    /// Upgrades refused for a bad room name.
    pub bad_room_requests: u64,
    /// Layer operations that failed.
    pub layer_errors: u64,
    /// The channel layer's state and counters.
    pub layer: LayerStats,
}

impl ServerCounters {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter, with the layer's stats alongside.
    pub fn snapshot(&self, layer: LayerStats) -> ServerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServerStats {
            live_connections: get(&self.live_connections),
            connections_opened: get(&self.connections_opened),
            graceful_closes: get(&self.graceful_closes),
            abrupt_closes: get(&self.abrupt_closes),
            protocol_errors: get(&self.protocol_errors),
            frames_in: get(&self.frames_in),
            frames_out: get(&self.frames_out),
            binary_frames: get(&self.binary_frames),
            oversize_frames: get(&self.oversize_frames),
            bad_room_requests: get(&self.bad_room_requests),
            layer_errors: get(&self.layer_errors),
            layer,
        }
    }
}

impl ServerStats {
    /// Adds another instance's counters to these (several instances share one layer, so the
    /// layer's stats are taken once, not summed).
    pub fn add_counters(&mut self, other: &ServerStats) {
        self.live_connections += other.live_connections;
        self.connections_opened += other.connections_opened;
        self.graceful_closes += other.graceful_closes;
        self.abrupt_closes += other.abrupt_closes;
        self.protocol_errors += other.protocol_errors;
        self.frames_in += other.frames_in;
        self.frames_out += other.frames_out;
        self.binary_frames += other.binary_frames;
        self.oversize_frames += other.oversize_frames;
        self.bad_room_requests += other.bad_room_requests;
        self.layer_errors += other.layer_errors;
    }
}
