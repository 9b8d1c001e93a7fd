//! Latency histograms: delivery per room (intended send time to receipt, so a stalled sender
//! cannot hide a stall: no coordinated omission) and connect time, and delivery latency per
//! window of run time (`LatencyWindows`), which tells a loss while the server kept up from one
//! while it fell behind. Clients record into a small local batch and flush it under the lock, so
//! the per-message path takes no lock.
//!
//! The windows are bounded: each holds a fixed log-bucketed sketch (eight buckets per power of
//! two, a value within 12.5%), and past [`MAX_WINDOWS`] windows their width doubles and
//! neighbours merge, as the sample timeline does.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Recorded values per flush: at most this many wait in a connection's batch (16 bytes each).
pub const BATCH: usize = 64;

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

    /// Records the latency of every `(receipt time, latency)` pair in `pairs`.
    pub fn record_pairs(&self, pairs: &[(u64, u64)]) {
        let mut h = self.lock();
        for &(_, v) in pairs {
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

/// Delivery histograms per room, one for connect time, and delivery latency per window of time.
pub struct LatencyBook {
    /// Delivery latency, indexed like the scenario's rooms.
    pub delivery: Vec<SharedHistogram>,
    /// WebSocket connect time (TCP and handshake).
    pub connect: SharedHistogram,
    /// Delivery latency over all rooms, per window of receipt time.
    pub windows: Mutex<LatencyWindows>,
}

impl LatencyBook {
    /// Empty histograms for `rooms` rooms.
    pub fn new(rooms: usize) -> Self {
        Self {
            delivery: (0..rooms).map(|_| SharedHistogram::default()).collect(),
            connect: SharedHistogram::default(),
            windows: Mutex::new(LatencyWindows::default()),
        }
    }

    /// Adds every histogram of `other` into this book.
    pub fn merge(&self, other: &LatencyBook) {
        for (mine, theirs) in self.delivery.iter().zip(&other.delivery) {
            mine.merge(theirs);
        }
        self.connect.merge(&other.connect);
        let theirs = other.windows_snapshot();
        self.lock_windows().merge(&theirs);
    }

    fn lock_windows(&self) -> std::sync::MutexGuard<'_, LatencyWindows> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the windows.
    pub fn windows_snapshot(&self) -> LatencyWindows {
        self.lock_windows().clone()
    }
}

/// A client's local buffer of delivery latencies for one room. It holds nothing until the first
/// receipt and grows with what arrives, up to [`BATCH`] values, so a connection that hears
/// little costs little.
pub struct DeliveryBatch {
    room: usize,
    /// `(run-clock ns of receipt, latency µs)`.
    values: Vec<(u64, u64)>,
}

impl DeliveryBatch {
    /// An empty batch for room `room` (its index in the scenario).
    pub fn for_room(room: usize) -> Self {
        Self {
            room,
            values: Vec::new(),
        }
    }

    /// Adds a value received at run-clock `at_ns`, flushing into `book` when the batch is full.
    pub fn push(&mut self, at_ns: u64, micros: u64, book: &LatencyBook) {
        self.values.push((at_ns, micros));
        if self.values.len() == BATCH {
            self.flush(book);
        }
    }

    /// Moves what is buffered into `book`.
    pub fn flush(&mut self, book: &LatencyBook) {
        if self.values.is_empty() {
            return;
        }
        if let Some(room) = book.delivery.get(self.room) {
            room.record_pairs(&self.values);
        }
        let mut windows = book.lock_windows();
        for &(at, us) in &self.values {
            windows.record(at, us);
        }
        drop(windows);
        self.values.clear();
    }

    /// Bytes this batch holds (its capacity).
    pub fn held_bytes(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<(u64, u64)>()
    }
}

/// Most windows kept; past it the width doubles.
pub const MAX_WINDOWS: usize = 512;
/// Width of a window before any doubling.
pub const BASE_WINDOW_NS: u64 = 100_000_000;
const SUB_BUCKETS: u32 = 8;
const EXACT_BELOW: u64 = 16;
const BUCKETS: usize = EXACT_BELOW as usize + (64 - 4) * SUB_BUCKETS as usize;

/// Bucket of `us`: exact below 16, then eight per power of two.
fn bucket_of(us: u64) -> usize {
    if us < EXACT_BELOW {
        return us as usize;
    }
    let e = 63 - us.leading_zeros();
    let mantissa = ((us >> (e - 3)) & 7) as usize;
    EXACT_BELOW as usize + (e as usize - 4) * SUB_BUCKETS as usize + mantissa
}

/// The largest value bucket `i` holds.
fn bucket_top(i: usize) -> u64 {
    if i < EXACT_BELOW as usize {
        return i as u64;
    }
    let j = i - EXACT_BELOW as usize;
    let e = (j / SUB_BUCKETS as usize) as u32 + 4;
    let mantissa = (j % SUB_BUCKETS as usize) as u64;
    let low = (8 + mantissa) << (e - 3);
    low.saturating_add((1u64 << (e - 3)) - 1)
}

/// Delivery latencies of one window: a fixed-size log histogram.
#[derive(Debug, Clone)]
pub struct WindowSketch {
    counts: Box<[u32]>,
    count: u64,
    max_us: u64,
}

impl Default for WindowSketch {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            max_us: 0,
        }
    }
}

