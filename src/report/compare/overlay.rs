//! The charts of a diff report: two runs' timelines overlaid on one time axis (each from its own
//! start), each run in its own colour — the judged memory series with its after-iteration points,
//! RSS, every state series both runs hold, delivery latency p50 and p99, and churn with each run's
//! loss marks on a row of its own. Every layer carries `data-run` (`base` or `head`), so the page
//! can be read by which run a mark belongs to.

use plotters::prelude::*;

use crate::observe::sampler::Sample;
use crate::report::ReportError;
use crate::report::axis::{MAX_POINTS, TimeAxis, TimeChart, Unit, finite, thin, y_range};
use crate::results::RunResult;

/// The base run's colour.
pub const BASE: RGBColor = RGBColor(49, 110, 200);
/// The head run's colour.
pub const HEAD: RGBColor = RGBColor(225, 80, 20);

/// One of the two runs.
#[derive(Clone, Copy)]
pub struct Run<'a> {
    /// `base` or `head`.
    pub name: &'static str,
    /// Its result.
    pub result: &'a RunResult,
    /// Its colour.
    pub colour: RGBColor,
}

/// One overlaid chart with its title.
pub struct Overlay {
    /// The section it belongs to (`memory`, `state`, `churn`, `latency`).
    pub section: &'static str,
    /// Its title.
    pub title: String,
    /// What a reader should know about it, if anything.
    pub note: Option<String>,
    /// The chart.
    pub svg: String,
}

/// The two runs and the axis they share.
#[derive(Clone, Copy)]
struct Pair<'a> {
    base: Run<'a>,
    head: Run<'a>,
    axis: TimeAxis,
}

/// A line of one run.
struct Line {
    run: &'static str,
    series: String,
    colour: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// Every overlaid chart of `base` and `head`, top to bottom.
pub fn charts(base: Run<'_>, head: Run<'_>) -> Result<Vec<Overlay>, ReportError> {
    let axis = TimeAxis::spanning(TimeAxis::of(base.result), TimeAxis::of(head.result));
    let pair = Pair { base, head, axis };
    let mut out = Vec::new();
    out.extend(memory(pair)?);
    out.extend(rss(pair)?);
    out.extend(state(pair)?);
    out.extend(latency(pair)?);
    out.push(churn(pair)?);
    Ok(out)
}

/// `value` of every (thinned) timeline sample of `result`, at its time.
fn series(result: &RunResult, value: impl Fn(&Sample) -> Option<f64>) -> Vec<(f64, f64)> {
    thin(&result.timeline.samples, MAX_POINTS)
        .iter()
        .filter_map(|s| value(s).map(|v| (finite(s.at_s), v)))
        .collect()
}

/// The leak verdict judged the exact heap (else RSS).
fn judges_heap(result: &RunResult) -> bool {
    result.iterations.iter().any(|i| i.after.heap_bytes.is_some())
}

/// A chart of `lines` over both runs' iteration starts; `extra` draws more layers on it.
fn draw(
    name: &str,
    height: u32,
    unit: Unit,
    pair: Pair<'_>,
    lines: &[Line],
    extra: &[(f64, f64)],
    more: impl FnOnce(&mut TimeChart) -> Result<(), ReportError>,
) -> Result<String, ReportError> {
    let values = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(extra.iter().map(|p| p.1));
    let (min, max) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(finite(v)), hi.max(finite(v))));
    let mut chart = TimeChart::new(name, height, pair.axis, y_range(min, max), unit)?;
    for run in [pair.base, pair.head] {
        chart.run_iterations(run.result, run.name, run.colour)?;
    }
    for line in lines {
        let attrs = [
            ("run", line.run.to_string()),
            ("series", line.series.clone()),
            ("points", line.points.len().to_string()),
        ];
        chart.layer("series", &attrs, |ctx| {
            if line.dashed {
                ctx.draw_series(DashedLineSeries::new(
                    line.points.iter().copied(),
                    6,
                    4,
                    line.colour.stroke_width(1),
                ))
                .map_err(ReportError::draw)?;
            } else {
                ctx.draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    line.colour.stroke_width(2),
                ))
                .map_err(ReportError::draw)?;
            }
            Ok(())
        })?;
    }
    more(&mut chart)?;
    Ok(chart.finish())
}

