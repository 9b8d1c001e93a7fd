//! The sequence tracker of one receiving connection session.
//!
//! For each sender it keeps the sequence numbers seen as a [`RangeSet`] and the holes it saw open
//! (with when), and counts duplicates, reordered and misrouted messages as they arrive. Deciding
//! what was lost needs the senders' side too and happens after the iteration in `analysis`.

use rustc_hash::FxHashMap;

use super::ranges::RangeSet;
use crate::envelope::Envelope;

/// What one sender looked like from one receiver.
#[derive(Debug, Clone, Default)]
pub struct SenderSeen {
    /// Sequence numbers received.
    pub seen: RangeSet,
    /// Holes as they opened: `(first missing, end exclusive, run-clock ns)`.
    pub jumps: Vec<(u64, u64, u64)>,
}

/// A message from another room, kept as evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misroute {
    /// Sender id.
    pub sender: u64,
    /// Sequence number.
    pub seq: u64,
    /// The room the sender addressed.
    pub from_room: String,
    /// Run-clock ns of receipt.
    pub at_ns: u64,
}

/// How one message related to what came before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next expected, or a sender's first.
    InOrder,
    /// Ahead of the next expected: this many went missing (so far).
    Jump(u64),
    /// Seen before.
    Duplicate,
    /// Older than the newest seen, filling a hole.
    Reordered,
    /// From another room.
    Misrouted,
}

const MAX_MISROUTE_SAMPLES: usize = 16;

/// Sequence bookkeeping for one receiver session.
#[derive(Debug, Default)]
pub struct SeqTracker {
    senders: FxHashMap<u64, SenderSeen>,
    /// Messages accepted (not misrouted, not duplicate).
    pub received: u64,
    /// Messages seen twice.
    pub duplicates: u64,
    /// Messages that arrived after a newer one from the same sender.
    pub reordered: u64,
    /// Messages from another room.
    pub misrouted: u64,
    /// The first few misrouted messages.
    pub misroute_samples: Vec<Misroute>,
    /// Run-clock ns of the first message received: from then on, the receiver was subscribed.
    pub first_receipt_ns: Option<u64>,
    /// Text frames that held no envelope (a server's own notices, say): counted, not judged.
    pub without_envelope: u64,
}

impl SeqTracker {
    /// Records one message received at `now_ns` by a receiver in `own_room`.
    pub fn observe(&mut self, envelope: &Envelope<'_>, own_room: &str, now_ns: u64) -> Arrival {
        self.first_receipt_ns.get_or_insert(now_ns);
        if envelope.room != own_room {
            self.misrouted += 1;
            if self.misroute_samples.len() < MAX_MISROUTE_SAMPLES {
                self.misroute_samples.push(Misroute {
                    sender: envelope.sender,
                    seq: envelope.seq,
                    from_room: envelope.room.to_string(),
                    at_ns: now_ns,
                });
            }
            return Arrival::Misrouted;
        }
        let state = self.senders.entry(envelope.sender).or_default();
        let previous_max = state.seen.max();
        if !state.seen.insert(envelope.seq) {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.received += 1;
        match previous_max {
            Some(max) if envelope.seq > max + 1 => {
                state.jumps.push((max + 1, envelope.seq, now_ns));
                Arrival::Jump(envelope.seq - max - 1)
            }
            Some(max) if envelope.seq < max => {
                self.reordered += 1;
                Arrival::Reordered
            }
            _ => Arrival::InOrder,
        }
    }

    /// Per-sender state, for the analysis after the iteration.
    pub fn senders(&self) -> &FxHashMap<u64, SenderSeen> {
        &self.senders
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(sender: u64, seq: u64, room: &str) -> Envelope<'_> {
        Envelope {
            sender,
            seq,
            room,
            intended_us: 0,
        }
    }

    #[test]
    fn classifies_arrivals() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(&env(1, 5, "a"), "a", 10), Arrival::InOrder);
        assert_eq!(t.observe(&env(1, 6, "a"), "a", 11), Arrival::InOrder);
        assert_eq!(t.observe(&env(1, 9, "a"), "a", 12), Arrival::Jump(2));
        assert_eq!(t.observe(&env(1, 7, "a"), "a", 13), Arrival::Reordered);
        assert_eq!(t.observe(&env(1, 7, "a"), "a", 14), Arrival::Duplicate);
        assert_eq!(t.observe(&env(2, 0, "b"), "a", 15), Arrival::Misrouted);
        assert_eq!((t.received, t.duplicates, t.reordered, t.misrouted), (4, 1, 1, 1));
        assert_eq!(t.first_receipt_ns, Some(10));
        let seen = &t.senders()[&1];
        assert_eq!(seen.seen.holes().collect::<Vec<_>>(), [(8, 9)]);
        assert_eq!(seen.jumps, [(7, 9, 12)]);
    }
}
