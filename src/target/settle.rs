//! How a server under test is known to have settled after an iteration: every client is gone and
//! what it measures of itself has stopped moving. Both waits are bounded and poll on tokio time,
//! so they are tested on a paused clock.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, sleep};

/// How long the live heap must stay still before the server counts as settled.
pub const HEAP_QUIET: Duration = Duration::from_millis(300);
/// How far the live heap may move within [`HEAP_QUIET`] and still count as still.
pub const HEAP_QUIET_BYTES: i64 = 256;
/// How long resident memory and state must stay still to count as settled.
pub const RSS_QUIET: Duration = Duration::from_millis(500);
/// How far resident memory may move within [`RSS_QUIET`] and still count as still.
pub const RSS_QUIET_BYTES: u64 = 64 * 1024;
/// Poll interval of the heap wait (in-process counters: cheap).
const HEAP_POLL: Duration = Duration::from_millis(20);
/// Poll interval of the resident-memory wait (a sample: a process-table scan and HTTP reads).
const RSS_POLL: Duration = Duration::from_millis(100);

/// Waits until `idle()` holds (no live connection) and `heap()` has stayed within
/// [`HEAP_QUIET_BYTES`] for [`HEAP_QUIET`] (a `None` heap counts as still), at most `bound`.
pub async fn until_heap_still(idle: impl Fn() -> bool, heap: impl Fn() -> Option<i64>, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    let mut window: VecDeque<(Instant, i64)> = VecDeque::new();
    loop {
        let now = Instant::now();
        let idle = idle();
        let still = match heap() {
            None => true,
            Some(bytes) => {
                window.push_back((now, bytes));
                while window
                    .front()
                    .is_some_and(|(at, _)| now.duration_since(*at) > HEAP_QUIET)
                {
                    window.pop_front();
                }
                let (low, high) = window
                    .iter()
                    .fold((i64::MAX, i64::MIN), |(lo, hi), (_, b)| (lo.min(*b), hi.max(*b)));
                let spans_window = window
                    .front()
                    .is_some_and(|(at, _)| now.duration_since(*at) >= HEAP_QUIET - Duration::from_millis(25));
                spans_window && high - low <= HEAP_QUIET_BYTES
            }
        };
        if idle && still {
            return true;
        }
        if !idle {
            window.clear();
        }
        if now >= deadline {
            return false;
        }
        sleep(HEAP_POLL).await;
    }
}

/// One reading for [`until_rss_still`]: resident bytes and the state series.
pub type RssReading = (u64, BTreeMap<String, u64>);

/// Waits until resident memory has moved less than [`RSS_QUIET_BYTES`] and the state series not
/// at all for [`RSS_QUIET`], at most `bound`; `read` gives one reading, `None` when the server
/// can no longer be read (then the wait ends unsettled).
pub async fn until_rss_still<F, Fut>(read: F, bound: Duration) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<RssReading>>,
{
    let deadline = Instant::now() + bound;
    let mut window: VecDeque<(Instant, u64, BTreeMap<String, u64>)> = VecDeque::new();
    loop {
        let now = Instant::now();
        let Some((rss, state)) = read().await else {
            return false;
        };
        window.push_back((now, rss, state));
        // Keep one reading at or before the window's start, so the window always spans it.
        while window
            .get(1)
            .is_some_and(|(at, _, _)| now.duration_since(*at) >= RSS_QUIET)
        {
            window.pop_front();
        }
        let spans_window = window
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) >= RSS_QUIET);
        let (low, high) = window
            .iter()
            .fold((u64::MAX, 0), |(lo, hi), (_, rss, _)| (lo.min(*rss), hi.max(*rss)));
        let state_still = window
            .iter()
            .all(|(_, _, state)| Some(state) == window.back().map(|w| &w.2));
        if spans_window && high - low <= RSS_QUIET_BYTES && state_still {
            return true;
        }
        if now >= deadline {
            return false;
        }
        sleep(RSS_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_heap_settles_once_idle_and_still_for_the_quiet_window() {
        let start = Instant::now();
        // Connections close at 200 ms; the heap keeps falling until 500 ms, then holds.
        let idle = || start.elapsed() >= Duration::from_millis(200);
        let heap = || {
            let ms = start.elapsed().as_millis() as i64;
            Some(10_000 - 10 * ms.min(500))
        };
        assert!(until_heap_still(idle, heap, Duration::from_secs(5)).await);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(500) + HEAP_QUIET - Duration::from_millis(25)
                && took < Duration::from_millis(900),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_heap_that_keeps_moving_is_not_settled_within_the_bound() {
        let start = Instant::now();
        let bytes = AtomicI64::new(0);
        let heap = || Some(bytes.fetch_add(1024, Ordering::Relaxed));
        assert!(!until_heap_still(|| true, heap, Duration::from_secs(2)).await);
        assert!(start.elapsed() >= Duration::from_secs(2) && start.elapsed() < Duration::from_millis(2100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_connection_keeps_a_still_heap_unsettled() {
        assert!(!until_heap_still(|| false, || Some(5), Duration::from_secs(1)).await);
        // Without a heap series, idle is enough.
        let start = Instant::now();
        assert!(until_heap_still(|| true, || None, Duration::from_secs(1)).await);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn resident_memory_settles_when_rss_and_state_hold_for_the_window() {
        let start = Instant::now();
        let read = || async move {
            let ms = start.elapsed().as_millis() as u64;
            // RSS falls in big steps until 1 s, then wobbles under the tolerance; a state counter
            // returns to 0 at 1.2 s.
            let rss = if ms < 1000 {
                (100 << 20) - (ms / 100) * (1 << 20)
            } else {
                (50 << 20) + (ms % 7) * 1024
            };
            let state = BTreeMap::from([("members".to_string(), u64::from(ms < 1200))]);
            Some((rss, state))
        };
        assert!(until_rss_still(read, Duration::from_secs(10)).await);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1200) + RSS_QUIET && took < Duration::from_millis(2000),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn resident_memory_waits_end_at_the_bound_or_when_reading_fails() {
        let calls = AtomicU64::new(0);
        let growing = || {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move { Some((n * RSS_QUIET_BYTES, BTreeMap::new())) }
        };
        let start = Instant::now();
        assert!(!until_rss_still(growing, Duration::from_secs(3)).await);
        assert!(start.elapsed() >= Duration::from_secs(3) && start.elapsed() < Duration::from_millis(3200));
        assert!(!until_rss_still(|| async { None }, Duration::from_secs(3)).await);
    }
}
