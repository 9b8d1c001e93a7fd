//! What was lost, decided once an iteration is over and both sides of every pair are known.
//!
//! * **gap**: a hole inside the range a receiver got from a sender — a later message arrived, an
//!   earlier one never did. Counted for every receiver, churners included.
//! * **tail loss**: a message the receiver should have had, outside the range it got: sent (by
//!   its intended time) after the receiver's first receipt proves it was subscribed, to a receiver
//!   that stayed connected through the drain. Losses before the first or after the last message
//!   received fall here.
//! * **unconfirmed**: a missing message of a sender whose session ended abruptly, sent after the
//!   last message of that sender any receiver got: the server may never have read it (its frames
//!   were in flight when the TCP connection went). Counted, not lost. A message one receiver got
//!   and another did not is lost whatever its sender did after; after a graceful close, frames
//!   sent before the close frame are lost when missing.
//! * **forged**: a token of this run whose seq is past what its sender sent, or whose sender did
//!   not send in this iteration: counted, never a loss (see also `tracker`).
//!
//! A sender's seq `k` was meant for `start + k * interval`, and was sent no earlier, so the window
//! test needs nothing per message.
//!
//! Beyond the counts, every distinct lost message (sender, seq) gets a **cause** from the delivery
//! latency around its send time (`while_healthy` or `under_backlog`) and a **signature**: whether
//! every, some or one of the receivers owed it missed it, whether rooms lost within the same short
//! window, and whether losses follow disconnects more than random times would. A kept gap or
//! tail-loss record carries the cause of its first missing message, from the same judgement (one
//! per latency window) the causes' counts use.
//!
//! All of it is computed per sender with one sweep over the receivers' missing intervals, so time
//! is near-linear in the losses and memory is the trackers' own plus counters; the records kept
//! for people are capped at [`MAX_KEPT_RECORDS`] (the earliest), the rest only counted.

use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::clock::{RunClock, secs};
use super::events::EventKind;
use super::latency::LatencyWindows;
use super::tracker::{SenderSeen, SeqTracker};

/// Most loss records an iteration (and a result) keeps: the earliest.
pub const MAX_KEPT_RECORDS: usize = 1000;
/// A loss this soon after a disconnect "follows" it.
pub const AFTER_DISCONNECT_NS: u64 = 100_000_000;
/// Width of the windows in which rooms are said to lose together.
pub const TOGETHER_NS: u64 = 100_000_000;
/// Windows before a loss over which a rising delivery p99 counts as climbing.
const CLIMB_WINDOWS: u64 = 4;

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
    /// How it ended: `CloseGraceful`, `CloseAbrupt`, `ClosedByServer` or `SendTimedOut`.
    pub ended: EventKind,
    /// What it received.
    pub tracker: SeqTracker,
}

/// The kinds of missing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// A hole inside the received range.
    Gap,
    /// Expected but outside the received range.
    TailLoss,
    /// Sent by an abruptly closed sender after the last of its messages anyone received: the
    /// server may never have read it. Not a loss unless `thresholds.unconfirmed` says so.
    Unconfirmed,
}

/// One missing range of one sender at one receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossRecord {
    /// Gap, tail loss or unconfirmed.
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
    /// message was meant to be sent (tail loss, unconfirmed).
    pub at_s: f64,
    /// The same moment as wall time.
    pub wall: String,
    /// Why it was lost (gap, tail loss): the cause of its first missing message, judged as
    /// `verdicts.gaps.causes` counts it. None for unconfirmed, and in results written before
    /// records carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
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
    /// Missing deliveries of messages that abruptly closed senders may never have had read.
    #[serde(default)]
    pub unconfirmed: u64,
    /// Tokens of this run no sender of it sent (unknown sender, seq past what it sent).
    #[serde(default)]
    pub forged: u64,
    /// Tokens with another run's nonce, ignored.
    #[serde(default)]
    pub foreign: u64,
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
        self.unconfirmed += other.unconfirmed;
        self.forged += other.forged;
        self.foreign += other.foreign;
    }

    /// Messages lost: gaps plus tail loss.
    pub fn lost(&self) -> u64 {
        self.gaps + self.tail_loss
    }
}

/// Why a distinct message was lost, from the delivery latency around its send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Delivery latency stayed within the limit over the windows around it: a silent drop.
    WhileHealthy,
    /// Delivery latency was past the limit around it, or climbing over the windows before it:
    /// the server fell behind.
    UnderBacklog,
}

/// Distinct lost messages by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Causes {
    /// Lost while delivery latency was within limits.
    pub while_healthy: u64,
    /// Lost while delivery latency was past its limit or climbing.
    pub under_backlog: u64,
    /// The highest delivery p99 (µs) in the windows around a loss `while_healthy`.
    pub healthy_p99_us: u64,
    /// The highest delivery latency (µs) in the windows around a loss `under_backlog`.
    pub backlog_peak_us: u64,
}

