//! Churn events (connect, subscribed, close, connect failure) on the run clock, so a person can
//! line a gap up with the disconnect that caused it. Bounded: past the cap, events are counted.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

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
    /// Client label, e.g. `room_a/cycle#0` (one copy per label, shared by its events).
    pub client: Arc<str>,
    /// Session (sender) id; 0 when the session never connected.
    pub session: u64,
}

/// A bounded event log shared by all clients.
pub struct EventLog {
    cap: usize,
    inner: Mutex<Kept>,
}

/// The events kept, how many were not, and the client labels they share.
#[derive(Default)]
struct Kept {
    events: Vec<ChurnEvent>,
    not_kept: u64,
    labels: HashSet<Arc<str>>,
}

impl EventLog {
    /// A log keeping at most `cap` events.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            inner: Mutex::new(Kept::default()),
        }
    }

    /// Appends an event, or counts it when the log is full.
    pub fn record(&self, at_ns: u64, kind: EventKind, client: &str, session: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.events.len() >= self.cap {
            inner.not_kept += 1;
            return;
        }
        let client = match inner.labels.get(client) {
            Some(label) => label.clone(),
            None => {
                let label: Arc<str> = client.into();
                inner.labels.insert(label.clone());
                label
            }
        };
        inner.events.push(ChurnEvent {
            at_s: super::clock::secs(at_ns),
            kind,
            client,
            session,
        });
    }

    /// The events kept and how many were not.
    pub fn take(&self) -> (Vec<ChurnEvent>, u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (std::mem::take(&mut inner.events), std::mem::take(&mut inner.not_kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_share_their_client_label_and_the_log_keeps_its_cap() {
        let log = EventLog::new(3);
        log.record(1_000_000_000, EventKind::Connect, "room_a/cycle#0", 1);
        log.record(2_000_000_000, EventKind::CloseAbrupt, "room_a/cycle#0", 1);
        log.record(3_000_000_000, EventKind::Connect, "room_b/steady#1", 2);
        log.record(4_000_000_000, EventKind::Connect, "room_b/steady#1", 3);
        let (events, not_kept) = log.take();
        assert_eq!(events.len(), 3);
        assert_eq!(not_kept, 1);
        assert!(Arc::ptr_eq(&events[0].client, &events[1].client), "one copy per label");
        assert_eq!(&*events[2].client, "room_b/steady#1");
        assert_eq!(events[1].at_s, 2.0);
        let json = serde_json::to_string(&events[0]).unwrap();
        assert!(json.contains("\"client\":\"room_a/cycle#0\""), "{json}");
        let back: ChurnEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, events[0]);
    }
}
