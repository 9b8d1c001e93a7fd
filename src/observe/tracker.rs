//! The sequence tracker of one receiving connection session.
//!
//! For each sender it keeps the sequence numbers seen as a [`RangeSet`] and the holes it saw open
//! (with when), and counts duplicates, reordered and misrouted messages as they arrive. Deciding
//! what was lost needs the senders' side too and happens after the iteration in `analysis`.
//!
//! The state grows with what the receiver heard, never with what it might hear: one entry per
//! sender it received from (kept sorted by id, so it is found by binary search, the last one
//! looked up first), each as small as its ranges and holes.
//!
//! Tokens come from the network and are not trusted: one with another run's nonce is counted as
//! `foreign`, one whose sender was never issued (or whose seq no sender can reach) as `forged`,
//! and neither is tracked, so a hostile server cannot grow this state with made-up senders.

use super::ranges::RangeSet;
use crate::envelope::Envelope;

/// What one sender looked like from one receiver.
#[derive(Debug, Clone, Default)]
pub struct SenderSeen {
    /// Sequence numbers received.
    pub seen: RangeSet,
    /// Holes as they opened: `(first missing, end exclusive, run-clock ns)`, in increasing order
    /// (a hole opens only past the newest seq seen), so one can be found by binary search.
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
    /// A token of this run that no sender of it sent: an unknown sender, or an impossible seq.
    Forged,
    /// A token with another run's nonce.
    Foreign,
}

const MAX_MISROUTE_SAMPLES: usize = 16;

/// Sequence bookkeeping for one receiver session.
#[derive(Debug, Default)]
pub struct SeqTracker {
    nonce: u64,
    /// One entry per sender heard from, sorted by sender id.
    senders: Vec<(u64, SenderSeen)>,
    /// Index into `senders` of the last sender looked up: a receiver mostly hears one sender
    /// after another of a few.
    last: usize,
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
    /// Tokens of this run from a sender never issued, or with a seq no sender reaches.
    pub forged: u64,
    /// Tokens with another run's nonce: ignored and counted.
    pub foreign: u64,
}

impl SeqTracker {
    /// A tracker for a receiver of the run whose nonce is `nonce`.
    pub fn for_run(nonce: u64) -> Self {
        Self {
            nonce,
            ..Self::default()
        }
    }