/// Distinct lost messages by how many of the receivers owed each one missed it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissedBy {
    /// Every receiver owed it missed it: the server never passed it on.
    pub every: u64,
    /// More than one, not all.
    pub some: u64,
    /// Exactly one, while another receiver got it.
    pub one: u64,
}

/// How loss times line up: across rooms, and with disconnects against a random baseline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    /// Windows of [`TOGETHER_NS`] send time holding a lost message.
    pub loss_windows: u64,
    /// Of those, windows in which more than one room lost a message.
    pub loss_windows_several_rooms: u64,
    /// Distinct lost messages meant to be sent within [`AFTER_DISCONNECT_NS`] after a disconnect.
    pub after_disconnect: u64,
    /// Distinct lost messages judged for it (all of them).
    pub judged: u64,
    /// Nanoseconds of send time within [`AFTER_DISCONNECT_NS`] after a disconnect...
    pub covered_ns: u64,
    /// ...of this many of send time in all: their ratio is the share uniformly random times
    /// would give.
    pub span_ns: u64,
}

impl Signature {
    /// The share of losses after a disconnect, and the share random times would give.
    pub fn after_disconnect_shares(&self) -> Option<(f64, f64)> {
        (self.judged > 0 && self.span_ns > 0).then(|| {
            (
                self.after_disconnect as f64 / self.judged as f64,
                self.covered_ns as f64 / self.span_ns as f64,
            )
        })
    }
}

/// What the losses of an iteration (or a run) looked like, beyond their counts; every figure a
/// counter, so iterations add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Forensics {
    /// Distinct (sender, seq) messages lost: one dropped group message is one, however many
    /// receivers missed it.
    pub distinct_lost: u64,
    /// Distinct messages unconfirmed.
    pub distinct_unconfirmed: u64,
    /// Distinct lost messages by cause.
    pub causes: Causes,
    /// Distinct lost messages by how many receivers missed each.
    pub missed_by: MissedBy,
    /// How loss times line up.
    pub signature: Signature,
}

impl Forensics {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Forensics) {
        self.distinct_lost += other.distinct_lost;
        self.distinct_unconfirmed += other.distinct_unconfirmed;
        let (c, o) = (&mut self.causes, &other.causes);
        c.while_healthy += o.while_healthy;
        c.under_backlog += o.under_backlog;
        c.healthy_p99_us = c.healthy_p99_us.max(o.healthy_p99_us);
        c.backlog_peak_us = c.backlog_peak_us.max(o.backlog_peak_us);
        let (m, o) = (&mut self.missed_by, &other.missed_by);
        m.every += o.every;
        m.some += o.some;
        m.one += o.one;
        let (g, o) = (&mut self.signature, &other.signature);
        g.loss_windows += o.loss_windows;
        g.loss_windows_several_rooms += o.loss_windows_several_rooms;
        g.after_disconnect += o.after_disconnect;
        g.judged += o.judged;
        g.covered_ns += o.covered_ns;
        g.span_ns += o.span_ns;
    }
}

/// What judges the health around a loss: the iteration's delivery-latency windows and the limit.
#[derive(Debug, Clone, Copy)]
pub struct Health<'a> {
    /// Delivery latency per window of receipt time.
    pub windows: &'a LatencyWindows,
    /// The delivery p99 past which the server is behind (µs).
    pub p99_limit_us: u64,
}

impl Health<'_> {
    /// The cause of a loss of a message meant to be sent at `at_ns`, with the highest p99 and the
    /// highest latency in the windows around it.
    pub fn judge(&self, at_ns: u64) -> (Cause, u64, u64) {
        let width = self.windows.width_ns();
        let index = at_ns / width;
        let sketch_of = |i: u64| self.windows.at(i.saturating_mul(width));
        let around: Vec<_> = (index.saturating_sub(1)..=index + 1).filter_map(sketch_of).collect();
        let (p99, peak) = around
            .iter()
            .fold((0, 0), |(p, m), s| (p.max(s.quantile(0.99)), m.max(s.quantile(1.0))));
        if around.is_empty() {
            // Nothing delivered around it: what came next tells whether the server was stalled.
            return match self.windows.next_after(at_ns) {
                Some(next) if next.quantile(0.99) <= self.p99_limit_us => {
                    (Cause::WhileHealthy, next.quantile(0.99), next.quantile(1.0))
                }
                Some(next) => (Cause::UnderBacklog, next.quantile(0.99), next.quantile(1.0)),
                None => (Cause::UnderBacklog, 0, 0),
            };
        }
        if p99 > self.p99_limit_us {
            return (Cause::UnderBacklog, p99, peak);
        }
        // Climbing: over the windows before, p99 never fell by more than a tenth from one window
        // to the next and rose by a quarter of the limit at least.
        let before: Vec<u64> = (index.saturating_sub(CLIMB_WINDOWS)..=index)
            .filter_map(sketch_of)
            .map(|s| s.quantile(0.99))
            .collect();
        let climbing = before.len() as u64 > CLIMB_WINDOWS / 2
            && before.windows(2).all(|w| w[1] >= w[0] - w[0] / 10)
            && before[before.len() - 1].saturating_sub(before[0]) >= self.p99_limit_us / 4;
        if climbing {
            (Cause::UnderBacklog, p99, peak)
        } else {
            (Cause::WhileHealthy, p99, peak)
        }
    }
}

