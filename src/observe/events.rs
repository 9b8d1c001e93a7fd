//! Churn events (connect, subscribed, close, connect failure) on the run clock, so a person can
//! line a gap up with the disconnect that caused it. Bounded: past the cap, events are counted.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What happened to a connection session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Handshake completed.
    Connect,
    /// The first message arrived: the session is subscribed from here on.
    Subscribed,
    /// The client sent a close frame.
    CloseGraceful,
    /// The client dropped the TCP connection without a close frame.
    CloseAbrupt,
    /// The server ended the connection.
    ClosedByServer,
    /// Connecting failed or timed out.
    ConnectFailed,
    /// A send did not complete within its bound (the server stopped reading); the client dropped
    /// the connection, as after an abrupt close.
    SendTimedOut,
}

/// One churn event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnEvent {
    /// Seconds since the run started.
    pub at_s: f64,
    /// What happened.
    pub kind: EventKind,
    /// Client label, e.g. `room_a/cycle#0`.
    pub client: String,
    /// Session (sender) id; 0 when the session never connected.
    pub session: u64,
}

/// A bounded event log shared by all clients.
pub struct EventLog {
    cap: usize,
    inner: Mutex<(Vec<ChurnEvent>, u64)>,
}

impl EventLog {
    /// A log keeping at most `cap` events.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            inner: Mutex::new((Vec::new(), 0)),
        }
    }

    /// Appends an event, or counts it when the log is full.
    pub fn record(&self, at_ns: u64, kind: EventKind, client: &str, session: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.0.len() < self.cap {
            inner.0.push(ChurnEvent {
                at_s: super::clock::secs(at_ns),
                kind,
                client: client.to_string(),
                session,
            });
        } else {
            inner.1 += 1;
        }
    }

    /// The events kept and how many were not.
    pub fn take(&self) -> (Vec<ChurnEvent>, u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (std::mem::take(&mut inner.0), std::mem::take(&mut inner.1))
    }
}
