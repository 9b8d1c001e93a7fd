//! Churn events (connect, subscribed, close, connect failure) on the run clock, so a person can
//! line a gap up with the disconnect that caused it. Bounded: past the cap, events are counted.

use std::collections::HashMap;
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

/// One event as the log keeps it: 24 bytes, the client label by its index.
#[derive(Debug, Clone, Copy)]
struct Entry {
    at_ns: u64,
    session: u64,
    label: u32,
    kind: EventKind,
}

/// The events kept, how many were not, and the client labels they name.
#[derive(Default)]
struct Kept {
    entries: Vec<Entry>,
    not_kept: u64,
    labels: Vec<Arc<str>>,
    label_index: HashMap<Arc<str>, u32>,
}

impl EventLog {
    /// A log keeping at most `cap` events. Their room (24 bytes an event) is reserved and
    /// written now, so the log never copies itself as it fills, and its pages are resident from
    /// the start: filling it over a long run does not read as leakrun's own RSS growing (which,
    /// with the embedded server in the same process, would read as the server's retention).
    pub fn new(cap: usize) -> Self {
        let mut entries = Vec::with_capacity(cap);
        entries.spare_capacity_mut().fill(std::mem::MaybeUninit::new(Entry {
            at_ns: 0,
            session: 0,
            label: 0,
            kind: EventKind::Connect,
        }));
        Self {
            cap,
            inner: Mutex::new(Kept {
                entries,
                ..Kept::default()
            }),
        }
    }

    /// Appends an event, or counts it when the log is full.
    pub fn record(&self, at_ns: u64, kind: EventKind, client: &str, session: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.entries.len() >= self.cap {
            inner.not_kept += 1;
            return;
        }
        let label = match inner.label_index.get(client) {
            Some(&label) => label,
            None => {
                let label = inner.labels.len() as u32;
                let name: Arc<str> = client.into();
                inner.labels.push(name.clone());
                inner.label_index.insert(name, label);
                label
            }
        };
        inner.entries.push(Entry {
            at_ns,
            session,
            label,
            kind,
        });
    }

    /// The events kept and how many were not.
    pub fn take(&self) -> (Vec<ChurnEvent>, u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let entries = std::mem::take(&mut inner.entries);
        let events = entries
            .iter()
            .map(|e| ChurnEvent {
                at_s: super::clock::secs(e.at_ns),
                kind: e.kind,
                client: inner.labels[e.label as usize].clone(),
                session: e.session,
            })
            .collect();
        (events, std::mem::take(&mut inner.not_kept))
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
        assert_eq!(std::mem::size_of::<Entry>(), 24);
        let json = serde_json::to_string(&events[0]).unwrap();
        assert!(json.contains("\"client\":\"room_a/cycle#0\""), "{json}");
        let back: ChurnEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, events[0]);
    }
}