/// Each run's judged memory series with its after-iteration points.
fn memory(pair: Pair<'_>) -> Result<Option<Overlay>, ReportError> {
    let Pair { base, head, .. } = pair;
    let judged = |run: Run<'_>| {
        let heap = judges_heap(run.result);
        let points = series(run.result, |s| {
            if heap {
                s.heap_bytes.map(|v| v as f64)
            } else {
                s.rss_bytes.map(|v| v as f64)
            }
        });
        let after: Vec<(f64, f64)> = thin(&run.result.iterations, crate::report::MAX_ITERATIONS_DRAWN)
            .iter()
            .filter_map(|i| {
                let v = if heap {
                    i.after.heap_bytes.map(|v| v as f64)
                } else {
                    i.after.rss_bytes.map(|v| v as f64)
                };
                v.map(|v| (finite(i.after.at_s), v))
            })
            .collect();
        (crate::report::memory::judged_name(heap), points, after)
    };
    let (b, h) = (judged(base), judged(head));
    if b.1.is_empty() && h.1.is_empty() && b.2.is_empty() && h.2.is_empty() {
        return Ok(None);
    }
    let lines = [
        Line {
            run: base.name,
            series: b.0.into(),
            colour: base.colour,
            dashed: false,
            points: b.1,
        },
        Line {
            run: head.name,
            series: h.0.into(),
            colour: head.colour,
            dashed: false,
            points: h.1,
        },
    ];
    let extra: Vec<(f64, f64)> = b.2.iter().chain(&h.2).copied().collect();
    let after = [(base, &b.2), (head, &h.2)];
    let svg = draw("memory", 280, Unit::Bytes, pair, &lines, &extra, |chart| {
        for (run, points) in after {
            let attrs = [("run", run.name.to_string()), ("marks", points.len().to_string())];
            chart.layer("after-points", &attrs, |ctx| {
                ctx.draw_series(points.iter().map(|&p| Circle::new(p, 4, run.colour.filled())))
                    .map_err(ReportError::draw)?;
                Ok(())
            })?;
        }
        Ok(())
    })?;
    let (title, note) = if b.0 == h.0 {
        (format!("Judged: {}", b.0), None)
    } else {
        (
            format!("Judged: {} (base), {} (head)", b.0, h.0),
            Some("The two runs' leak verdicts judged different series; both are drawn on one scale.".to_string()),
        )
    };
    Ok(Some(Overlay {
        section: "memory",
        title,
        note,
        svg,
    }))
}

/// Both runs' RSS, when the judged series is the heap in either (else the chart above is RSS).
fn rss(pair: Pair<'_>) -> Result<Option<Overlay>, ReportError> {
    let Pair { base, head, .. } = pair;
    if !judges_heap(base.result) && !judges_heap(head.result) {
        return Ok(None);
    }
    let lines: Vec<Line> = [base, head]
        .into_iter()
        .map(|run| Line {
            run: run.name,
            series: "rss_bytes".into(),
            colour: run.colour,
            dashed: false,
            points: series(run.result, |s| s.rss_bytes.map(|v| v as f64)),
        })
        .collect();
    if lines.iter().all(|l| l.points.is_empty()) {
        return Ok(None);
    }
    let svg = draw("memory-rss", 200, Unit::Bytes, pair, &lines, &[], |_| Ok(()))?;
    Ok(Some(Overlay {
        section: "memory",
        title: "RSS".into(),
        note: None,
        svg,
    }))
}

