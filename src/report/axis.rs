//! The one time axis every chart of a report shares, and the layers a chart is made of.
//!
//! Every time chart has the same width, the same label areas and the same x range (seconds since
//! the run started), so a moment sits at the same horizontal pixel in all of them: a loss mark in
//! the churn chart lines up with the memory and latency above it. A chart is drawn by plotters as
//! a stack of transparent layers over one frame (the mesh and labels); each layer is its own
//! `<svg>` in a `<g class="layer NAME">`, so the page can be read (and tests can count) by what a
//! mark means rather than by its colour.

use std::fmt::Write as _;
use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::ReportError;
use crate::results::RunResult;

/// Width of every chart, pixels.
pub const WIDTH: u32 = 960;
/// Left label area (y labels) of every time chart, pixels.
const LEFT: u32 = 72;
/// Bottom label area (x labels), pixels.
const BOTTOM: u32 = 26;
/// Right margin, pixels.
const RIGHT: u32 = 16;
/// Most points drawn of one series; longer series are evenly thinned.
pub const MAX_POINTS: usize = 1500;

/// A chart's coordinates: seconds across, the chart's own unit up.
pub type Ctx<'a> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The shared x range: from the run's start to its last known moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeAxis {
    /// Seconds since the run started at the right edge.
    pub end_s: f64,
}

impl TimeAxis {
    /// The axis covering everything `result` holds a time for.
    pub fn of(result: &RunResult) -> Self {
        let mut end = finite(result.elapsed_s);
        let mut seen = |t: f64| end = end.max(finite(t));
        result.timeline.samples.iter().for_each(|s| seen(s.at_s));
        result.iterations.iter().for_each(|i| seen(i.after.at_s));
        result.events.events.iter().for_each(|e| seen(e.at_s));
        result.losses.records.iter().for_each(|r| seen(r.at_s));
        result.delivery_timeline.iter().for_each(|w| seen(w.at_s + w.width_s));
        Self {
            end_s: if end > 0.0 { end } else { 1.0 },
        }
    }
}

impl TimeAxis {
    /// The axis covering both `a` and `b`: two runs overlaid, each from its own start.
    pub fn spanning(a: Self, b: Self) -> Self {
        Self {
            end_s: a.end_s.max(b.end_s),
        }
    }
}

/// `v` when it is a finite number, else 0 (a hand-edited result may hold anything).
pub fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// Every `n`-th item so that at most `max` remain, the last always kept.
pub fn thin<T>(items: &[T], max: usize) -> Vec<&T> {
    if items.len() <= max {
        return items.iter().collect();
    }
    if max < 2 {
        return items.iter().take(max).collect();
    }
    let stride = items.len().div_ceil(max - 1);
    let mut kept: Vec<&T> = items.iter().step_by(stride).collect();
    if let Some(last) = items.last()
        && !std::ptr::eq(*kept.last().unwrap_or(&last), last)
    {
        kept.push(last);
    }
    kept
}

/// The y range for values up to `max` (and down to `min`), with a little headroom.
pub fn y_range(min: f64, max: f64) -> Range<f64> {
    let (min, max) = (finite(min).min(0.0), finite(max).max(0.0));
    let span = (max - min).max(f64::EPSILON);
    let top = if max > 0.0 { max + span * 0.08 } else { 1.0 };
    let bottom = if min < 0.0 { min - span * 0.08 } else { 0.0 };
    bottom..top
}

/// How y labels are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes, as KiB/MiB/GiB.
    Bytes,
    /// A plain count.
    Count,
    /// Milliseconds.
    Millis,
}

impl Unit {
    /// `v` as a label.
    pub fn label(self, v: f64) -> String {
        match self {
            Unit::Bytes => human_bytes(v),
            Unit::Count => human_count(v),
            Unit::Millis => format!("{} ms", human_count(v)),
        }
    }
}

/// `s` seconds as an axis label: tenths on a short axis.
fn seconds(s: f64, end: f64) -> String {
    if end < 15.0 {
        format!("{s:.1}s")
    } else {
        format!("{s:.0}s")
    }
}

