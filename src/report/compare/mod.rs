//! The diff report, `leakrun report BASE.json HEAD.json`: what `leakrun diff` says, in the form of
//! the one-result report — the verdict changes first, then the figures that moved, then the two
//! timelines overlaid on one time axis, each run in its own colour.
//!
//! The comparison is `leakrun diff`'s own ([`crate::diff::compare_values`]), so both say the same
//! thing and refuse the same pairs (another schema, another scenario). The files are untrusted
//! input read bounded, as a single report's is. A baseline (from `leakrun baseline`) on either
//! side keeps no timeline: then the page compares verdicts and figures only, and says so.

pub mod overlay;
pub mod page;

use std::path::{Path, PathBuf};

use crate::diff::{Diff, Snapshot};
use crate::report::ReportError;
use crate::results::RunResult;

/// One side of a diff report.
pub enum Side {
    /// A full result, with its timeline.
    Result(Box<RunResult>),
    /// A baseline: verdicts and portable figures, no timeline.
    Baseline(Box<Snapshot>),
}

impl Side {
    /// The full result, when this side is one.
    pub fn result(&self) -> Option<&RunResult> {
        match self {
            Side::Result(result) => Some(result),
            Side::Baseline(_) => None,
        }
    }
}

/// Two files compared, ready to draw.
pub struct Compared {
    /// What `leakrun diff` finds between them.
    pub diff: Diff,
    /// The base side.
    pub base: Side,
    /// The head side.
    pub head: Side,
}

/// Reads `base` and `head` (each at most [`crate::report::MAX_RESULT_BYTES`]) and compares them
/// as `leakrun diff` does, with `tolerance` for the figures.
pub fn read(base: &Path, head: &Path, tolerance: f64) -> Result<Compared, ReportError> {
    let json = |path: &Path| -> Result<serde_json::Value, ReportError> {
        let bytes = crate::report::read_bounded(path)?;
        serde_json::from_slice(&bytes).map_err(|e| ReportError::NotAResult {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
    };
    let (b, h) = (json(base)?, json(head)?);
    let diff = crate::diff::compare_values(
        &b,
        &base.display().to_string(),
        &h,
        &head.display().to_string(),
        tolerance,
    )
    .map_err(ReportError::Incomparable)?;
    Ok(Compared {
        diff,
        base: side(base, b)?,
        head: side(head, h)?,
    })
}

/// The document at `path` as a full result or a baseline.
fn side(path: &Path, value: serde_json::Value) -> Result<Side, ReportError> {
    let not_a_result = |e: serde_json::Error| ReportError::NotAResult {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    if crate::diff::is_baseline(&value) {
        return Ok(Side::Baseline(Box::new(
            serde_json::from_value(value).map_err(not_a_result)?,
        )));
    }
    Ok(Side::Result(Box::new(
        serde_json::from_value(value).map_err(not_a_result)?,
    )))
}

/// The diff report as one HTML document: overlaid charts when both sides are full results.
pub fn render(compared: &Compared) -> Result<String, ReportError> {
    let charts = match (compared.base.result(), compared.head.result()) {
        (Some(base), Some(head)) => overlay::charts(
            overlay::Run {
                name: "base",
                result: base,
                colour: overlay::BASE,
            },
            overlay::Run {
                name: "head",
                result: head,
                colour: overlay::HEAD,
            },
        )?,
        _ => Vec::new(),
    };
    Ok(page::document(compared, &charts))
}

/// Where the diff report goes by default: beside the head, `.diff.html` for `.json`.
pub fn path_beside(head: &Path) -> PathBuf {
    head.with_extension("diff.html")
}
