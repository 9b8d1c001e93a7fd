//! Delivery latency over time: p50 and p99 per window of receipt time (the windows the losses'
//! causes were judged from), with the scenario's limits as dashed lines.

use plotters::prelude::*;

use super::ReportError;
use super::axis::{MAX_POINTS, TimeAxis, TimeChart, Unit, finite, thin, y_range};
use crate::results::RunResult;

/// p50's colour.
pub const P50: RGBColor = RGBColor(49, 130, 189);
/// p99's colour.
pub const P99: RGBColor = RGBColor(230, 85, 13);

/// The delivery latency chart, or `None` when nothing was delivered.
pub fn chart(result: &RunResult, axis: TimeAxis) -> Result<Option<String>, ReportError> {
    let windows = thin(&result.delivery_timeline, MAX_POINTS);
    if windows.is_empty() {
        return Ok(None);
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let mid = |w: &crate::observe::latency::LatencyWindow| finite(w.at_s) + finite(w.width_s) / 2.0;
    let p50: Vec<(f64, f64)> = windows.iter().map(|w| (mid(w), ms(w.p50_us))).collect();
    let p99: Vec<(f64, f64)> = windows.iter().map(|w| (mid(w), ms(w.p99_us))).collect();
    let limits = &result.scenario.resolved.thresholds.delivery;
    let lines: Vec<(&str, f64, RGBColor)> = [("p50", limits.p50, P50), ("p99", limits.p99, P99)]
        .into_iter()
        .filter_map(|(name, limit, colour)| limit.map(|d| (name, d.as_secs_f64() * 1000.0, colour)))
        .collect();
    let max = p99
        .iter()
        .map(|p| p.1)
        .chain(lines.iter().map(|l| l.1))
        .fold(0.0, f64::max);
    let y = y_range(0.0, max);
    let mut chart = TimeChart::new("latency", 220, axis, y, Unit::Millis)?;
    chart.iterations(result)?;
    for (name, points, colour) in [("p50", p50, P50), ("p99", p99, P99)] {
        chart.layer("series", &[("series", name.to_string())], |ctx| {
            ctx.draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(ReportError::draw)?;
            Ok(())
        })?;
    }
    let end = axis.end_s;
    for (name, limit, colour) in lines {
        chart.layer(
            "limit",
            &[("series", name.to_string()), ("ms", format!("{limit}"))],
            |ctx| {
                ctx.draw_series(DashedLineSeries::new(
                    vec![(0.0, limit), (end, limit)],
                    8,
                    5,
                    colour.stroke_width(1),
                ))
                .map_err(ReportError::draw)?;
                Ok(())
            },
        )?;
    }
    Ok(Some(chart.finish()))
}
