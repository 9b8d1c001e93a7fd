//! Each scenario of a folder run in a process of its own.
//!
//! Resident memory is per process: freed pages an allocator keeps after one scenario would be
//! reused by the next, which then shows no retention (or less growth) than it has on its own; the
//! counting allocator's totals, the tokio runtime and every static would carry over too. So when
//! `run` has several scenarios, it re-runs itself once per scenario (`leakrun run FILE` with the
//! same flags) and reads the result file each one writes.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crate::exit::Exit;
use crate::process::{self, ChildProcess, Signal};
use crate::results::{self, RunResult};
use crate::runner::RunOptions;
use crate::scenario::LoadedScenario;
use crate::signals;

/// How long a child that was passed an interruption may take to write its partial result and
/// stop what it started before it is killed (a private RabbitMQ alone may take 5 s to stop).
const CHILD_GRACE: Duration = Duration::from_secs(30);

/// The hidden flag that tells a child it is one scenario of a folder run: the parent has already
/// printed the environment's overrides and the `running` line.
pub const CHILD_FLAG: &str = "--folder-child";

/// The `run` flags a child repeats.
pub struct ChildFlags<'a> {
    /// `--backend`.
    pub backend: Option<&'a str>,
    /// Every `--set`, as typed.
    pub set: &'a [String],
    /// Write the report beside the result (no `--no-report`).
    pub report: bool,
}

/// Runs `scenario` in a child `leakrun` process and returns how it ended with its result, if it
/// wrote one. An interrupting signal (`options.cancel`) is passed on to the child, which writes a
/// partial result; if this process dies, the kernel interrupts the child the same way.
pub async fn run_in_child(
    scenario: &LoadedScenario,
    flags: &ChildFlags<'_>,
    options: &RunOptions,
) -> (Exit, anyhow::Result<RunResult>) {
    let result_path = options.out_dir.join(RunResult::file_name(&scenario.scenario.name));
    // A result (and its report) left from an earlier run must not pass for this one's: the
    // index links a report only beside a result this run wrote.
    let _ = std::fs::remove_file(&result_path);
    let _ = std::fs::remove_file(crate::report::path_beside(&result_path));
    let child_options = process::Options {
        output: process::Output::Inherit,
        stop_grace: CHILD_GRACE,
        // The parent gone (killed, crashed) is an interruption for the child: it stops its
        // clients, stops what it started and writes a partial result.
        on_parent_death: Signal::Interrupt,
        // No guard: its SIGTERM would be the child's second signal, an abort.
        guard: None,
    };
    let child = match ChildProcess::spawn(command(&scenario.path, flags, options), &child_options) {
        Ok(child) => child,
        Err(error) => {
            return (
                Exit::Infrastructure,
                Err(anyhow::Error::new(error).context("cannot start leakrun again")),
            );
        }
    };
    let status = tokio::select! {
        status = child.wait() => Some(status),
        () = options.cancel.cancelled() => {
            // Exactly one signal, the one this process got: the child's own exit code names it.
            child.signal(signals::received().unwrap_or(Signal::Interrupt));
            tokio::time::timeout(CHILD_GRACE, child.wait()).await.ok()
        }
    };
    // Reaps an exited child; one that outlived its grace gets SIGTERM (its abort), then SIGKILL.
    child.stop().await;
    let Some(status) = status else {
        return (
            Exit::Interrupted,
            Err(anyhow::anyhow!(
                "leakrun for {} did not stop within {}s of the interruption",
                scenario.path.display(),
                CHILD_GRACE.as_secs()
            )),
        );
    };
    let interrupted = [Signal::Interrupt, Signal::Term, Signal::Hangup].map(signals::exit_code);
    let exit = match status.code() {
        Some(0) => Exit::Pass,
        Some(1) => Exit::VerdictFailed,
        Some(2) => Exit::Usage,
        Some(code) if u8::try_from(code).is_ok_and(|c| interrupted.contains(&c)) => Exit::Interrupted,
        _ => Exit::Infrastructure,
    };
    let result = results::read(&result_path).with_context(|| result_path.display().to_string());
    (exit, result)
}

fn command(file: &Path, flags: &ChildFlags<'_>, options: &RunOptions) -> std::process::Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| "leakrun".into());
    let mut command = std::process::Command::new(exe);
    command
        .arg("run")
        .arg(file)
        .arg("--out")
        .arg(&options.out_dir)
        .arg(CHILD_FLAG);
    if options.progress.is_none() {
        command.arg("--no-progress");
    }
    if !flags.report {
        command.arg("--no-report");
    }
    if let Some(backend) = flags.backend {
        command.args(["--backend", backend]);
    }
    for set in flags.set {
        command.args(["--set", set]);
    }
    command
}
