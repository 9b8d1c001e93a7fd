//! `leakrun diff BASE HEAD`: what changed between two results of the same scenario.
//!
//! Verdict changes come first (clean → leak, no gaps → gaps, within → breach), with the evidence a
//! person needs to act — for new gaps the room, the sender and the first missing range. Then the
//! figures that moved beyond noise (latency percentiles, bytes per connection and per HTTP
//! request, deliveries per second, HTTP requests per second and p99 per route), each with its relative change and whether the move is a regression. Results of
//! different schema versions or of different scenarios are refused, not compared.

use serde::Serialize;

use crate::results::{RunResult, SCHEMA_VERSION};
use crate::verdict::gaps::GapOutcome;
use crate::verdict::latency::LatencyOutcome;
use crate::verdict::leak::LeakOutcome;

/// Changes below this many microseconds of latency are noise whatever their relative size: two
/// runs of one scenario on loopback differ by a millisecond or two at the tail.
const LATENCY_FLOOR_US: f64 = 5000.0;
/// Changes below this many bytes per connection are noise whatever their relative size.
const BYTES_PER_CONNECTION_FLOOR: f64 = 4.0;
/// Changes below this many microseconds of an HTTP route's p99 are noise: loopback requests take
/// well under a millisecond, so the delivery floor would hide every change.
const HTTP_LATENCY_FLOOR_US: f64 = 1000.0;

/// Why two results cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// Different result schema versions.
    #[error(
        "{base_file} has result schema {base}, {head_file} has schema {head}: re-run the older scenario with this leakrun (schema {SCHEMA_VERSION}) before comparing"
    )]
    Schema {
        /// Base file.
        base_file: String,
        /// Its schema version.
        base: u32,
        /// Head file.
        head_file: String,
        /// Its schema version.
        head: u32,
    },
    /// Results of different scenarios.
    #[error(
        "{base_file} is scenario `{base}` and {head_file} is scenario `{head}`: diff compares two results of one scenario"
    )]
    Scenario {
        /// Base file.
        base_file: String,
        /// Its scenario.
        base: String,
        /// Head file.
        head_file: String,
        /// Its scenario.
        head: String,
    },
}

/// A verdict whose outcome changed.
#[derive(Debug, Clone, Serialize)]
pub struct VerdictChange {
    /// `gaps`, `latency` or `leak`.
    pub verdict: String,
    /// Outcome in the base.
    pub base: String,
    /// Outcome in the head.
    pub head: String,
    /// The head's outcome is worse than the base's.
    pub worse: bool,
    /// What the head says, with the evidence to act on.
    pub detail: String,
}

/// A figure that moved beyond noise.
#[derive(Debug, Clone, Serialize)]
pub struct FigureChange {
    /// What the figure is, e.g. `delivery p99 room_a`.
    pub figure: String,
    /// Its unit (`µs`, `B/conn`, `/s`).
    pub unit: String,
    /// Value in the base.
    pub base: f64,
    /// Value in the head.
    pub head: f64,
    /// (head - base) / base.
    pub relative: f64,
    /// The change is in the bad direction and past the tolerance.
    pub regression: bool,
}

/// Everything `diff` found.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// The scenario both results ran.
    pub scenario: String,
    /// Base file.
    pub base_file: String,
    /// Head file.
    pub head_file: String,
    /// Relative change past which a figure counts as moved.
    pub tolerance: f64,
    /// Verdicts whose outcome changed.
    pub verdicts: Vec<VerdictChange>,
    /// Figures that moved beyond the tolerance.
    pub figures: Vec<FigureChange>,
}

impl Diff {
    /// A verdict got worse or a figure regressed: `diff` exits 1.
    pub fn regressed(&self) -> bool {
        self.verdicts.iter().any(|v| v.worse) || self.figures.iter().any(|f| f.regression)
    }
}

