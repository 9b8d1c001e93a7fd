//! The gaps verdict: were messages lost, duplicated, reordered or misrouted?

use serde::{Deserialize, Serialize};

use crate::observe::analysis::{AFTER_DISCONNECT_NS, Causes, Forensics, LossRecord, LossTotals, MissedBy, Signature};
use crate::observe::latency::fmt_us;
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

/// The target's CPU while the load was on, for the summary's diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerCpu {
    /// Mean cores busy over the samples taken during the iterations' send and drain.
    pub mean_cores: f64,
    /// The highest of those samples.
    pub peak_cores: f64,
    /// How many samples.
    pub samples: u64,
    /// The figure is leakrun's whole process (the embedded server shares its threads with the
    /// clients), not the server's alone.
    pub shared_with_clients: bool,
}

impl ServerCpu {
    /// "the server used 55% of a core" or, for the embedded server, what its process used.
    fn phrase(&self) -> String {
        let who = if self.shared_with_clients {
            "leakrun's process (server and clients together)"
        } else {
            "the server"
        };
        format!("{who} used {:.0}% of a core", self.mean_cores * 100.0)
    }
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
    /// one message lost by every member. (`None` only in results written before it was counted
    /// over every loss.)
    #[serde(default)]
    pub distinct_lost: Option<u64>,
    /// Distinct messages unconfirmed: sent by an abruptly closed sender after the last of its
    /// messages anyone received.
    #[serde(default)]
    pub distinct_unconfirmed: u64,
    /// Distinct lost messages by cause: lost while the server kept up, or while it fell behind.
    #[serde(default)]
    pub causes: Causes,
    /// Distinct lost messages by how many of the receivers owed each one missed it.
    #[serde(default)]
    pub missed_by: MissedBy,
    /// How loss times line up across rooms and with disconnects.
    #[serde(default)]
    pub signature: Signature,
    /// The target's CPU while the load was on (absent when no sample read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu: Option<ServerCpu>,
    /// The first loss records (the full list is in `losses`).
    pub first_losses: Vec<LossRecord>,
}

/// Judges `totals` against `thresholds`; `records` are the kept loss records in time order and
/// `forensics` the figures over every loss; `server_cpu` the target's CPU under load.
#[allow(clippy::too_many_arguments)]
pub fn judge(
    totals: LossTotals,
    per_room: Vec<RoomLoss>,
    records: &[LossRecord],
    forensics: &Forensics,
    server_cpu: Option<ServerCpu>,
    server_dropped_full: u64,
    server_fault_dropped: u64,
    thresholds: &Thresholds,
    expect_gaps: bool,
) -> GapsVerdict {
    let distinct = forensics.distinct_lost;
    let mut breaches = Vec::new();
    if totals.lost() > thresholds.gaps {
        let of = if distinct != totals.lost() {
            format!(" of {distinct} distinct messages")
        } else {
            String::new()
        };
        breaches.push(format!(
            "{} lost{of} ({} gaps, {} tail loss; allowed {})",
            totals.lost(),
            totals.gaps,
            totals.tail_loss,
            thresholds.gaps
        ));
    }
    if let Some(allowed) = thresholds.unconfirmed.filter(|&n| totals.unconfirmed > n) {
        breaches.push(format!("{} unconfirmed (allowed {allowed})", totals.unconfirmed));
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
        if distinct > 0 {
            line.push_str(&format!("; {}", diagnosis(forensics, server_cpu.as_ref())));
        }
        if let Some(first) = records
            .iter()
            .find(|r| r.kind != crate::observe::analysis::LossKind::Unconfirmed)
        {
            line.push_str(&format!(
                "; first: {} missed seq {}..={} from {} at {:.3}s",
                first.receiver_client, first.first_seq, first.last_seq, first.sender_client, first.at_s
            ));
        }
        line
    };
    if totals.unconfirmed > 0 && thresholds.unconfirmed.is_none() {
        summary.push_str(&format!(
            "; {} unconfirmed ({} distinct messages abruptly closed senders sent after the last of theirs anyone received: the server may never have read them; not judged)",
            totals.unconfirmed, forensics.distinct_unconfirmed
        ));
    }
    if server_dropped_full > 0 {
        summary.push_str(&format!("; server dropped {server_dropped_full} for full channels"));
    }
    if totals.forged + totals.foreign > 0 {
        summary.push_str(&format!(
            "; {} forged token(s) (no sender of this run sent them) and {} from another run, ignored",
            totals.forged, totals.foreign
        ));
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
        distinct_lost: Some(distinct),
        distinct_unconfirmed: forensics.distinct_unconfirmed,
        causes: forensics.causes,
        missed_by: forensics.missed_by,
        signature: forensics.signature,
        server_cpu,
        first_losses: records.iter().take(20).cloned().collect(),
    }
}

