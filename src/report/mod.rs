//! The HTML report: a result file as pictures a person would rather look at — memory, state,
//! churn with losses, latency, HTTP and allocation sites — all on one shared time axis, with the
//! verdict lines and the scenario at the top.
//!
//! One self-contained file (inline SVG and CSS, no script, nothing fetched), drawn with plotters'
//! SVG backend. A result is untrusted input: its size is bounded before it is read, its schema
//! version is checked before it is parsed, and every series is thinned to a bounded number of
//! points before it is drawn. Nothing below this module uses it; `leakrun report` and `run` do.

pub mod axis;
pub mod churn;
pub mod compare;
pub mod http;
pub mod index;
pub mod latency;
pub mod memory;
pub mod page;
pub mod sites;
pub mod state;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::results::{RunResult, SCHEMA_VERSION};

/// Largest result file `report` reads.
pub const MAX_RESULT_BYTES: u64 = 64 * 1024 * 1024;
/// Most iterations drawn (markers, after points); more are evenly thinned.
pub const MAX_ITERATIONS_DRAWN: usize = 1000;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The result file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than any result.
    #[error("{path} is larger than {max} MiB, more than any leakrun result holds: is it the right file?", max = MAX_RESULT_BYTES / (1024 * 1024))]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a result.
    #[error("{path} is not a leakrun result: {detail}")]
    NotAResult {
        /// The file.
        path: PathBuf,
        /// What did not fit, with its line and column.
        detail: String,
    },
    /// The result has another schema version.
    #[error(
        "{path} is a result of schema version {found}{writer}; this leakrun ({ours}) reads version {SCHEMA_VERSION} only: run the scenario again with this leakrun, or make the report with the leakrun that wrote it"
    )]
    Schema {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: String,
        /// `, written by leakrun X`, when it says.
        writer: String,
        /// This leakrun's version.
        ours: &'static str,
    },
    /// Two results that cannot be compared (another schema, another scenario), in the words of
    /// `leakrun diff`.
    #[error("{0}")]
    Incomparable(crate::diff::LoadDiffError),
    /// plotters could not draw a chart.
    #[error("drawing a chart failed: {0}")]
    Draw(String),
    /// The report could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl ReportError {
    /// A drawing error from plotters.
    pub fn draw(error: impl std::fmt::Display) -> Self {
        Self::Draw(error.to_string())
    }

    /// The input was at fault (a usage error), not the machine.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. } | Self::NotAResult { .. } | Self::Schema { .. } | Self::Incomparable(_)
        ) || matches!(self, Self::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound || source.kind() == std::io::ErrorKind::InvalidData)
    }
}

/// What every result's first keys say, read before the whole document.
#[derive(Deserialize)]
struct Head {
    schema_version: Option<serde_json::Value>,
    tool: Option<HeadTool>,
}

#[derive(Deserialize)]
struct HeadTool {
    version: Option<serde_json::Value>,
}

/// Reads a result file for a report: at most [`MAX_RESULT_BYTES`], of this schema version.
pub fn read(path: &Path) -> Result<RunResult, ReportError> {
    parse(path, &read_bounded(path)?)
}

