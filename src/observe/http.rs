//! What HTTP workers observed, per route: latency (HDR), status codes, failures by kind, and the
//! time the route was busy. Each worker keeps its own [`Tally`] without locks or atomics and hands
//! it back when it stops; tallies of one route are merged (workers of one iteration: their busy
//! time is the span from the first start to the last end) or added up (iterations of one run:
//! their busy times add, the settling between them is not sending time) and summed up as
//! [`RouteFigures`] for the result — bounded bookkeeping, nothing stored per request.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::latency::LatencySummary;

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The TCP connect or the HTTP handshake failed or timed out.
    Connect,
    /// No complete answer within the workload's `timeout`.
    Timeout,
    /// The connection was reset or closed before the answer was complete.
    Reset,
    /// The answer was not valid HTTP.
    Protocol,
    /// Anything else.
    Other,
}

impl FailureKind {
    const ALL: [FailureKind; 5] = [
        FailureKind::Connect,
        FailureKind::Timeout,
        FailureKind::Reset,
        FailureKind::Protocol,
        FailureKind::Other,
    ];

    /// The kind's name, as in results.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Timeout => "timeout",
            FailureKind::Reset => "reset",
            FailureKind::Protocol => "protocol",
            FailureKind::Other => "other",
        }
    }
}

/// Highest status code counted one by one; the rest are counted together as 600.
const STATUS_SLOTS: usize = 601;

/// One worker's (or one route's, once merged) observations.
#[derive(Debug, Clone)]
pub struct Tally {
    latency: Histogram<u64>,
    statuses: Vec<u64>,
    failures: [u64; 5],
    started: Option<Instant>,
    ended: Option<Instant>,
    /// Busy seconds of iterations added with [`Tally::add_iteration`].
    earlier_busy_s: f64,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            latency: Histogram::new(3).expect("3 significant figures is a valid histogram"),
            statuses: vec![0; STATUS_SLOTS],
            failures: [0; 5],
            started: None,
            ended: None,
            earlier_busy_s: 0.0,
        }
    }
}

impl Tally {
    /// Marks the start of the worker's first request.
    pub fn start(&mut self, at: Instant) {
        self.started.get_or_insert(at);
    }

    /// Marks when the worker stopped.
    pub fn end(&mut self, at: Instant) {
        self.ended = Some(self.ended.map_or(at, |e| e.max(at)));
    }

    /// An answer with `status` after `micros`.
    pub fn answered(&mut self, status: u16, micros: u64) {
        self.statuses[(status as usize).min(STATUS_SLOTS - 1)] += 1;
        self.record(micros);
    }

    /// A request that got no answer, after `micros`.
    pub fn failed(&mut self, kind: FailureKind, micros: u64) {
        self.failures[kind as usize] += 1;
        self.record(micros);
    }

    fn record(&mut self, micros: u64) {
        let value = micros.max(1);
        if self.latency.record(value).is_err() {
            self.latency.saturating_record(value);
        }
    }

    /// Requests answered, whatever their status.
    pub fn answers(&self) -> u64 {
        self.statuses.iter().sum()
    }

    /// Requests that got no answer.
    pub fn failures(&self) -> u64 {
        self.failures.iter().sum()
    }

    /// Adds another worker's tally of the same iteration into this one.
    pub fn merge(&mut self, other: &Tally) {
        self.add_counts(other);
        if let Some(at) = other.started {
            self.started = Some(self.started.map_or(at, |s| s.min(at)));
        }
        if let Some(at) = other.ended {
            self.end(at);
        }
    }

    /// Adds a later iteration's tally into this run-wide one: counts merge, busy times add.
    pub fn add_iteration(&mut self, other: &Tally) {
        self.add_counts(other);
        self.earlier_busy_s += other.busy_s();
    }

    /// Seconds the tally's workers were sending.
    fn busy_s(&self) -> f64 {
        let span = match (self.started, self.ended) {
            (Some(s), Some(e)) => e.duration_since(s).as_secs_f64(),
            _ => 0.0,
        };
        span + self.earlier_busy_s
    }

    fn add_counts(&mut self, other: &Tally) {
        let _ = self.latency.add(&other.latency);
        for (mine, theirs) in self.statuses.iter_mut().zip(&other.statuses) {
            *mine += theirs;
        }
        for (mine, theirs) in self.failures.iter_mut().zip(&other.failures) {
            *mine += theirs;
        }
        self.earlier_busy_s += other.earlier_busy_s;
    }