/// The analysis of one iteration.
#[derive(Debug, Default)]
pub struct IterationLoss {
    /// Totals over all rooms.
    pub totals: LossTotals,
    /// Totals per room, indexed like the scenario.
    pub per_room: Vec<LossTotals>,
    /// The earliest loss records, at most [`MAX_KEPT_RECORDS`], ordered by time.
    pub records: Vec<LossRecord>,
    /// Loss records found in all (kept or not).
    pub total_records: u64,
    /// Causes and signature of the losses.
    pub forensics: Forensics,
}

/// A record in the bounded heap: ordered by time, so the latest is dropped first.
struct ByTime(LossRecord);

impl PartialEq for ByTime {
    fn eq(&self, other: &Self) -> bool {
        self.0.at_s.total_cmp(&other.0.at_s).is_eq()
    }
}
impl Eq for ByTime {}
impl PartialOrd for ByTime {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByTime {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.at_s.total_cmp(&other.0.at_s)
    }
}

/// The earliest records, at most [`MAX_KEPT_RECORDS`], and how many were offered.
#[derive(Default)]
struct Kept {
    heap: BinaryHeap<ByTime>,
    offered: u64,
}

impl Kept {
    fn offer(&mut self, at_s: f64, make: impl FnOnce() -> LossRecord) {
        self.offered += 1;
        if self.heap.len() == MAX_KEPT_RECORDS {
            match self.heap.peek() {
                Some(latest) if latest.0.at_s > at_s => {
                    self.heap.pop();
                }
                _ => return,
            }
        }
        self.heap.push(ByTime(make()));
    }

    fn into_sorted(self) -> Vec<LossRecord> {
        self.heap.into_sorted_vec().into_iter().map(|r| r.0).collect()
    }
}