/// Why `diff` could not run.
#[derive(Debug, thiserror::Error)]
pub enum LoadDiffError {
    /// A file could not be read or is not a leakrun result.
    #[error("{0}")]
    Unreadable(String),
    /// The two results cannot be compared.
    #[error(transparent)]
    Incomparable(#[from] DiffError),
}

/// Reads two result files and compares them. The schema versions and scenario names are checked
/// on the raw JSON first, so a result from another schema is refused with that reason rather
/// than with a parse error.
pub fn compare_files(
    base_path: &std::path::Path,
    head_path: &std::path::Path,
    tolerance: f64,
) -> Result<Diff, LoadDiffError> {
    let raw = |path: &std::path::Path| -> Result<serde_json::Value, LoadDiffError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LoadDiffError::Unreadable(format!("{}: cannot read: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| LoadDiffError::Unreadable(format!("{}: not JSON: {e}", path.display())))
    };
    let (base, head) = (raw(base_path)?, raw(head_path)?);
    let (base_file, head_file) = (base_path.display().to_string(), head_path.display().to_string());
    let schema = |v: &serde_json::Value, file: &str| {
        v["schema_version"]
            .as_u64()
            .map(|n| n as u32)
            .ok_or_else(|| LoadDiffError::Unreadable(format!("{file}: not a leakrun result (no schema_version)")))
    };
    let (bs, hs) = (schema(&base, &base_file)?, schema(&head, &head_file)?);
    if bs != hs || bs != SCHEMA_VERSION {
        return Err(DiffError::Schema {
            base_file,
            base: bs,
            head_file,
            head: hs,
        }
        .into());
    }
    let name = |v: &serde_json::Value| v["scenario"]["name"].as_str().unwrap_or_default().to_string();
    if name(&base) != name(&head) {
        return Err(DiffError::Scenario {
            base_file,
            base: name(&base),
            head_file,
            head: name(&head),
        }
        .into());
    }
    let parse = |v: serde_json::Value, file: &str| -> Result<RunResult, LoadDiffError> {
        serde_json::from_value(v).map_err(|e| LoadDiffError::Unreadable(format!("{file}: not a leakrun result: {e}")))
    };
    let (base, head) = (parse(base, &base_file)?, parse(head, &head_file)?);
    Ok(compare(&base, &base_file, &head, &head_file, tolerance)?)
}

/// Compares `head` against `base`; `tolerance` is a relative change (0.1 = 10%).
pub fn compare(
    base: &RunResult,
    base_file: &str,
    head: &RunResult,
    head_file: &str,
    tolerance: f64,
) -> Result<Diff, DiffError> {
    if base.schema_version != head.schema_version {
        return Err(DiffError::Schema {
            base_file: base_file.into(),
            base: base.schema_version,
            head_file: head_file.into(),
            head: head.schema_version,
        });
    }
    if base.scenario.name != head.scenario.name {
        return Err(DiffError::Scenario {
            base_file: base_file.into(),
            base: base.scenario.name.clone(),
            head_file: head_file.into(),
            head: head.scenario.name.clone(),
        });
    }
    Ok(Diff {
        scenario: head.scenario.name.clone(),
        base_file: base_file.into(),
        head_file: head_file.into(),
        tolerance,
        verdicts: verdict_changes(base, head),
        figures: figure_changes(base, head, tolerance),
    })
}

fn verdict_changes(base: &RunResult, head: &RunResult) -> Vec<VerdictChange> {
    let mut changes = Vec::new();
    let (Some(b), Some(h)) = (&base.verdicts, &head.verdicts) else {
        if base.verdicts.is_some() != head.verdicts.is_some() {
            let has = |r: &RunResult| if r.verdicts.is_some() { "judged" } else { "no verdicts" };
            changes.push(VerdictChange {
                verdict: "run".into(),
                base: has(base).into(),
                head: has(head).into(),
                worse: head.verdicts.is_none(),
                detail: head
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("status {:?}", head.status)),
            });
        }
        return changes;
    };
    if b.gaps.outcome != h.gaps.outcome {
        let detail = match head.losses.records.first() {
            Some(first) => format!(
                "{} lost, {} duplicated, {} reordered, {} misrouted; first in room {}: {} missed seq {}..={} from sender {} ({}) at {:.3}s",
                h.gaps.totals.lost(),
                h.gaps.totals.duplicates,
                h.gaps.totals.reordered,
                h.gaps.totals.misrouted,
                first.room,
                first.receiver_client,
                first.first_seq,
                first.last_seq,
                first.sender,
                first.sender_client,
                first.at_s
            ),
            None => h.gaps.summary.clone(),
        };
        changes.push(VerdictChange {
            verdict: "gaps".into(),
            base: gap_name(b.gaps.outcome).into(),
            head: gap_name(h.gaps.outcome).into(),
            worse: h.gaps.outcome == GapOutcome::Gaps,
            detail,
        });
    }
    if b.latency.outcome != h.latency.outcome {
        changes.push(VerdictChange {
            verdict: "latency".into(),
            base: latency_name(b.latency.outcome).into(),
            head: latency_name(h.latency.outcome).into(),
            worse: h.latency.outcome == LatencyOutcome::Breach,
            detail: h.latency.summary.clone(),
        });
    }
    if b.leak.outcome != h.leak.outcome {
        changes.push(VerdictChange {
            verdict: "leak".into(),
            base: leak_name(b.leak.outcome).into(),
            head: leak_name(h.leak.outcome).into(),
            worse: leak_rank(h.leak.outcome) > leak_rank(b.leak.outcome),
            detail: h.leak.summary.clone(),
        });
    }
    changes
}

fn gap_name(o: GapOutcome) -> &'static str {
    match o {
        GapOutcome::Clean => "clean",
        GapOutcome::Gaps => "gaps",
    }
}

