//! The HTML pages the command line writes: `leakrun report` (one result, or the diff of two) and
//! a folder run's `index.html`. Which failures are the input's (exit 2) and which the machine's
//! (exit 3) is decided here.

use std::path::Path;

use crate::exit::Exit;

/// `leakrun report`: a bad or foreign result is a usage error (2); a report that cannot be
/// written is the machine's (3).
pub fn write_report(result: &Path, output: Option<&Path>) -> Exit {
    let run = match crate::report::read(result) {
        Ok(run) => run,
        Err(error) => {
            eprintln!("error: {error}");
            return if error.is_bad_input() {
                Exit::Usage
            } else {
                Exit::Infrastructure
            };
        }
    };
    let path = output.map_or_else(|| crate::report::path_beside(result), Path::to_path_buf);
    if let Err(exit) = output_folder(&path) {
        return exit;
    }
    written(&path, crate::report::write(&path, &run))
}

/// `leakrun report BASE HEAD`: refused as `leakrun diff` refuses (exit 2); written, exit 0 —
/// `leakrun diff` is the gate, this is the picture.
pub fn write_diff_report(base: &Path, head: &Path, output: Option<&Path>, tolerance: f64) -> Exit {
    if !(tolerance.is_finite() && tolerance >= 0.0) {
        eprintln!("error: --tolerance {tolerance}: valid: a relative change of 0 or more, e.g. 0.1 for 10%");
        return Exit::Usage;
    }
    let compared = match crate::report::compare::read(base, head, tolerance) {
        Ok(compared) => compared,
        Err(error) => {
            eprintln!("error: {error}");
            return if error.is_bad_input() {
                Exit::Usage
            } else {
                Exit::Infrastructure
            };
        }
    };
    let path = output.map_or_else(|| crate::report::compare::path_beside(head), Path::to_path_buf);
    if let Err(exit) = output_folder(&path) {
        return exit;
    }
    let html = crate::report::compare::render(&compared);
    written(&path, html.and_then(|html| crate::report::write_html(&path, &html)))
}

/// A report's folder must exist: a usage error (2) if not.
fn output_folder(path: &Path) -> Result<(), Exit> {
    if let Some(folder) = path.parent()
        && !folder.as_os_str().is_empty()
        && !folder.is_dir()
    {
        eprintln!(
            "error: -o {}: the folder {} does not exist",
            path.display(),
            folder.display()
        );
        return Err(Exit::Usage);
    }
    Ok(())
}

/// Prints where a report went, or why it could not be written (the machine's fault, 3).
fn written(path: &Path, outcome: Result<(), crate::report::ReportError>) -> Exit {
    match outcome {
        Ok(()) => {
            println!("{}", path.display());
            Exit::Pass
        }
        Err(error) => {
            eprintln!("error: {error}");
            Exit::Infrastructure
        }
    }
}

/// Writes `index.html` of a folder run in `out`: every scenario, linking to its report.
pub fn write_index(
    out: &Path,
    finished: &[super::report::Finished],
) -> Result<std::path::PathBuf, crate::report::ReportError> {
    let entries: Vec<crate::report::index::Entry<'_>> = finished
        .iter()
        .map(|f| crate::report::index::Entry {
            file: &f.file,
            result: f.result.as_ref(),
            error: f.error.as_deref(),
            report: f.result.as_ref().and_then(|r| {
                let name = crate::report::path_beside(std::path::Path::new(&crate::results::RunResult::file_name(
                    &r.scenario.name,
                )));
                out.join(&name).is_file().then(|| name.display().to_string())
            }),
        })
        .collect();
    let path = out.join("index.html");
    crate::report::write_html(&path, &crate::report::index::document(&entries))?;
    Ok(path)
}