/// `v` bytes with a binary unit, e.g. `12.5 MiB`.
pub fn human_bytes(v: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = v;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// A count, with k/M past a thousand.
pub fn human_count(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// One chart on the shared axis, drawn layer by layer.
pub struct TimeChart {
    name: String,
    height: u32,
    axis: TimeAxis,
    y: Range<f64>,
    layers: Vec<String>,
}

impl TimeChart {
    /// A chart called `name` (its `data-chart`), `height` pixels high, over `y`, with its frame
    /// (mesh, labels in `unit`) drawn.
    pub fn new(name: &str, height: u32, axis: TimeAxis, y: Range<f64>, unit: Unit) -> Result<Self, ReportError> {
        let mut chart = Self {
            name: name.to_string(),
            height,
            axis,
            y,
            layers: Vec::new(),
        };
        chart.layer("frame", &[], |ctx| {
            ctx.configure_mesh()
                .light_line_style(RGBColor(235, 235, 235))
                .bold_line_style(RGBColor(215, 215, 215))
                .x_labels(12)
                .y_labels(5)
                .x_label_formatter(&|s| seconds(*s, axis.end_s))
                .y_label_formatter(&|v| unit.label(*v))
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(ReportError::draw)
        })?;
        Ok(chart)
    }

    /// Draws one layer with class `class` and the data attributes `attrs` (name, value).
    pub fn layer(
        &mut self,
        class: &str,
        attrs: &[(&str, String)],
        draw: impl for<'b> FnOnce(&mut Ctx<'b>) -> Result<(), ReportError>,
    ) -> Result<(), ReportError> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, self.height)).into_drawing_area();
            let mut ctx = frame(&root, self.axis, self.y.clone())?;
            draw(&mut ctx)?;
            root.present().map_err(ReportError::draw)?;
        }
        let mut g = format!("<g class=\"layer {class}\"");
        for (name, value) in attrs {
            let _ = write!(g, " data-{name}=\"{}\"", super::escape(value));
        }
        g.push('>');
        g.push_str(&svg);
        g.push_str("</g>");
        self.layers.push(g);
        Ok(())
    }

    /// Lines at every iteration's start, the warm-up iterations and settle windows shaded:
    /// `iteration-marks` (one line per iteration) and `windows`.
    pub fn iterations(&mut self, result: &RunResult) -> Result<(), ReportError> {
        let y = self.y.clone();
        let iterations = thin(&result.iterations, super::MAX_ITERATIONS_DRAWN);
        let windows: Vec<(f64, f64, bool)> = iterations
            .iter()
            .flat_map(|i| {
                let end = finite(i.after.at_s);
                let mut spans = vec![(end - finite(i.settle_s).max(0.0), end, false)];
                if i.warmup {
                    spans.push((finite(i.started_s), end, true));
                }
                spans
            })
            .collect();
        self.layer("windows", &[], |ctx| {
            ctx.draw_series(windows.iter().map(|&(from, to, warmup)| {
                let colour = if warmup {
                    RGBColor(120, 120, 120).mix(0.12)
                } else {
                    RGBColor(70, 130, 200).mix(0.10)
                };
                Rectangle::new([(from, y.start), (to, y.end)], colour.filled())
            }))
            .map_err(ReportError::draw)?;
            Ok(())
        })?;
        let y = self.y.clone();
        let starts: Vec<(u32, f64)> = iterations.iter().map(|i| (i.index, finite(i.started_s))).collect();
        self.layer("iteration-marks", &[("marks", starts.len().to_string())], |ctx| {
            ctx.draw_series(starts.iter().map(|&(_, at)| {
                PathElement::new(vec![(at, y.start), (at, y.end)], RGBColor(90, 90, 90).stroke_width(1))
            }))
            .map_err(ReportError::draw)?;
            Ok(())
        })
    }

    /// Lines at every iteration's start of one of two overlaid runs, in its colour: an
    /// `iteration-marks` layer with `data-run` set to `run` (one line per iteration).
    pub fn run_iterations(&mut self, result: &RunResult, run: &str, colour: RGBColor) -> Result<(), ReportError> {
        let y = self.y.clone();
        let starts: Vec<f64> = thin(&result.iterations, super::MAX_ITERATIONS_DRAWN)
            .iter()
            .map(|i| finite(i.started_s))
            .collect();
        let attrs = [("run", run.to_string()), ("marks", starts.len().to_string())];
        self.layer("iteration-marks", &attrs, |ctx| {
            ctx.draw_series(
                starts
                    .iter()
                    .map(|&at| PathElement::new(vec![(at, y.start), (at, y.end)], colour.mix(0.55).stroke_width(1))),
            )
            .map_err(ReportError::draw)?;
            Ok(())
        })
    }

    /// The chart as one `<svg>` holding its layers.
    pub fn finish(self) -> String {
        format!(
            "<svg class=\"chart\" data-chart=\"{}\" width=\"{WIDTH}\" height=\"{h}\" viewBox=\"0 0 {WIDTH} {h}\" xmlns=\"http://www.w3.org/2000/svg\">{}</svg>",
            super::escape(&self.name),
            self.layers.concat(),
            h = self.height
        )
    }
}

/// The coordinates every layer of a time chart is drawn in: the same margins and label areas
/// whether or not the layer draws labels, so all layers (and all charts) line up.
fn frame<'a>(root: &DrawingArea<SVGBackend<'a>, Shift>, axis: TimeAxis, y: Range<f64>) -> Result<Ctx<'a>, ReportError> {
    ChartBuilder::on(root)
        .margin_top(8)
        .margin_right(RIGHT)
        .x_label_area_size(BOTTOM)
        .y_label_area_size(LEFT)
        .build_cartesian_2d(0f64..axis.end_s, y)
        .map_err(ReportError::draw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_bound_and_the_ends() {
        let items: Vec<u32> = (0..10_000).collect();
        let kept = thin(&items, 100);
        assert!(kept.len() <= 100, "{}", kept.len());
        assert_eq!(*kept[0], 0);
        assert_eq!(**kept.last().unwrap(), 9_999);
        let few: Vec<u32> = (0..7).collect();
        assert_eq!(thin(&few, 100).len(), 7);
    }

    #[test]
    fn labels_read_as_people_write_them() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(3.5 * 1024.0 * 1024.0), "3.5 MiB");
        assert_eq!(human_count(12_345.0), "12k");
        assert_eq!(y_range(0.0, 0.0), 0.0..1.0);
    }
}
