//! Churn and losses: connects and disconnects per second as a band around zero (connects up,
//! disconnects down), and every kept loss record as a mark at its time, on a row per kind,
//! coloured by kind and cause and shaped by cause, so "losses follow disconnects" and "lost while
//! the server kept up" are things a person sees.

use plotters::prelude::*;

use super::ReportError;
use super::axis::{TimeAxis, TimeChart, Unit, finite, thin, y_range};
use crate::observe::analysis::{Cause, LossKind, LossRecord};
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

/// A loss kind's name, as in the result.
pub fn kind_name(kind: LossKind) -> &'static str {
    match kind {
        LossKind::Gap => "gap",
        LossKind::TailLoss => "tail_loss",
        LossKind::Unconfirmed => "unconfirmed",
    }
}

/// A loss cause's name, as in the result; `none` for a record without one (unconfirmed, or a
/// result written before records carried their cause).
pub fn cause_name(cause: Option<Cause>) -> &'static str {
    match cause {
        Some(Cause::WhileHealthy) => "while_healthy",
        Some(Cause::UnderBacklog) => "under_backlog",
        None => "none",
    }
}

/// The shape of a loss mark, by cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// ▲ lost while delivery latency stayed within its limits: a silent drop.
    Up,
    /// ▼ lost under backlog: the server fell behind.
    Down,
    /// ◆ no cause: unconfirmed (or an older result's record).
    Diamond,
}

impl Shape {
    /// The shape's glyph, for legends.
    pub fn glyph(self) -> &'static str {
        match self {
            Shape::Up => "▲",
            Shape::Down => "▼",
            Shape::Diamond => "◆",
        }
    }

    /// The corners of the shape around its centre, in pixels (y down).
    fn corners(self) -> Vec<(i32, i32)> {
        match self {
            Shape::Up => vec![(0, -5), (-5, 4), (5, 4)],
            Shape::Down => vec![(0, 5), (-5, -4), (5, -4)],
            Shape::Diamond => vec![(0, -5), (4, 0), (0, 5), (-4, 0)],
        }
    }
}

/// The groups loss marks are drawn in, one layer each: (kind, cause). An unconfirmed record has
/// no cause; a lost one without a cause is from a result written before records carried one.
pub const MARK_GROUPS: [(LossKind, Option<Cause>); 7] = [
    (LossKind::Gap, Some(Cause::WhileHealthy)),
    (LossKind::Gap, Some(Cause::UnderBacklog)),
    (LossKind::Gap, None),
    (LossKind::TailLoss, Some(Cause::WhileHealthy)),
    (LossKind::TailLoss, Some(Cause::UnderBacklog)),
    (LossKind::TailLoss, None),
    (LossKind::Unconfirmed, None),
];

/// The group a record's mark is drawn in.
pub fn group_of(record: &LossRecord) -> (LossKind, Option<Cause>) {
    match record.kind {
        LossKind::Unconfirmed => (LossKind::Unconfirmed, None),
        kind => (kind, record.cause),
    }
}

/// A loss mark's colour and shape: warm for a silent drop (red gaps, orange tail loss), cool for
/// a backlog (blue gaps, light blue tail loss), grey for unconfirmed; the kind's warm colour as a
/// diamond for a lost record without a cause.
pub fn mark_style(kind: LossKind, cause: Option<Cause>) -> (RGBColor, Shape) {
    match (kind, cause) {
        (LossKind::Unconfirmed, _) => (RGBColor(120, 120, 120), Shape::Diamond),
        (LossKind::Gap, Some(Cause::WhileHealthy)) => (RGBColor(215, 25, 28), Shape::Up),
        (LossKind::Gap, Some(Cause::UnderBacklog)) => (RGBColor(44, 123, 182), Shape::Down),
        (LossKind::Gap, None) => (RGBColor(215, 25, 28), Shape::Diamond),
        (LossKind::TailLoss, Some(Cause::WhileHealthy)) => (RGBColor(253, 141, 60), Shape::Up),
        (LossKind::TailLoss, Some(Cause::UnderBacklog)) => (RGBColor(116, 173, 209), Shape::Down),
        (LossKind::TailLoss, None) => (RGBColor(253, 141, 60), Shape::Diamond),
    }
}

/// A legend entry's words for a group: its shape, kind and cause.
pub fn mark_label(kind: LossKind, cause: Option<Cause>) -> String {
    let glyph = mark_style(kind, cause).1.glyph();
    let how = match (kind, cause) {
        (LossKind::Unconfirmed, _) => "",
        (_, Some(Cause::WhileHealthy)) => ", lost while healthy",
        (_, Some(Cause::UnderBacklog)) => ", lost under backlog",
        (_, None) => ", lost (no cause recorded)",
    };
    format!("{glyph} {}{how}", kind_name(kind))
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
    for (kind, cause) in MARK_GROUPS {
        let of_group: Vec<&&LossRecord> = records.iter().filter(|r| group_of(r) == (kind, cause)).collect();
        if of_group.is_empty() {
            continue;
        }
        marks += of_group.len();
        // Marks sit in the top band of the chart, each kind on a row of its own.
        let row = match kind {
            LossKind::Gap => 0.92,
            LossKind::TailLoss => 0.84,
            LossKind::Unconfirmed => 0.76,
        };
        let at_y = y.start + (y.end - y.start) * row;
        let (colour, shape) = mark_style(kind, cause);
        let attrs = [
            ("kind", kind_name(kind).to_string()),
            ("cause", cause_name(cause).to_string()),
            ("marks", of_group.len().to_string()),
        ];
        chart.layer("loss-marks", &attrs, |ctx| {
            ctx.draw_series(
                of_group
                    .iter()
                    .map(|r| EmptyElement::at((finite(r.at_s), at_y)) + Polygon::new(shape.corners(), colour.filled())),
            )
            .map_err(ReportError::draw)?;
            Ok(())
        })?;
    }
    Ok((chart.finish(), marks))
}
