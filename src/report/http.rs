//! HTTP per route over time: requests per second, p99 and failed requests of each iteration,
//! drawn at the middle of its send phase.

use std::collections::BTreeSet;

use plotters::prelude::*;

use super::ReportError;
use super::axis::{TimeAxis, TimeChart, Unit, finite, thin, y_range};
use crate::results::RunResult;

/// Most routes drawn.
const MAX_ROUTES: usize = 12;

/// Colours, one per route in turn.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// The colour of the `n`-th route.
pub fn colour(n: usize) -> RGBColor {
    PALETTE[n % PALETTE.len()]
}

/// The routes drawn, in order.
pub fn routes(result: &RunResult) -> Vec<String> {
    let names: BTreeSet<&str> = result
        .iterations
        .iter()
        .flat_map(|i| i.http.iter().map(|r| r.route.as_str()))
        .collect();
    names.into_iter().take(MAX_ROUTES).map(str::to_string).collect()
}

/// Three charts (requests per second, p99, failures), or none when the run had no HTTP workload.
pub fn charts(result: &RunResult, axis: TimeAxis) -> Result<Vec<(&'static str, String)>, ReportError> {
    let routes = routes(result);
    if routes.is_empty() {
        return Ok(Vec::new());
    }
    let iterations = thin(&result.iterations, super::MAX_ITERATIONS_DRAWN);
    let figures: [(&'static str, &'static str, Unit); 3] = [
        ("http-rate", "requests per second", Unit::Count),
        ("http-p99", "p99 latency", Unit::Millis),
        ("http-failed", "failed requests", Unit::Count),
    ];
    let mut charts = Vec::new();
    for (name, title, unit) in figures {
        let series: Vec<Vec<(f64, f64)>> = routes
            .iter()
            .map(|route| {
                iterations
                    .iter()
                    .filter_map(|i| {
                        let r = i.http.iter().find(|r| &r.route == route)?;
                        let value = match name {
                            "http-rate" => finite(r.requests_per_s),
                            "http-p99" => r.latency.p99_us as f64 / 1000.0,
                            _ => r.failed as f64,
                        };
                        Some((finite(i.started_s) + finite(i.send_s) / 2.0, value))
                    })
                    .collect()
            })
            .collect();
        let max = series.iter().flatten().map(|p| p.1).fold(0.0, f64::max);
        let mut chart = TimeChart::new(name, 150, axis, y_range(0.0, max), unit)?;
        chart.iterations(result)?;
        for (n, (route, points)) in routes.iter().zip(series).enumerate() {
            let c = colour(n);
            chart.layer("http-series", &[("route", route.clone())], |ctx| {
                ctx.draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
                    .map_err(ReportError::draw)?;
                ctx.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(ReportError::draw)?;
                Ok(())
            })?;
        }
        charts.push((title, chart.finish()));
    }
    Ok(charts)
}
