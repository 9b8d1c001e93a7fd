//! The drain: after sending stops, wait for messages still in flight, bounded.

use std::time::Duration;

use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

/// How long deliveries must stay still before the drain counts as done.
pub const DRAIN_QUIET: Duration = Duration::from_millis(300);
/// How often the drain looks.
const DRAIN_POLL: Duration = Duration::from_millis(25);

/// Waits until `reading()` (what clients received, what the server wrote) has not moved for
/// [`DRAIN_QUIET`], at most `bound` or until `cancel`; true when it went still.
pub async fn until_still<R: PartialEq>(reading: impl Fn() -> R, bound: Duration, cancel: &CancellationToken) -> bool {
    let deadline = Instant::now() + bound;
    let mut last = reading();
    let mut still_since = Instant::now();
    while Instant::now() < deadline && !cancel.is_cancelled() {
        sleep(DRAIN_POLL).await;
        let now = reading();
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if still_since.elapsed() >= DRAIN_QUIET {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_drain_ends_a_quiet_window_after_the_last_delivery() {
        let start = Instant::now();
        // Deliveries keep arriving for 1 s after sending stopped.
        let received = || start.elapsed().as_millis().min(1000) / 10;
        assert!(until_still(received, Duration::from_secs(5), &CancellationToken::new()).await);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1000) + DRAIN_QUIET && took < Duration::from_millis(1400),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_that_never_goes_still_ends_at_its_bound() {
        let start = Instant::now();
        let received = || start.elapsed().as_millis();
        assert!(!until_still(received, Duration::from_secs(2), &CancellationToken::new()).await);
        assert!(start.elapsed() >= Duration::from_secs(2) && start.elapsed() < Duration::from_millis(2100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_drain_ends_at_once_unfinished() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let start = Instant::now();
        assert!(!until_still(|| 0, Duration::from_secs(5), &cancel).await);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
