//! The gaps verdict: were messages lost, duplicated, reordered or misrouted?

use serde::{Deserialize, Serialize};

use crate::observe::analysis::{LossRecord, LossTotals};
use crate::scenario::Thresholds;

/// Outcome of the gaps verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapOutcome {
    /// Within thresholds.
    Clean,
    /// Past a threshold.
    Gaps,
}

/// Totals for one room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomLoss {
    /// Room name.
    pub room: String,
    /// Its message accounting.
    pub totals: LossTotals,
}

/// The gaps verdict with its evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GapsVerdict {
    /// What the run showed.
    pub outcome: GapOutcome,
    /// What the scenario expected.
    pub expected: GapOutcome,
    /// Outcome equals expectation.
    pub met: bool,
    /// One line for people.
    pub summary: String,
    /// Totals over all iterations.
    pub totals: LossTotals,
    /// Totals per room.
    pub per_room: Vec<RoomLoss>,
    /// Messages the server's layer dropped because a channel was full.
    pub server_dropped_full: u64,
    /// Messages the `drop_one_in` fault switch dropped.
    pub server_fault_dropped: u64,
    /// Distinct messages (sender, seq) behind the lost deliveries: one dropped group message is
    /// one message lost by every member. `None` when the loss records were cut short.
    #[serde(default)]
    pub distinct_lost: Option<u64>,
    /// The first loss records (the full list is in `losses`).
    pub first_losses: Vec<LossRecord>,
}

/// The loss records a run kept, and whether they are all of them.
#[derive(Debug, Clone, Copy)]
pub struct LossRecords<'a> {
    /// The records, in the order found.
    pub kept: &'a [LossRecord],
    /// False when the log was cut at its cap.
    pub complete: bool,
}

/// Judges `totals` against `thresholds`.
pub fn judge(
    totals: LossTotals,
    per_room: Vec<RoomLoss>,
    records: LossRecords<'_>,
    server_dropped_full: u64,
    server_fault_dropped: u64,
    thresholds: &Thresholds,
    expect_gaps: bool,
) -> GapsVerdict {
    let distinct_lost = records.complete.then(|| distinct_messages(records.kept));
    let records = records.kept;
    let mut breaches = Vec::new();
    if totals.lost() > thresholds.gaps {
        let distinct = match distinct_lost {
            Some(n) if n != totals.lost() => format!(" of {n} distinct messages"),
            _ => String::new(),
        };
        breaches.push(format!(
            "{} lost{distinct} ({} gaps, {} tail loss; allowed {})",
            totals.lost(),
            totals.gaps,
            totals.tail_loss,
            thresholds.gaps
        ));
    }
    if totals.duplicates > thresholds.duplicates {
        breaches.push(format!(
            "{} duplicated (allowed {})",
            totals.duplicates, thresholds.duplicates
        ));
    }
    if totals.reordered > thresholds.reordered {
        breaches.push(format!(
            "{} reordered (allowed {})",
            totals.reordered, thresholds.reordered
        ));
    }
    if totals.misrouted > thresholds.misrouted {
        breaches.push(format!(
            "{} misrouted (allowed {})",
            totals.misrouted, thresholds.misrouted
        ));
    }
    let outcome = if breaches.is_empty() {
        GapOutcome::Clean
    } else {
        GapOutcome::Gaps
    };
    let expected = if expect_gaps {
        GapOutcome::Gaps
    } else {
        GapOutcome::Clean
    };
    let mut summary = if breaches.is_empty() {
        format!(
            "clean: {} sent, {} delivered, nothing lost, duplicated, reordered or misrouted",
            totals.sent, totals.received
        )
    } else {
        let mut line = format!("gaps: {}", breaches.join(", "));
        if let Some(first) = records.first() {
            line.push_str(&format!(
                "; first: {} missed seq {}..={} from {} at {:.3}s",
                first.receiver_client, first.first_seq, first.last_seq, first.sender_client, first.at_s
            ));
        }
        line
    };
    if server_dropped_full > 0 {
        summary.push_str(&format!("; server dropped {server_dropped_full} for full channels"));
    }
    if totals.frames_without_envelope > 0 {
        summary.push_str(&format!(
            "; {} received frame(s) held no envelope (not judged; if every frame does, the server does not forward what clients send, or send_template does not match it)",
            totals.frames_without_envelope
        ));
    }
    summary.push_str(super::expectation_note(outcome == GapOutcome::Gaps, expect_gaps));
    GapsVerdict {
        outcome,
        expected,
        met: outcome == expected,
        summary,
        totals,
        per_room,
        server_dropped_full,
        server_fault_dropped,
        distinct_lost,
        first_losses: records.iter().take(20).cloned().collect(),
    }
}