/// The bytes of the file at `path`, at most [`MAX_RESULT_BYTES`] of them.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, ReportError> {
    let read_error = |source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_RESULT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_RESULT_BYTES {
        return Err(ReportError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// Parses a result document read from `path`.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<RunResult, ReportError> {
    let not_a_result = |detail: String| ReportError::NotAResult {
        path: path.to_path_buf(),
        detail,
    };
    let head: Head = serde_json::from_slice(bytes).map_err(|e| not_a_result(e.to_string()))?;
    let Some(version) = head.schema_version else {
        return Err(not_a_result("it has no `schema_version`".into()));
    };
    if version.as_u64() != Some(u64::from(SCHEMA_VERSION)) {
        let writer = head
            .tool
            .and_then(|t| t.version)
            .and_then(|v| v.as_str().map(|v| format!(", written by leakrun {}", short(v))))
            .unwrap_or_default();
        return Err(ReportError::Schema {
            path: path.to_path_buf(),
            found: short(&version.to_string()),
            writer,
            ours: env!("CARGO_PKG_VERSION"),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| not_a_result(e.to_string()))
}

/// At most 40 characters of a value quoted from an untrusted file.
fn short(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(40).collect()
}

/// `text` safe inside HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The charts of one result, drawn.
pub struct Charts {
    /// Memory, when the result holds a memory reading.
    pub memory: Option<memory::MemoryCharts>,
    /// One per state series.
    pub state: Vec<state::StateChart>,
    /// How many state series there are (some may not be drawn).
    pub state_total: usize,
    /// Churn with the loss marks.
    pub churn: String,
    /// Loss marks drawn.
    pub loss_marks: usize,
    /// Delivery latency over time.
    pub latency: Option<String>,
    /// Delivery p99 per room over time.
    pub latency_rooms: Option<String>,
    /// Connect time over time.
    pub connect: Option<String>,
    /// HTTP figures per route, titled.
    pub http: Vec<(&'static str, String)>,
    /// Allocation sites.
    pub sites: Option<String>,
}

/// The report of `result`, as one HTML document.
pub fn render(result: &RunResult) -> Result<String, ReportError> {
    let axis = axis::TimeAxis::of(result);
    let (state, state_total) = state::charts(result, axis)?;
    let (churn, loss_marks) = churn::chart(result, axis)?;
    let charts = Charts {
        memory: memory::chart(result, axis)?,
        state,
        state_total,
        churn,
        loss_marks,
        latency: latency::chart(result, axis)?,
        latency_rooms: latency::rooms_chart(result, axis)?,
        connect: latency::connect_chart(result, axis)?,
        http: http::charts(result, axis)?,
        sites: sites::chart(result)?,
    };
    Ok(page::document(result, &charts))
}

/// Where the report of the result at `json` goes by default: beside it, `.html` for `.json`.
pub fn path_beside(json: &Path) -> PathBuf {
    json.with_extension("html")
}

/// Renders `result` and writes it to `path` (a temporary file in the same folder, then a rename,
/// so a reader never sees half a report).
pub fn write(path: &Path, result: &RunResult) -> Result<(), ReportError> {
    write_html(path, &render(result)?)
}

/// Writes the page `html` to `path` (a temporary file in the same folder, then a rename).
pub fn write_html(path: &Path, html: &str) -> Result<(), ReportError> {
    let write_error = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".leakrun-")
        .suffix(".html.tmp")
        .tempfile_in(dir)
        .map_err(write_error)?;
    file.write_all(html.as_bytes()).map_err(write_error)?;
    readable(file.as_file()).map_err(write_error)?;
    file.persist(path).map_err(|e| write_error(e.error))?;
    Ok(())
}

/// Reports are for everyone to read (tempfile creates files owner-only).
#[cfg(unix)]
fn readable(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn readable(_file: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_schema_is_refused_by_its_version() {
        let text = br#"{"schema_version": 1, "tool": {"name": "leakrun", "version": "0.0.9"}}"#;
        let error = parse(Path::new("old.json"), text).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, ReportError::Schema { .. }), "{message}");
        assert!(
            message.contains("schema version 1, written by leakrun 0.0.9"),
            "{message}"
        );
        assert!(
            message.contains(&format!("reads version {SCHEMA_VERSION}")),
            "{message}"
        );
        assert!(error.is_bad_input());
    }

    #[test]
    fn a_file_that_is_no_result_says_so() {
        let error = parse(Path::new("x.json"), br#"{"name": 3}"#).unwrap_err();
        assert!(error.to_string().contains("has no `schema_version`"), "{error}");
        let error = parse(Path::new("x.json"), b"not json").unwrap_err();
        assert!(error.to_string().contains("x.json is not a leakrun result"), "{error}");
    }
}
