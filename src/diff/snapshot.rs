//! What `diff` compares: a result reduced to its verdict outcomes and its figures. A **baseline**
//! is a snapshot kept in the repository: it holds only the figures that mean the same on any
//! machine (bytes per closed connection, messages lost per thousand), never absolute times or
//! rates, so a result from a CI runner can be diffed against one taken on a laptop.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::results::{RunResult, Status};
use crate::verdict::gaps::GapOutcome;
use crate::verdict::latency::LatencyOutcome;
use crate::verdict::leak::LeakOutcome;

/// The `kind` a baseline file carries, so `diff` can tell it from a full result.
pub const BASELINE_KIND: &str = "leakrun-baseline";

/// Changes below this many microseconds of latency are noise whatever their relative size: two
/// runs of one scenario on loopback differ by a millisecond or two at the tail.
const LATENCY_FLOOR_US: f64 = 5000.0;
/// Changes below this many bytes per connection are noise whatever their relative size: a clean
/// scenario's heap moves by a few bytes per closed connection between runs (0.67 and 9.13 B in
/// two runs of `django_tabs_amqp`); a real leak that small also changes the leak verdict itself.
const BYTES_PER_CONNECTION_FLOOR: f64 = 16.0;
/// Changes below this many lost messages per thousand expected deliveries are noise.
const LOST_PER_THOUSAND_FLOOR: f64 = 0.5;
/// Changes below this many microseconds of an HTTP route's p99 are noise: loopback requests take
/// well under a millisecond, so the delivery floor would hide every change.
const HTTP_LATENCY_FLOOR_US: f64 = 1000.0;
/// Changes below this many failed requests per thousand are noise.
const FAILED_PER_THOUSAND_FLOOR: f64 = 0.5;

/// Which way is bad for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Worse {
    /// A rise is a regression (latency, bytes per connection, messages lost).
    Higher,
    /// A fall is a regression (throughput).
    Lower,
}

/// One figure of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// What it is, e.g. `delivery p99 room_a`; figures are matched by name.
    pub name: String,
    /// Its unit (`µs`, `B/conn`, `/s`, `per 1000`).
    pub unit: String,
    /// Its value.
    pub value: f64,
    /// Which way is bad.
    pub worse: Worse,
    /// Changes smaller than this, in the figure's unit, are noise.
    pub floor: f64,
    /// Means the same on any machine (a count or a size per unit of work, not a time or a rate).
    pub portable: bool,
}

/// A verdict's outcome and what it said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judged<O> {
    /// The outcome.
    pub outcome: O,
    /// What a person needs to act on it: the summary, for gaps also the first loss.
    pub detail: String,
}

/// The three verdicts' outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcomes {
    /// Lost, duplicated, reordered or misrouted messages.
    pub gaps: Judged<GapOutcome>,
    /// Latency against thresholds.
    pub latency: Judged<LatencyOutcome>,
    /// Memory and state left behind.
    pub leak: Judged<LeakOutcome>,
}

/// A result reduced to what `diff` compares; as a file, a baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`BASELINE_KIND`] in a baseline file.
    pub kind: String,
    /// Schema version of the result it was taken from.
    pub schema_version: u32,
    /// Scenario name.
    pub scenario: String,
    /// Backend kind it ran on.
    pub backend: String,
    /// Values that were not the file's (`--set`, environment), key → where from: a baseline taken
    /// in CI's short mode says so.
    pub overrides: BTreeMap<String, String>,
    /// How the run ended.
    pub status: Status,
    /// Why it could not be judged, if it could not.
    pub error: Option<String>,
    /// The outcomes, when the run was judged.
    pub verdicts: Option<Outcomes>,
    /// The figures; only portable ones in a baseline.
    pub figures: Vec<Figure>,
}

impl Snapshot {
    /// Every outcome and figure of `result`.
    pub fn of(result: &RunResult) -> Self {
        Self {
            kind: "result".into(),
            schema_version: result.schema_version,
            scenario: result.scenario.name.clone(),
            backend: result.backend.kind.clone(),
            overrides: result
                .scenario
                .sources
                .iter()
                .filter(|(_, source)| *source != "file" && *source != "default")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            status: result.status,
            error: result.error.clone(),
            verdicts: outcomes(result),
            figures: figures(result),
        }
    }

    /// The baseline of `result`: its outcomes and only its portable figures.
    pub fn baseline(result: &RunResult) -> Self {
        let mut snapshot = Self::of(result);
        snapshot.kind = BASELINE_KIND.into();
        snapshot.figures.retain(|f| f.portable);
        snapshot
    }
}

