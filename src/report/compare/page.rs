//! The page of a diff report: the verdict changes first (in the words `leakrun diff` prints), the
//! figures that moved, the two runs side by side (file, status, verdict lines), then the overlaid
//! charts with a legend naming base and head. Inline CSS, no script, nothing fetched.

use std::fmt::Write as _;

use super::overlay::{BASE, HEAD, Overlay};
use super::{Compared, Side};
use crate::report::escape;
use crate::report::page::{CSS, legend};
use crate::results::Status;

/// Extra style for the diff page.
const DIFF_CSS: &str = "
.verdict[data-worse=true] { border-color: #c92a2a; background: #fdf3f3; }
.verdict[data-worse=false] { border-color: #2b8a3e; }
.runs td, .runs th { font-size: 0.82em; padding: 2px 10px 2px 0; vertical-align: top; text-align: left; }
.runs td.lines { font-family: ui-monospace, monospace; white-space: pre-wrap; }
.baseline { border-left: 4px solid #e67700; background: #fff8ec; padding: 4px 8px; margin: 10px 0; font-size: 0.88em; }
";

/// The whole document.
pub fn document(compared: &Compared, charts: &[Overlay]) -> String {
    let diff = &compared.diff;
    let iterations = |side: &Side| match side {
        Side::Result(r) => r.iterations.len().to_string(),
        Side::Baseline(_) => "baseline".into(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>leakrun diff: {name}</title><style>{CSS}{DIFF_CSS}</style></head>\n<body data-base-iterations=\"{}\" data-head-iterations=\"{}\">",
        iterations(&compared.base),
        iterations(&compared.head),
        name = escape(&diff.scenario)
    );
    let _ = write!(
        out,
        "<header><h1>{} <small>base → head</small></h1><p><code>{}</code> → <code>{}</code></p>",
        escape(&diff.scenario),
        escape(&diff.base_file),
        escape(&diff.head_file)
    );
    out.push_str(&legend(&[(BASE, "base"), (HEAD, "head")]));
    out.push_str("</header>\n<section id=\"verdict-changes\"><h2>Verdict changes</h2><ul class=\"verdicts\">");
    if diff.verdicts.is_empty() {
        out.push_str("<li class=\"verdict\">verdicts: unchanged</li>");
    }
    for v in &diff.verdicts {
        let _ = write!(
            out,
            "<li class=\"verdict verdict-change\" data-verdict=\"{}\" data-worse=\"{}\">{} {}: {} → {}: {}</li>",
            escape(&v.verdict),
            v.worse,
            if v.worse { "WORSE" } else { "better" },
            escape(&v.verdict),
            escape(&v.base),
            escape(&v.head),
            escape(&v.detail)
        );
    }
    out.push_str("</ul></section>\n");
    figures(&mut out, compared);
    runs(&mut out, compared);
    baseline_note(&mut out, compared);
    let mut section = "";
    for chart in charts {
        if chart.section != section {
            if !section.is_empty() {
                out.push_str("</section>\n");
            }
            section = chart.section;
            let heading = match section {
                "memory" => "Memory",
                "state" => "State",
                "churn" => "Churn and losses",
                _ => "Latency",
            };
            let _ = write!(out, "<section id=\"{section}\"><h2>{heading}</h2>");
        }
        let _ = write!(out, "<h3>{}</h3>{}", escape(&chart.title), chart.svg);
        out.push_str(&legend(&[(BASE, "base"), (HEAD, "head")]));
        if let Some(note) = &chart.note {
            let _ = write!(out, "<p class=\"note\">{}</p>", escape(note));
        }
    }
    if !section.is_empty() {
        out.push_str("</section>\n");
    }
    out.push_str("</body></html>\n");
    out
}

fn figures(out: &mut String, compared: &Compared) {
    let diff = &compared.diff;
    out.push_str("<section id=\"figures\"><h2>Figures that moved</h2>");
    if diff.figures.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"note\">None moved more than {:.0}%.</p></section>",
            diff.tolerance * 100.0
        );
        return;
    }
    out.push_str("<table class=\"small\"><tr><th>figure</th><th>base</th><th>head</th><th>change</th><th></th></tr>");
    for f in &diff.figures {
        let change = if f.relative.is_infinite() {
            "new".to_string()
        } else {
            format!("{:+.1}%", f.relative * 100.0)
        };
        let _ = write!(
            out,
            "<tr class=\"figure\" data-regression=\"{}\"><td>{}</td><td>{} {}</td><td>{} {}</td><td>{change}</td><td>{}</td></tr>",
            f.regression,
            escape(&f.figure),
            number(f.base),
            escape(&f.unit),
            number(f.head),
            escape(&f.unit),
            if f.regression { "worse" } else { "" }
        );
    }
    let _ = writeln!(
        out,
        "</table><p class=\"note\">Figures past a {:.0}% change and their noise floor, as <code>leakrun diff</code> reports them.</p></section>",
        diff.tolerance * 100.0
    );
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// The two runs side by side: file, status, the verdict lines.
fn runs(out: &mut String, compared: &Compared) {
    out.push_str("<section id=\"runs\"><h2>The two runs</h2><table class=\"runs\"><tr><th>run</th><th>file</th><th>status</th><th>verdicts</th></tr>");
    let diff = &compared.diff;
    for (name, colour, file, side) in [
        ("base", BASE, &diff.base_file, &compared.base),
        ("head", HEAD, &diff.head_file, &compared.head),
    ] {
        let (status, lines) = match side {
            Side::Result(r) => (
                format!(
                    "{} — {} iteration(s) in {:.1}s, {}",
                    status_word(r.status),
                    r.iterations.len(),
                    r.elapsed_s,
                    r.started_at
                ),
                r.verdicts
                    .as_ref()
                    .map_or_else(|| "no verdicts".to_string(), |v| v.lines().join("\n")),
            ),
            Side::Baseline(s) => (
                format!("{} (a baseline)", status_word(s.status)),
                s.verdicts.as_ref().map_or_else(
                    || "no verdicts".to_string(),
                    |v| {
                        [
                            ("gaps", outcome(&v.gaps.outcome), &v.gaps.detail),
                            ("latency", outcome(&v.latency.outcome), &v.latency.detail),
                            ("leak", outcome(&v.leak.outcome), &v.leak.detail),
                        ]
                        .iter()
                        .map(|(n, o, d)| format!("{n}: {o}: {d}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                    },
                ),
            ),
        };
        let plotters::style::RGBColor(r, g, b) = colour;
        let _ = write!(
            out,
            "<tr data-run=\"{name}\"><td><span class=\"swatch\" style=\"background:rgb({r},{g},{b})\"></span>{name}</td><td><code>{}</code></td><td>{}</td><td class=\"lines\">{}</td></tr>",
            escape(file),
            escape(&status),
            escape(&lines)
        );
    }
    out.push_str("</table></section>\n");
}

/// What a baseline on either side means for the page.
fn baseline_note(out: &mut String, compared: &Compared) {
    let sides: Vec<&str> = [("base", &compared.base), ("head", &compared.head)]
        .into_iter()
        .filter(|(_, side)| side.result().is_none())
        .map(|(name, _)| name)
        .collect();
    if sides.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<p class=\"baseline\" data-baseline=\"{}\">The {} is a baseline (from <code>leakrun baseline</code>): it keeps the verdicts and the figures that mean the same on any machine, not a timeline. This page compares verdicts and figures only; there are no timelines to overlay.</p>",
        sides.join(" "),
        sides.join(" and the ")
    );
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Pass => "PASS",
        Status::Fail => "FAIL",
        Status::Error => "ERROR",
        Status::Interrupted => "INTERRUPTED",
    }
}

/// An outcome's name as the result spells it.
fn outcome<T: serde::Serialize>(outcome: &T) -> String {
    serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
