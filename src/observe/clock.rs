//! One clock for the whole run: message intended times, receipt times, samples and churn events
//! are all nanoseconds since the run's epoch, so they line up in the results. The clock also
//! carries the run's nonce, which every envelope of the run repeats, so a token from another run
//! (a server's stale buffer, a replay) is told apart from this run's.

use std::time::{Duration, Instant, SystemTime};

/// The run's monotonic epoch and the wall time it corresponds to.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    epoch: Instant,
    wall_epoch: SystemTime,
    nonce: u64,
}

impl RunClock {
    /// Starts the clock now.
    pub fn start() -> Self {
        Self {
            epoch: Instant::now(),
            wall_epoch: SystemTime::now(),
            nonce: fastrand::u64(..),
        }
    }

    /// The run's nonce: random per run, carried by every envelope it sends.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The instant `ns` nanoseconds after the epoch.
    pub fn instant_at(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }

    /// Run-clock nanoseconds of `instant`.
    pub fn ns_of(&self, instant: Instant) -> u64 {
        instant.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// RFC 3339 wall time of run-clock `ns`.
    pub fn wall(&self, ns: u64) -> String {
        humantime::format_rfc3339_millis(self.wall_epoch + Duration::from_nanos(ns)).to_string()
    }
}

/// Seconds, for figures in the results.
pub fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}
