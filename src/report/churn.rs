//! Churn and losses: connects and disconnects per second as a band around zero (connects up,
//! disconnects down), and every kept loss record as a mark at its time, coloured by its kind, so
//! "losses follow disconnects" is something a person sees.

use plotters::prelude::*;

use super::ReportError;
use super::axis::{TimeAxis, TimeChart, Unit, finite, thin, y_range};
use crate::observe::analysis::{LossKind, LossRecord};
use crate::observe::events::EventKind;
use crate::results::RunResult;

/// Most bins of the churn band.
const MAX_BINS: usize = 150;
/// Most loss marks drawn; past it the records are evenly thinned (a result keeps at most 1000).
pub const MAX_LOSS_MARKS: usize = 2000;

/// Connects' colour.
pub const CONNECT: RGBColor = RGBColor(77, 146, 33);
/// Disconnects' colour.
pub const DISCONNECT: RGBColor = RGBColor(197, 27, 125);

/// A loss kind's name (as in the result) and colour.
pub fn kind_style(kind: LossKind) -> (&'static str, RGBColor) {
    match kind {
        LossKind::Gap => ("gap", RGBColor(215, 25, 28)),
        LossKind::TailLoss => ("tail_loss", RGBColor(253, 141, 60)),
        LossKind::Unconfirmed => ("unconfirmed", RGBColor(120, 120, 120)),
    }
}

/// A step line: (seconds, value) points.
pub type Steps = Vec<(f64, f64)>;

/// Connects per second (up) and disconnects per second (down, below zero) over `axis`, as steps
/// of at most [`MAX_BINS`] bins.
pub fn rates(result: &RunResult, axis: TimeAxis) -> (Steps, Steps) {
    let width = (axis.end_s / MAX_BINS as f64).max(0.05);
    let bins = ((axis.end_s / width).ceil() as usize).clamp(1, MAX_BINS + 1);
    let mut up = vec![0u64; bins];
    let mut down = vec![0u64; bins];
    for event in &result.events.events {
        let bin = ((finite(event.at_s).max(0.0) / width) as usize).min(bins - 1);
        match event.kind {
            EventKind::Connect => up[bin] += 1,
            EventKind::CloseGraceful | EventKind::CloseAbrupt | EventKind::ClosedByServer | EventKind::SendTimedOut => {
                down[bin] += 1
            }
            EventKind::Subscribed | EventKind::ConnectFailed => {}
        }
    }
    let rate = |counts: &[u64], sign: f64| -> Vec<(f64, f64)> {
        counts
            .iter()
            .enumerate()
            .flat_map(|(i, &c)| {
                let v = sign * c as f64 / width;
                [(i as f64 * width, v), ((i + 1) as f64 * width, v)]
            })
            .collect()
    };
    (rate(&up, 1.0), rate(&down, -1.0))
}

/// The churn chart, and how many loss marks it holds.
pub fn chart(result: &RunResult, axis: TimeAxis) -> Result<(String, usize), ReportError> {
    let (ups, downs) = rates(result, axis);
    let top = ups.iter().map(|p| p.1).fold(1.0, f64::max);
    let bottom = downs.iter().map(|p| p.1).fold(-1.0, f64::min);
    let y = y_range(bottom, top);
    let mut chart = TimeChart::new("churn", 200, axis, y.clone(), Unit::Count)?;
    chart.iterations(result)?;
    for (name, points, colour) in [("connects", ups, CONNECT), ("disconnects", downs, DISCONNECT)] {
        chart.layer("churn-band", &[("series", name.to_string())], |ctx| {
            ctx.draw_series(AreaSeries::new(points, 0.0, colour.mix(0.35)).border_style(colour))
                .map_err(ReportError::draw)?;
            Ok(())
        })?;
    }
    let records = thin(&result.losses.records, MAX_LOSS_MARKS);
    let mut marks = 0;
    for kind in [LossKind::Gap, LossKind::TailLoss, LossKind::Unconfirmed] {
        let (name, colour) = kind_style(kind);
        let of_kind: Vec<&&LossRecord> = records.iter().filter(|r| r.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        marks += of_kind.len();
        // Marks sit in the top band of the chart, each kind on a row of its own.
        let row = match kind {
            LossKind::Gap => 0.92,
            LossKind::TailLoss => 0.84,
            LossKind::Unconfirmed => 0.76,
        };
        let at_y = y.start + (y.end - y.start) * row;
        let attrs = [("kind", name.to_string()), ("marks", of_kind.len().to_string())];
        chart.layer("loss-marks", &attrs, |ctx| {
            ctx.draw_series(
                of_kind
                    .iter()
                    .map(|r| TriangleMarker::new((finite(r.at_s), at_y), 5, colour.filled())),
            )
            .map_err(ReportError::draw)?;
            Ok(())
        })?;
    }
    Ok((chart.finish(), marks))
}
