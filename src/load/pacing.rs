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

/// The golden ratio's fractional part: consecutive multiples of it, taken modulo 1, fill the
/// unit interval more evenly than any other step.
const GOLDEN_STEP: f64 = 0.618_033_988_749_894_9;

/// The offset of a session's first send from its connect at run-clock `connected_ns`, within its
/// first interval: zero when aligned; else the wait until the session's phase — the fraction of
/// `interval_ns` on the run clock at which its sends fall — comes round. The `ordinal`-th
/// sending session of the run has phase `frac(r + ordinal × 0.618…)`, `r` drawn from `seed`: the
/// golden-ratio sequence, in which any number `n` of senders at one rate lie at least about
/// `0.38 / n` of the interval apart, where independent random phases cluster (of ten senders at
/// one rate, two are within a hundredth of the interval of each other in most runs). The same seed
/// gives the same phases, so a run's are reproducible from the seed in its result.
pub fn send_offset_ns(phase: SendPhase, seed: u64, ordinal: u64, interval_ns: u64, connected_ns: u64) -> u64 {
    match phase {
        SendPhase::Aligned => 0,
        SendPhase::Spread if interval_ns == 0 => 0,
        SendPhase::Spread => {
            let rotation = (mix(seed) >> 11) as f64 / (1u64 << 53) as f64;
            let fraction = (rotation + (ordinal as f64 * GOLDEN_STEP).fract()).fract();
            let phase_ns = ((interval_ns as f64) * fraction) as u64 % interval_ns;
            (phase_ns + interval_ns - connected_ns % interval_ns) % interval_ns
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
        // A thousand senders connecting at scattered times.
        let connected = |k: u64| k.wrapping_mul(7_919_000_003) % 100_000_000_000;
        let offsets: Vec<u64> = (0..1000)
            .map(|k| send_offset_ns(SendPhase::Spread, 42, k, interval, connected(k)))
            .collect();
        assert!(offsets.iter().all(|&o| o < interval));
        // Their sends fall in each tenth of the interval a hundred times, give or take two.
        let phases: Vec<u64> = (0..1000)
            .map(|k| (connected(k) + offsets[k as usize]) % interval)
            .collect();
        for tenth in 0..10 {
            let n = phases.iter().filter(|&&p| p / (interval / 10) == tenth).count();
            assert!((98..=102).contains(&n), "tenth {tenth}: {n}");
        }
        assert_eq!(
            send_offset_ns(SendPhase::Spread, 42, 6, interval, connected(6)),
            offsets[6]
        );
        assert_ne!(
            send_offset_ns(SendPhase::Spread, 43, 6, interval, connected(6)),
            offsets[6]
        );
        assert_eq!(send_offset_ns(SendPhase::Aligned, 42, 7, interval, 5), 0);
        assert_eq!(send_offset_ns(SendPhase::Spread, 42, 7, 0, 5), 0);
    }

    /// The smallest distance between `phases` on a circle of `interval`.
    fn closest(phases: &mut [u64], interval: u64) -> u64 {
        phases.sort_unstable();
        let wrap = phases[0] + interval - phases[phases.len() - 1];
        phases.windows(2).map(|w| w[1] - w[0]).chain([wrap]).min().unwrap()
    }

    #[test]
    fn senders_at_one_rate_are_spread_nearly_evenly_where_random_phases_cluster() {
        let interval = 99_000_000;
        for seed in 0..50u64 {
            for n in 2..=64u64 {
                let mut phases: Vec<u64> = (0..n)
                    .map(|k| {
                        let connected = mix(seed ^ k) % 1_000_000_000;
                        (connected + send_offset_ns(SendPhase::Spread, seed, k, interval, connected)) % interval
                    })
                    .collect();
                let gap = closest(&mut phases, interval);
                assert!(
                    gap * n * 100 >= interval * 30,
                    "seed {seed}, {n} senders: {gap} ns apart at closest"
                );
            }
        }
        // Independent uniform phases (what each session drawing its own offset gives): ten
        // senders have two within a hundredth of the interval in most seeds.
        let clustered = (0..50u64)
            .filter(|&seed| {
                let mut phases: Vec<u64> = (0..10).map(|k| mix(seed.wrapping_mul(31) ^ k) % interval).collect();
                closest(&mut phases, interval) < interval / 100
            })
            .count();
        assert!(clustered >= 25, "{clustered} of 50");
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
