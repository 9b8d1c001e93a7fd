//! Verdicts: the observations judged against the scenario's thresholds and expectations.
//!
//! Each verdict has an outcome (good or bad), the outcome the scenario expected (a positive
//! control expects the bad one), whether the two match, a one-line summary for people, and its
//! evidence for `diff` and for anyone who wants to check the summary.

pub mod fit;
pub mod gaps;
pub mod latency;
pub mod leak;

use serde::{Deserialize, Serialize};

pub use gaps::GapsVerdict;
pub use latency::LatencyVerdict;
pub use leak::LeakVerdict;

/// The verdicts of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdicts {
    /// Lost, duplicated, reordered or misrouted messages.
    pub gaps: GapsVerdict,
    /// Latency against thresholds.
    pub latency: LatencyVerdict,
    /// Memory and state left behind after every client is gone.
    pub leak: LeakVerdict,
}

impl Verdicts {
    /// True when every verdict came out as the scenario expected.
    pub fn all_met(&self) -> bool {
        self.gaps.met && self.latency.met && self.leak.met
    }

    /// One line per verdict, for the summary a person reads.
    pub fn lines(&self) -> Vec<String> {
        let mark = |met: bool| if met { "ok  " } else { "FAIL" };
        vec![
            format!("{} gaps     {}", mark(self.gaps.met), self.gaps.summary),
            format!("{} latency  {}", mark(self.latency.met), self.latency.summary),
            format!("{} leak     {}", mark(self.leak.met), self.leak.summary),
        ]
    }
}

/// `expected` as a phrase for summaries.
pub fn expectation_note(bad: bool, expected_bad: bool) -> &'static str {
    match (bad, expected_bad) {
        (true, true) => " (expected: positive control)",
        (false, true) => " (but the scenario expected it to fail: the detector missed its positive control)",
        _ => "",
    }
}