fn latency_name(o: LatencyOutcome) -> &'static str {
    match o {
        LatencyOutcome::Within => "within",
        LatencyOutcome::Breach => "breach",
    }
}

fn leak_name(o: LeakOutcome) -> &'static str {
    match o {
        LeakOutcome::Clean => "clean",
        LeakOutcome::Retention => "retention",
        LeakOutcome::Leak => "leak",
    }
}

fn leak_rank(o: LeakOutcome) -> u8 {
    match o {
        LeakOutcome::Clean => 0,
        LeakOutcome::Retention => 1,
        LeakOutcome::Leak => 2,
    }
}

/// Which way is bad for a figure.
#[derive(Clone, Copy)]
enum Worse {
    Higher,
    Lower,
}

fn figure_changes(base: &RunResult, head: &RunResult, tolerance: f64) -> Vec<FigureChange> {
    let mut out = Vec::new();
    let mut push = |figure: String, unit: &str, b: f64, h: f64, worse: Worse, floor: f64| {
        if b == h || (h - b).abs() < floor {
            return;
        }
        let relative = if b == 0.0 {
            f64::INFINITY.copysign(h)
        } else {
            (h - b) / b.abs()
        };
        if relative.abs() <= tolerance {
            return;
        }
        let bad = match worse {
            Worse::Higher => h > b,
            Worse::Lower => h < b,
        };
        out.push(FigureChange {
            figure,
            unit: unit.into(),
            base: b,
            head: h,
            relative,
            regression: bad,
        });
    };
    if let (Some(b), Some(h)) = (&base.verdicts, &head.verdicts) {
        for room in &h.latency.delivery {
            let Some(before) = b.latency.delivery.iter().find(|r| r.room == room.room) else {
                continue;
            };
            let (x, y) = (&before.delivery, &room.delivery);
            for (name, bv, hv) in [
                ("p50", x.p50_us, y.p50_us),
                ("p99", x.p99_us, y.p99_us),
                ("p99.9", x.p999_us, y.p999_us),
                ("max", x.max_us, y.max_us),
            ] {
                push(
                    format!("delivery {name} {}", room.room),
                    "µs",
                    bv as f64,
                    hv as f64,
                    Worse::Higher,
                    LATENCY_FLOOR_US,
                );
            }
        }
        push(
            "connect p99".into(),
            "µs",
            b.latency.connect.p99_us as f64,
            h.latency.connect.p99_us as f64,
            Worse::Higher,
            LATENCY_FLOOR_US,
        );
        if let (Some(x), Some(y)) = (b.leak.bytes_per_connection, h.leak.bytes_per_connection) {
            push(
                "heap per closed connection".into(),
                "B/conn",
                x,
                y,
                Worse::Higher,
                BYTES_PER_CONNECTION_FLOOR,
            );
        }
        if let (Some(x), Some(y)) = (b.leak.bytes_per_request, h.leak.bytes_per_request) {
            push(
                "heap per HTTP request".into(),
                "B/req",
                x,
                y,
                Worse::Higher,
                BYTES_PER_CONNECTION_FLOOR,
            );
        }
        push(
            "messages lost".into(),
            "",
            b.gaps.totals.lost() as f64,
            h.gaps.totals.lost() as f64,
            Worse::Higher,
            0.5,
        );
    }
    let rate = |r: &RunResult| {
        let judged: Vec<f64> = r.iterations.iter().map(|i| i.deliveries_per_s).collect();
        (!judged.is_empty()).then(|| judged.iter().sum::<f64>() / judged.len() as f64)
    };
    if let (Some(x), Some(y)) = (rate(base), rate(head)) {
        push("deliveries per second".into(), "/s", x, y, Worse::Lower, 1.0);
    }
    for route in &head.http {
        let Some(before) = base.http.iter().find(|r| r.route == route.route) else {
            continue;
        };
        push(
            format!("http requests per second {}", route.route),
            "/s",
            before.requests_per_s,
            route.requests_per_s,
            Worse::Lower,
            1.0,
        );
        push(
            format!("http p99 {}", route.route),
            "µs",
            before.latency.p99_us as f64,
            route.latency.p99_us as f64,
            Worse::Higher,
            HTTP_LATENCY_FLOOR_US,
        );
    }
    out
}

