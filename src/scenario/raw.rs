//! The scenario file as written: serde structs that accept any shape of value a user might type,
//! keep the byte span of each value, and leave every judgement to `validate`.
//!
//! Unknown keys are not rejected here: `parse` collects all of them at once (serde_ignored), so a
//! user sees every misspelt key in one run rather than one per run.

use serde::Deserialize;
use toml::Spanned;

use super::units::RawSize;

/// A value with the byte span it was read from.
pub type S<T> = Spanned<T>;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a scenario table")]
pub struct RawScenario {
    pub name: Option<S<String>>,
    pub description: Option<S<String>>,
    pub server: Option<S<RawServer>>,
    pub backend: Option<S<RawBackend>>,
    #[serde(default)]
    pub rooms: Vec<S<RawRoom>>,
    #[serde(default)]
    pub http: Vec<S<RawHttp>>,
    pub run: Option<S<RawRun>>,
    pub expect: Option<S<RawExpect>>,
    pub thresholds: Option<S<RawThresholds>>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table of server settings")]
pub struct RawServer {
    pub target: Option<S<String>>,
    pub host: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub instances: Option<S<i64>>,
    pub capacity: Option<S<i64>>,
    pub max_frame: Option<S<RawSize>>,
    pub faults: Option<S<RawFaults>>,
    pub command: Option<S<RawCommand>>,
    pub cwd: Option<S<String>>,
    pub env: Option<S<std::collections::BTreeMap<String, String>>>,
    pub ready_url: Option<S<String>>,
    pub ready_port: Option<S<i64>>,
    pub ready_timeout: Option<S<String>>,
    pub stop_grace: Option<S<String>>,
    pub pid: Option<S<i64>>,
    pub pid_file: Option<S<String>>,
    pub ws_url: Option<S<String>>,
    pub http_url: Option<S<String>>,
    pub allow_remote: Option<S<bool>>,
    pub send_template: Option<S<String>>,
    pub stats_url: Option<S<String>>,
    pub stats_counters: Option<S<Vec<String>>>,
    pub cache: Option<S<RawCache>>,
}

/// `[server.cache]`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table of cache settings")]
pub struct RawCache {
    pub mode: Option<S<String>>,
    pub max_items: Option<S<i64>>,
    pub ttl: Option<S<String>>,
    pub max_body: Option<S<RawSize>>,
}

/// `server.command`: one string for `sh -c`, or program and arguments.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a string (run by `sh -c`) or an array of strings (program and arguments)"
)]
pub enum RawCommand {
    /// `command = "python3 manage.py runserver"`.
    Line(String),
    /// `command = ["python3", "server.py", "--port", "8000"]`.
    Argv(Vec<String>),
}

/// `[server.faults]`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table of fault switches")]
pub struct RawFaults {
    pub drop_one_in: Option<S<i64>>,
    pub keep_membership_on_disconnect: Option<S<bool>>,
    pub leak_per_connection: Option<S<RawSize>>,
    pub hold_per_connection: Option<S<RawSize>>,
    pub cancel_shared_receive: Option<S<bool>>,
}

/// `[backend]`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table of backend settings")]
pub struct RawBackend {
    pub kind: Option<S<String>>,
    pub url: Option<S<String>>,
    pub allow_remote: Option<S<bool>>,
    pub group_expiry: Option<S<String>>,
    pub expiry: Option<S<String>>,
}

/// One `[[rooms]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a room table with `name` and `[[rooms.clients]]`")]
pub struct RawRoom {
    pub name: Option<S<String>>,
    #[serde(default)]
    pub clients: Vec<S<RawClients>>,
}

/// One `[[rooms.clients]]` group.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a client group table")]
pub struct RawClients {
    pub pattern: Option<S<String>>,
    pub count: Option<S<i64>>,
    pub rate: Option<S<f64>>,
    pub payload: Option<S<RawSize>>,
    pub reader: Option<S<String>>,
    pub up: Option<S<String>>,
    pub down: Option<S<String>>,
    pub close: Option<S<String>>,
    pub ramp: Option<S<String>>,
    pub hold: Option<S<String>>,
}

/// One `[[http]]` workload.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "an HTTP workload table")]
pub struct RawHttp {
    pub name: Option<S<String>>,
    pub method: Option<S<String>>,
    pub path: Option<S<String>>,
    pub keys: Option<S<i64>>,
    pub key_order: Option<S<String>>,
    pub body: Option<S<RawSize>>,
    pub workers: Option<S<i64>>,
    pub rate: Option<S<f64>>,
    pub connections: Option<S<i64>>,
    pub requests: Option<S<i64>>,
    pub keep_alive: Option<S<bool>>,
    pub timeout: Option<S<String>>,
}

/// `[run]`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table of run settings")]
pub struct RawRun {
    pub duration: Option<S<String>>,
    pub iterations: Option<S<i64>>,
    pub warmup: Option<S<i64>>,
    pub drain: Option<S<String>>,
    pub settle: Option<S<String>>,
    pub connect_timeout: Option<S<String>>,
    pub sample_interval: Option<S<String>>,
}

/// `[expect]`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table of expected verdicts")]
pub struct RawExpect {
    pub gaps: Option<S<bool>>,
    pub latency_breach: Option<S<bool>>,
    pub leak: Option<S<bool>>,
    pub retention: Option<S<bool>>,
}

/// `[thresholds]`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a table of thresholds")]
pub struct RawThresholds {
    pub gaps: Option<S<i64>>,
    pub duplicates: Option<S<i64>>,
    pub reordered: Option<S<i64>>,
    pub misrouted: Option<S<i64>>,
    pub delivery_p50: Option<S<String>>,
    pub delivery_p99: Option<S<String>>,
    pub delivery_p999: Option<S<String>>,
    pub delivery_max: Option<S<String>>,
    pub connect_p99: Option<S<String>>,
    pub http_p99: Option<S<String>>,
    pub http_errors: Option<S<i64>>,
    pub heap_growth: Option<S<RawSize>>,
    pub rss_growth: Option<S<RawSize>>,
    pub retention: Option<S<RawSize>>,
    pub state_growth: Option<S<i64>>,
}

/// Table paths (indices removed) that are lists of tables, written `[[name]]`.
pub const LIST_TABLES: &[&str] = &["rooms", "rooms.clients", "http"];

/// The keys a table at `table_path` (indices removed, e.g. `rooms.clients`) accepts.
pub fn keys_of(table_path: &str) -> Option<&'static [&'static str]> {
    use serde_aux::serde_introspection::serde_introspect as keys;
    Some(match table_path {
        "" => keys::<RawScenario>(),
        "server" => keys::<RawServer>(),
        "server.faults" => keys::<RawFaults>(),
        "server.cache" => keys::<RawCache>(),
        "http" => keys::<RawHttp>(),
        "backend" => keys::<RawBackend>(),
        "rooms" => keys::<RawRoom>(),
        "rooms.clients" => keys::<RawClients>(),
        "run" => keys::<RawRun>(),
        "expect" => keys::<RawExpect>(),
        "thresholds" => keys::<RawThresholds>(),
        _ => return None,
    })
}