/// Works out gaps, tail loss and unconfirmed messages for one iteration's sessions in `rooms`,
/// with the cause and signature of each distinct lost message.
pub fn analyze(sessions: &[SessionReport], rooms: &[String], clock: &RunClock, health: Health<'_>) -> IterationLoss {
    let mut per_room = vec![LossTotals::default(); rooms.len()];
    let mut forensics = Forensics::default();
    let mut kept = Kept::default();
    let by_id: FxHashMap<u64, &SessionReport> = sessions.iter().map(|s| (s.id, s)).collect();

    // Every (sender, receiver) pair that can hold a loss: a receiver that lived through the drain
    // is owed every sender of its room; any other only what it saw of a sender (its holes).
    let mut senders_by_room: Vec<Vec<&SessionReport>> = vec![Vec::new(); rooms.len()];
    for s in sessions.iter().filter(|s| s.sent > 0 && s.room < rooms.len()) {
        senders_by_room[s.room].push(s);
    }
    let mut pairs: FxHashMap<u64, Vec<(&SessionReport, Option<&SenderSeen>)>> = FxHashMap::default();
    for receiver in sessions.iter().filter(|r| r.room < rooms.len()) {
        let t = &receiver.tracker;
        let room = &mut per_room[receiver.room];
        room.sent += receiver.sent;
        room.received += t.received;
        room.duplicates += t.duplicates;
        room.reordered += t.reordered;
        room.misrouted += t.misrouted;
        room.frames_without_envelope += t.without_envelope;
        room.forged += t.forged;
        room.foreign += t.foreign;
        let owed_all = receiver.lived_through_drain && t.first_receipt_ns.is_some();
        for (sender, seen) in t.senders() {
            let known = by_id.get(&sender).filter(|s| s.room == receiver.room && s.sent > 0);
            match known {
                Some(_) => {
                    if !owed_all {
                        pairs.entry(sender).or_default().push((receiver, Some(seen)));
                    }
                }
                None => {
                    // No sender of this iteration sent it: every token of it is forged.
                    room.forged += seen.seen.len();
                    room.received -= seen.seen.len().min(room.received);
                }
            }
        }
        if owed_all {
            for sender in &senders_by_room[receiver.room] {
                pairs
                    .entry(sender.id)
                    .or_default()
                    .push((receiver, t.sender(sender.id)));
            }
        }
    }

    let mut disconnects: Vec<u64> = sessions
        .iter()
        .filter(|s| !s.lived_through_drain)
        .map(|s| s.closed_ns)
        .collect();
    disconnects.sort_unstable();
    let mut together: FxHashMap<u64, (usize, bool)> = FxHashMap::default();
    // One judgement per latency window, shared by the causes' counts and the kept records.
    let mut causes_cache: FxHashMap<u64, (Cause, u64, u64)> = FxHashMap::default();
    let width_ns = health.windows.width_ns();
    let mut judge = |t: u64| *causes_cache.entry(t / width_ns).or_insert_with(|| health.judge(t));

    let mut sender_ids: Vec<u64> = pairs.keys().copied().collect();
    sender_ids.sort_unstable();
    for id in sender_ids {
        let sender = by_id[&id];
        let receivers = &pairs[&id];
        let sent = sender.sent;
        let intended = |k: u64| {
            sender
                .send_start_ns
                .saturating_add(k.saturating_mul(sender.interval_ns))
        };
        // The first seq nobody received, when the sender closed abruptly: from there on its
        // frames may have been in flight when the connection went.
        let confirmed_end = if matches!(sender.ended, EventKind::CloseAbrupt | EventKind::SendTimedOut) {
            receivers
                .iter()
                .filter_map(|(_, seen)| seen.and_then(|s| s.seen.max()))
                .filter(|&max| max < sent)
                .max()
                .map_or(0, |max| max + 1)
        } else {
            sent
        };
        let room_index = sender.room;
        let room_name = &rooms[room_index];
        // Sweep events: (seq, change in receivers owed, change in receivers missing).
        let mut events: Vec<(u64, i64, i64)> = Vec::new();
        for &(receiver, seen) in receivers {
            let room = &mut per_room[room_index];
            let ranges = seen.map_or(&[][..], |s| s.seen.ranges());
            let forged: u64 = ranges.iter().map(|&(a, b)| b.saturating_sub(a.max(sent))).sum();
            room.forged += forged;
            room.received -= forged.min(room.received);
            let clipped = || {
                ranges
                    .iter()
                    .filter(|&&(a, _)| a < sent)
                    .map(|&(a, b)| (a, b.min(sent)))
            };
            let min_seen = clipped().next().map(|r| r.0);
            let max_seen = clipped().next_back().map(|r| r.1 - 1);
            let (lo, hi) = match (receiver.lived_through_drain, receiver.tracker.first_receipt_ns) {
                (true, Some(subscribed)) => {
                    let first = first_seq_at_or_after(sender, subscribed);
                    (min_seen.map_or(first, |m| m.min(first)), sent)
                }
                _ => match (min_seen, max_seen) {
                    (Some(min), Some(max)) => (min, max + 1),
                    _ => continue,
                },
            };
            if lo >= hi {
                continue;
            }
            events.push((lo, 1, 0));
            events.push((hi, -1, 0));
            let mut missing = |first: u64, end: u64| {
                events.push((first, 0, 1));
                events.push((end, 0, -1));
                let inside = matches!((min_seen, max_seen), (Some(min), Some(max)) if min < first && end <= max);
                let mut piece = |kind: LossKind, first: u64, end: u64| {
                    if first >= end {
                        return;
                    }
                    let at_ns = match kind {
                        LossKind::Gap => seen
                            .and_then(|s| SeqTracker::opened_at(s, first))
                            .unwrap_or(receiver.closed_ns),
                        _ => intended(first),
                    };
                    let room = &mut per_room[room_index];
                    match kind {
                        LossKind::Gap => room.gaps += end - first,
                        LossKind::TailLoss => room.tail_loss += end - first,
                        LossKind::Unconfirmed => room.unconfirmed += end - first,
                    }
                    kept.offer(secs(at_ns), || LossRecord {
                        cause: (kind != LossKind::Unconfirmed).then(|| judge(intended(first)).0),
                        kind,
                        room: room_name.clone(),
                        receiver: receiver.id,
                        receiver_client: receiver.client.clone(),
                        sender: sender.id,
                        sender_client: sender.client.clone(),
                        first_seq: first,
                        last_seq: end - 1,
                        count: end - first,
                        at_s: secs(at_ns),
                        wall: clock.wall(at_ns),
                    });
                };
                if inside {
                    piece(LossKind::Gap, first, end);
                } else {
                    piece(LossKind::TailLoss, first, end.min(confirmed_end));
                    piece(LossKind::Unconfirmed, first.max(confirmed_end), end);
                }
            };
            let mut cursor = lo;
            for (a, b) in clipped() {
                if b <= cursor {
                    continue;
                }
                if a > cursor {
                    missing(cursor, a.min(hi));
                }
                cursor = cursor.max(b);
                if cursor >= hi {
                    break;
                }
            }
            if cursor < hi {
                missing(cursor, hi);
            }
        }

        events.sort_unstable();
        let (mut owed, mut missed) = (0i64, 0i64);
        let mut at = 0u64;
        let mut index = 0;
        while index < events.len() {
            let next = events[index].0;
            if missed > 0 && next > at {
                // [at, next): `missed` of `owed` receivers lack every seq in it.
                let lost_end = next.min(confirmed_end);
                if at < lost_end {
                    let count = lost_end - at;
                    forensics.distinct_lost += count;
                    let by = &mut forensics.missed_by;
                    if missed >= owed {
                        by.every += count;
                    } else if missed == 1 {
                        by.one += count;
                    } else {
                        by.some += count;
                    }
                    for k in at..lost_end {
                        let t = intended(k);
                        let (cause, p99, peak) = judge(t);
                        let c = &mut forensics.causes;
                        match cause {
                            Cause::WhileHealthy => {
                                c.while_healthy += 1;
                                c.healthy_p99_us = c.healthy_p99_us.max(p99);
                            }
                            Cause::UnderBacklog => {
                                c.under_backlog += 1;
                                c.backlog_peak_us = c.backlog_peak_us.max(peak);
                            }
                        }
                        let g = &mut forensics.signature;
                        g.judged += 1;
                        let i = disconnects.partition_point(|&d| d <= t);
                        if i > 0 && t - disconnects[i - 1] <= AFTER_DISCONNECT_NS {
                            g.after_disconnect += 1;
                        }
                        together
                            .entry(t / TOGETHER_NS)
                            .and_modify(|(first, several)| *several |= *first != room_index)
                            .or_insert((room_index, false));
                    }
                }
                let unconfirmed_start = at.max(confirmed_end);
                if unconfirmed_start < next {
                    forensics.distinct_unconfirmed += next - unconfirmed_start;
                }
            }
            while index < events.len() && events[index].0 == next {
                owed += events[index].1;
                missed += events[index].2;
                index += 1;
            }
            at = next;
        }
    }

    let g = &mut forensics.signature;
    g.loss_windows = together.len() as u64;
    g.loss_windows_several_rooms = together.values().filter(|(_, several)| *several).count() as u64;
    let (span_ns, covered_ns) = disconnect_coverage(sessions, &disconnects);
    g.span_ns = span_ns;
    g.covered_ns = covered_ns;

    let mut totals = LossTotals::default();
    per_room.iter().for_each(|room| totals.add(room));
    let total_records = kept.offered;
    IterationLoss {
        totals,
        per_room,
        records: kept.into_sorted(),
        total_records,
        forensics,
    }
}

