//! Allocation sites: where a server's live heap grew between two moments, as a heap probe inside
//! the server reports them (tracemalloc for Python; a preloaded allocator for native servers).
//! The leak verdict turns the reports after each iteration into bytes per iteration per site.

use serde::{Deserialize, Serialize};

/// What the result says of one allocation site that grew.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteGrowth {
    /// `file:line` of the allocation.
    pub site: String,
    /// The call path, innermost first, when more than one frame is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traceback: Vec<String>,
    /// Live bytes added since the last report.
    pub bytes: i64,
    /// Live blocks added since the last report.
    pub blocks: i64,
}

/// One report of the heap probe after an iteration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteReport {
    /// Traced bytes, summed over the processes.
    pub bytes: i64,
    /// Traced blocks, summed over the processes.
    pub blocks: i64,
    /// The processes that answered, with their own traced bytes.
    pub processes: Vec<ProcessHeap>,
    /// The sites that grew most, merged over the processes, largest first.
    pub sites: Vec<SiteGrowth>,
    /// Seconds the snapshots took (the longest of the processes').
    pub took_s: f64,
}

/// One process's part of a report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessHeap {
    /// Its pid.
    pub pid: u32,
    /// Its traced bytes.
    pub bytes: i64,
    /// Its traced blocks.
    pub blocks: i64,
}
