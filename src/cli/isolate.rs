//! Each scenario of a folder run in a process of its own.
//!
//! Resident memory is per process: freed pages an allocator keeps after one scenario would be
//! reused by the next, which then shows no retention (or less growth) than it has on its own; the
//! counting allocator's totals, the tokio runtime and every static would carry over too. So when
//! `run` has several scenarios, it re-runs itself once per scenario (`leakrun run FILE` with the
//! same flags) and reads the result file each one writes.

use std::path::Path;
use std::process::Stdio;

use crate::exit::Exit;
use crate::results::{self, RunResult};
use crate::runner::RunOptions;
use crate::scenario::LoadedScenario;

/// The hidden flag that tells a child it is one scenario of a folder run: the parent has already
/// printed the environment's overrides and the `running` line.
pub const CHILD_FLAG: &str = "--folder-child";

/// The `run` flags a child repeats.
pub struct ChildFlags<'a> {
    /// `--backend`.
    pub backend: Option<&'a str>,
    /// Every `--set`, as typed.
    pub set: &'a [String],
}

/// Runs `scenario` in a child `leakrun` process and returns how it ended with its result, if it
/// wrote one. Ctrl-C (`options.cancel`) is passed on to the child, which writes a partial result;
/// if this process dies, the kernel interrupts the child the same way.
pub async fn run_in_child(
    scenario: &LoadedScenario,
    flags: &ChildFlags<'_>,
    options: &RunOptions,
) -> (Exit, Result<RunResult, String>) {
    let result_path = options.out_dir.join(RunResult::file_name(&scenario.scenario.name));
    // A result left from an earlier run must not pass for this one's.
    let _ = std::fs::remove_file(&result_path);
    let mut child = match command(&scenario.path, flags, options).spawn() {
        Ok(child) => child,
        Err(error) => {
            return (
                Exit::Infrastructure,
                Err(format!("cannot start leakrun again: {error}")),
            );
        }
    };
    let status = tokio::select! {
        status = child.wait() => status,
        () = options.cancel.cancelled() => {
            if let Some(pid) = child.id() {
                // SAFETY: kill(2) with a pid this process spawned and has not reaped yet.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
            }
            child.wait().await
        }
    };
    let exit = match status.map(|s| s.code()) {
        Ok(Some(0)) => Exit::Pass,
        Ok(Some(1)) => Exit::VerdictFailed,
        Ok(Some(2)) => Exit::Usage,
        Ok(Some(130)) => Exit::Interrupted,
        _ => Exit::Infrastructure,
    };
    let result = results::read(&result_path).map_err(|e| format!("{}: {e:#}", result_path.display()));
    (exit, result)
}

fn command(file: &Path, flags: &ChildFlags<'_>, options: &RunOptions) -> tokio::process::Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| "leakrun".into());
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("run")
        .arg(file)
        .arg("--out")
        .arg(&options.out_dir)
        .arg(CHILD_FLAG);
    if !options.progress {
        command.arg("--no-progress");
    }
    if let Some(backend) = flags.backend {
        command.args(["--backend", backend]);
    }
    for set in flags.set {
        command.args(["--set", set]);
    }
    command.stdin(Stdio::null()).kill_on_drop(true);
    // SAFETY: setpgid(2) and prctl(2) are async-signal-safe; nothing else runs between fork and
    // exec.
    unsafe {
        command.pre_exec(|| {
            // A group of its own: a Ctrl-C at the terminal reaches only this process, which passes
            // on exactly one (a second would be the child's "abort now").
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent gone (killed, crashed) is a Ctrl-C for the child: it stops its clients,
            // stops what it started and writes a partial result.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}
