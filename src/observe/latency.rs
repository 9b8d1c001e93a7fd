//! Latency histograms: delivery per room (intended send time to receipt, so a stalled sender
//! cannot hide a stall: no coordinated omission) and connect time, and delivery latency per
//! window of run time (`LatencyWindows`), which tells a loss while the server kept up from one
//! while it fell behind. Clients record into a small local batch and flush it under the lock, so
//! the per-message path takes no lock.
//!
//! The windows are bounded: each holds a fixed log-bucketed sketch (eight buckets per power of
//! two, a value within 12.5%), and past [`MAX_WINDOWS`] windows their width doubles and
//! neighbours merge, as the sample timeline does.

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
        if std::ptr::eq(self, other) {
            let copy = other.lock().clone();
            let _ = self.lock().add(&copy);
            return;
        }
        // Two different locks, taken in the one order merges go (into a run's or a copy's book
        // from an iteration's): no copy of their counts.
        let _ = self.lock().add(&*other.lock());
    }

    /// Takes and writes the counts for every value up to `highest_us` now, so a slower value
    /// later (a stall of the server or of the machine) records without growing the histogram.
    /// Grown, it would keep its size to the end of the run: a long run's own memory would rise
    /// in a step at each new slowest value (8 KiB per histogram per doubling).
    pub fn reserve(&self, highest_us: u64) {
        let mut h = self.lock();
        if h.high() >= highest_us {
            return;
        }
        let Ok(mut wider) = Histogram::new_with_bounds(1, highest_us.max(2), 3) else {
            return;
        };
        wider.auto(true);
        // The zeroed counts come untouched from the system; writing them makes them resident.
        wider.reset();
        let _ = wider.add(&*h);
        *h = wider;
    }

    /// The largest value it holds without growing (for tests of [`SharedHistogram::reserve`]).
    #[cfg(test)]
    fn reserved_us(&self) -> u64 {
        self.lock().high()
    }

    /// Empties it, keeping its counts array for the next values.
    pub fn clear(&self) {
        self.lock().reset();
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

/// Delivery histograms per room, one for connect time, and latency per window of time: delivery
/// over all rooms, delivery per room (the first [`MAX_ROOMS_WITH_WINDOWS`]) and connect time.
pub struct LatencyBook {
    /// Delivery latency, indexed like the scenario's rooms.
    pub delivery: Vec<SharedHistogram>,
    /// WebSocket connect time (TCP and handshake).
    pub connect: SharedHistogram,
    /// Delivery latency over all rooms, per window of receipt time.
    pub windows: Mutex<LatencyWindows>,
    /// Send lag per room: from a message's intended send time to the moment its client began
    /// writing it, leakrun's own lateness (timers, scheduling), which delivery latency includes.
    pub send_lag: Vec<SharedHistogram>,
    /// Delivery latency per window of receipt time, for each of the first rooms.
    room_windows: Vec<Mutex<LatencyWindows>>,
    /// Connect time per window of the moment the connection was made.
    connect_windows: Mutex<LatencyWindows>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl LatencyBook {
    /// Empty histograms for `rooms` rooms.
    pub fn new(rooms: usize) -> Self {
        Self {
            delivery: (0..rooms).map(|_| SharedHistogram::default()).collect(),
            connect: SharedHistogram::default(),
            windows: Mutex::new(LatencyWindows::default()),
            send_lag: (0..rooms).map(|_| SharedHistogram::default()).collect(),
            room_windows: (0..rooms.min(MAX_ROOMS_WITH_WINDOWS))
                .map(|_| Mutex::new(LatencyWindows::with_max(MAX_ROOM_WINDOWS)))
                .collect(),
            connect_windows: Mutex::new(LatencyWindows::default()),
        }
    }

    /// Adds every histogram and window of `other` into this book.
    pub fn merge(&self, other: &LatencyBook) {
        for (mine, theirs) in self.delivery.iter().zip(&other.delivery) {
            mine.merge(theirs);
        }
        self.connect.merge(&other.connect);
        for (mine, theirs) in self.send_lag.iter().zip(&other.send_lag) {
            mine.merge(theirs);
        }
        locked(&self.windows).merge(&locked(&other.windows));
        for (mine, theirs) in self.room_windows.iter().zip(&other.room_windows) {
            locked(mine).merge(&locked(theirs));
        }
        locked(&self.connect_windows).merge(&locked(&other.connect_windows));
    }

    /// The windows over all rooms, locked: for reading them without a copy.
    pub fn lock_windows(&self) -> std::sync::MutexGuard<'_, LatencyWindows> {
        locked(&self.windows)
    }

    /// A copy of the windows over all rooms.
    pub fn windows_snapshot(&self) -> LatencyWindows {
        self.lock_windows().clone()
    }

    /// Records a connection made at run-clock `at_ns` that took `micros`.
    pub fn record_connect(&self, at_ns: u64, micros: u64) {
        self.connect.record(micros);
        locked(&self.connect_windows).record(at_ns, micros);
    }

    /// Each windowed room's delivery latency per window, in the scenario's order.
    pub fn room_timelines(&self) -> Vec<Vec<LatencyWindow>> {
        self.room_windows.iter().map(|w| locked(w).summaries()).collect()
    }

    /// Connect time per window.
    pub fn connect_timeline(&self) -> Vec<LatencyWindow> {
        locked(&self.connect_windows).summaries()
    }

    /// Takes now what a long run would otherwise take bit by bit and keep:
    /// * the buckets of every window ([`LatencyWindows::reserve`]): 1.2 KiB each, up to 512 over
    ///   all rooms, 256 for each of the first 16 rooms and 512 of connect time;
    /// * the counts of the connect histogram and of the first 16 rooms' delivery and send-lag
    ///   histograms for values up to `highest_us` ([`SharedHistogram::reserve`]): about 8 KiB
    ///   per doubling above 2 ms, 136 KiB each for a minute.
    pub fn reserve(&mut self, highest_us: u64) {
        for w in self.all_windows() {
            w.get_mut().unwrap_or_else(|p| p.into_inner()).reserve();
        }
        let rooms = self.delivery.len().min(MAX_ROOMS_WITH_WINDOWS);
        for h in self.delivery[..rooms].iter().chain(&self.send_lag[..rooms]) {
            h.reserve(highest_us);
        }
        self.connect.reserve(highest_us);
    }

    fn all_windows(&mut self) -> impl Iterator<Item = &mut Mutex<LatencyWindows>> {
        std::iter::once(&mut self.windows)
            .chain(self.room_windows.iter_mut())
            .chain(std::iter::once(&mut self.connect_windows))
    }

    /// Empties every histogram and window and keeps what they allocated, so the next
    /// iteration's book reuses this one's memory instead of allocating its own.
    pub fn clear(&mut self) {
        for h in self.delivery.iter().chain(&self.send_lag) {
            h.clear();
        }
        self.connect.clear();
        for w in self.all_windows() {
            w.get_mut().unwrap_or_else(|p| p.into_inner()).clear();
        }
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
        if let Some(room) = book.room_windows.get(self.room) {
            let mut windows = locked(room);
            for &(at, us) in &self.values {
                windows.record(at, us);
            }
        }
        self.values.clear();
    }

    /// Bytes this batch holds (its capacity).
    pub fn held_bytes(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<(u64, u64)>()
    }
}

/// A sender's local buffer of send lags for one room (microseconds), flushed into the book's
/// histogram when full or when the session ends, as [`DeliveryBatch`] is.
pub struct SendLagBatch {
    room: usize,
    values: Vec<u64>,
}

impl SendLagBatch {
    /// An empty batch for room `room`; it holds nothing until the first send.
    pub fn for_room(room: usize) -> Self {
        Self {
            room,
            values: Vec::new(),
        }
    }

    /// Adds one send's lag, flushing into `book` when the batch is full.
    pub fn push(&mut self, micros: u64, book: &LatencyBook) {
        self.values.push(micros);
        if self.values.len() == BATCH {
            self.flush(book);
        }
    }

    /// Moves what is buffered into `book`.
    pub fn flush(&mut self, book: &LatencyBook) {
        if let Some(room) = book.send_lag.get(self.room)
            && !self.values.is_empty()
        {
            room.record_all(&self.values);
        }
        self.values.clear();
    }
}

/// Most windows kept of delivery latency over all rooms and of connect time; past it the width
/// doubles.
pub const MAX_WINDOWS: usize = 512;
/// Most windows kept of one room's delivery latency.
pub const MAX_ROOM_WINDOWS: usize = 256;
/// Rooms with delivery-latency windows of their own, in the scenario's order; the rooms after
/// them are in the windows over all rooms only.
pub const MAX_ROOMS_WITH_WINDOWS: usize = 16;
/// Width of a window before any doubling.
pub const BASE_WINDOW_NS: u64 = 100_000_000;
const SUB_BUCKETS: u32 = 8;
const EXACT_BELOW: u64 = 16;
/// Values from 2^40 µs (12.7 days) up share the last bucket; the window's maximum stays exact.
const TOP_POWER: u32 = 40;
const BUCKETS: usize = EXACT_BELOW as usize + (TOP_POWER as usize - 4) * SUB_BUCKETS as usize + 1;

/// Bucket of `us`: exact below 16, then eight per power of two, then one for everything from
/// 2^40 µs.
fn bucket_of(us: u64) -> usize {
    if us < EXACT_BELOW {
        return us as usize;
    }
    let e = 63 - us.leading_zeros();
    if e >= TOP_POWER {
        return BUCKETS - 1;
    }
    let mantissa = ((us >> (e - 3)) & 7) as usize;
    EXACT_BELOW as usize + (e as usize - 4) * SUB_BUCKETS as usize + mantissa
}

/// The largest value bucket `i` holds.
fn bucket_top(i: usize) -> u64 {
    if i < EXACT_BELOW as usize {
        return i as u64;
    }
    if i >= BUCKETS - 1 {
        return u64::MAX;
    }
    let j = i - EXACT_BELOW as usize;
    let e = (j / SUB_BUCKETS as usize) as u32 + 4;
    let mantissa = (j % SUB_BUCKETS as usize) as u64;
    let low = (8 + mantissa) << (e - 3);
    low.saturating_add((1u64 << (e - 3)) - 1)
}

/// Latencies of one window: a fixed-size log histogram, its buckets taken on the first value.
#[derive(Debug, Clone, Default)]
pub struct WindowSketch {
    counts: Vec<u32>,
    count: u64,
    max_us: u64,
}

impl WindowSketch {
    fn record(&mut self, us: u64) {
        if self.counts.is_empty() {
            self.counts.resize(BUCKETS, 0);
        }
        let slot = &mut self.counts[bucket_of(us)];
        *slot = slot.saturating_add(1);
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    fn merge(&mut self, other: &WindowSketch) {
        if other.count == 0 {
            return;
        }
        if self.counts.is_empty() {
            self.counts.resize(BUCKETS, 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
        self.count += other.count;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Moves `other`'s values into this one and empties it. When this one is empty the two swap
    /// buckets, so nothing is allocated.
    fn absorb(&mut self, other: &mut WindowSketch) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            std::mem::swap(self, other);
        } else {
            self.merge(other);
        }
        other.clear();
    }

    /// Empties it and keeps its buckets for the next window that uses it.
    fn clear(&mut self) {
        if self.count > 0 {
            self.counts.fill(0);
        }
        self.count = 0;
        self.max_us = 0;
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest value recorded.
    pub fn max_us(&self) -> u64 {
        self.max_us
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

/// Latency of one window of run time, as the result reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyWindow {
    /// Seconds since the run started, at the window's start.
    pub at_s: f64,
    /// The window's width in seconds.
    pub width_s: f64,
    /// Values in it (deliveries received, or connects made).
    pub count: u64,
    /// Median latency (within 12.5%).
    pub p50_us: u64,
    /// 99th percentile (within 12.5%).
    pub p99_us: u64,
    /// Largest.
    pub max_us: u64,
}

/// Latency per window of run time, at most a fixed number of windows. The windows are
/// contiguous, so they sit in one vector from the oldest; when a value falls outside the span
/// the cap allows, neighbours merge in place and the width doubles. A window's buckets are kept
/// when it empties (a spare past the end, or a merged neighbour), so once the windows have
/// reached their cap they allocate nothing more, however long the run.
#[derive(Debug, Clone)]
pub struct LatencyWindows {
    width_ns: u64,
    max: usize,
    /// Window index (run-clock ns over the width) of `sketches[0]`.
    first: u64,
    /// Windows in use: `sketches[..len]`; the rest are empty spares.
    len: usize,
    sketches: Vec<WindowSketch>,
}

impl Default for LatencyWindows {
    fn default() -> Self {
        Self::with_max(MAX_WINDOWS)
    }
}

impl LatencyWindows {
    /// No windows yet, at most `max` (at least 2) of them.
    pub fn with_max(max: usize) -> Self {
        Self {
            width_ns: BASE_WINDOW_NS,
            max: max.max(2),
            first: 0,
            len: 0,
            sketches: Vec::new(),
        }
    }

    /// Records a value of `us` microseconds at run-clock `at_ns`.
    pub fn record(&mut self, at_ns: u64, us: u64) {
        let slot = self.slot_for(at_ns);
        self.sketches[slot].record(us);
    }

    /// The position of the window holding `at_ns`, widening until the span fits the cap.
    fn slot_for(&mut self, at_ns: u64) -> usize {
        loop {
            let index = at_ns / self.width_ns;
            if self.len == 0 {
                self.first = index;
                self.use_up_to(1);
                return 0;
            }
            let last = self.first + self.len as u64 - 1;
            let (low, high) = (self.first.min(index), last.max(index));
            if high - low < self.max as u64 {
                if index < self.first {
                    self.shift_later((self.first - index) as usize);
                    self.first = index;
                }
                let slot = (index - self.first) as usize;
                self.use_up_to(slot + 1);
                return slot;
            }
            self.widen();
        }
    }

    /// Makes at least `n` windows in use, taking spares before new ones.
    fn use_up_to(&mut self, n: usize) {
        if self.sketches.len() < n {
            self.sketches.resize_with(n, WindowSketch::default);
        }
        self.len = self.len.max(n);
    }

    /// Moves every window `k` positions later, the empty spares coming to the front.
    fn shift_later(&mut self, k: usize) {
        let n = self.len + k;
        if self.sketches.len() < n {
            self.sketches.resize_with(n, WindowSketch::default);
        }
        self.sketches[..n].rotate_right(k);
        self.len = n;
    }

    /// Doubles the width: window `j` of the new width is old windows `2j` and `2j + 1`, merged
    /// in place from the front. Old window `i` sits at position `i - first`; new window `j` at
    /// `j - first / 2`, which is never after either of its old positions, so every position is
    /// read before it is written.
    fn widen(&mut self) {
        if self.len == 0 {
            self.width_ns = self.width_ns.saturating_mul(2);
            return;
        }
        let first = self.first;
        let last = first + self.len as u64 - 1;
        let new_first = first / 2;
        let new_len = (last / 2 - new_first + 1) as usize;
        for k in 0..new_len {
            let j = new_first + k as u64;
            for old in [2 * j, 2 * j + 1] {
                if old < first || old > last {
                    continue;
                }
                let source = (old - first) as usize;
                if source == k {
                    continue;
                }
                let (front, back) = self.sketches.split_at_mut(source);
                front[k].absorb(&mut back[0]);
            }
        }
        self.first = new_first;
        self.len = new_len;
        self.width_ns = self.width_ns.saturating_mul(2);
    }

    /// Windows with values, oldest first, with their indexes.
    fn used(&self) -> impl Iterator<Item = (u64, &WindowSketch)> {
        self.sketches[..self.len]
            .iter()
            .enumerate()
            .filter(|(_, sketch)| sketch.count > 0)
            .map(|(position, sketch)| (self.first + position as u64, sketch))
    }

    /// Adds `other`'s windows (widths are the base times a power of two, so they align).
    pub fn merge(&mut self, other: &LatencyWindows) {
        while self.width_ns < other.width_ns {
            self.widen();
        }
        for (index, sketch) in other.used() {
            let slot = self.slot_for(index.saturating_mul(other.width_ns));
            self.sketches[slot].merge(sketch);
        }
    }

    /// The width of a window now.
    pub fn width_ns(&self) -> u64 {
        self.width_ns
    }

    /// The sketch of the window holding run-clock `at_ns`, if anything arrived in it.
    pub fn at(&self, at_ns: u64) -> Option<&WindowSketch> {
        let index = at_ns / self.width_ns;
        let position = index.checked_sub(self.first)?;
        self.sketches[..self.len]
            .get(usize::try_from(position).ok()?)
            .filter(|sketch| sketch.count > 0)
    }

    /// The first window with values after the one holding `at_ns`.
    pub fn next_after(&self, at_ns: u64) -> Option<&WindowSketch> {
        let index = at_ns / self.width_ns;
        self.used().find(|(i, _)| *i > index).map(|(_, sketch)| sketch)
    }

    /// Every window with values, oldest first.
    pub fn summaries(&self) -> Vec<LatencyWindow> {
        self.used()
            .map(|(index, sketch)| LatencyWindow {
                at_s: super::clock::secs(index.saturating_mul(self.width_ns)),
                width_s: super::clock::secs(self.width_ns),
                count: sketch.count,
                p50_us: sketch.quantile(0.5),
                p99_us: sketch.quantile(0.99),
                max_us: sketch.max_us,
            })
            .collect()
    }

    /// Empties every window and returns to the base width; the buckets stay allocated as spares.
    pub fn clear(&mut self) {
        for sketch in &mut self.sketches[..self.len] {
            sketch.clear();
        }
        self.width_ns = BASE_WINDOW_NS;
        self.first = 0;
        self.len = 0;
    }

    /// Takes every window's buckets now, as many as the cap allows, so the windows allocate
    /// nothing more however the values fall. Left to take them on a window's first value, the
    /// windows of a long run's sparse values (connects seconds apart) took them over its first
    /// twenty minutes, as each widening left fewer windows empty.
    pub fn reserve(&mut self) {
        self.sketches.resize_with(self.max, WindowSketch::default);
        for sketch in &mut self.sketches {
            if sketch.counts.is_empty() {
                sketch.counts.resize(BUCKETS, 0);
            }
        }
    }

    /// Buckets allocated, in use or spare: what the windows hold in memory.
    pub fn allocated_sketches(&self) -> usize {
        self.sketches.iter().filter(|sketch| !sketch.counts.is_empty()).count()
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
    fn a_reserved_histogram_records_a_stall_without_growing_and_keeps_what_it_held() {
        let minute_us = 60_000_000;
        let grown = SharedHistogram::default();
        grown.record(2_000);
        let small = grown.reserved_us();
        grown.record(minute_us);
        assert!(
            grown.reserved_us() > small,
            "an unreserved histogram grows to take a stall"
        );

        let reserved = SharedHistogram::default();
        reserved.record(2_000);
        reserved.reserve(minute_us + 5_000_000);
        let room = reserved.reserved_us();
        assert!(room >= minute_us + 5_000_000, "{room}");
        assert_eq!(
            reserved.summary().count,
            1,
            "reserving keeps the values already recorded"
        );
        reserved.record(minute_us);
        assert_eq!(
            reserved.reserved_us(),
            room,
            "a reserved histogram does not grow for a stall"
        );
        let s = reserved.summary();
        assert_eq!(s.count, 2);
        assert!((59_900_000..=60_100_000).contains(&s.max_us), "{s:?}");
        // Reserving less than it holds changes nothing; a book reserves every histogram.
        reserved.reserve(1_000);
        assert_eq!(reserved.reserved_us(), room);
        let mut book = LatencyBook::new(2);
        book.reserve(minute_us);
        for h in book
            .delivery
            .iter()
            .chain(&book.send_lag)
            .chain(std::iter::once(&book.connect))
        {
            assert!(h.reserved_us() >= minute_us);
        }
        // Merging into itself doubles its counts, as it did with a copy.
        reserved.merge(&reserved);
        assert_eq!(reserved.summary().count, 4);
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
        // Into windows that hold nothing yet, as a run's first iteration merges into the run's.
        let mut empty = LatencyWindows::default();
        empty.merge(&long);
        assert_eq!(empty.width_ns(), long.width_ns());
        assert_eq!(empty.summaries(), long.summaries());
        let mut short = LatencyWindows::default();
        short.record(5, 7);
        short.merge(&long);
        assert_eq!(short.width_ns(), long.width_ns());
        assert_eq!(short.summaries().iter().map(|w| w.count).sum::<u64>(), 10_001);
    }

    /// A small deterministic generator (xorshift), so the test needs no crate.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn windows_merged_in_place_hold_what_windows_of_the_final_width_would() {
        for (seed, max, spread_s) in [(1u64, 8, 3u64), (7, 16, 600), (99, 512, 3600), (5, 2, 40)] {
            let mut state = seed;
            let mut windows = LatencyWindows::with_max(max);
            let mut values = Vec::new();
            for n in 0..5_000u64 {
                // Mostly forward in time, now and then a late batch from well before.
                let mut at = n * spread_s * 1_000_000_000 / 5_000;
                if next(&mut state) % 10 == 0 {
                    at = at.saturating_sub(next(&mut state) % 2_000_000_000);
                }
                let us = 1 + next(&mut state) % 100_000;
                windows.record(at, us);
                values.push((at, us));
            }
            let width = windows.width_ns();
            let mut expected: std::collections::BTreeMap<u64, WindowSketch> = Default::default();
            for &(at, us) in &values {
                expected.entry(at / width).or_default().record(us);
            }
            let got = windows.summaries();
            assert!(got.len() <= max, "{} windows over a cap of {max}", got.len());
            assert!(expected.len() <= max);
            assert_eq!(got.len(), expected.len(), "seed {seed}");
            for (window, (index, sketch)) in got.iter().zip(&expected) {
                assert_eq!(window.at_s, super::super::clock::secs(index * width));
                assert_eq!(window.count, sketch.count);
                assert_eq!(window.max_us, sketch.max_us);
                assert_eq!(window.p50_us, sketch.quantile(0.5));
                assert_eq!(window.p99_us, sketch.quantile(0.99));
            }
            // A narrower width would not have fitted the span in the cap.
            let first = values.iter().map(|v| v.0).min().unwrap() / (width / 2).max(1);
            let last = values.iter().map(|v| v.0).max().unwrap() / (width / 2).max(1);
            assert!(width == BASE_WINDOW_NS || last - first >= max as u64, "seed {seed}");
        }
    }

    #[test]
    fn windows_at_their_cap_allocate_nothing_more() {
        let mut windows = LatencyWindows::default();
        let mut at = 0u64;
        let mut record_for = |windows: &mut LatencyWindows, seconds: u64| {
            for _ in 0..seconds * 20 {
                windows.record(at, 1_000 + at % 7_919);
                at += 50_000_000;
            }
        };
        // Past the cap once (51.2 s of 100 ms windows), then an hour.
        record_for(&mut windows, 60);
        let (allocated, slots) = (windows.allocated_sketches(), windows.sketches.capacity());
        assert!(allocated <= MAX_WINDOWS + 1, "{allocated}");
        record_for(&mut windows, 3_600);
        assert_eq!(windows.allocated_sketches(), allocated);
        assert_eq!(windows.sketches.capacity(), slots);
        assert!(windows.summaries().len() <= MAX_WINDOWS);
    }

    #[test]
    fn sparse_values_take_buckets_for_many_minutes_unless_the_windows_are_reserved() {
        // About one connect a second, at irregular times, for half an hour: what a soak's
        // churners make of the connect windows.
        let record_for = |windows: &mut LatencyWindows, from_s: u64, to_s: u64| {
            for second in from_s..to_s {
                let at = second * 1_000_000_000 + (second * 7_919 % 1_000) * 1_000_000;
                windows.record(at, 500 + second % 97);
            }
        };
        let mut lazy = LatencyWindows::default();
        record_for(&mut lazy, 0, 300);
        let after_five_minutes = lazy.allocated_sketches();
        record_for(&mut lazy, 300, 1_800);
        assert!(
            lazy.allocated_sketches() > after_five_minutes + 50,
            "{after_five_minutes} → {}",
            lazy.allocated_sketches()
        );
        let mut reserved = LatencyWindows::default();
        reserved.reserve();
        assert_eq!(reserved.allocated_sketches(), MAX_WINDOWS);
        let slots = reserved.sketches.capacity();
        record_for(&mut reserved, 0, 1_800);
        assert_eq!(reserved.allocated_sketches(), MAX_WINDOWS);
        assert_eq!(reserved.sketches.capacity(), slots);
        // Reserving changes what the windows hold, not what they say.
        assert_eq!(reserved.summaries(), lazy.summaries());
    }

    /// One iteration's worth of deliveries and connects into `book`, starting at `start_ns`.
    fn one_iteration(book: &LatencyBook, start_ns: u64) {
        for room in 0..book.delivery.len() {
            let mut batch = DeliveryBatch::for_room(room);
            for i in 0..2_000u64 {
                batch.push(
                    start_ns + i * 40_000_000,
                    500 + (i * 7_919 + room as u64) % 90_000,
                    book,
                );
            }
            batch.flush(book);
        }
        for i in 0..100u64 {
            book.record_connect(start_ns + i * 600_000_000, 2_000 + i);
        }
    }

    /// Everything a book reports, for comparing two.
    fn report(book: &LatencyBook) -> String {
        let delivery: Vec<_> = book.delivery.iter().map(SharedHistogram::summary).collect();
        format!(
            "{delivery:?} {:?} {:?} {:?} {:?}",
            book.connect.summary(),
            book.windows_snapshot().summaries(),
            book.room_timelines(),
            book.connect_timeline()
        )
    }

    #[test]
    fn a_cleared_book_reports_like_a_new_one_and_allocates_no_more_windows() {
        let mut book = LatencyBook::new(3);
        // 80 s of windows: past the cap, so the windows have widened.
        one_iteration(&book, 0);
        let allocated = book.lock_windows().allocated_sketches();
        assert!(book.lock_windows().width_ns() > BASE_WINDOW_NS);
        book.clear();
        assert_eq!(report(&book), report(&LatencyBook::new(3)), "nothing left after clear");
        assert_eq!(book.lock_windows().width_ns(), BASE_WINDOW_NS);
        // The next iteration, later in the run, reads as it would in a new book.
        one_iteration(&book, 300_000_000_000);
        let fresh = LatencyBook::new(3);
        one_iteration(&fresh, 300_000_000_000);
        assert_eq!(report(&book), report(&fresh));
        assert_eq!(book.lock_windows().allocated_sketches(), allocated);
    }

    #[test]
    fn a_book_keeps_windows_per_room_and_of_connect_time() {
        let book = LatencyBook::new(MAX_ROOMS_WITH_WINDOWS + 2);
        for room in [0, 3, MAX_ROOMS_WITH_WINDOWS + 1] {
            let mut batch = DeliveryBatch::for_room(room);
            for i in 0..10u64 {
                batch.push(i * 100_000_000, 1_000 * (room as u64 + 1), &book);
            }
            batch.flush(&book);
        }
        book.record_connect(250_000_000, 4_000);
        let rooms = book.room_timelines();
        assert_eq!(rooms.len(), MAX_ROOMS_WITH_WINDOWS);
        assert_eq!(rooms[0].iter().map(|w| w.count).sum::<u64>(), 10);
        assert_eq!(rooms[3][0].max_us, 4_000);
        assert!(rooms[1].is_empty());
        // Every room is in the windows over all rooms, the unwindowed one too.
        let all = book.windows_snapshot().summaries();
        assert_eq!(all.iter().map(|w| w.count).sum::<u64>(), 30);
        let connect = book.connect_timeline();
        assert_eq!(connect.len(), 1);
        assert_eq!((connect[0].at_s, connect[0].max_us), (0.2, 4_000));
        let merged = LatencyBook::new(MAX_ROOMS_WITH_WINDOWS + 2);
        merged.merge(&book);
        assert_eq!(merged.room_timelines(), rooms);
        assert_eq!(merged.connect_timeline(), connect);
    }
}
