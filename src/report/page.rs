//! The page around the charts: the verdict lines and the scenario at the top, a section per
//! chart group with its legend, and the scenario as resolved at the end. One HTML file with its
//! CSS inline and no script: nothing is fetched, so it reads the same offline and as a CI
//! artifact.

use std::fmt::Write as _;

use plotters::style::RGBColor;

use super::{Charts, MAX_ITERATIONS_DRAWN, escape};
use crate::results::{RunResult, Status};

/// Most characters of the resolved scenario shown.
const MAX_SCENARIO_TEXT: usize = 64 * 1024;

/// The style sheet of every report page, inline.
pub const CSS: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px auto; max-width: 1000px; color: #222; background: #fff; }
h1 { font-size: 1.5em; margin: 0 0 4px; }
h2 { font-size: 1.15em; margin: 28px 0 6px; border-bottom: 1px solid #ddd; padding-bottom: 3px; }
h3 { font-size: 0.95em; margin: 10px 0 2px; font-weight: 600; }
.status { display: inline-block; padding: 1px 10px; border-radius: 10px; font-weight: 700; color: #fff; margin-left: 8px; font-size: 0.8em; vertical-align: middle; }
.status.pass { background: #2b8a3e; } .status.fail { background: #c92a2a; } .status.error, .status.interrupted { background: #e67700; }
.verdicts { list-style: none; padding: 0; margin: 10px 0; font-family: ui-monospace, monospace; font-size: 0.88em; }
.verdict { padding: 3px 8px; margin: 2px 0; border-left: 4px solid #2b8a3e; background: #f4faf5; white-space: pre-wrap; }
.verdict[data-met=false] { border-color: #c92a2a; background: #fdf3f3; }
.facts { border-collapse: collapse; font-size: 0.85em; }
.facts td { padding: 1px 12px 1px 0; vertical-align: top; } .facts td:first-child { color: #666; }
.legend { list-style: none; padding: 0; margin: 2px 0 0 72px; font-size: 0.8em; color: #444; }
.legend li { display: inline-block; margin-right: 16px; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; border-radius: 2px; }
.note { font-size: 0.82em; color: #555; margin: 2px 0 0 72px; }
svg.chart { display: block; }
.small td, .small th { font-size: 0.82em; padding: 1px 10px 1px 0; text-align: right; } .small th:first-child, .small td:first-child { text-align: left; }
pre.scenario { font-size: 0.78em; background: #f6f6f6; padding: 8px; overflow-x: auto; }
.error { color: #c92a2a; font-weight: 600; }
";

/// A legend: a colour swatch and words per entry.
pub fn legend(items: &[(RGBColor, &str)]) -> String {
    let mut out = String::from("<ul class=\"legend\">");
    for (RGBColor(r, g, b), label) in items {
        let _ = write!(
            out,
            "<li><span class=\"swatch\" style=\"background:rgb({r},{g},{b})\"></span>{}</li>",
            escape(label)
        );
    }
    out.push_str("</ul>");
    out
}

/// The whole document.
pub fn document(result: &RunResult, charts: &Charts) -> String {
    let name = escape(&result.scenario.name);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>leakrun: {name}</title><style>{CSS}</style></head>\n<body data-iterations=\"{}\" data-loss-records=\"{}\">\n",
        result.iterations.len(),
        result.losses.records.len()
    );
    header(&mut out, result);
    if let Some(memory) = &charts.memory {
        let judged = super::memory::judged_name(result.iterations.iter().any(|i| i.after.heap_bytes.is_some()));
        let _ = write!(
            out,
            "<section id=\"memory\"><h2>Memory</h2><h3>Judged: <code>{judged}</code></h3>{}{}<p class=\"note\">Dots: after each iteration's settle (hollow: warm-up). Grey: warm-up, blue: settle windows, lines: iteration starts.{}</p>{}</section>",
            memory.judged,
            legend(&[
                (super::memory::RSS, "RSS"),
                (super::memory::HEAP, "live heap"),
                (RGBColor(0, 0, 0), "fitted slope"),
                (RGBColor(110, 110, 110), "threshold slope (dashed)"),
            ]),
            result
                .target
                .as_ref()
                .map(|t| format!(" RSS: {}.", escape(&t.memory_source)))
                .unwrap_or_default(),
            memory.both.as_ref().map_or_else(String::new, |both| format!(
                "<h3>RSS and the live heap</h3>{both}{}",
                legend(&[
                    (super::memory::RSS, "RSS"),
                    (super::memory::HEAP, "live heap"),
                    (RGBColor(240, 200, 190), "retention: RSS above the heap"),
                ])
            ))
        );
    }
    if !charts.state.is_empty() {
        out.push_str("<section id=\"state\"><h2>State</h2>");
        for chart in &charts.state {
            let kind = if chart.judged {
                "judged: must return to its start"
            } else {
                "for reference"
            };
            let _ = write!(
                out,
                "<h3>{} <small>({kind})</small></h3>{}",
                escape(&chart.name),
                chart.svg
            );
        }
        if charts.state_total > charts.state.len() {
            let _ = write!(
                out,
                "<p class=\"note\">{} more series not drawn.</p>",
                charts.state_total - charts.state.len()
            );
        }
        out.push_str("</section>\n");
    }
    churn(&mut out, result, charts);
    latency(&mut out, result, charts);
    if !charts.http.is_empty() {
        out.push_str("<section id=\"http\"><h2>HTTP</h2>");
        let routes = super::http::routes(result);
        let items: Vec<(RGBColor, &str)> = routes
            .iter()
            .enumerate()
            .map(|(n, r)| (super::http::colour(n), r.as_str()))
            .collect();
        for (title, svg) in &charts.http {
            let _ = write!(out, "<h3>{title}, per iteration</h3>{svg}");
        }
        out.push_str(&legend(&items));
        out.push_str("</section>\n");
    }
    if let Some(sites) = &charts.sites {
        let _ = write!(
            out,
            "<section id=\"sites\"><h2>Allocation sites that grew</h2>{sites}<p class=\"note\">Live bytes added per iteration, largest first.</p></section>"
        );
    }
    scenario(&mut out, result);
    out.push_str("</body></html>\n");
    out
}

fn header(out: &mut String, result: &RunResult) {
    let (class, word) = match result.status {
        Status::Pass => ("pass", "PASS"),
        Status::Fail => ("fail", "FAIL"),
        Status::Error => ("error", "ERROR"),
        Status::Interrupted => ("interrupted", "INTERRUPTED"),
    };
    let _ = write!(
        out,
        "<header><h1>{}<span class=\"status {class}\">{word}</span></h1><p>{}</p>",
        escape(&result.scenario.name),
        escape(&result.scenario.resolved.description)
    );
    if let Some(error) = &result.error {
        let _ = write!(out, "<p class=\"error\">{}</p>", escape(error));
    }
    out.push_str("<ul class=\"verdicts\">");
    if let Some(v) = &result.verdicts {
        for (name, met, line) in [
            ("gaps", v.gaps.met, &v.lines()[0]),
            ("latency", v.latency.met, &v.lines()[1]),
            ("leak", v.leak.met, &v.lines()[2]),
        ] {
            let _ = write!(
                out,
                "<li class=\"verdict\" data-verdict=\"{name}\" data-met=\"{met}\">{}</li>",
                escape(line)
            );
        }
    } else {
        out.push_str("<li class=\"verdict\" data-met=\"false\">no verdicts: no iteration completed</li>");
    }
    out.push_str("</ul><table class=\"facts\">");
    let s = &result.scenario;
    let target = result.target.as_ref();
    let rows = [
        (
            "scenario",
            format!("{} (sha256 {})", s.file, s.hash.chars().take(12).collect::<String>()),
        ),
        (
            "server",
            target.map_or_else(String::new, |t| match &t.command {
                Some(c) => format!("{}: {c}", t.kind),
                None => format!("{} (pid {})", t.kind, t.pid),
            }),
        ),
        ("backend", format!("{} {}", result.backend.kind, result.backend.version)),
        (
            "ran",
            format!(
                "{} iteration(s), {:.1}s, from {} to {}",
                result.iterations.len(),
                result.elapsed_s,
                result.started_at,
                result.finished_at
            ),
        ),
        (
            "written by",
            format!(
                "{} {} (result schema {})",
                result.tool.name, result.tool.version, result.schema_version
            ),
        ),
    ];
    for (key, value) in rows {
        if !value.is_empty() {
            let _ = write!(out, "<tr><td>{key}</td><td>{}</td></tr>", escape(&value));
        }
    }
    out.push_str("</table>");
    if result.iterations.len() > MAX_ITERATIONS_DRAWN {
        let _ = write!(
            out,
            "<p class=\"note\">{} iterations; {MAX_ITERATIONS_DRAWN} of them are drawn, evenly spread.</p>",
            result.iterations.len()
        );
    }
    out.push_str("</header>\n");
}

fn churn(out: &mut String, result: &RunResult, charts: &Charts) {
    let _ = write!(out, "<section id=\"churn\"><h2>Churn and losses</h2>{}", charts.churn);
    // The loss marks' legend names the groups this result has: a mark per kind and cause.
    let groups: Vec<_> = super::churn::MARK_GROUPS
        .into_iter()
        .filter(|&group| result.losses.records.iter().any(|r| super::churn::group_of(r) == group))
        .map(|(kind, cause)| {
            (
                super::churn::mark_style(kind, cause).0,
                super::churn::mark_label(kind, cause),
            )
        })
        .collect();
    let mut items = vec![
        (super::churn::CONNECT, "connects per second"),
        (super::churn::DISCONNECT, "disconnects per second (below zero)"),
    ];
    items.extend(groups.iter().map(|(colour, label)| (*colour, label.as_str())));
    out.push_str(&legend(&items));
    let log = &result.losses;
    let _ = write!(
        out,
        "<p class=\"note\">{} loss record(s) marked, of {} found{}. {} churn event(s){}.",
        charts.loss_marks,
        log.total_records,
        if log.truncated {
            " (the result keeps the earliest)"
        } else {
            ""
        },
        result.events.events.len(),
        if result.events.not_kept > 0 {
            format!(", {} more counted only", result.events.not_kept)
        } else {
            String::new()
        }
    );
    if let Some(v) = &result.verdicts {
        let g = &v.gaps;
        let _ = write!(
            out,
            " Causes: {} while healthy, {} under backlog. Missed by every receiver: {}, some: {}, one: {}.",
            g.causes.while_healthy, g.causes.under_backlog, g.missed_by.every, g.missed_by.some, g.missed_by.one
        );
        if let Some((share, random)) = g.signature.after_disconnect_shares() {
            let _ = write!(
                out,
                " {:.0}% of losses were meant to be sent just after a disconnect (random times: {:.0}%).",
                share * 100.0,
                random * 100.0
            );
        }
    }
    out.push_str("</p></section>\n");
}

fn latency(out: &mut String, result: &RunResult, charts: &Charts) {
    out.push_str("<section id=\"latency\"><h2>Latency</h2>");
    if let Some(svg) = &charts.latency {
        let _ = write!(
            out,
            "<h3>Delivery, all rooms, per window of receipt time</h3>{svg}{}",
            legend(&[
                (super::latency::P50, "p50"),
                (super::latency::P99, "p99"),
                (RGBColor(150, 150, 150), "limits (dashed)"),
            ])
        );
    }
    if let Some(svg) = &charts.latency_rooms {
        let rooms: Vec<(RGBColor, &str)> = result
            .delivery_timeline_per_room
            .iter()
            .take(super::latency::MAX_ROOMS)
            .filter(|room| !room.windows.is_empty())
            .enumerate()
            .map(|(n, room)| (super::latency::room_colour(n), room.room.as_str()))
            .collect();
        let mut keys = rooms;
        if result.scenario.resolved.thresholds.delivery.p99.is_some() {
            keys.push((super::latency::P99, "p99 limit (dashed)"));
        }
        let _ = write!(
            out,
            "<h3>Delivery p99 per room, per window of receipt time</h3>{svg}{}",
            legend(&keys)
        );
    }
    if let Some(svg) = &charts.connect {
        let _ = write!(
            out,
            "<h3>Connect (TCP and handshake), per window of the moment it was made</h3>{svg}{}",
            legend(
                &[
                    (super::latency::P50, "p50"),
                    (super::latency::P99, "p99"),
                    (super::latency::P99, "p99 limit (dashed)"),
                ][..if result.scenario.resolved.thresholds.connect_p99.is_some() {
                    3
                } else {
                    2
                }]
            )
        );
    }
    if let Some(v) = &result.verdicts {
        out.push_str("<table class=\"small\"><tr><th>delivery</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
        let row = |out: &mut String, name: &str, s: &crate::observe::latency::LatencySummary| {
            let ms = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(name),
                s.count,
                ms(s.p50_us),
                ms(s.p90_us),
                ms(s.p99_us),
                ms(s.p999_us),
                ms(s.max_us)
            );
        };
        for room in v.latency.delivery.iter().take(64) {
            row(out, &format!("room {}", room.room), &room.delivery);
        }
        row(out, "connect (handshake)", &v.latency.connect);
        // leakrun's own lateness, which every delivery latency above includes.
        for room in v.latency.delivery.iter().take(64).filter(|r| r.send_lag.count > 0) {
            row(out, &format!("send lag, room {}", room.room), &room.send_lag);
        }
        out.push_str("</table>");
    }
    out.push_str("</section>\n");
}

fn scenario(out: &mut String, result: &RunResult) {
    let mut text = serde_json::to_string_pretty(&result.scenario.resolved).unwrap_or_default();
    if text.len() > MAX_SCENARIO_TEXT {
        let mut cut = MAX_SCENARIO_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n…");
    }
    let _ = write!(
        out,
        "<section id=\"scenario\"><h2>Scenario</h2><details><summary>As resolved (defaults filled in)</summary><pre class=\"scenario\">{}</pre></details></section>",
        escape(&text)
    );
}