impl WindowSketch {
    fn record(&mut self, us: u64) {
        let slot = &mut self.counts[bucket_of(us)];
        *slot = slot.saturating_add(1);
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    fn merge(&mut self, other: &WindowSketch) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
        self.count += other.count;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The value at quantile `q` (0..=1), at most 12.5% high; never above the maximum.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return bucket_top(i).min(self.max_us);
            }
        }
        self.max_us
    }
}

/// Delivery latency of one window of run time, as the result reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyWindow {
    /// Seconds since the run started, at the window's start.
    pub at_s: f64,
    /// The window's width in seconds.
    pub width_s: f64,
    /// Deliveries received in it.
    pub count: u64,
    /// Median delivery latency (within 12.5%).
    pub p50_us: u64,
    /// 99th percentile (within 12.5%).
    pub p99_us: u64,
    /// Largest.
    pub max_us: u64,
}

/// Delivery latency per window of receipt time, at most [`MAX_WINDOWS`] windows.
#[derive(Debug, Clone)]
pub struct LatencyWindows {
    width_ns: u64,
    windows: BTreeMap<u64, WindowSketch>,
}

impl Default for LatencyWindows {
    fn default() -> Self {
        Self {
            width_ns: BASE_WINDOW_NS,
            windows: BTreeMap::new(),
        }
    }
}

impl LatencyWindows {
    /// Records a delivery of `us` microseconds received at run-clock `at_ns`.
    pub fn record(&mut self, at_ns: u64, us: u64) {
        self.windows.entry(at_ns / self.width_ns).or_default().record(us);
        self.bound();
    }

    /// Doubles the width until at most [`MAX_WINDOWS`] windows remain.
    fn bound(&mut self) {
        while self.windows.len() > MAX_WINDOWS {
            self.widen();
        }
    }

    fn widen(&mut self) {
        let old = std::mem::take(&mut self.windows);
        self.width_ns = self.width_ns.saturating_mul(2);
        for (index, sketch) in old {
            self.windows.entry(index / 2).or_default().merge(&sketch);
        }
    }

    /// Adds `other`'s windows (widths are the base times a power of two, so they align).
    pub fn merge(&mut self, other: &LatencyWindows) {
        while self.width_ns < other.width_ns {
            self.widen();
        }
        let ratio = (self.width_ns / other.width_ns.max(1)).max(1);
        for (&index, sketch) in &other.windows {
            self.windows.entry(index / ratio).or_default().merge(sketch);
        }
        self.bound();
    }

    /// The width of a window now.
    pub fn width_ns(&self) -> u64 {
        self.width_ns
    }

    /// The sketch of the window holding run-clock `at_ns`, if anything arrived in it.
    pub fn at(&self, at_ns: u64) -> Option<&WindowSketch> {
        self.windows.get(&(at_ns / self.width_ns))
    }

