//! Latency over time: delivery p50 and p99 over all rooms per window of receipt time (the windows
//! the losses' causes were judged from) with the scenario's limits as dashed lines, delivery p99
//! per room (a line each, the limit dashed), and connect time p50 and p99 per window of the
//! moment the connection was made.

use plotters::prelude::*;

use super::ReportError;
use super::axis::{MAX_POINTS, TimeAxis, TimeChart, Unit, finite, thin, y_range};
use crate::observe::latency::LatencyWindow;
use crate::results::RunResult;

/// Most rooms drawn in the per-room chart (the result keeps windows for at most 16).
pub const MAX_ROOMS: usize = 16;

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
    for (name, limit, colour) in lines {
        limit_line(&mut chart, axis, name, limit, colour)?;
    }
    Ok(Some(chart.finish()))
}

/// The colour of the `n`-th room's line.
pub fn room_colour(n: usize) -> RGBColor {
    super::http::colour(n)
}

fn mid(w: &LatencyWindow) -> f64 {
    finite(w.at_s) + finite(w.width_s) / 2.0
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Delivery p99 per room over time, a line per room in the scenario's order (each room with
/// windows, at most [`MAX_ROOMS`]), with the p99 limit dashed; `None` when no room has windows.
pub fn rooms_chart(result: &RunResult, axis: TimeAxis) -> Result<Option<String>, ReportError> {
    let rooms: Vec<_> = result
        .delivery_timeline_per_room
        .iter()
        .take(MAX_ROOMS)
        .filter(|room| !room.windows.is_empty())
        .collect();
    if rooms.is_empty() {
        return Ok(None);
    }
    let limit = result
        .scenario
        .resolved
        .thresholds
        .delivery
        .p99
        .map(|d| d.as_secs_f64() * 1000.0);
    let max = rooms
        .iter()
        .flat_map(|room| room.windows.iter().map(|w| ms(w.p99_us)))
        .chain(limit)
        .fold(0.0, f64::max);
    let mut chart = TimeChart::new("latency-rooms", 220, axis, y_range(0.0, max), Unit::Millis)?;
    chart.iterations(result)?;
    for (n, room) in rooms.iter().enumerate() {
        let points: Vec<(f64, f64)> = thin(&room.windows, MAX_POINTS)
            .into_iter()
            .map(|w| (mid(w), ms(w.p99_us)))
            .collect();
        let colour = room_colour(n);
        chart.layer("room", &[("room", room.room.clone())], |ctx| {
            ctx.draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(ReportError::draw)?;
            Ok(())
        })?;
    }
    if let Some(limit) = limit {
        limit_line(&mut chart, axis, "p99", limit, P99)?;
    }
    Ok(Some(chart.finish()))
}

/// Connect time p50 and p99 over time, with the connect p99 limit dashed; `None` when no
/// connection was timed.
pub fn connect_chart(result: &RunResult, axis: TimeAxis) -> Result<Option<String>, ReportError> {
    let windows = thin(&result.connect_timeline, MAX_POINTS);
    if windows.is_empty() {
        return Ok(None);
    }
    let limit = result
        .scenario
        .resolved
        .thresholds
        .connect_p99
        .map(|d| d.as_secs_f64() * 1000.0);
    let p50: Vec<(f64, f64)> = windows.iter().map(|w| (mid(w), ms(w.p50_us))).collect();
    let p99: Vec<(f64, f64)> = windows.iter().map(|w| (mid(w), ms(w.p99_us))).collect();
    let max = p99.iter().map(|p| p.1).chain(limit).fold(0.0, f64::max);
    let mut chart = TimeChart::new("latency-connect", 180, axis, y_range(0.0, max), Unit::Millis)?;
    chart.iterations(result)?;
    for (name, points, colour) in [("p50", p50, P50), ("p99", p99, P99)] {
        chart.layer("series", &[("series", name.to_string())], |ctx| {
            ctx.draw_series(PointSeries::of_element(points, 2, colour.filled(), &|c, s, st| {
                Circle::new(c, s, st)
            }))
            .map_err(ReportError::draw)?;
            Ok(())
        })?;
    }
    if let Some(limit) = limit {
        limit_line(&mut chart, axis, "p99", limit, P99)?;
    }
    Ok(Some(chart.finish()))
}

/// The limit `limit` (ms) for `series` as a dashed line across the whole axis.
fn limit_line(
    chart: &mut TimeChart,
    axis: TimeAxis,
    series: &str,
    limit: f64,
    colour: RGBColor,
) -> Result<(), ReportError> {
    let end = axis.end_s;
    chart.layer(
        "limit",
        &[("series", series.to_string()), ("ms", format!("{limit}"))],
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
    )
}
