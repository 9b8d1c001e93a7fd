//! The result file: everything a run found, as one JSON document in `results/<name>.json`.
//!
//! Written atomically ([`write::atomic`]: a temporary file in the same folder, fsync, rename, fsync
//! of the folder), so a reader — a person, CI, `leakrun diff` — never sees half a result, even when
//! the run is interrupted or the machine goes down just after.

pub mod host;
pub mod write;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::load::pacing::FirstSends;
use crate::observe::analysis::{LossRecord, LossTotals};
use crate::observe::events::ChurnEvent;
pub use crate::observe::http::RouteFigures;
use crate::observe::latency::{LatencySummary, LatencyWindow};
use crate::observe::sampler::{GeneratorFigures, Sample};
pub use crate::observe::timeline::Timeline;
use crate::scenario::Scenario;
use crate::server::ServerStats;
use crate::verdict::Verdicts;
pub use host::HostFacts;

/// Version of this document's shape; `diff` refuses to compare different versions.
pub const SCHEMA_VERSION: u32 = 2;

/// Most loss records kept in a result (the earliest).
pub const MAX_LOSS_RECORDS: usize = crate::observe::analysis::MAX_KEPT_RECORDS;

/// Overall status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every verdict met the expectation.
    Pass,
    /// Some verdict did not.
    Fail,
    /// The run could not be completed (infrastructure).
    Error,
    /// Stopped by Ctrl-C; the figures cover what ran.
    Interrupted,
}

/// The tool that wrote the result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolInfo {
    /// Always `leakrun`.
    pub name: String,
    /// Crate version.
    pub version: String,
}

/// The scenario as run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioInfo {
    /// Scenario name.
    pub name: String,
    /// File it was read from.
    pub file: String,
    /// SHA-256 of the file.
    pub hash: String,
    /// Every value as resolved, defaults filled in.
    pub resolved: Scenario,
    /// Where each key's value came from: `file`, `default`, or the flag or environment variable
    /// that set it (e.g. `--set run.duration=5s`, `DURATION=5s (DURATION from .env)`).
    #[serde(default)]
    pub sources: std::collections::BTreeMap<String, String>,
}

/// The backend behind the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendInfo {
    /// `memory`, ...
    pub kind: String,
    /// Version of the backend server, or of leakrun for the in-process layer.
    pub version: String,
    /// The server used, credentials removed; none for the in-process layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Where the server came from: `backend.url`, `REDIS_URL`, or a private server for the run.
    #[serde(default)]
    pub source: String,
}

/// The server under test, as the result reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetInfo {
    /// `embedded` or `external`.
    pub kind: String,
    /// The server's process id.
    pub pid: u32,
    /// leakrun started the server (and stopped it after).
    pub started: bool,
    /// The command that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Where `rss_bytes` comes from, e.g. `rss of pid 123 and 3 child processes, summed over its process tree`.
    pub memory_source: String,
    /// Where each sample's `target_cpu` comes from (absent in results written before it was
    /// read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_source: Option<String>,
    /// The started server's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// How the server was stopped at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

/// Figures of one iteration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IterationFigures {
    /// 0-based index.
    pub index: u32,
    /// Excluded from leak fits.
    pub warmup: bool,
    /// Seconds since the run started, at the iteration's start.
    pub started_s: f64,
    /// Seconds spent sending.
    pub send_s: f64,
    /// Seconds spent draining.
    pub drain_s: f64,
    /// Deliveries stopped before the drain bound.
    pub drained: bool,
    /// Seconds spent settling.
    pub settle_s: f64,
    /// The server reported zero live connections before the settle bound.
    pub settled: bool,
    /// Connection sessions.
    pub sessions: u64,
    /// Failed connects.
    pub connect_failures: u64,
    /// Message accounting.
    pub totals: LossTotals,
    /// Deliveries per second over the send and drain time.
    pub deliveries_per_s: f64,
    /// Delivery latency over all rooms.
    pub delivery: LatencySummary,
    /// How the sessions' first messages were spread in time.
    #[serde(default)]
    pub first_sends: FirstSends,
    /// leakrun's own CPU and memory, in all and per connection, with the connections open.
    #[serde(default)]
    pub generator: GeneratorFigures,
    /// HTTP figures per route (`[[http]]` workloads), this iteration only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<RouteFigures>,
    /// Embedded server counters after the settle (an external server's own are in `after.state`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_after: Option<ServerStats>,
    /// What the heap probe inside an external server reported after the settle: traced bytes
    /// and blocks per process, the sites that grew, how long the snapshot took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_probe: Option<crate::observe::sites::SiteReport>,
    /// Memory and state after the settle: the point the leak verdict judges.
    pub after: Sample,
    /// A signal ended it before its drain: its figures are reported, its losses and latency are
    /// not judged (its in-flight messages would pass for tail loss).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// A part of the load that never reported: what it saw is missing from the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostWork {
    /// The iteration (0-based).
    pub iteration: u32,
    /// Which: a client label (`room_a/cycle#0`) or an HTTP route's workers (`http GET /x`).
    pub what: String,
    /// Why: `panicked`, `did not end within 10s`, `3 of 8 workers did not report`.
    pub why: String,
}

