//! One sample of the target: memory, heap, state counters and CPU at one moment on the run
//! clock, as the sampler reads it and the result's timeline keeps it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Memory and state at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub at_s: f64,
    /// Resident set of the target process, bytes (for an external server, summed over its
    /// process tree).
    pub rss_bytes: Option<u64>,
    /// How many processes `rss_bytes` sums (external server only: the process and its
    /// descendants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_processes: Option<u32>,
    /// Live heap bytes of the server: the embedded server's domain of the counting allocator, or
    /// what a heap probe inside an external server reports (tracemalloc's traced bytes).
    pub heap_bytes: Option<i64>,
    /// Live heap blocks of the server, where the source counts them.
    pub heap_blocks: Option<i64>,
    /// How many processes `heap_bytes` sums (a heap probe in a server with workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_processes: Option<u32>,
    /// Live heap bytes of leakrun's own clients and observers, for reference; never judged.
    pub harness_heap_bytes: Option<i64>,
    /// State counters by name, judged by the leak verdict: each must return to its start.
    pub state: BTreeMap<String, u64>,
    /// Counters shown for reference (backend memory, server-wide client counts); not judged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub info: BTreeMap<String, u64>,
    /// The target's CPU over the window before this sample, in cores (1.0: one core busy the
    /// whole window): an external server's summed over its process tree; for the embedded server
    /// leakrun's whole process, whose threads it shares with the clients (see
    /// `target.cpu_source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cpu: Option<f64>,
    /// leakrun's own process CPU over the same window, in cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leakrun_cpu: Option<f64>,
    /// Seconds the CPU figures cover: since the sample before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_window_s: Option<f64>,
    /// Median delivery latency over all rooms in the latency window holding this sample's time
    /// (`delivery_timeline`; within 12.5%), µs; filled in when the run ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_p50_us: Option<u64>,
    /// The same window's 99th percentile, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_p99_us: Option<u64>,
    /// The same window's largest delivery latency, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_max_us: Option<u64>,
}
