//! Load: the WebSocket clients and HTTP workers of a scenario, driven through one iteration.
//!
//! One task per client; a client runs one connection session at a time (`session`), and its
//! pattern (`drivers`) decides when sessions start and end. The runner moves every client through
//! the iteration's phases with one `watch` channel: send, quiesce (stop sending), disconnect.
//! HTTP workers (`http`) run until their deadline or until the runner ends the send phase.

pub mod crew;
pub mod drivers;
pub mod http;
pub mod pacing;
pub mod session;
pub mod template;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::observe::clock::RunClock;
use crate::observe::events::EventLog;

/// Where an iteration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Clients connect and send.
    Send,
    /// Sending has stopped; in-flight messages drain.
    Quiesce,
    /// Every client closes now.
    Disconnect,
}

/// Counters the progress display and drain detection read while the load runs.
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Messages written.
    pub sent: AtomicU64,
    /// Messages received.
    pub received: AtomicU64,
    /// Messages seen missing so far (holes opened; some may still be filled by reordering).
    pub suspected_gaps: AtomicU64,
    /// Successful connects.
    pub connects: AtomicU64,
    /// Failed connects.
    pub connect_failures: AtomicU64,
    /// HTTP requests answered (added in batches).
    pub http_answered: AtomicU64,
}

impl LiveCounters {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Everything the clients of one run share.
pub struct LoadContext {
    /// The run clock.
    pub clock: RunClock,
    /// Server instances; client `n` connects to instance `n % len`.
    pub targets: Vec<Endpoint>,
    /// How each frame sent wraps the envelope.
    pub template: template::FrameTemplate,
    /// Room names, indexed like the scenario.
    pub rooms: Vec<String>,
    /// Bound on one connect.
    pub connect_timeout: Duration,
    /// Next session id.
    pub next_session: AtomicU64,
    /// Sending sessions started so far: the next one's place in the run's sequence of send
    /// phases (`pacing::send_offset_ns`).
    pub next_sender: AtomicU64,
    /// Live counters.
    pub live: LiveCounters,
    /// Churn events.
    pub events: EventLog,
    /// The seed of every session's send phase (recorded in the result).
    pub phase_seed: u64,
    /// The run-wide connect pacer (`run.connect_rate`); none: no limit.
    pub pacer: Option<pacing::ConnectPacer>,
}

/// One server instance as clients see it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where the TCP connection goes.
    pub addr: SocketAddr,
    /// The WebSocket URL of each room, indexed like the scenario's rooms.
    pub room_urls: Vec<String>,
    /// Where `[[http]]` workloads connect.
    pub http_addr: SocketAddr,
}

impl Endpoint {
    /// An embedded server instance at `addr`: rooms at `/ws/chat/{room}`.
    pub fn embedded(addr: SocketAddr, rooms: &[String]) -> Self {
        Self {
            addr,
            room_urls: rooms.iter().map(|room| format!("ws://{addr}/ws/chat/{room}")).collect(),
            http_addr: addr,
        }
    }
}

impl LoadContext {
    /// A fresh session id (1-based, unique within the run).
    pub fn new_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The next sending session's place in the run's send phases, from 0.
    pub fn new_sender_ordinal(&self) -> u64 {
        self.next_sender.fetch_add(1, Ordering::Relaxed)
    }
}
