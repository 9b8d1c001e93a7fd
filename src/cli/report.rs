//! What a multi-scenario run reports at the end: one table for people, and JUnit XML for any CI's
//! test view (a test case per scenario and verdict).

use std::path::Path;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::results::{RunResult, Status};

/// One finished scenario, as the table and the JUnit report need it.
pub struct Finished {
    /// Scenario file.
    pub file: String,
    /// The result, when one was written.
    pub result: Option<RunResult>,
    /// Why there is no result.
    pub error: Option<String>,
}

/// The end-of-run table: scenario, backend, each verdict (marked `!` when it is not what the
/// scenario expects), whether everything met the expectation, and the time taken.
pub fn table(finished: &[Finished]) -> String {
    let mut rows = vec![[
        "scenario".to_string(),
        "backend".into(),
        "gaps".into(),
        "latency".into(),
        "leak".into(),
        "expected".into(),
        "time".into(),
    ]];
    for f in finished {
        let Some(r) = &f.result else {
            rows.push([
                f.file.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "error".into(),
                "-".into(),
            ]);
            continue;
        };
        let cell = |outcome: String, met: bool| if met { outcome } else { format!("{outcome} !") };
        let (gaps, latency, leak) = match &r.verdicts {
            Some(v) => (
                cell(name(&v.gaps.outcome), v.gaps.met),
                cell(name(&v.latency.outcome), v.latency.met),
                cell(name(&v.leak.outcome), v.leak.met),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let expected = match r.status {
            Status::Pass => "yes",
            Status::Fail => "NO",
            Status::Error => "error",
            Status::Interrupted => "interrupted",
        };
        rows.push([
            r.scenario.name.clone(),
            r.backend.kind.clone(),
            gaps,
            latency,
            leak,
            expected.into(),
            format!("{:.1}s", r.elapsed_s),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|row| row[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn name<T: serde::Serialize>(outcome: &T) -> String {
    serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Writes the JUnit report: one test suite per scenario, one test case per verdict; a verdict not
/// as expected is a failure, a run that could not finish is an error.
pub fn write_junit(path: &Path, finished: &[Finished]) -> anyhow::Result<()> {
    let mut report = Report::new("leakrun");
    for f in finished {
        let mut suite = TestSuite::new(
            f.result
                .as_ref()
                .map(|r| r.scenario.name.clone())
                .unwrap_or_else(|| f.file.clone()),
        );
        match &f.result {
            Some(r) if matches!(r.status, Status::Error | Status::Interrupted) || r.verdicts.is_none() => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                status.set_message(r.error.clone().unwrap_or_else(|| format!("run {:?}", r.status)));
                let mut case = TestCase::new("run", status);
                case.set_classname(&f.file);
                suite.add_test_case(case);
            }
            Some(r) => {
                if let Some(v) = &r.verdicts {
                    for (verdict, met, summary) in [
                        ("gaps", v.gaps.met, &v.gaps.summary),
                        ("latency", v.latency.met, &v.latency.summary),
                        ("leak", v.leak.met, &v.leak.summary),
                    ] {
                        let status = if met {
                            TestCaseStatus::success()
                        } else {
                            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                            s.set_message(summary.as_str());
                            s
                        };
                        let mut case = TestCase::new(verdict, status);
                        case.set_classname(&f.file);
                        case.set_system_out(summary.as_str());
                        suite.add_test_case(case);
                    }
                }
            }
            None => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                status.set_message(f.error.clone().unwrap_or_default());
                suite.add_test_case(TestCase::new("run", status));
            }
        }
        report.add_test_suite(suite);
    }
    use anyhow::Context as _;
    let text = report.to_string().context("cannot write JUnit XML")?;
    crate::results::write::atomic(path, text.as_bytes()).with_context(|| path.display().to_string())
}