/// The send time of the iteration (first to last intended send) and how much of it lies within
/// [`AFTER_DISCONNECT_NS`] after a disconnect: the chance a uniformly random send time does.
fn disconnect_coverage(sessions: &[SessionReport], sorted_disconnects: &[u64]) -> (u64, u64) {
    let senders = sessions.iter().filter(|s| s.sent > 0);
    let Some(start) = senders.clone().map(|s| s.send_start_ns).min() else {
        return (0, 0);
    };
    let end = senders
        .map(|s| {
            s.send_start_ns
                .saturating_add((s.sent - 1).saturating_mul(s.interval_ns))
        })
        .max()
        .unwrap_or(start);
    let mut covered = 0;
    let mut reach = start;
    for &d in sorted_disconnects {
        let (a, b) = (d.max(reach), d.saturating_add(AFTER_DISCONNECT_NS).min(end));
        if a < b {
            covered += b - a;
            reach = b;
        }
    }
    (end.saturating_sub(start), covered)
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
            ended: if lived {
                EventKind::CloseGraceful
            } else {
                EventKind::CloseAbrupt
            },
            tracker: SeqTracker::default(),
        }
    }

    fn receive(s: &mut SessionReport, sender: u64, seqs: impl IntoIterator<Item = u64>, at: u64) {
        receive_in(s, "r", sender, seqs, at);
    }

    fn receive_in(s: &mut SessionReport, room: &str, sender: u64, seqs: impl IntoIterator<Item = u64>, at: u64) {
        for seq in seqs {
            s.tracker.observe(
                &Envelope {
                    nonce: 0,
                    sender,
                    seq,
                    room,
                    intended_us: 0,
                },
                room,
                at,
                100,
            );
        }
    }

    fn run(sessions: &[SessionReport]) -> IterationLoss {
        run_with(sessions, &LatencyWindows::default())
    }

    /// Rooms `r` and `s`, delivery latency as `windows` holds it, a 500ms p99 limit.
    fn run_with(sessions: &[SessionReport], windows: &LatencyWindows) -> IterationLoss {
        let health = Health {
            windows,
            p99_limit_us: 500_000,
        };
        analyze(sessions, &["r".into(), "s".into()], &RunClock::start(), health)
    }

    const MS: u64 = 1_000_000;

    /// A graceful sender in `room` of `sent` messages, one every 10ms from `start_ns`.
    fn sender_at(id: u64, room: usize, start_ns: u64, sent: u64) -> SessionReport {
        let mut s = session(id, sent, true);
        s.room = room;
        s.send_start_ns = start_ns;
        s.interval_ns = 10 * MS;
        s
    }

    /// A receiver in `room` that stayed through the drain and got every one of `sent` messages
    /// of `sender` but `lost`.
    fn receiver_missing(id: u64, room: usize, sender: u64, sent: u64, lost: &[u64]) -> SessionReport {
        let mut r = session(id, 0, true);
        r.room = room;
        let name = ["r", "s"][room];
        receive_in(&mut r, name, sender, (0..sent).filter(|k| !lost.contains(k)), 0);
        r
    }

    #[test]
    fn finds_gaps_and_tail_loss() {
        let mut sender = session(1, 10, false);
        sender.ended = EventKind::CloseGraceful;
        let mut steady = session(2, 0, true);
        // Subscribed at 150ns: seq 0 (meant for 100ns) is not expected, seq 1 (200ns) on is.
        receive(&mut steady, 1, [1, 2, 4, 5, 6, 7], 150);
        let mut churner = session(3, 0, false);
        receive(&mut churner, 1, [0, 2], 120);
        let loss = run(&[sender, steady, churner]);
        assert_eq!(loss.totals.gaps, 2, "{:?}", loss.records); // 3 at the steady one, 1 at the churner
        assert_eq!(loss.totals.tail_loss, 2); // 8 and 9 at the steady one only
        assert_eq!(
            loss.totals.unconfirmed, 0,
            "a graceful sender's missing frames are lost"
        );
        let tail: Vec<_> = loss.records.iter().filter(|r| r.kind == LossKind::TailLoss).collect();
        assert_eq!((tail[0].first_seq, tail[0].last_seq, tail[0].receiver), (8, 9, 2));
        // Seq 1 was missed by the churner while the steady one got it; 3, 8 and 9 by the only
        // receiver owed them (the churner's range ended at 2).
        let f = loss.forensics;
        assert_eq!(f.distinct_lost, 4);
        assert_eq!((f.missed_by.every, f.missed_by.some, f.missed_by.one), (3, 0, 1));
        assert_eq!(loss.total_records, loss.records.len() as u64);
    }

    #[test]
    fn a_receiver_that_heard_nothing_lost_everything_it_was_owed() {
        let mut sender = session(1, 5, true);
        sender.ended = EventKind::CloseGraceful;
        let mut listener = session(2, 0, true);
        receive(&mut listener, 9, [0], 50); // heard someone else at 50ns: subscribed before seq 0
        let loss = run(&[sender, listener]);
        // The sender itself heard nothing, so it is owed nothing (never proved subscribed).
        assert_eq!(loss.totals.tail_loss, 5);
        assert_eq!(loss.forensics.distinct_lost, 5);
        assert_eq!(loss.forensics.missed_by.every, 5);
        // Sender 9 is no session of this iteration: its token is forged, not a delivery.
        assert_eq!((loss.totals.forged, loss.totals.received), (1, 0));
    }

    #[test]
    fn an_abrupt_senders_frames_after_its_last_delivered_are_unconfirmed() {
        let sender = session(1, 10, false); // closed abruptly after writing 10
        let mut a = session(2, 0, true);
        let mut b = session(3, 0, true);
        receive(&mut a, 7, [0], 50);
        receive(&mut b, 7, [0], 50);
        let mut other = session(7, 1, true);
        other.ended = EventKind::CloseGraceful;
        // a got 0..=5, b got 0..=3 and 5: seq 4 is lost at b, 6..=9 nobody got.
        receive(&mut a, 1, 0..=5, 200);
        receive(&mut b, 1, [0, 1, 2, 3, 5], 200);
        let loss = run(&[sender, a, b, other]);
        assert_eq!(loss.totals.gaps, 1, "{:?}", loss.records);
        assert_eq!(loss.totals.tail_loss, 0, "{:?}", loss.records);
        assert_eq!(loss.totals.unconfirmed, 8, "4 messages at 2 receivers");
        assert_eq!(loss.forensics.distinct_unconfirmed, 4);
        assert_eq!(loss.forensics.distinct_lost, 1);
        assert_eq!(loss.forensics.missed_by.one, 1);
        let kinds: Vec<_> = loss.records.iter().map(|r| r.kind).collect();
        assert!(kinds.contains(&LossKind::Unconfirmed) && kinds.contains(&LossKind::Gap));
        // Had one receiver got seq 9, everything missing up to it would be lost.
        let sender = session(1, 10, false);
        let mut a = session(2, 0, true);
        let mut b = session(3, 0, true);
        receive(&mut a, 1, 0..=9, 200);
        receive(&mut b, 1, 0..=5, 200);
        let loss = run(&[sender, a, b]);
        assert_eq!((loss.totals.tail_loss, loss.totals.unconfirmed), (4, 0));
        assert_eq!(loss.forensics.missed_by.one, 4);
    }

    #[test]
    fn a_forged_seq_past_what_the_sender_sent_is_no_loss_and_no_overflow() {
        let mut sender = session(1, 3, true);
        sender.ended = EventKind::CloseGraceful;
        let mut r = session(2, 0, true);
        receive(&mut r, 1, [0, 1, 2, 1_000_000, u64::MAX - 1, u64::MAX], 150);
        let loss = run(&[sender, r]);
        assert_eq!(loss.totals.lost(), 0, "{:?}", loss.records);
        assert_eq!(loss.totals.forged, 3, "two past what it sent, one the tracker refused");
        assert_eq!(loss.totals.received, 3);
        assert_eq!(loss.forensics.distinct_lost, 0);
    }

    #[test]
    fn kept_records_are_capped_and_the_earliest() {
        let mut sessions = Vec::new();
        let mut sender = session(1, 4000, true);
        sender.ended = EventKind::CloseGraceful;
        sessions.push(sender);
        let mut r = session(2, 0, true);
        // Every other message arrives: 1999 holes, each its own record.
        receive(&mut r, 1, (0..4000).step_by(2), 50);
        sessions.push(r);
        let loss = run(&sessions);
        assert_eq!(loss.totals.gaps + loss.totals.tail_loss, 2000);
        assert_eq!(loss.total_records, 2000);
        assert_eq!(loss.records.len(), MAX_KEPT_RECORDS);
        assert!(loss.records.windows(2).all(|w| w[0].at_s <= w[1].at_s));
        assert_eq!(loss.forensics.distinct_lost, 2000);
    }

    #[test]
    fn health_tells_a_silent_drop_from_a_backlog() {
        let mut windows = LatencyWindows::default();
        let w = super::super::latency::BASE_WINDOW_NS;
        for i in 0..20u64 {
            // 2ms for ten windows, then climbing fast: 8ms, 32ms, ... past 500ms.
            let us = if i < 10 { 2_000 } else { 2_000 << (2 * (i - 9)) };
            for _ in 0..100 {
                windows.record(i * w + 1, us);
            }
        }
        let health = Health {
            windows: &windows,
            p99_limit_us: 500_000,
        };
        assert_eq!(health.judge(5 * w).0, Cause::WhileHealthy);
        assert_eq!(health.judge(12 * w).0, Cause::UnderBacklog, "climbing, below the limit");
        assert_eq!(health.judge(18 * w).0, Cause::UnderBacklog, "past the limit");
        assert_eq!(health.judge(40 * w).0, Cause::UnderBacklog, "nothing delivered after");
    }

    #[test]
    fn rooms_losing_within_one_window_are_counted_together() {
        // Both rooms' senders start at 1s, one message per 10ms: room r loses seq 5 (1.05s),
        // room s seq 7 (1.07s), both in the 100ms window [1.0s, 1.1s).
        let sessions = [
            sender_at(1, 0, 1000 * MS, 10),
            receiver_missing(2, 0, 1, 10, &[5]),
            sender_at(3, 1, 1000 * MS, 10),
            receiver_missing(4, 1, 3, 10, &[7]),
        ];
        let g = run(&sessions).forensics.signature;
        assert_eq!((g.loss_windows, g.loss_windows_several_rooms), (1, 1));
        assert_eq!(g.judged, 2);
    }

    #[test]
    fn rooms_losing_far_apart_are_not_counted_together() {
        // Room r loses seqs 5 and 6 (1.05s, 1.06s: one window, one room); room s, starting at
        // 5s, loses seq 7 at 5.07s, forty windows later.
        let sessions = [
            sender_at(1, 0, 1000 * MS, 10),
            receiver_missing(2, 0, 1, 10, &[5, 6]),
            sender_at(3, 1, 5000 * MS, 10),
            receiver_missing(4, 1, 3, 10, &[7]),
        ];
        let g = run(&sessions).forensics.signature;
        assert_eq!((g.loss_windows, g.loss_windows_several_rooms), (2, 0));
        assert_eq!(g.judged, 3);
    }

    /// A sender of 100 messages from 1s to 1.99s, a receiver missing `lost`, and a churner
    /// disconnecting at each of `disconnects_ms`.
    fn around_disconnects(lost: &[u64], disconnects_ms: &[u64]) -> Signature {
        let mut sessions = vec![sender_at(1, 0, 1000 * MS, 100), receiver_missing(2, 0, 1, 100, lost)];
        for (i, &at) in disconnects_ms.iter().enumerate() {
            let mut churner = session(10 + i as u64, 0, false);
            churner.closed_ns = at * MS;
            sessions.push(churner);
        }
        run(&sessions).forensics.signature
    }

    #[test]
    fn losses_just_after_disconnects_beat_the_random_baseline() {
        // Disconnects at 1.20s and 1.25s cover [1.20s, 1.35s) of the 990ms of send time; the
        // losses at 1.21, 1.25, 1.29 and 1.34s all fall within 100ms after one.
        let g = around_disconnects(&[21, 25, 29, 34], &[1200, 1250]);
        assert_eq!((g.after_disconnect, g.judged), (4, 4));
        assert_eq!((g.covered_ns, g.span_ns), (150 * MS, 990 * MS));
        let (share, random) = g.after_disconnect_shares().expect("losses and send time");
        assert_eq!(share, 1.0);
        assert_eq!(random, 150.0 / 990.0);
        assert!(share > 6.0 * random);
    }

    #[test]
    fn losses_away_from_disconnects_are_at_or_below_the_random_baseline() {
        // The same disconnects; losses at 1.19s (just before one), 1.36s (just past the 100ms
        // after the second), 1.60s and 1.70s.
        let g = around_disconnects(&[19, 36, 60, 70], &[1200, 1250]);
        assert_eq!((g.after_disconnect, g.judged), (0, 4));
        let (share, random) = g.after_disconnect_shares().expect("losses and send time");
        assert_eq!((share, random), (0.0, 150.0 / 990.0));
        // With no disconnect at all, neither share is above zero.
        let g = around_disconnects(&[21, 25], &[]);
        assert_eq!(g.after_disconnect_shares(), Some((0.0, 0.0)));
    }

    #[test]
    fn each_kept_record_carries_the_cause_its_first_message_was_counted_under() {
        let w = super::super::latency::BASE_WINDOW_NS;
        let mut windows = LatencyWindows::default();
        for i in 0..20u64 {
            // 2ms delivery for ten windows, then 900ms: past the 500ms limit.
            let us = if i < 10 { 2_000 } else { 900_000 };
            for _ in 0..100 {
                windows.record(i * w + 1, us);
            }
        }
        // One message per window: seq 5 is lost while healthy, 15 and the tail 18..=19 under
        // backlog; an abrupt sender's 3 and 4, after the last anyone got, are unconfirmed.
        let mut sender = session(1, 20, true);
        (sender.send_start_ns, sender.interval_ns) = (0, w);
        let mut abrupt = session(3, 5, false);
        (abrupt.send_start_ns, abrupt.interval_ns) = (0, w);
        let mut r = session(2, 0, true);
        receive(&mut r, 1, (0..18).filter(|&k| k != 5 && k != 15), 0);
        receive(&mut r, 3, 0..3, 0);
        let loss = run_with(&[sender, abrupt, r], &windows);
        let mut seen: Vec<_> = loss
            .records
            .iter()
            .map(|r| (r.sender, r.first_seq, r.kind, r.cause))
            .collect();
        seen.sort_by_key(|&(sender, seq, ..)| (sender, seq));
        assert_eq!(
            seen,
            [
                (1, 5, LossKind::Gap, Some(Cause::WhileHealthy)),
                (1, 15, LossKind::Gap, Some(Cause::UnderBacklog)),
                (1, 18, LossKind::TailLoss, Some(Cause::UnderBacklog)),
                (3, 3, LossKind::Unconfirmed, None),
            ]
        );
        let c = loss.forensics.causes;
        assert_eq!((c.while_healthy, c.under_backlog), (1, 3));
        // In the result: a cause when there is one, none written otherwise, none read as None.
        let json = |kind: LossKind| {
            let record = loss.records.iter().find(|r| r.kind == kind).unwrap();
            serde_json::to_value(record).unwrap()
        };
        assert_eq!(json(LossKind::TailLoss)["cause"], "under_backlog");
        let unconfirmed = json(LossKind::Unconfirmed);
        assert!(unconfirmed.get("cause").is_none(), "{unconfirmed}");
        let mut older = json(LossKind::TailLoss);
        older.as_object_mut().unwrap().remove("cause");
        let read: LossRecord = serde_json::from_value(older).unwrap();
        assert_eq!(read.cause, None);
    }
}
