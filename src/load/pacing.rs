//! When clients connect and when their send schedules start, so that leakrun does not make the
//! thundering herd it is meant to find in servers.
//!
//! Two things spread the load over time: the run-wide connect pacer (`run.connect_rate`), which
//! hands out connect slots `1 / rate` apart to every client and reconnect alike, and the send
//! phase (`phase = "spread"`), a per-session offset within the first send interval drawn from the
//! run's seed and the session id. Both only move the *intended* times: connect latency is measured
//! from the paced slot and delivery latency from the offset schedule, so neither hides a stall.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use super::Phase;
use crate::observe::analysis::SessionReport;
use crate::scenario::SendPhase;

/// The window [`FirstSends::peak_100ms`] counts in.
const PEAK_WINDOW_NS: u64 = 100_000_000;

/// Hands out connect times at most `rate` per second across every client of a run.
#[derive(Debug)]
pub struct ConnectPacer {
    gap: std::time::Duration,
    next: Mutex<Option<Instant>>,
}

impl ConnectPacer {
    /// A pacer for `rate` connects per second (`rate > 0`, checked by the scenario).
    pub fn new(rate: f64) -> Self {
        Self {
            gap: std::time::Duration::from_secs_f64(1.0 / rate),
            next: Mutex::new(None),
        }
    }

    /// The time a connect wanted at `wanted` may start: `wanted`, or the next free slot after the
    /// slots already handed out, whichever is later. Slots are taken in call order.
    pub fn slot(&self, wanted: Instant) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let at = next.map_or(wanted, |free| free.max(wanted));
        *next = Some(at + self.gap);
        at
    }
}

/// The offset of a session's first send within its first interval: zero when aligned, else a
/// fraction of `interval_ns` drawn from `seed` and the session `id` (the same pair gives the same
/// offset, so a run's phases are reproducible from the seed in its result).
pub fn send_offset_ns(phase: SendPhase, seed: u64, id: u64, interval_ns: u64) -> u64 {
    match phase {
        SendPhase::Aligned => 0,
        SendPhase::Spread if interval_ns == 0 => 0,
        SendPhase::Spread => {
            let fraction = (mix(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 11) as f64 / (1u64 << 53) as f64;
            ((interval_ns as f64) * fraction) as u64
        }
    }
}

/// How an iteration's first messages were spread: the herd leakrun itself would make shows here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FirstSends {
    /// Sessions that sent at least one message.
    pub senders: u64,
    /// Milliseconds from the earliest first send to the latest.
    pub span_ms: f64,
    /// Most first sends whose intended times fall within any 100 ms.
    pub peak_100ms: u64,
    /// The longest wait, in milliseconds, from a session's connect to its first send (0 when
    /// every phase is aligned).
    pub offset_max_ms: f64,
}

impl FirstSends {
    /// The figure over `sessions` (a session's first send is the intended time of its seq 0).
    pub fn of(sessions: &[SessionReport]) -> Self {
        let mut times: Vec<u64> = sessions
            .iter()
            .filter(|s| s.sent > 0)
            .map(|s| s.send_start_ns)
            .collect();
        times.sort_unstable();
        let (Some(&first), Some(&last)) = (times.first(), times.last()) else {
            return Self::default();
        };
        let mut peak = 0;
        let mut start = 0;
        for (end, &t) in times.iter().enumerate() {
            while t - times[start] >= PEAK_WINDOW_NS {
                start += 1;
            }
            peak = peak.max(end - start + 1);
        }
        let offset_max = sessions
            .iter()
            .filter(|s| s.sent > 0)
            .map(|s| s.send_start_ns.saturating_sub(s.connected_ns))
            .max()
            .unwrap_or(0);
        Self {
            senders: times.len() as u64,
            span_ms: (last - first) as f64 / 1e6,
            peak_100ms: peak as u64,
            offset_max_ms: offset_max as f64 / 1e6,
        }
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit value from any input.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Sleeps until `deadline`; false if the send phase ended first.
pub async fn wait_while_sending(phase: &mut watch::Receiver<Phase>, deadline: Instant) -> bool {
    loop {
        if *phase.borrow() != Phase::Send {
            return false;
        }
        tokio::select! {
            _ = sleep_until(deadline) => return *phase.borrow() == Phase::Send,
            changed = phase.changed() => if changed.is_err() { return false },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_offsets_cover_the_interval_and_aligned_ones_are_zero() {
        let interval = 10_000_000_000;
        let offsets: Vec<u64> = (1..=1000)
            .map(|id| send_offset_ns(SendPhase::Spread, 42, id, interval))
            .collect();
        assert!(offsets.iter().all(|&o| o < interval));
        // A thousand draws fall in each tenth of the interval about a hundred times.
        for tenth in 0..10 {
            let n = offsets.iter().filter(|&&o| o / (interval / 10) == tenth).count();
            assert!((50..=150).contains(&n), "tenth {tenth}: {n}");
        }
        assert_eq!(send_offset_ns(SendPhase::Spread, 42, 7, interval), offsets[6]);
        assert_ne!(send_offset_ns(SendPhase::Spread, 43, 7, interval), offsets[6]);
        assert_eq!(send_offset_ns(SendPhase::Aligned, 42, 7, interval), 0);
        assert_eq!(send_offset_ns(SendPhase::Spread, 42, 7, 0), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_hands_out_slots_a_gap_apart() {
        let pacer = ConnectPacer::new(100.0);
        let now = Instant::now();
        let slots: Vec<Instant> = (0..5).map(|_| pacer.slot(now)).collect();
        for (i, slot) in slots.iter().enumerate() {
            assert_eq!(*slot - now, std::time::Duration::from_millis(10 * i as u64));
        }
        // A connect wanted later than the next free slot starts when wanted.
        let later = now + std::time::Duration::from_secs(1);
        assert_eq!(pacer.slot(later), later);
    }
}