/// The diff as text for a terminal.
pub fn render_text(diff: &Diff) -> String {
    let mut out = format!("{}: {} → {}\n", diff.scenario, diff.base_file, diff.head_file);
    if diff.verdicts.is_empty() {
        out.push_str("verdicts: unchanged\n");
    }
    for v in &diff.verdicts {
        out.push_str(&format!(
            "{} {}: {} → {}: {}\n",
            if v.worse { "WORSE " } else { "better" },
            v.verdict,
            v.base,
            v.head,
            v.detail
        ));
    }
    if diff.figures.is_empty() {
        out.push_str(&format!(
            "figures: none moved more than {:.0}%\n",
            diff.tolerance * 100.0
        ));
    }
    for f in &diff.figures {
        out.push_str(&format!(
            "{} {}: {} → {} {} ({})\n",
            if f.regression { "WORSE " } else { "      " },
            f.figure,
            number(f.base),
            number(f.head),
            f.unit,
            percent(f.relative)
        ));
    }
    out
}

/// The diff as Markdown, for a pull request comment or a job summary.
pub fn render_markdown(diff: &Diff) -> String {
    let mut out = format!(
        "### leakrun diff: `{}`\n\n`{}` → `{}`\n\n",
        diff.scenario, diff.base_file, diff.head_file
    );
    if diff.verdicts.is_empty() {
        out.push_str("Verdicts unchanged.\n\n");
    } else {
        out.push_str("| verdict | base | head | |\n|---|---|---|---|\n");
        for v in &diff.verdicts {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                v.verdict,
                v.base,
                v.head,
                if v.worse { "❌ worse" } else { "✅ better" }
            ));
        }
        out.push('\n');
        for v in diff.verdicts.iter().filter(|v| v.worse) {
            out.push_str(&format!("- **{}**: {}\n", v.verdict, v.detail.replace('|', "\\|")));
        }
        out.push('\n');
    }
    if diff.figures.is_empty() {
        out.push_str(&format!("No figure moved more than {:.0}%.\n", diff.tolerance * 100.0));
    } else {
        out.push_str("| figure | base | head | change | |\n|---|---|---|---|---|\n");
        for f in &diff.figures {
            out.push_str(&format!(
                "| {} | {} {} | {} {} | {} | {} |\n",
                f.figure,
                number(f.base),
                f.unit,
                number(f.head),
                f.unit,
                percent(f.relative),
                if f.regression { "❌" } else { "" }
            ));
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

fn percent(relative: f64) -> String {
    if relative.is_infinite() {
        "new".into()
    } else {
        format!("{:+.1}%", relative * 100.0)
    }
}
