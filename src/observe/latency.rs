//! Latency histograms: delivery per room (intended send time to receipt, so a stalled sender
//! cannot hide a stall: no coordinated omission) and connect time. Clients record into a small
//! local batch and flush it under the lock, so the per-message path takes no lock.

use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Recorded values per flush.
pub const BATCH: usize = 256;

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest value.
    pub max_us: u64,
}

/// Records `value` (at least 1µs), growing the histogram as needed; `saturating_record` alone
/// would clamp to the current range instead of growing it.
fn record_into(h: &mut Histogram<u64>, value: u64) {
    let value = value.max(1);
    if h.record(value).is_err() {
        h.saturating_record(value);
    }
}

/// A mutex-guarded histogram of microseconds.
pub struct SharedHistogram(Mutex<Histogram<u64>>);

impl Default for SharedHistogram {
    fn default() -> Self {
        // Three significant figures, growing as needed.
        Self(Mutex::new(
            Histogram::new(3).expect("3 significant figures is a valid histogram"),
        ))
    }
}

impl SharedHistogram {
    fn lock(&self) -> std::sync::MutexGuard<'_, Histogram<u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records every value in `values`.
    pub fn record_all(&self, values: &[u64]) {
        let mut h = self.lock();
        for &v in values {
            record_into(&mut h, v);
        }
    }

    /// Records one value.
    pub fn record(&self, value: u64) {
        record_into(&mut self.lock(), value);
    }

    /// Adds another histogram's counts to this one.
    pub fn merge(&self, other: &SharedHistogram) {
        let theirs = other.lock().clone();
        let _ = self.lock().add(&theirs);
    }

    /// Percentiles of what was recorded.
    pub fn summary(&self) -> LatencySummary {
        let h = self.lock();
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Delivery histograms per room and one for connect time.
pub struct LatencyBook {
    /// Delivery latency, indexed like the scenario's rooms.
    pub delivery: Vec<SharedHistogram>,
    /// WebSocket connect time (TCP and handshake).
    pub connect: SharedHistogram,
}

impl LatencyBook {
    /// Empty histograms for `rooms` rooms.
    pub fn new(rooms: usize) -> Self {
        Self {
            delivery: (0..rooms).map(|_| SharedHistogram::default()).collect(),
            connect: SharedHistogram::default(),
        }
    }

    /// Adds every histogram of `other` into this book.
    pub fn merge(&self, other: &LatencyBook) {
        for (mine, theirs) in self.delivery.iter().zip(&other.delivery) {
            mine.merge(theirs);
        }
        self.connect.merge(&other.connect);
    }
}

/// A client's local buffer of delivery latencies for one room.
pub struct DeliveryBatch {
    values: Vec<u64>,
}

impl Default for DeliveryBatch {
    fn default() -> Self {
        Self {
            values: Vec::with_capacity(BATCH),
        }
    }
}

impl DeliveryBatch {
    /// Adds a value, flushing into `into` when the batch is full.
    pub fn push(&mut self, micros: u64, into: &SharedHistogram) {
        self.values.push(micros);
        if self.values.len() == BATCH {
            self.flush(into);
        }
    }

    /// Moves what is buffered into `into`.
    pub fn flush(&mut self, into: &SharedHistogram) {
        if !self.values.is_empty() {
            into.record_all(&self.values);
            self.values.clear();
        }
    }
}

/// Microseconds as a short human figure.
pub fn fmt_us(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_the_values_it_is_given() {
        let h = SharedHistogram::default();
        let mut batch = DeliveryBatch::default();
        for v in 1..=10_000u64 {
            batch.push(v * 100, &h);
        }
        batch.flush(&h);
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert!((499_000..=501_000).contains(&s.p50_us), "{s:?}");
        assert!((989_000..=991_000).contains(&s.p99_us), "{s:?}");
        assert!((999_000..=1_001_000).contains(&s.max_us), "{s:?}");
        let merged = SharedHistogram::default();
        merged.merge(&h);
        assert_eq!(merged.summary(), s);
    }
}
