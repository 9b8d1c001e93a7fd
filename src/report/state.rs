//! The state series: one small chart per counter the samples hold (connections, memberships,
//! buffered messages, cache items, the backend's keys or queues, an external server's stats), the
//! judged ones first, then those kept for reference.

use std::collections::BTreeSet;

use plotters::prelude::*;

use super::ReportError;
use super::axis::{MAX_POINTS, TimeAxis, TimeChart, Unit, finite, thin, y_range};
use crate::results::RunResult;

/// Most state series drawn; the rest are named under the charts.
pub const MAX_SERIES: usize = 32;

/// A series' colour.
const LINE: RGBColor = RGBColor(84, 39, 143);

/// One state chart.
pub struct StateChart {
    /// The counter's name.
    pub name: String,
    /// Judged by the leak verdict (`state`) or shown for reference (`info`).
    pub judged: bool,
    /// The chart.
    pub svg: String,
}

/// The names of every state and info counter in the samples, judged ones first.
pub fn names(result: &RunResult) -> (Vec<(String, bool)>, usize) {
    let mut state = BTreeSet::new();
    let mut info = BTreeSet::new();
    let samples = result
        .timeline
        .samples
        .iter()
        .chain(result.iterations.iter().map(|i| &i.after));
    for sample in samples {
        state.extend(sample.state.keys().cloned());
        info.extend(sample.info.keys().cloned());
    }
    let all: Vec<(String, bool)> = state
        .into_iter()
        .map(|n| (n, true))
        .chain(info.into_iter().map(|n| (n, false)))
        .collect();
    let total = all.len();
    (all.into_iter().take(MAX_SERIES).collect(), total)
}

/// The state charts, and how many series there are in all.
pub fn charts(result: &RunResult, axis: TimeAxis) -> Result<(Vec<StateChart>, usize), ReportError> {
    let (names, total) = names(result);
    let samples = thin(&result.timeline.samples, MAX_POINTS);
    let mut charts = Vec::new();
    for (name, judged) in names {
        let points: Vec<(f64, f64)> = samples
            .iter()
            .filter_map(|s| {
                let map = if judged { &s.state } else { &s.info };
                map.get(&name).map(|&v| (finite(s.at_s), v as f64))
            })
            .collect();
        let max = points.iter().map(|p| p.1).fold(0.0, f64::max);
        let mut chart = TimeChart::new(&format!("state:{name}"), 130, axis, y_range(0.0, max), Unit::Count)?;
        chart.iterations(result)?;
        let attrs = [
            ("series", name.clone()),
            ("kind", if judged { "state" } else { "info" }.to_string()),
            ("points", points.len().to_string()),
        ];
        chart.layer("state-series", &attrs, |ctx| {
            ctx.draw_series(LineSeries::new(points.iter().copied(), LINE.stroke_width(2)))
                .map_err(ReportError::draw)?;
            Ok(())
        })?;
        charts.push(StateChart {
            name,
            judged,
            svg: chart.finish(),
        });
    }
    Ok((charts, total))
}