/// A chart per state series both runs hold.
fn state(pair: Pair<'_>) -> Result<Vec<Overlay>, ReportError> {
    let Pair { base, head, .. } = pair;
    let (theirs, _) = crate::report::state::names(head.result);
    let (ours, _) = crate::report::state::names(base.result);
    let mut out = Vec::new();
    for (name, judged) in ours.into_iter().filter(|n| theirs.contains(n)) {
        let lines: Vec<Line> = [base, head]
            .into_iter()
            .map(|run| Line {
                run: run.name,
                series: name.clone(),
                colour: run.colour,
                dashed: false,
                points: series(run.result, |s| {
                    let map = if judged { &s.state } else { &s.info };
                    map.get(&name).map(|&v| v as f64)
                }),
            })
            .collect();
        let svg = draw(
            &format!("state:{name}"),
            130,
            Unit::Count,
            pair,
            &lines,
            &[],
            |_| Ok(()),
        )?;
        out.push(Overlay {
            section: "state",
            title: format!(
                "{name} ({})",
                if judged {
                    "judged: must return to its start"
                } else {
                    "for reference"
                }
            ),
            note: None,
            svg,
        });
    }
    Ok(out)
}

/// Delivery latency p50 (dashed) and p99 of both runs.
fn latency(pair: Pair<'_>) -> Result<Option<Overlay>, ReportError> {
    let Pair { base, head, .. } = pair;
    let mut lines = Vec::new();
    for run in [base, head] {
        let windows = thin(&run.result.delivery_timeline, MAX_POINTS);
        let mid = |w: &crate::observe::latency::LatencyWindow| finite(w.at_s) + finite(w.width_s) / 2.0;
        for (name, dashed, value) in [
            (
                "p50",
                true,
                (|w| w.p50_us) as fn(&crate::observe::latency::LatencyWindow) -> u64,
            ),
            ("p99", false, |w| w.p99_us),
        ] {
            lines.push(Line {
                run: run.name,
                series: name.into(),
                colour: run.colour,
                dashed,
                points: windows.iter().map(|w| (mid(w), value(w) as f64 / 1000.0)).collect(),
            });
        }
    }
    if lines.iter().all(|l| l.points.is_empty()) {
        return Ok(None);
    }
    let svg = draw("latency", 220, Unit::Millis, pair, &lines, &[], |_| Ok(()))?;
    Ok(Some(Overlay {
        section: "latency",
        title: "Delivery, all rooms, per window of receipt time".into(),
        note: Some("Solid: p99, dashed: p50.".into()),
        svg,
    }))
}

/// Connects (up) and disconnects (down) per second of both runs, and each run's loss marks on a
/// row of its own in its colour.
fn churn(pair: Pair<'_>) -> Result<Overlay, ReportError> {
    let Pair { base, head, axis } = pair;
    let mut lines = Vec::new();
    for run in [base, head] {
        let (ups, downs) = crate::report::churn::rates(run.result, axis);
        for (series, points) in [("connects", ups), ("disconnects", downs)] {
            lines.push(Line {
                run: run.name,
                series: series.into(),
                colour: run.colour,
                dashed: series == "disconnects",
                points,
            });
        }
    }
    // At least ±1 per second, so an idle run still has a band to put marks in.
    let extra = [(0.0, 1.0), (0.0, -1.0)];
    let values = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(extra.iter().map(|p| p.1));
    let (min, max) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let y = y_range(min, max);
    let svg = draw("churn", 220, Unit::Count, pair, &lines, &extra, |chart| {
        for (run, row) in [(base, 0.92), (head, 0.82)] {
            let records = thin(&run.result.losses.records, crate::report::churn::MAX_LOSS_MARKS);
            let at_y = y.start + (y.end - y.start) * row;
            let attrs = [("run", run.name.to_string()), ("marks", records.len().to_string())];
            chart.layer("loss-marks", &attrs, |ctx| {
                ctx.draw_series(
                    records
                        .iter()
                        .map(|r| TriangleMarker::new((finite(r.at_s), at_y), 5, run.colour.filled())),
                )
                .map_err(ReportError::draw)?;
                Ok(())
            })?;
        }
        Ok(())
    })?;
    let lost = |run: Run<'_>| run.result.losses.records.len();
    Ok(Overlay {
        section: "churn",
        title: "Connects and disconnects per second, and every kept loss".into(),
        note: Some(format!(
            "Solid above zero: connects, dashed below: disconnects. Triangles: loss records, base's on the top row ({}), head's below ({}).",
            lost(base),
            lost(head)
        )),
        svg,
    })
}