/// What the losses looked like, for the summary: cause (with the server's CPU under load, when
/// read), who missed them, rooms, disconnects.
pub fn diagnosis(f: &Forensics, cpu: Option<&ServerCpu>) -> String {
    let c = &f.causes;
    let mut parts = Vec::new();
    let (and_cpu, while_cpu) = match cpu {
        Some(cpu) => (format!(" and {}", cpu.phrase()), format!(", while {}", cpu.phrase())),
        None => (String::new(), String::new()),
    };
    let cause = match (c.while_healthy, c.under_backlog) {
        (h, 0) => format!(
            "{h} distinct lost while delivery p99 stayed under {}{and_cpu}: a silent drop",
            fmt_us(c.healthy_p99_us.max(1))
        ),
        (0, b) => format!(
            "{b} distinct lost after delivery latency had climbed to {}{while_cpu}: the server fell behind",
            fmt_us(c.backlog_peak_us)
        ),
        (h, b) => format!(
            "{h} distinct lost while delivery p99 stayed under {} (a silent drop), {b} after it had climbed to {} (the server fell behind){while_cpu}",
            fmt_us(c.healthy_p99_us.max(1)),
            fmt_us(c.backlog_peak_us)
        ),
    };
    parts.push(cause);
    let m = &f.missed_by;
    parts.push(format!(
        "missed by every receiver owed it: {}, by some: {}, by one: {}",
        m.every, m.some, m.one
    ));
    let g = &f.signature;
    if g.loss_windows > 0 {
        parts.push(format!(
            "{} of {} {}ms windows with a loss had losses in more than one room",
            g.loss_windows_several_rooms,
            g.loss_windows,
            crate::observe::analysis::TOGETHER_NS / 1_000_000
        ));
    }
    if let Some((share, random)) = g.after_disconnect_shares() {
        parts.push(format!(
            "{:.0}% within {}ms after a disconnect (random times: {:.0}%)",
            share * 100.0,
            AFTER_DISCONNECT_NS / 1_000_000,
            random * 100.0
        ));
    }
    parts.join("; ")
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
            cause: None,
        }
    }

    /// The thresholds of a scenario that names none (nothing lost allowed), with `extra` lines.
    fn thresholds(extra: &str) -> Thresholds {
        let text =
            format!("name = \"t\"\n[[rooms]]\nname = \"r\"\n  [[rooms.clients]]\n  count = 1\n[thresholds]\n{extra}\n");
        crate::scenario::parse(std::path::Path::new("t.toml"), &text)
            .expect("a minimal scenario")
            .thresholds
    }

    fn forensics(distinct: u64, healthy: u64, backlog: u64) -> Forensics {
        Forensics {
            distinct_lost: distinct,
            causes: Causes {
                while_healthy: healthy,
                under_backlog: backlog,
                healthy_p99_us: 12_000,
                backlog_peak_us: 71_000_000,
            },
            missed_by: MissedBy {
                every: distinct,
                ..MissedBy::default()
            },
            ..Forensics::default()
        }
    }

    #[test]
    fn the_summary_names_the_distinct_messages_and_the_cause() {
        let records = [record(10, 1, 33, 33), record(11, 1, 33, 33), record(12, 1, 33, 33)];
        let totals = LossTotals {
            sent: 100,
            received: 280,
            gaps: 3,
            ..LossTotals::default()
        };
        let external = ServerCpu {
            mean_cores: 0.55,
            peak_cores: 0.8,
            samples: 10,
            shared_with_clients: false,
        };
        let judge_with = |f: &Forensics, cpu: Option<ServerCpu>| {
            judge(totals, Vec::new(), &records, f, cpu, 0, 0, &thresholds(""), false)
        };
        let silent = judge_with(&forensics(1, 1, 0), Some(external));
        assert_eq!(silent.outcome, GapOutcome::Gaps);
        assert_eq!(silent.distinct_lost, Some(1));
        assert!(
            silent.summary.starts_with("gaps: 3 lost of 1 distinct messages"),
            "{}",
            silent.summary
        );
        assert!(
            silent
                .summary
                .contains("p99 stayed under 12.0ms and the server used 55% of a core: a silent drop"),
            "{}",
            silent.summary
        );
        let behind = judge_with(&forensics(1, 0, 1), None);
        assert!(
            behind.summary.contains("climbed to 71.00s: the server fell behind"),
            "{}",
            behind.summary
        );
        let shared = ServerCpu {
            shared_with_clients: true,
            mean_cores: 1.2,
            ..external
        };
        let embedded = judge_with(&forensics(1, 0, 1), Some(shared));
        assert!(
            embedded.summary.contains(
                "climbed to 71.00s, while leakrun's process (server and clients together) used 120% of a core: the server fell behind"
            ),
            "{}",
            embedded.summary
        );
    }

    #[test]
    fn unconfirmed_is_counted_and_judged_only_when_a_threshold_says_so() {
        let totals = LossTotals {
            sent: 100,
            received: 100,
            unconfirmed: 6,
            ..LossTotals::default()
        };
        let f = Forensics {
            distinct_unconfirmed: 2,
            ..Forensics::default()
        };
        let free = judge(totals, Vec::new(), &[], &f, None, 0, 0, &thresholds(""), false);
        assert_eq!(free.outcome, GapOutcome::Clean, "{}", free.summary);
        assert!(free.summary.contains("6 unconfirmed (2 distinct"), "{}", free.summary);
        let strict = judge(
            totals,
            Vec::new(),
            &[],
            &f,
            None,
            0,
            0,
            &thresholds("unconfirmed = 5"),
            false,
        );
        assert_eq!(strict.outcome, GapOutcome::Gaps, "{}", strict.summary);
        assert!(
            strict.summary.contains("6 unconfirmed (allowed 5)"),
            "{}",
            strict.summary
        );
        let loose = judge(
            totals,
            Vec::new(),
            &[],
            &f,
            None,
            0,
            0,
            &thresholds("unconfirmed = 6"),
            false,
        );
        assert_eq!(loose.outcome, GapOutcome::Clean, "{}", loose.summary);
    }
}
