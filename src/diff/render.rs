//! `diff` output for people: text for a terminal, Markdown for a pull request or a job summary.

use super::Diff;

/// The diff as text for a terminal.
pub fn render_text(diff: &Diff) -> String {
    let mut out = format!("{}: {} → {}\n", diff.scenario, diff.base_file, diff.head_file);
    if diff.verdicts.is_empty() {
        out.push_str("verdicts: unchanged\n");
    }
    for v in &diff.verdicts {
        out.push_str(&format!(
            "{} {}: {} → {}: {}\n",
            if v.worse { "WORSE " } else { "better" },
            v.verdict,
            v.base,
            v.head,
            v.detail
        ));
    }
    if diff.figures.is_empty() {
        out.push_str(&format!(
            "figures: none moved more than {:.0}%\n",
            diff.tolerance * 100.0
        ));
    }
    for f in &diff.figures {
        out.push_str(&format!(
            "{} {}: {} → {} {} ({})\n",
            if f.regression { "WORSE " } else { "      " },
            f.figure,
            number(f.base),
            number(f.head),
            f.unit,
            percent(f.relative)
        ));
    }
    out
}

/// The diff as Markdown, for a pull request comment or a job summary.
pub fn render_markdown(diff: &Diff) -> String {
    let mut out = format!(
        "### leakrun diff: `{}`\n\n`{}` → `{}`\n\n",
        diff.scenario, diff.base_file, diff.head_file
    );
    if diff.verdicts.is_empty() {
        out.push_str("Verdicts unchanged.\n\n");
    } else {
        out.push_str("| verdict | base | head | |\n|---|---|---|---|\n");
        for v in &diff.verdicts {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                v.verdict,
                v.base,
                v.head,
                if v.worse { "❌ worse" } else { "✅ better" }
            ));
        }
        out.push('\n');
        for v in diff.verdicts.iter().filter(|v| v.worse) {
            out.push_str(&format!("- **{}**: {}\n", v.verdict, v.detail.replace('|', "\\|")));
        }
        out.push('\n');
    }
    if diff.figures.is_empty() {
        out.push_str(&format!("No figure moved more than {:.0}%.\n", diff.tolerance * 100.0));
    } else {
        out.push_str("| figure | base | head | change | |\n|---|---|---|---|---|\n");
        for f in &diff.figures {
            out.push_str(&format!(
                "| {} | {} {} | {} {} | {} | {} |\n",
                f.figure,
                number(f.base),
                f.unit,
                number(f.head),
                f.unit,
                percent(f.relative),
                if f.regression { "❌" } else { "" }
            ));
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

fn percent(relative: f64) -> String {
    if relative.is_infinite() {
        "new".into()
    } else {
        format!("{:+.1}%", relative * 100.0)
    }
}
