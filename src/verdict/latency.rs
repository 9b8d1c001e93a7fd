//! The latency verdict: delivery percentiles per room, connect time and HTTP latency per route
//! against thresholds. An HTTP request that got no answer at all (connect, timeout, reset, ...)
//! has no latency to judge; past `thresholds.http_errors` per route it is a breach too.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::observe::http::RouteFigures;
use crate::observe::latency::{LatencySummary, fmt_us};
use crate::scenario::Thresholds;

/// Outcome of the latency verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyOutcome {
    /// Every percentile within its limit.
    Within,
    /// Some percentile past its limit.
    Breach,
}

/// Delivery latency of one room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomLatency {
    /// Room name.
    pub room: String,
    /// Its percentiles.
    pub delivery: LatencySummary,
    /// Its senders' send lag: from each message's intended send time to the moment its client
    /// began writing it (leakrun's own lateness, part of every delivery latency above).
    #[serde(default)]
    pub send_lag: LatencySummary,
}

/// The latency verdict with its evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyVerdict {
    /// What the run showed.
    pub outcome: LatencyOutcome,
    /// What the scenario expected.
    pub expected: LatencyOutcome,
    /// Outcome equals expectation.
    pub met: bool,
    /// One line for people.
    pub summary: String,
    /// Delivery latency per room.
    pub delivery: Vec<RoomLatency>,
    /// Connect time.
    pub connect: LatencySummary,
    /// Each limit exceeded, in words.
    pub breaches: Vec<String>,
}

/// Judges the histograms against `thresholds`.
pub fn judge(
    delivery: Vec<RoomLatency>,
    connect: LatencySummary,
    http: &[RouteFigures],
    thresholds: &Thresholds,
    expect_breach: bool,
) -> LatencyVerdict {
    let mut breaches = Vec::new();
    let mut check = |what: &str, value_us: u64, limit: Option<Duration>| {
        if let Some(limit) = limit
            && value_us as u128 > limit.as_micros()
        {
            breaches.push(format!(
                "{what} {} > {}",
                fmt_us(value_us),
                humantime::format_duration(limit)
            ));
        }
    };
    for room in delivery.iter().filter(|r| r.delivery.count > 0) {
        let limits = &thresholds.delivery;
        check(&format!("{} delivery p50", room.room), room.delivery.p50_us, limits.p50);
        check(&format!("{} delivery p99", room.room), room.delivery.p99_us, limits.p99);
        check(
            &format!("{} delivery p99.9", room.room),
            room.delivery.p999_us,
            limits.p999,
        );
        check(&format!("{} delivery max", room.room), room.delivery.max_us, limits.max);
    }
    if connect.count > 0 {
        check("connect p99", connect.p99_us, thresholds.connect_p99);
    }
    for route in http.iter().filter(|r| r.latency.count > 0) {
        check(
            &format!("{} p99", route.route),
            route.latency.p99_us,
            thresholds.http_p99,
        );
    }
    for route in http.iter().filter(|r| r.failed > thresholds.http_errors) {
        let kinds = route
            .failures
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        breaches.push(format!(
            "{}: {} of {} requests got no answer ({kinds}; thresholds.http_errors = {})",
            route.route, route.failed, route.requests, thresholds.http_errors
        ));
    }
    let outcome = if breaches.is_empty() {
        LatencyOutcome::Within
    } else {
        LatencyOutcome::Breach
    };
    let expected = if expect_breach {
        LatencyOutcome::Breach
    } else {
        LatencyOutcome::Within
    };
    let worst = delivery.iter().max_by_key(|r| r.delivery.p99_us);
    let mut summary = match (&outcome, worst) {
        (LatencyOutcome::Within, Some(w)) if w.delivery.count > 0 => format!(
            "within limits: worst room {} p50 {} p99 {} max {}; connect p99 {}",
            w.room,
            fmt_us(w.delivery.p50_us),
            fmt_us(w.delivery.p99_us),
            fmt_us(w.delivery.max_us),
            fmt_us(connect.p99_us)
        ),
        (LatencyOutcome::Within, _) if connect.count == 0 && !http.is_empty() => "within limits".to_string(),
        (LatencyOutcome::Within, _) => format!(
            "within limits: no deliveries measured; connect p99 {}",
            fmt_us(connect.p99_us)
        ),
        (LatencyOutcome::Breach, _) => format!("breach: {}", breaches.join(", ")),
    };
    if outcome == LatencyOutcome::Within
        && let Some(worst) = http.iter().max_by_key(|r| r.latency.p99_us)
    {
        summary.push_str(if summary == "within limits" { ": " } else { "; " });
        summary.push_str(&format!(
            "HTTP worst route {} p50 {} p99 {} max {}",
            worst.route,
            fmt_us(worst.latency.p50_us),
            fmt_us(worst.latency.p99_us),
            fmt_us(worst.latency.max_us)
        ));
    }
    summary.push_str(super::expectation_note(
        outcome == LatencyOutcome::Breach,
        expect_breach,
    ));
    LatencyVerdict {
        outcome,
        expected,
        met: outcome == expected,
        summary,
        delivery,
        connect,
        breaches,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    fn thresholds(extra: &str) -> Thresholds {
        let text = format!("name = \"t\"\n[[http]]\npath = \"/\"\n[thresholds]\n{extra}\n");
        crate::scenario::parse(Path::new("t.toml"), &text).unwrap().thresholds
    }

    fn route(p99_us: u64, failed: u64) -> RouteFigures {
        RouteFigures {
            route: "GET /".into(),
            requests: 100 + failed,
            answered: 100,
            failed,
            failures: BTreeMap::from([("timeout".to_string(), failed)]),
            latency: LatencySummary {
                count: 100 + failed,
                p50_us: p99_us / 2,
                p99_us,
                max_us: p99_us,
                ..LatencySummary::default()
            },
            ..RouteFigures::default()
        }
    }

    #[test]
    fn http_routes_are_judged_on_p99_and_on_requests_without_an_answer() {
        let none = LatencySummary::default();
        let ok = judge(
            Vec::new(),
            none,
            &[route(900, 0)],
            &thresholds("http_p99 = \"1ms\""),
            false,
        );
        assert_eq!(ok.outcome, LatencyOutcome::Within);
        assert_eq!(
            ok.summary,
            "within limits: HTTP worst route GET / p50 450µs p99 900µs max 900µs"
        );

        let slow = judge(
            Vec::new(),
            none,
            &[route(1500, 0)],
            &thresholds("http_p99 = \"1ms\""),
            false,
        );
        assert_eq!(slow.breaches, ["GET / p99 1.5ms > 1ms"]);

        let failing = judge(Vec::new(), none, &[route(900, 3)], &thresholds(""), false);
        assert_eq!(failing.outcome, LatencyOutcome::Breach);
        assert!(
            failing.breaches[0].contains("3 of 103 requests got no answer (timeout 3"),
            "{:?}",
            failing.breaches
        );
        let tolerated = judge(
            Vec::new(),
            none,
            &[route(900, 3)],
            &thresholds("http_errors = 3"),
            false,
        );
        assert_eq!(tolerated.outcome, LatencyOutcome::Within);
    }
}
