//! `index.html` of a folder run: every scenario with its verdicts as the end-of-run table shows
//! them (an outcome marked `!` when it is not what the scenario expects), its status and time,
//! linking by a relative address to its report beside it. Inline CSS, no script, nothing fetched,
//! so the results folder can be opened or attached as it is.

use std::fmt::Write as _;

use super::escape;
use super::page::CSS;
use crate::results::{RunResult, Status};

/// One scenario of a folder run.
pub struct Entry<'a> {
    /// The scenario file.
    pub file: &'a str,
    /// Its result, when one was written.
    pub result: Option<&'a RunResult>,
    /// Why there is no result.
    pub error: Option<&'a str>,
    /// The report's file name in the results folder, when there is one.
    pub report: Option<String>,
}

/// Extra style for the index.
const INDEX_CSS: &str = "
table.index { border-collapse: collapse; font-size: 0.88em; margin-top: 10px; }
table.index th, table.index td { padding: 3px 12px 3px 0; text-align: left; border-bottom: 1px solid #eee; }
td[data-met=false] { color: #c92a2a; font-weight: 600; }
td.status.pass { color: #2b8a3e; font-weight: 700; } td.status.fail { color: #c92a2a; font-weight: 700; }
td.status.error, td.status.interrupted { color: #e67700; font-weight: 700; }
";

/// The index page of `entries`.
pub fn document(entries: &[Entry<'_>]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>leakrun: {} scenario(s)</title><style>{CSS}{INDEX_CSS}</style></head>\n<body data-scenarios=\"{}\">\n<header><h1>leakrun: {} scenario(s)</h1><p class=\"note\">An outcome marked <b>!</b> is not what the scenario expects.</p></header>",
        entries.len(),
        entries.len(),
        entries.len()
    );
    out.push_str("<table class=\"index\"><tr><th>scenario</th><th>file</th><th>backend</th><th>gaps</th><th>latency</th><th>leak</th><th>expected</th><th>status</th><th>time</th><th>report</th></tr>\n");
    for entry in entries {
        row(&mut out, entry);
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

fn row(out: &mut String, entry: &Entry<'_>) {
    let Some(r) = entry.result else {
        let _ = writeln!(
            out,
            "<tr class=\"scenario\" data-status=\"error\"><td>-</td><td><code>{}</code></td><td colspan=\"5\" class=\"error\">{}</td><td class=\"status error\">error</td><td>-</td><td>-</td></tr>",
            escape(entry.file),
            escape(entry.error.unwrap_or("no result"))
        );
        return;
    };
    let (class, word, expected) = match r.status {
        Status::Pass => ("pass", "PASS", "yes"),
        Status::Fail => ("fail", "FAIL", "NO"),
        Status::Error => ("error", "ERROR", "error"),
        Status::Interrupted => ("interrupted", "INTERRUPTED", "interrupted"),
    };
    let _ = write!(
        out,
        "<tr class=\"scenario\" data-scenario=\"{}\" data-status=\"{class}\"><td>{}</td><td><code>{}</code></td><td>{}</td>",
        escape(&r.scenario.name),
        escape(&r.scenario.name),
        escape(entry.file),
        escape(&r.backend.kind)
    );
    match &r.verdicts {
        Some(v) => {
            for (name, outcome, met) in [
                ("gaps", name(&v.gaps.outcome), v.gaps.met),
                ("latency", name(&v.latency.outcome), v.latency.met),
                ("leak", name(&v.leak.outcome), v.leak.met),
            ] {
                let _ = write!(
                    out,
                    "<td class=\"verdict-cell\" data-verdict=\"{name}\" data-met=\"{met}\">{}{}</td>",
                    escape(&outcome),
                    if met { "" } else { " !" }
                );
            }
        }
        None => out.push_str("<td>-</td><td>-</td><td>-</td>"),
    }
    let link = entry.report.as_ref().map_or_else(
        || "-".to_string(),
        |file| format!("<a href=\"{}\">report</a>", escape(&href(file))),
    );
    let _ = writeln!(
        out,
        "<td>{expected}</td><td class=\"status {class}\">{word}</td><td>{:.1}s</td><td>{link}</td></tr>",
        r.elapsed_s
    );
}

/// A file name as a relative address: every byte but letters, digits, `.`, `_` and `-`
/// percent-encoded, so a name can only ever point at a file beside the index.
fn href(file: &str) -> String {
    let mut out = String::new();
    for b in file.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    if out.starts_with('.') {
        out.insert_str(0, "./");
    }
    out
}

/// An outcome's name as the result spells it.
fn name<T: serde::Serialize>(outcome: &T) -> String {
    serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_address_stays_beside_the_index() {
        assert_eq!(href("membership_leak.html"), "membership_leak.html");
        assert_eq!(href("../x y.html"), "./..%2Fx%20y.html");
    }
}