/// How many distinct (sender, seq) messages the loss records cover: each sender's missing ranges,
/// merged across receivers.
fn distinct_messages(records: &[LossRecord]) -> u64 {
    let mut ranges: Vec<(u64, u64, u64)> = records.iter().map(|r| (r.sender, r.first_seq, r.last_seq)).collect();
    ranges.sort_unstable();
    let mut total = 0;
    let mut current: Option<(u64, u64, u64)> = None;
    for (sender, first, last) in ranges {
        match current {
            Some((s, start, end)) if s == sender && first <= end.saturating_add(1) => {
                current = Some((s, start, end.max(last)));
            }
            _ => {
                if let Some((_, start, end)) = current {
                    total += end - start + 1;
                }
                current = Some((sender, first, last));
            }
        }
    }
    if let Some((_, start, end)) = current {
        total += end - start + 1;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::analysis::LossKind;

    fn record(receiver: u64, sender: u64, first_seq: u64, last_seq: u64) -> LossRecord {
        LossRecord {
            kind: LossKind::Gap,
            room: "r".into(),
            receiver,
            receiver_client: format!("r#{receiver}"),
            sender,
            sender_client: format!("s#{sender}"),
            first_seq,
            last_seq,
            count: last_seq - first_seq + 1,
            at_s: 0.0,
            wall: String::new(),
        }
    }

    /// The thresholds of a scenario that names none: nothing lost allowed.
    fn default_thresholds() -> Thresholds {
        let text = "name = \"t\"\n[[rooms]]\nname = \"r\"\n  [[rooms.clients]]\n  count = 1\n";
        crate::scenario::parse(std::path::Path::new("t.toml"), text)
            .expect("a minimal scenario")
            .thresholds
    }

    #[test]
    fn one_message_missed_by_every_receiver_counts_once() {
        // Sender 1's seq 33 missed by three receivers; sender 2's 5..=7 and 6..=9 overlap.
        let records = [
            record(10, 1, 33, 33),
            record(11, 1, 33, 33),
            record(12, 1, 33, 33),
            record(10, 2, 5, 7),
            record(11, 2, 6, 9),
            record(11, 3, 6, 9),
        ];
        assert_eq!(distinct_messages(&records), 1 + 5 + 4);
        let totals = LossTotals {
            sent: 100,
            received: 280,
            gaps: records.iter().map(|r| r.count).sum(),
            ..LossTotals::default()
        };
        let v = judge(
            totals,
            Vec::new(),
            LossRecords {
                kept: &records,
                complete: true,
            },
            0,
            0,
            &default_thresholds(),
            false,
        );
        assert_eq!(v.distinct_lost, Some(10));
        assert!(
            v.summary.starts_with("gaps: 14 lost of 10 distinct messages"),
            "{}",
            v.summary
        );
        let cut = judge(
            totals,
            Vec::new(),
            LossRecords {
                kept: &records,
                complete: false,
            },
            0,
            0,
            &default_thresholds(),
            false,
        );
        assert_eq!(cut.distinct_lost, None);
        assert!(cut.summary.starts_with("gaps: 14 lost ("), "{}", cut.summary);
    }
}