    /// The first window with deliveries after the one holding `at_ns`.
    pub fn next_after(&self, at_ns: u64) -> Option<&WindowSketch> {
        let index = at_ns / self.width_ns;
        self.windows.range(index + 1..).next().map(|(_, sketch)| sketch)
    }

    /// Every window with deliveries, oldest first.
    pub fn summaries(&self) -> Vec<LatencyWindow> {
        self.windows
            .iter()
            .map(|(&index, sketch)| LatencyWindow {
                at_s: super::clock::secs(index * self.width_ns),
                width_s: super::clock::secs(self.width_ns),
                count: sketch.count,
                p50_us: sketch.quantile(0.5),
                p99_us: sketch.quantile(0.99),
                max_us: sketch.max_us,
            })
            .collect()
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
        let book = LatencyBook::new(1);
        let mut batch = DeliveryBatch::for_room(0);
        for v in 1..=10_000u64 {
            batch.push(v * 1_000_000, v * 100, &book);
        }
        batch.flush(&book);
        let h = &book.delivery[0];
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert!((499_000..=501_000).contains(&s.p50_us), "{s:?}");
        assert!((989_000..=991_000).contains(&s.p99_us), "{s:?}");
        assert!((999_000..=1_001_000).contains(&s.max_us), "{s:?}");
        let merged = SharedHistogram::default();
        merged.merge(h);
        assert_eq!(merged.summary(), s);
        // 10 s of receipts in 100 ms windows: 100 windows, each of 100 values.
        let windows = book.windows_snapshot().summaries();
        assert_eq!(windows.len(), 101, "{:?}", &windows[..3]);
        assert_eq!(windows.iter().map(|w| w.count).sum::<u64>(), 10_000);
        let w = windows[50];
        assert!((500_000..=510_000).contains(&w.max_us), "{w:?}");
        assert!(w.p50_us >= 500_000 * 9 / 10 && w.p50_us <= w.max_us, "{w:?}");
    }

    #[test]
    fn a_batch_holds_nothing_until_it_hears_and_at_most_a_batch_after() {
        let book = LatencyBook::new(1);
        let mut batch = DeliveryBatch::for_room(0);
        assert_eq!(batch.held_bytes(), 0);
        batch.push(1, 5, &book);
        assert!(batch.held_bytes() > 0 && batch.held_bytes() < BATCH * 16);
        for v in 0..10 * BATCH as u64 {
            batch.push(v, v, &book);
        }
        assert!(batch.held_bytes() <= BATCH * 16, "{}", batch.held_bytes());
        batch.flush(&book);
        assert_eq!(book.delivery[0].summary().count, 10 * BATCH as u64 + 1);
    }

    #[test]
    fn sketch_quantiles_are_within_an_eighth() {
        let mut sketch = WindowSketch::default();
        for v in 1..=100_000u64 {
            sketch.record(v);
        }
        for (q, exact) in [(0.5, 50_000u64), (0.99, 99_000), (1.0, 100_000)] {
            let got = sketch.quantile(q);
            assert!(got >= exact && got <= exact + exact / 8, "q{q}: {got} for {exact}");
        }
        for v in [0, 1, 15, 16, 17, 1000, u64::MAX / 3, u64::MAX] {
            let i = bucket_of(v);
            assert!(i < BUCKETS && bucket_top(i) >= v, "{v}");
        }
    }

    #[test]
    fn windows_stay_bounded_and_merge_aligned() {
        let mut long = LatencyWindows::default();
        for s in 0..10_000u64 {
            long.record(s * 100_000_000, 1000 + s);
        }
        assert!(long.summaries().len() <= MAX_WINDOWS);
        assert_eq!(long.width_ns(), 32 * BASE_WINDOW_NS);
        assert_eq!(long.summaries().iter().map(|w| w.count).sum::<u64>(), 10_000);
        let mut short = LatencyWindows::default();
        short.record(5, 7);
        short.merge(&long);
        assert_eq!(short.width_ns(), long.width_ns());
        assert_eq!(short.summaries().iter().map(|w| w.count).sum::<u64>(), 10_001);
    }
}
