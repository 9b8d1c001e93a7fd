//! The memory chart: RSS and the exact heap over time, retention as the band between them, the
//! iterations with their warm-up and settle windows, and the after-iteration points the leak
//! verdict judged with the fitted slope and the threshold's slope beside it.

use plotters::prelude::*;

use super::ReportError;
use super::axis::{MAX_POINTS, TimeAxis, TimeChart, Unit, finite, thin, y_range};
use crate::results::RunResult;
use crate::verdict::fit::theil_sen;

/// RSS's colour.
pub const RSS: RGBColor = RGBColor(214, 96, 77);
/// The heap's colour.
pub const HEAP: RGBColor = RGBColor(33, 102, 172);

/// The memory chart, or `None` when the result holds no memory reading at all.
pub fn chart(result: &RunResult, axis: TimeAxis) -> Result<Option<MemoryCharts>, ReportError> {
    let samples = thin(&result.timeline.samples, MAX_POINTS);
    let rss: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| s.rss_bytes.map(|v| (finite(s.at_s), v as f64)))
        .collect();
    let heap: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| s.heap_bytes.map(|v| (finite(s.at_s), v as f64)))
        .collect();
    // The judged series: the exact heap where there is one, else RSS.
    let judged_heap = result.iterations.iter().any(|i| i.after.heap_bytes.is_some());
    let after: Vec<(u32, bool, f64, f64)> = thin(&result.iterations, super::MAX_ITERATIONS_DRAWN)
        .iter()
        .filter_map(|i| {
            let value = if judged_heap {
                i.after.heap_bytes.map(|v| v as f64)
            } else {
                i.after.rss_bytes.map(|v| v as f64)
            };
            value.map(|v| (i.index, i.warmup, finite(i.after.at_s), v))
        })
        .collect();
    if rss.is_empty() && heap.is_empty() && after.is_empty() {
        return Ok(None);
    }
    // The judged series on its own scale: an embedded server's heap is a sliver of leakrun's RSS.
    let judged_points = if judged_heap { &heap } else { &rss };
    let values = judged_points.iter().map(|p| p.1).chain(after.iter().map(|a| a.3));
    let (min, max) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let mut chart = TimeChart::new("memory", 280, axis, y_range(min, max), Unit::Bytes)?;
    chart.iterations(result)?;
    let colour = if judged_heap { HEAP } else { RSS };
    let name = judged_name(judged_heap);
    chart.layer("series", &[("series", name.to_string())], |ctx| {
        ctx.draw_series(LineSeries::new(judged_points.iter().copied(), colour.stroke_width(2)))
            .map_err(ReportError::draw)?;
        Ok(())
    })?;
    chart.layer(
        "after-points",
        &[("marks", after.len().to_string()), ("series", name.into())],
        |ctx| {
            ctx.draw_series(after.iter().map(|&(_, warmup, at, v)| {
                let style = if warmup {
                    colour.stroke_width(2)
                } else {
                    colour.filled()
                };
                Circle::new((at, v), 4, style)
            }))
            .map_err(ReportError::draw)?;
            Ok(())
        },
    )?;
    fit(&mut chart, result, &after, judged_heap)?;
    let judged = chart.finish();
    // RSS with the heap under it, the band between them the retention.
    let both = if judged_heap && !rss.is_empty() {
        let max = rss.iter().chain(&heap).map(|p| p.1).fold(0.0, f64::max);
        let mut chart = TimeChart::new("memory-rss", 200, axis, y_range(0.0, max), Unit::Bytes)?;
        chart.iterations(result)?;
        let band = band(&samples);
        chart.layer("retention-band", &[], |ctx| {
            ctx.draw_series(std::iter::once(Polygon::new(band, RSS.mix(0.15).filled())))
                .map_err(ReportError::draw)?;
            Ok(())
        })?;
        for (name, points, colour) in [("rss_bytes", &rss, RSS), ("heap_bytes", &heap, HEAP)] {
            chart.layer("series", &[("series", name.to_string())], |ctx| {
                ctx.draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))
                    .map_err(ReportError::draw)?;
                Ok(())
            })?;
        }
        Some(chart.finish())
    } else {
        None
    };
    Ok(Some(MemoryCharts { judged, both }))
}

/// The memory charts.
pub struct MemoryCharts {
    /// The judged series (heap, else RSS) with the after points, the fit and the threshold.
    pub judged: String,
    /// RSS and the heap on one scale, the retention band between them; when there are both.
    pub both: Option<String>,
}

/// The fit over the judged (not warm-up) iterations, against the threshold's slope from the same
/// first point: a leak is a fit steeper than the threshold.
fn fit(
    chart: &mut TimeChart,
    result: &RunResult,
    after: &[(u32, bool, f64, f64)],
    judged_heap: bool,
) -> Result<(), ReportError> {
    let judged_points: Vec<&(u32, bool, f64, f64)> = after.iter().filter(|a| !a.1).collect();
    let xy: Vec<(f64, f64)> = judged_points.iter().map(|a| (f64::from(a.0), a.3)).collect();
    let (Some(fit), Some(first)) = (theil_sen(&xy), judged_points.first()) else {
        return Ok(());
    };
    let limits = &result.scenario.resolved.thresholds.leak;
    let limit = if judged_heap {
        limits.heap_growth
    } else {
        limits.rss_growth
    } as f64;
    let line: Vec<(f64, f64)> = judged_points
        .iter()
        .map(|a| (a.2, fit.intercept + fit.slope * f64::from(a.0)))
        .collect();
    let threshold: Vec<(f64, f64)> = judged_points
        .iter()
        .map(|a| (a.2, first.3 + limit * (f64::from(a.0) - f64::from(first.0))))
        .collect();
    let attrs = [
        ("slope", format!("{:.1}", fit.slope)),
        ("threshold", format!("{limit}")),
    ];
    chart.layer("fit", &attrs, |ctx| {
        ctx.draw_series(LineSeries::new(line, BLACK.stroke_width(2)))
            .map_err(ReportError::draw)?;
        ctx.draw_series(DashedLineSeries::new(
            threshold,
            6,
            4,
            RGBColor(110, 110, 110).stroke_width(1),
        ))
        .map_err(ReportError::draw)?;
        Ok(())
    })
}

/// The name of the series the leak verdict judged.
pub fn judged_name(heap: bool) -> &'static str {
    if heap { "heap_bytes" } else { "rss_bytes" }
}

/// The outline of the band between RSS (above) and the heap (below), over the samples holding
/// both.
fn band(samples: &[&crate::observe::sampler::Sample]) -> Vec<(f64, f64)> {
    let both: Vec<(f64, f64, f64)> = samples
        .iter()
        .filter_map(|s| match (s.rss_bytes, s.heap_bytes) {
            (Some(r), Some(h)) => Some((finite(s.at_s), r as f64, h as f64)),
            _ => None,
        })
        .collect();
    let top = both.iter().map(|&(t, r, h)| (t, r.max(h)));
    let bottom = both.iter().rev().map(|&(t, _, h)| (t, h));
    top.chain(bottom).collect()
}
