//! What was lost, decided once an iteration is over and both sides of every pair are known.
//!
//! * **gap**: a hole inside the range a receiver got from a sender — a later message arrived, an
//!   earlier one never did. Counted for every receiver, churners included.
//! * **tail loss**: a message the receiver should have had, outside the range it got: sent (by
//!   its intended time) after the receiver's first receipt proves it was subscribed, to a receiver
//!   that stayed connected through the drain. Losses before the first or after the last message
//!   received fall here.
//!
//! A sender's seq `k` was meant for `start + k * interval`, and was sent no earlier, so the window
//! test needs nothing per message.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::clock::{RunClock, secs};
use super::tracker::SeqTracker;

/// One connection session, from both sides: what it sent and what it received.
#[derive(Debug)]
pub struct SessionReport {
    /// Sender id (unique per session within a run).
    pub id: u64,
    /// Client label, e.g. `room_a/cycle#0`.
    pub client: String,
    /// Index of the room in the scenario.
    pub room: usize,
    /// Run-clock ns at handshake completion.
    pub connected_ns: u64,
    /// Run-clock ns when the session ended.
    pub closed_ns: u64,
    /// The session stayed connected until the disconnect phase, after the drain.
    pub lived_through_drain: bool,
    /// Intended time of seq 0.
    pub send_start_ns: u64,
    /// Nanoseconds between intended send times; 0 for a listener.
    pub interval_ns: u64,
    /// Messages written to the socket.
    pub sent: u64,
    /// What it received.
    pub tracker: SeqTracker,
}

/// The two kinds of lost message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// A hole inside the received range.
    Gap,
    /// Expected but outside the received range.
    TailLoss,
}

/// One missing range of one sender at one receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossRecord {
    /// Gap or tail loss.
    pub kind: LossKind,
    /// Room name.
    pub room: String,
    /// Receiver session id.
    pub receiver: u64,
    /// Receiver client label.
    pub receiver_client: String,
    /// Sender session id.
    pub sender: u64,
    /// Sender client label.
    pub sender_client: String,
    /// First missing seq.
    pub first_seq: u64,
    /// Last missing seq (inclusive).
    pub last_seq: u64,
    /// Messages missing in this range.
    pub count: u64,
    /// Seconds since the run started: when the hole was first seen (gap) or when the first missing
    /// message was meant to be sent (tail loss).
    pub at_s: f64,
    /// The same moment as wall time.
    pub wall: String,
}

/// Message accounting for a room or a whole iteration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossTotals {
    /// Messages written by senders.
    pub sent: u64,
    /// Deliveries accepted by receivers.
    pub received: u64,
    /// Messages missing inside received ranges.
    pub gaps: u64,
    /// Expected messages missing outside received ranges.
    pub tail_loss: u64,
    /// Deliveries seen twice.
    pub duplicates: u64,
    /// Deliveries older than one already seen.
    pub reordered: u64,
    /// Deliveries from another room.
    pub misrouted: u64,
    /// Text frames received that held no envelope: counted, not judged.
    #[serde(default)]
    pub frames_without_envelope: u64,
}

impl LossTotals {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &LossTotals) {
        self.sent += other.sent;
        self.received += other.received;
        self.gaps += other.gaps;
        self.tail_loss += other.tail_loss;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.misrouted += other.misrouted;
        self.frames_without_envelope += other.frames_without_envelope;
    }

    /// Messages lost: gaps plus tail loss.
    pub fn lost(&self) -> u64 {
        self.gaps + self.tail_loss
    }
}

/// The analysis of one iteration.
#[derive(Debug, Default)]
pub struct IterationLoss {
    /// Totals over all rooms.
    pub totals: LossTotals,
    /// Totals per room, indexed like the scenario.
    pub per_room: Vec<LossTotals>,
    /// Loss records, ordered by time.
    pub records: Vec<LossRecord>,
}