/// Loss records, capped.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LossLog {
    /// Records in time order, at most [`MAX_LOSS_RECORDS`].
    pub records: Vec<LossRecord>,
    /// Records found in all (kept or only counted).
    pub total_records: u64,
    /// Some records were left out.
    pub truncated: bool,
}

/// Churn events, capped.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EventLogOut {
    /// Events in time order.
    pub events: Vec<ChurnEvent>,
    /// Events past the cap, counted only.
    pub not_kept: u64,
}

/// A run's result document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// See [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Who wrote it.
    pub tool: ToolInfo,
    /// What ran.
    pub scenario: ScenarioInfo,
    /// Where it ran.
    pub host: HostFacts,
    /// Backend and its version.
    pub backend: BackendInfo,
    /// Wall time at start (RFC 3339).
    pub started_at: String,
    /// Wall time at the end (RFC 3339).
    pub finished_at: String,
    /// Seconds the run took.
    pub elapsed_s: f64,
    /// Overall status.
    pub status: Status,
    /// Every verdict matched the scenario's expectation.
    pub expectation_met: bool,
    /// What went wrong, when status is `error`.
    pub error: Option<String>,
    /// The seed every session's send phase was drawn from (`phase = "spread"`).
    #[serde(default)]
    pub phase_seed: u64,
    /// Per-iteration figures.
    pub iterations: Vec<IterationFigures>,
    /// The verdicts (absent when no iteration completed).
    pub verdicts: Option<Verdicts>,
    /// Loss records.
    pub losses: LossLog,
    /// Churn events.
    pub events: EventLogOut,
    /// The server under test: which, its process, where its memory figures come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetInfo>,
    /// Embedded server counters at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerStats>,
    /// Memory and state before the first client connected.
    pub before: Option<Sample>,
    /// Memory and state every `run.sample_interval`, down-sampled to a bounded length.
    pub timeline: Timeline<Sample>,
    /// Delivery latency (p50, p99, max) per window of receipt time over the whole run, at most
    /// `observe::latency::MAX_WINDOWS` windows: what the losses' causes were judged from.
    #[serde(default)]
    pub delivery_timeline: Vec<LatencyWindow>,
    /// The same per room, for the first `observe::latency::MAX_ROOMS_WITH_WINDOWS` rooms in the
    /// scenario's order, at most `observe::latency::MAX_ROOM_WINDOWS` windows each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivery_timeline_per_room: Vec<RoomTimeline>,
    /// Connect time (TCP and handshake; p50, p99, max) per window of the moment the connection
    /// was made, at most `observe::latency::MAX_WINDOWS` windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_timeline: Vec<LatencyWindow>,
    /// HTTP figures per route over the whole run: latency, statuses, failures by kind, rate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<RouteFigures>,
    /// Client sessions and HTTP workers that never reported. Not empty: the result is
    /// incomplete (status `error`), and no baseline is taken of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<LostWork>,
    /// What makes some figures less than they seem, e.g. leakrun itself saturated (its figures
    /// are then a lower bound); printed under the run's summary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl RunResult {
    /// The file name a result for scenario `name` lands in.
    pub fn file_name(name: &str) -> String {
        format!("{name}.json")
    }
}

/// Writes `result` to `dir/<name>.json` atomically and returns the path.
pub fn write_atomic(dir: &Path, result: &RunResult) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(RunResult::file_name(&result.scenario.name));
    let mut bytes = serde_json::to_vec_pretty(result)?;
    bytes.push(b'\n');
    write::atomic(&path, &bytes)?;
    Ok(path)
}

/// Reads a result file.
pub fn read(path: &Path) -> anyhow::Result<RunResult> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a leakrun result", path.display()))
}

/// One room's delivery latency per window of receipt time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomTimeline {
    /// Room name.
    pub room: String,
    /// Its windows with deliveries, oldest first.
    pub windows: Vec<LatencyWindow>,
}