    /// Records one message received at `now_ns` by a receiver in `own_room`, when the run has
    /// issued sender ids up to `issued` (ids are 1-based).
    pub fn observe(&mut self, envelope: &Envelope<'_>, own_room: &str, now_ns: u64, issued: u64) -> Arrival {
        if envelope.nonce != self.nonce {
            self.foreign += 1;
            return Arrival::Foreign;
        }
        if envelope.sender == 0 || envelope.sender > issued || envelope.seq == u64::MAX {
            self.forged += 1;
            return Arrival::Forged;
        }
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
        let state = Self::sender_mut(&mut self.senders, &mut self.last, envelope.sender);
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

    /// The first hole opened at or after `first` in `seen`'s jumps, and when: the moment a hole
    /// starting at `first` was first seen. Binary search over the jumps.
    pub fn opened_at(seen: &SenderSeen, first: u64) -> Option<u64> {
        let i = seen.jumps.partition_point(|&(_, end, _)| end <= first);
        seen.jumps.get(i).filter(|j| j.0 <= first).map(|j| j.2)
    }

    /// The state of `sender`, made when it is first heard from.
    fn sender_mut<'a>(senders: &'a mut Vec<(u64, SenderSeen)>, last: &mut usize, sender: u64) -> &'a mut SenderSeen {
        let at = match senders.get(*last) {
            Some(&(id, _)) if id == sender => *last,
            _ => match senders.binary_search_by_key(&sender, |&(id, _)| id) {
                Ok(at) => at,
                Err(at) => {
                    senders.insert(at, (sender, SenderSeen::default()));
                    at
                }
            },
        };
        *last = at;
        &mut senders[at].1
    }

    /// Per-sender state, for the analysis after the iteration: every sender heard from, by
    /// increasing id.
    pub fn senders(&self) -> impl Iterator<Item = (u64, &SenderSeen)> + '_ {
        self.senders.iter().map(|(id, seen)| (*id, seen))
    }

    /// What was seen of `sender`, if it was heard from.
    pub fn sender(&self, sender: u64) -> Option<&SenderSeen> {
        self.senders
            .binary_search_by_key(&sender, |&(id, _)| id)
            .ok()
            .map(|at| &self.senders[at].1)
    }

    /// How many senders were heard from (the entries this tracker holds).
    pub fn senders_heard(&self) -> usize {
        self.senders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(sender: u64, seq: u64, room: &str) -> Envelope<'_> {
        Envelope {
            nonce: 0,
            sender,
            seq,
            room,
            intended_us: 0,
        }
    }

    #[test]
    fn classifies_arrivals() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(&env(1, 5, "a"), "a", 10, 2), Arrival::InOrder);
        assert_eq!(t.observe(&env(1, 6, "a"), "a", 11, 2), Arrival::InOrder);
        assert_eq!(t.observe(&env(1, 9, "a"), "a", 12, 2), Arrival::Jump(2));
        assert_eq!(t.observe(&env(1, 7, "a"), "a", 13, 2), Arrival::Reordered);
        assert_eq!(t.observe(&env(1, 7, "a"), "a", 14, 2), Arrival::Duplicate);
        assert_eq!(t.observe(&env(2, 0, "b"), "a", 15, 2), Arrival::Misrouted);
        assert_eq!((t.received, t.duplicates, t.reordered, t.misrouted), (4, 1, 1, 1));
        assert_eq!(t.first_receipt_ns, Some(10));
        let seen = t.sender(1).expect("sender 1 was heard");
        assert_eq!(seen.seen.holes().collect::<Vec<_>>(), [(8, 9)]);
        assert_eq!(seen.jumps, [(7, 9, 12)]);
        assert_eq!(SeqTracker::opened_at(seen, 8), Some(12));
        assert_eq!(SeqTracker::opened_at(seen, 9), None);
    }

    #[test]
    fn forged_and_foreign_tokens_are_counted_and_not_tracked() {
        let mut t = SeqTracker::for_run(7);
        let own = |sender, seq| Envelope {
            nonce: 7,
            ..env(sender, seq, "a")
        };
        assert_eq!(t.observe(&own(1, u64::MAX), "a", 1, 3), Arrival::Forged);
        assert_eq!(t.observe(&own(4, 0), "a", 1, 3), Arrival::Forged, "never issued");
        assert_eq!(t.observe(&own(0, 0), "a", 1, 3), Arrival::Forged);
        assert_eq!(t.observe(&env(1, 0, "a"), "a", 1, 3), Arrival::Foreign);
        assert_eq!(t.observe(&own(1, u64::MAX - 1), "a", 2, 3), Arrival::InOrder);
        assert_eq!(t.observe(&own(1, u64::MAX - 1), "a", 2, 3), Arrival::Duplicate);
        assert_eq!((t.forged, t.foreign, t.received), (3, 1, 1));
        assert_eq!(t.first_receipt_ns, Some(2), "untrusted tokens prove no subscription");
        assert_eq!(t.senders_heard(), 1);
    }

    #[test]
    fn holds_only_the_senders_heard_and_finds_each() {
        let mut t = SeqTracker::default();
        assert_eq!(t.senders_heard(), 0, "nothing is kept before anything arrives");
        for (sender, seq) in [(7, 0), (3, 0), (7, 1), (9, 0), (3, 1), (3, 3), (7, 2)] {
            t.observe(&env(sender, seq, "a"), "a", 1, 10);
        }
        assert_eq!(t.senders_heard(), 3);
        let ids: Vec<u64> = t.senders().map(|(id, _)| id).collect();
        assert_eq!(ids, [3, 7, 9]);
        assert_eq!(t.sender(7).map(|s| s.seen.len()), Some(3));
        assert_eq!(
            t.sender(3).map(|s| s.seen.holes().collect::<Vec<_>>()),
            Some(vec![(2, 3)])
        );
        assert!(t.sender(5).is_none());
    }
}
