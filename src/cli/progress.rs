//! The progress line of `leakrun run` on a terminal: iteration, elapsed against planned time, and
//! the live counters the scenario has — WebSocket figures only with rooms, HTTP answers only with
//! workloads, the server heap only when it is counted. It never draws when stderr is not a
//! terminal, and its message is cut to the terminal's width (80 columns hold all of it at the
//! sizes a run on one machine reaches).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::{Instant, sleep};

use crate::heap;
use crate::load::{LiveCounters, LoadContext};
use crate::runner::{Plan, Progress};

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(200);

/// A progress bar on stderr.
#[derive(Default)]
pub struct Bar {
    running: Mutex<Option<Running>>,
}

struct Running {
    bar: ProgressBar,
    iterations: u32,
    ticker: tokio::task::JoinHandle<()>,
}

impl Bar {
    /// A bar, shown only if stderr is a terminal.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

impl Progress for Bar {
    fn started(&self, plan: &Plan, live: Arc<LoadContext>) {
        let total = plan.duration.as_secs_f64() * f64::from(plan.iterations);
        let bar = ProgressBar::with_draw_target(Some(total.ceil() as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:8}] {elapsed}/{duration} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let ticking = bar.clone();
        let plan = *plan;
        let ticker = heap::spawn_harness(async move {
            let started = Instant::now();
            loop {
                sleep(TICK).await;
                ticking.set_position(started.elapsed().as_secs());
                ticking.set_message(message(&plan, &live.live));
            }
        });
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(Running {
            bar,
            iterations: plan.iterations,
            ticker,
        });
    }

    fn iteration(&self, index: u32) {
        if let Some(running) = self.running.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            running.bar.set_prefix(format!("{}/{}", index + 1, running.iterations));
        }
    }

    fn finished(&self) {
        if let Some(running) = self.running.lock().unwrap_or_else(|p| p.into_inner()).take() {
            running.ticker.abort();
            running.bar.finish_and_clear();
        }
    }
}

/// The counters part of the line: only what the scenario has.
fn message(plan: &Plan, live: &LiveCounters) -> String {
    let mut parts = Vec::new();
    if plan.websocket {
        parts.push(format!(
            "tx {} rx {} gaps {} conn {}",
            short(LiveCounters::get(&live.sent)),
            short(LiveCounters::get(&live.received)),
            short(LiveCounters::get(&live.suspected_gaps)),
            short(LiveCounters::get(&live.connects)),
        ));
    }
    if plan.http {
        parts.push(format!("http {}", short(LiveCounters::get(&live.http_answered))));
    }
    if plan.exact_heap
        && let Some(h) = heap::figures()
    {
        parts.push(format!("heap {}", mebibytes(h.server_bytes.max(0) as u64)));
    }
    parts.join(" ")
}

/// A count in at most five characters: `9999`, `12.3k`, `123k`, `4.5M`, `988M`, `12.3G`.
fn short(n: u64) -> String {
    let scaled = |unit: f64, suffix: char| {
        let v = n as f64 / unit;
        if v < 99.95 {
            format!("{v:.1}{suffix}")
        } else {
            format!("{v:.0}{suffix}")
        }
    };
    match n {
        0..10_000 => n.to_string(),
        10_000..1_000_000 => scaled(1e3, 'k'),
        1_000_000..1_000_000_000 => scaled(1e6, 'M'),
        _ => scaled(1e9, 'G'),
    }
}

/// Bytes as mebibytes in a few characters: `0.3MiB`, `42.0MiB`, `123MiB`.
fn mebibytes(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib < 99.95 {
        format!("{mib:.1}MiB")
    } else {
        format!("{mib:.0}MiB")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    fn plan(websocket: bool, http: bool) -> Plan {
        Plan {
            iterations: 3,
            duration: Duration::from_secs(10),
            websocket,
            http,
            exact_heap: false,
        }
    }

    #[test]
    fn the_line_shows_only_what_the_scenario_has_and_fits_80_columns() {
        let live = LiveCounters::default();
        for (counter, value) in [
            (&live.sent, 1_234_567),
            (&live.received, 98_765_432),
            (&live.suspected_gaps, 4_321),
            (&live.connects, 99_999),
            (&live.http_answered, 5_000_000),
        ] {
            counter.store(value, Ordering::Relaxed);
        }
        let ws = message(&plan(true, false), &live);
        assert!(
            ws.contains("rx 98.8M") && ws.contains("conn 100k") && !ws.contains("http"),
            "{ws}"
        );
        let http = message(&plan(false, true), &live);
        assert_eq!(http, "http 5.0M");
        let both = message(&plan(true, true), &live);
        // With the heap too (larger figures are cut to the terminal by `wide_msg`).
        let longest = format!("{both} heap {}", mebibytes(123 << 20));
        // prefix "3/3", an 8-wide bar in brackets, "59m/1h", spaces: 22 columns before the message.
        assert!(
            22 + longest.chars().count() <= 80,
            "{} columns: {longest}",
            22 + longest.chars().count()
        );
    }

    #[test]
    fn counts_are_short() {
        assert_eq!(short(999), "999");
        assert_eq!(short(12_345), "12.3k");
        assert_eq!(short(456_000), "456k");
        assert_eq!(short(4_560_000), "4.6M");
        assert_eq!(short(987_654_321), "988M");
        assert_eq!(short(12_300_000_000), "12.3G");
        assert_eq!(mebibytes(300 << 10), "0.3MiB");
        assert_eq!(mebibytes(123 << 20), "123MiB");
    }
}