    /// The figures of route `route`.
    pub fn figures(&self, route: &str) -> RouteFigures {
        let busy_s = self.busy_s();
        let answers = self.answers();
        let h = &self.latency;
        let latency = if h.is_empty() {
            LatencySummary::default()
        } else {
            LatencySummary {
                count: h.len(),
                mean_us: h.mean(),
                p50_us: h.value_at_quantile(0.50),
                p90_us: h.value_at_quantile(0.90),
                p99_us: h.value_at_quantile(0.99),
                p999_us: h.value_at_quantile(0.999),
                max_us: h.max(),
            }
        };
        RouteFigures {
            route: route.to_string(),
            requests: answers + self.failures(),
            answered: answers,
            failed: self.failures(),
            requests_per_s: if busy_s > 0.0 { answers as f64 / busy_s } else { 0.0 },
            busy_s,
            statuses: self
                .statuses
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(code, n)| (code.to_string(), *n))
                .collect(),
            failures: FailureKind::ALL
                .iter()
                .filter(|k| self.failures[**k as usize] > 0)
                .map(|k| (k.name().to_string(), self.failures[*k as usize]))
                .collect(),
            latency,
        }
    }
}

/// One route's figures, as in results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteFigures {
    /// The workload's route label (`name`, else `METHOD path`).
    pub route: String,
    /// Requests sent: answered plus failed.
    pub requests: u64,
    /// Requests answered, whatever the status.
    pub answered: u64,
    /// Requests that got no answer.
    pub failed: u64,
    /// Answers per second while the route's workers were sending.
    pub requests_per_s: f64,
    /// Seconds the route's workers were sending: in an iteration, from its first request to its
    /// last worker stopping; over a run, the sum of its iterations'.
    pub busy_s: f64,
    /// Answers by status code (`"200"`, `"404"`, ...; `"600"` for anything above 599).
    pub statuses: BTreeMap<String, u64>,
    /// Requests without an answer by kind: `connect`, `timeout`, `reset`, `protocol`, `other`.
    pub failures: BTreeMap<String, u64>,
    /// Latency of every request, answered or not: from its intended send time in the open model,
    /// from its send in the closed one.
    pub latency: LatencySummary,
}

impl RouteFigures {
    /// The figures as one line for people: rate, percentiles, statuses and failures.
    pub fn line(&self) -> String {
        use super::latency::fmt_us;
        let statuses = self
            .statuses
            .iter()
            .map(|(code, n)| format!("{code}×{n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let failures = if self.failures.is_empty() {
            "no failures".to_string()
        } else {
            let kinds = self
                .failures
                .iter()
                .map(|(kind, n)| format!("{kind} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!("failed {}: {kinds}", self.failed)
        };
        format!(
            "{}: {} requests, {:.0}/s, p50 {} p99 {} max {}; {}; {failures}",
            self.route,
            self.requests,
            self.requests_per_s,
            fmt_us(self.latency.p50_us),
            fmt_us(self.latency.p99_us),
            fmt_us(self.latency.max_us),
            if statuses.is_empty() {
                "no answers".into()
            } else {
                statuses
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn tallies_merge_into_route_figures() {
        let t0 = Instant::now();
        let mut a = Tally::default();
        a.start(t0);
        for i in 1..=99 {
            a.answered(200, i * 10);
        }
        a.answered(404, 5000);
        a.end(t0 + Duration::from_secs(1));
        let mut b = Tally::default();
        b.start(t0 + Duration::from_millis(500));
        b.failed(FailureKind::Timeout, 10_000_000);
        b.failed(FailureKind::Connect, 20);
        b.answered(700, 30);
        b.end(t0 + Duration::from_secs(2));
        let mut route = Tally::default();
        route.merge(&a);
        route.merge(&b);
        let f = route.figures("GET /");
        assert_eq!((f.requests, f.answered, f.failed), (103, 101, 2));
        assert_eq!(f.busy_s, 2.0);
        assert_eq!(f.requests_per_s, 50.5);
        assert_eq!(f.statuses["200"], 99);
        assert_eq!(f.statuses["404"], 1);
        assert_eq!(f.statuses["600"], 1);
        assert_eq!(f.failures["timeout"], 1);
        assert_eq!(f.failures["connect"], 1);
        assert_eq!(f.latency.count, 103);
        assert!(f.latency.max_us >= 9_990_000, "{:?}", f.latency);
        assert!(f.line().contains("failed 2: connect 1, timeout 1"), "{}", f.line());

        // A second iteration a minute later: the run's busy time is 2s + 2s, not the 62s between.
        let mut later = route.clone();
        later.started = Some(t0 + Duration::from_secs(60));
        later.ended = Some(t0 + Duration::from_secs(62));
        let mut run = Tally::default();
        run.add_iteration(&route);
        run.add_iteration(&later);
        let f = run.figures("GET /");
        assert_eq!((f.requests, f.busy_s), (206, 4.0));
        assert_eq!(f.requests_per_s, 50.5);
    }
}
