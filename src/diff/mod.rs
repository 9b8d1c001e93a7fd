//! `leakrun diff BASE HEAD`: what changed between two results of the same scenario.
//!
//! Verdict changes come first (clean → leak, no gaps → gaps, within → breach), with the evidence a
//! person needs to act — for new gaps the room, the sender and the first missing range. Then the
//! figures that moved beyond noise (latency percentiles, bytes per connection and per HTTP
//! request, messages lost, distinct messages lost and unconfirmed and the losses' causes,
//! deliveries per second, HTTP requests per second and p99 per route), each with its
//! relative change and whether the move is a regression. Results of different schema versions or
//! of different scenarios are refused, not compared.
//!
//! Either side may be a baseline (a [`Snapshot`] kept in the repository) instead of a full result:
//! then only the verdicts and the figures a baseline keeps are compared.

mod render;
pub mod snapshot;

use serde::Serialize;

pub use render::{render_markdown, render_text};
pub use snapshot::{Figure, Snapshot, Worse};

use crate::results::{RunResult, SCHEMA_VERSION};
use crate::verdict::gaps::GapOutcome;
use crate::verdict::latency::LatencyOutcome;
use crate::verdict::leak::LeakOutcome;

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

/// Why baselines could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// A result file could not be read.
    #[error("{}: {source:#}", path.display())]
    Read {
        /// The result file.
        path: std::path::PathBuf,
        /// Why.
        source: anyhow::Error,
    },
    /// A result has no verdicts to take a baseline of, or was interrupted or incomplete.
    #[error(
        "{}: the run ended {status:?}, without verdicts or with part of it missing (interrupted, or sessions lost); a baseline needs a complete, judged run",
        path.display()
    )]
    NotJudged {
        /// The result file.
        path: std::path::PathBuf,
        /// How its run ended.
        status: crate::results::Status,
    },
    /// The scenario name in a result is not one a file can be named after.
    #[error(
        "{}: scenario name {name:?} cannot name a baseline file; valid: 1-99 letters, digits, `.`, `_` or `-`, not starting with `.`",
        path.display()
    )]
    Name {
        /// The result file.
        path: std::path::PathBuf,
        /// The name it holds.
        name: String,
    },
    /// A baseline file or its folder could not be written.
    #[error("{}: {source}", path.display())]
    Write {
        /// The file or folder.
        path: std::path::PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Writes the baseline of each result in `results` to `out/<scenario>.json`; returns the files
/// written. A result that was not judged (an error, an interruption) makes no baseline.
pub fn write_baselines(
    results: &[std::path::PathBuf],
    out: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>, BaselineError> {
    let mut snapshots = Vec::new();
    for path in results {
        let result = crate::results::read(path).map_err(|source| BaselineError::Read {
            path: path.clone(),
            source,
        })?;
        if result.verdicts.is_none()
            || !matches!(
                result.status,
                crate::results::Status::Pass | crate::results::Status::Fail
            )
            || !result.incomplete.is_empty()
        {
            return Err(BaselineError::NotJudged {
                path: path.clone(),
                status: result.status,
            });
        }
        if !crate::naming::is_valid_name(&result.scenario.name) {
            return Err(BaselineError::Name {
                path: path.clone(),
                name: result.scenario.name.clone(),
            });
        }
        snapshots.push(Snapshot::baseline(&result));
    }
    let failed = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| BaselineError::Write { path, source }
    };
    std::fs::create_dir_all(out).map_err(failed(out))?;
    let mut written = Vec::new();
    for snapshot in snapshots {
        let path = out.join(crate::results::RunResult::file_name(&snapshot.scenario));
        let text = serde_json::to_string_pretty(&snapshot).map_err(|e| failed(&path)(e.into()))? + "\n";
        crate::results::write::atomic(&path, text.as_bytes()).map_err(failed(&path))?;
        written.push(path);
    }
    Ok(written)
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
    compare_values(&base, &base_file, &head, &head_file, tolerance)
}

/// Compares two result (or baseline) documents already parsed as JSON, `base_file` and
/// `head_file` naming them in messages: the schema versions and scenario names are checked first,
/// as [`compare_files`] does (the HTML diff report reads its files bounded, then comes here).
pub fn compare_values(
    base: &serde_json::Value,
    base_file: &str,
    head: &serde_json::Value,
    head_file: &str,
    tolerance: f64,
) -> Result<Diff, LoadDiffError> {
    let (base_file, head_file) = (base_file.to_string(), head_file.to_string());
    let schema = |v: &serde_json::Value, file: &str| {
        v["schema_version"]
            .as_u64()
            .map(|n| n as u32)
            .ok_or_else(|| LoadDiffError::Unreadable(format!("{file}: not a leakrun result (no schema_version)")))
    };
    let (bs, hs) = (schema(base, &base_file)?, schema(head, &head_file)?);
    if bs != hs || bs != SCHEMA_VERSION {
        return Err(DiffError::Schema {
            base_file,
            base: bs,
            head_file,
            head: hs,
        }
        .into());
    }
    // A result has `scenario.name`, a baseline a bare `scenario`.
    let name = |v: &serde_json::Value| {
        v["scenario"]["name"]
            .as_str()
            .or(v["scenario"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    if name(base) != name(head) {
        return Err(DiffError::Scenario {
            base_file,
            base: name(base),
            head_file,
            head: name(head),
        }
        .into());
    }
    let (base, head) = (
        snapshot_of(base.clone(), &base_file)?,
        snapshot_of(head.clone(), &head_file)?,
    );
    Ok(compare(&base, &base_file, &head, &head_file, tolerance)?)
}

/// The tolerance `diff` and the diff report use unless told otherwise: a 10% relative change.
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// Whether a document is a baseline (from `leakrun baseline`) rather than a full result.
pub fn is_baseline(value: &serde_json::Value) -> bool {
    value["kind"] == snapshot::BASELINE_KIND
}

/// A result file's JSON as a snapshot: a baseline as it is, a full result reduced.
fn snapshot_of(value: serde_json::Value, file: &str) -> Result<Snapshot, LoadDiffError> {
    let unreadable = |e: serde_json::Error| LoadDiffError::Unreadable(format!("{file}: not a leakrun result: {e}"));
    if is_baseline(&value) {
        return serde_json::from_value(value).map_err(unreadable);
    }
    let result: RunResult = serde_json::from_value(value).map_err(unreadable)?;
    Ok(Snapshot::of(&result))
}

/// Compares `head` against `base`; `tolerance` is a relative change (0.1 = 10%).
pub fn compare(
    base: &Snapshot,
    base_file: &str,
    head: &Snapshot,
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
    if base.scenario != head.scenario {
        return Err(DiffError::Scenario {
            base_file: base_file.into(),
            base: base.scenario.clone(),
            head_file: head_file.into(),
            head: head.scenario.clone(),
        });
    }
    Ok(Diff {
        scenario: head.scenario.clone(),
        base_file: base_file.into(),
        head_file: head_file.into(),
        tolerance,
        verdicts: verdict_changes(base, head),
        figures: figure_changes(base, head, tolerance),
    })
}

fn verdict_changes(base: &Snapshot, head: &Snapshot) -> Vec<VerdictChange> {
    let mut changes = Vec::new();
    let (Some(b), Some(h)) = (&base.verdicts, &head.verdicts) else {
        if base.verdicts.is_some() != head.verdicts.is_some() {
            let has = |s: &Snapshot| if s.verdicts.is_some() { "judged" } else { "no verdicts" };
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
        changes.push(VerdictChange {
            verdict: "gaps".into(),
            base: gap_name(b.gaps.outcome).into(),
            head: gap_name(h.gaps.outcome).into(),
            worse: h.gaps.outcome == GapOutcome::Gaps,
            detail: h.gaps.detail.clone(),
        });
    }
    if b.latency.outcome != h.latency.outcome {
        changes.push(VerdictChange {
            verdict: "latency".into(),
            base: latency_name(b.latency.outcome).into(),
            head: latency_name(h.latency.outcome).into(),
            worse: h.latency.outcome == LatencyOutcome::Breach,
            detail: h.latency.detail.clone(),
        });
    }
    if b.leak.outcome != h.leak.outcome {
        changes.push(VerdictChange {
            verdict: "leak".into(),
            base: leak_name(b.leak.outcome).into(),
            head: leak_name(h.leak.outcome).into(),
            worse: leak_rank(h.leak.outcome) > leak_rank(b.leak.outcome),
            detail: h.leak.detail.clone(),
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

/// The figures both sides have that moved past the floor and the tolerance, in the head's order.
fn figure_changes(base: &Snapshot, head: &Snapshot, tolerance: f64) -> Vec<FigureChange> {
    let mut out = Vec::new();
    for figure in &head.figures {
        let Some(before) = base.figures.iter().find(|f| f.name == figure.name) else {
            continue;
        };
        let (b, h) = (before.value, figure.value);
        if b == h || (h - b).abs() < figure.floor {
            continue;
        }
        let relative = if b == 0.0 {
            f64::INFINITY.copysign(h)
        } else {
            (h - b) / b.abs()
        };
        if relative.abs() <= tolerance {
            continue;
        }
        let regression = match figure.worse {
            Worse::Higher => h > b,
            Worse::Lower => h < b,
        };
        out.push(FigureChange {
            figure: figure.name.clone(),
            unit: figure.unit.clone(),
            base: b,
            head: h,
            relative,
            regression,
        });
    }
    out
}