/// Works out gaps and tail loss for one iteration's sessions in `rooms`.
pub fn analyze(sessions: &[SessionReport], rooms: &[String], clock: &RunClock) -> IterationLoss {
    let mut out = IterationLoss {
        per_room: vec![LossTotals::default(); rooms.len()],
        ..Default::default()
    };
    let by_id: FxHashMap<u64, &SessionReport> = sessions.iter().map(|s| (s.id, s)).collect();
    let mut senders_by_room: Vec<Vec<&SessionReport>> = vec![Vec::new(); rooms.len()];
    for s in sessions.iter().filter(|s| s.sent > 0) {
        senders_by_room[s.room].push(s);
    }
    let label = |id: u64| {
        by_id
            .get(&id)
            .map_or_else(|| format!("session {id}"), |s| s.client.clone())
    };

    for receiver in sessions {
        let room = &mut out.per_room[receiver.room];
        room.sent += receiver.sent;
        room.received += receiver.tracker.received;
        room.duplicates += receiver.tracker.duplicates;
        room.reordered += receiver.tracker.reordered;
        room.misrouted += receiver.tracker.misrouted;
        room.frames_without_envelope += receiver.tracker.without_envelope;
        let mut record = |kind, sender: u64, first: u64, end: u64, at_ns: u64, room: &mut LossTotals| {
            match kind {
                LossKind::Gap => room.gaps += end - first,
                LossKind::TailLoss => room.tail_loss += end - first,
            }
            out.records.push(LossRecord {
                kind,
                room: rooms[receiver.room].clone(),
                receiver: receiver.id,
                receiver_client: receiver.client.clone(),
                sender,
                sender_client: label(sender),
                first_seq: first,
                last_seq: end - 1,
                count: end - first,
                at_s: secs(at_ns),
                wall: clock.wall(at_ns),
            });
        };

        for (&sender, seen) in receiver.tracker.senders() {
            for (first, end) in seen.seen.holes() {
                let at_ns = seen
                    .jumps
                    .iter()
                    .find(|&&(a, b, _)| a <= first && first < b)
                    .map_or(receiver.closed_ns, |j| j.2);
                record(LossKind::Gap, sender, first, end, at_ns, room);
            }
        }

        let Some(subscribed_ns) = receiver.tracker.first_receipt_ns else {
            continue;
        };
        if !receiver.lived_through_drain {
            continue;
        }
        for sender in &senders_by_room[receiver.room] {
            let first_expected = first_seq_at_or_after(sender, subscribed_ns);
            if first_expected >= sender.sent {
                continue;
            }
            let intended = |k: u64| sender.send_start_ns + k * sender.interval_ns;
            match receiver
                .tracker
                .senders()
                .get(&sender.id)
                .map(|s| (s.seen.min(), s.seen.max()))
            {
                Some((Some(min), Some(max))) => {
                    if first_expected < min {
                        record(
                            LossKind::TailLoss,
                            sender.id,
                            first_expected,
                            min,
                            intended(first_expected),
                            room,
                        );
                    }
                    if max + 1 < sender.sent {
                        let from = (max + 1).max(first_expected);
                        record(LossKind::TailLoss, sender.id, from, sender.sent, intended(from), room);
                    }
                }
                _ => record(
                    LossKind::TailLoss,
                    sender.id,
                    first_expected,
                    sender.sent,
                    intended(first_expected),
                    room,
                ),
            }
        }
    }
    for room in &out.per_room {
        out.totals.add(room);
    }
    out.records.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    out
}

/// First seq of `sender` whose intended send time is at or after `ns`.
fn first_seq_at_or_after(sender: &SessionReport, ns: u64) -> u64 {
    if ns <= sender.send_start_ns || sender.interval_ns == 0 {
        return 0;
    }
    (ns - sender.send_start_ns).div_ceil(sender.interval_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;

    fn session(id: u64, sent: u64, lived: bool) -> SessionReport {
        SessionReport {
            id,
            client: format!("c{id}"),
            room: 0,
            connected_ns: 0,
            closed_ns: 10_000,
            lived_through_drain: lived,
            send_start_ns: 100,
            interval_ns: 100,
            sent,
            tracker: SeqTracker::default(),
        }
    }

    fn receive(s: &mut SessionReport, sender: u64, seqs: impl IntoIterator<Item = u64>, at: u64) {
        for seq in seqs {
            s.tracker.observe(
                &Envelope {
                    sender,
                    seq,
                    room: "r",
                    intended_us: 0,
                },
                "r",
                at,
            );
        }
    }

    #[test]
    fn finds_gaps_and_tail_loss() {
        let sender = session(1, 10, false);
        let mut steady = session(2, 0, true);
        // Subscribed at 150ns: seq 0 (meant for 100ns) is not expected, seq 1 (200ns) on is.
        receive(&mut steady, 1, [1, 2, 4, 5, 6, 7], 150);
        let mut churner = session(3, 0, false);
        receive(&mut churner, 1, [0, 2], 120);
        let loss = analyze(&[sender, steady, churner], &["r".into()], &RunClock::start());
        assert_eq!(loss.totals.gaps, 2, "{:?}", loss.records); // 3 at the steady one, 1 at the churner
        assert_eq!(loss.totals.tail_loss, 2); // 8 and 9 at the steady one only
        let tail: Vec<_> = loss.records.iter().filter(|r| r.kind == LossKind::TailLoss).collect();
        assert_eq!((tail[0].first_seq, tail[0].last_seq, tail[0].receiver), (8, 9, 2));
    }

    #[test]
    fn a_receiver_that_heard_nothing_lost_everything_it_was_owed() {
        let sender = session(1, 5, true);
        let mut listener = session(2, 0, true);
        receive(&mut listener, 9, [0], 50); // heard someone else at 50ns: subscribed before seq 0
        let loss = analyze(&[sender, listener], &["r".into()], &RunClock::start());
        // The sender itself heard nothing, so it is owed nothing (never proved subscribed).
        assert_eq!(loss.totals.tail_loss, 5);
    }
}