fn outcomes(result: &RunResult) -> Option<Outcomes> {
    let v = result.verdicts.as_ref()?;
    let gaps_detail = match result.losses.records.first() {
        Some(first) => format!(
            "{} lost, {} duplicated, {} reordered, {} misrouted; first in room {}: {} missed seq {}..={} from sender {} ({}) at {:.3}s",
            v.gaps.totals.lost(),
            v.gaps.totals.duplicates,
            v.gaps.totals.reordered,
            v.gaps.totals.misrouted,
            first.room,
            first.receiver_client,
            first.first_seq,
            first.last_seq,
            first.sender,
            first.sender_client,
            first.at_s
        ),
        None => v.gaps.summary.clone(),
    };
    Some(Outcomes {
        gaps: Judged {
            outcome: v.gaps.outcome,
            detail: gaps_detail,
        },
        latency: Judged {
            outcome: v.latency.outcome,
            detail: v.latency.summary.clone(),
        },
        leak: Judged {
            outcome: v.leak.outcome,
            detail: v.leak.summary.clone(),
        },
    })
}

fn figures(result: &RunResult) -> Vec<Figure> {
    let mut out = Vec::new();
    let mut push = |name: String, unit: &str, value: f64, worse: Worse, floor: f64, portable: bool| {
        out.push(Figure {
            name,
            unit: unit.into(),
            value,
            worse,
            floor,
            portable,
        })
    };
    if let Some(v) = &result.verdicts {
        for room in &v.latency.delivery {
            let d = &room.delivery;
            for (name, value) in [
                ("p50", d.p50_us),
                ("p99", d.p99_us),
                ("p99.9", d.p999_us),
                ("max", d.max_us),
            ] {
                push(
                    format!("delivery {name} {}", room.room),
                    "µs",
                    value as f64,
                    Worse::Higher,
                    LATENCY_FLOOR_US,
                    false,
                );
            }
        }
        push(
            "connect p99".into(),
            "µs",
            v.latency.connect.p99_us as f64,
            Worse::Higher,
            LATENCY_FLOOR_US,
            false,
        );
        if let Some(bytes) = v.leak.bytes_per_connection {
            push(
                "heap per closed connection".into(),
                "B/conn",
                bytes,
                Worse::Higher,
                BYTES_PER_CONNECTION_FLOOR,
                true,
            );
        }
        if let Some(bytes) = v.leak.bytes_per_request {
            push(
                "heap per HTTP request".into(),
                "B/req",
                bytes,
                Worse::Higher,
                BYTES_PER_CONNECTION_FLOOR,
                true,
            );
        }
        let totals = &v.gaps.totals;
        push(
            "messages lost".into(),
            "",
            totals.lost() as f64,
            Worse::Higher,
            0.5,
            false,
        );
        // Counted over every loss since loss forensics came in: a result from before has no
        // distinct count, and its zero unconfirmed and causes would read as changes.
        if let Some(distinct) = v.gaps.distinct_lost {
            let g = &v.gaps;
            for (name, value) in [
                ("messages unconfirmed", totals.unconfirmed),
                ("distinct messages lost", distinct),
                ("distinct messages unconfirmed", g.distinct_unconfirmed),
                ("distinct lost while healthy", g.causes.while_healthy),
                ("distinct lost under backlog", g.causes.under_backlog),
            ] {
                push(name.into(), "", value as f64, Worse::Higher, 0.5, false);
            }
        }
        let expected = totals.received + totals.lost();
        if expected > 0 {
            push(
                "lost per 1000 deliveries".into(),
                "‰",
                totals.lost() as f64 * 1000.0 / expected as f64,
                Worse::Higher,
                LOST_PER_THOUSAND_FLOOR,
                true,
            );
        }
    }
    for route in &result.http {
        push(
            format!("http requests per second {}", route.route),
            "/s",
            route.requests_per_s,
            Worse::Lower,
            1.0,
            false,
        );
        push(
            format!("http p99 {}", route.route),
            "µs",
            route.latency.p99_us as f64,
            Worse::Higher,
            HTTP_LATENCY_FLOOR_US,
            false,
        );
        if route.requests > 0 {
            push(
                format!("http failed per 1000 requests {}", route.route),
                "‰",
                route.failed as f64 * 1000.0 / route.requests as f64,
                Worse::Higher,
                FAILED_PER_THOUSAND_FLOOR,
                true,
            );
        }
    }
    let rates: Vec<f64> = result.iterations.iter().map(|i| i.deliveries_per_s).collect();
    if !rates.is_empty() {
        push(
            "deliveries per second".into(),
            "/s",
            rates.iter().sum::<f64>() / rates.len() as f64,
            Worse::Lower,
            1.0,
            false,
        );
    }
    out
}
