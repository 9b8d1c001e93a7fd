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
    /// The first loss records (the full list is in `losses`).
    pub first_losses: Vec<LossRecord>,
}

/// Judges `totals` against `thresholds`.
pub fn judge(
    totals: LossTotals,
    per_room: Vec<RoomLoss>,
    records: &[LossRecord],
    server_dropped_full: u64,
    server_fault_dropped: u64,
    thresholds: &Thresholds,
    expect_gaps: bool,
) -> GapsVerdict {
    let mut breaches = Vec::new();
    if totals.lost() > thresholds.gaps {
        breaches.push(format!(
            "{} lost ({} gaps, {} tail loss; allowed {})",
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
        first_losses: records.iter().take(20).cloned().collect(),
    }
}
