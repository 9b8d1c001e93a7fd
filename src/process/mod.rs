//! Child processes, started one way: the private `redis-server`, `rabbitmq-server` and its
//! `epmd`, an external server's command, and the `leakrun` children of a folder run.
//!
//! Nothing leakrun starts may outlive it, on any path:
//! * each child leads a process group of its own, so a stop reaches the workers it forks, and a
//!   Ctrl-C at the terminal (SIGINT to the foreground group) reaches leakrun alone, which then
//!   stops its children in order;
//! * [`ChildProcess::stop`] sends SIGTERM to the group (and to helpers the child started in
//!   groups of their own), SIGKILL after the grace period; an error or a panic drops the
//!   [`ChildProcess`], which SIGKILLs them;
//! * the abort path (a second interrupting signal) runs no destructor: every child is in the
//!   [`registry`] from the moment it is spawned, and [`kill_registered`] SIGKILLs them all;
//! * leakrun itself killed (SIGKILL, an OOM kill, a crash): the kernel sends the direct child its
//!   parent-death signal (`PR_SET_PDEATHSIG`), and the [`guard`] sees its pipe close and stops the
//!   whole group and the helpers, grandchildren included.
//!
//! Pids are re-checked against their start time before a helper is signalled ([`procfs`]).

pub mod guard;
pub mod log;
pub mod ports;
pub mod procfs;
pub mod registry;
pub mod signal;
pub mod tree;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use ports::{free_port, free_ports};
pub use registry::{Registered, kill_registered};
pub use signal::Signal;

use guard::Guard;
use procfs::Identity;

/// How often a stop or a wait looks whether the child is gone.
const POLL: Duration = Duration::from_millis(20);
/// Bound on waiting for SIGKILLed processes to disappear.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// Where a child's standard output and error go.
#[derive(Debug, Clone)]
pub enum Output {
    /// Both into this file (created, or truncated).
    Log(PathBuf),
    /// Both into this file, appended to.
    AppendLog(PathBuf),
    /// leakrun's own (a folder-run child prints its own lines).
    Inherit,
}

/// How a child is started and stopped.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where its output goes.
    pub output: Output,
    /// How long a stop waits after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
    /// What the kernel sends the child when leakrun dies: SIGKILL for a server; SIGINT for a
    /// `leakrun` child, which then stops what it started and writes a partial result.
    pub on_parent_death: Signal,
    /// A [`guard`] that stops the whole group if leakrun dies, and the grace it gives between
    /// SIGTERM and SIGKILL then (zero: SIGKILL at once). A `leakrun` child has none: its
    /// parent-death SIGINT is its stop, and a second signal would abort it.
    pub guard: Option<Duration>,
}

impl Options {
    /// A private server leakrun starts for a run (Redis, RabbitMQ, epmd), writing to `log`:
    /// stopped with SIGTERM and, after `stop_grace`, SIGKILL; if leakrun dies, SIGKILLed at once
    /// (nothing it holds is worth a graceful stop).
    pub fn private_server(log: impl Into<PathBuf>, stop_grace: Duration) -> Self {
        Self {
            output: Output::Log(log.into()),
            stop_grace,
            on_parent_death: Signal::Kill,
            guard: Some(Duration::ZERO),
        }
    }
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The log file could not be created.
    #[error("cannot create the log {path}: {source}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The program could not be run.
    #[error("cannot run `{program}`{cwd}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// ` in <cwd>` when a working directory was set.
        cwd: String,
        /// What the system said.
        source: std::io::Error,
    },
}

impl SpawnError {
    /// True when the program is not installed (not found on PATH, or no such file).
    pub fn not_found(&self) -> bool {
        matches!(self, SpawnError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It had already exited by itself.
    ExitedBefore(ExitStatus),
    /// It went after SIGTERM, within the grace period.
    Terminated(Duration),
    /// It was still running after the grace period and was SIGKILLed.
    Killed,
}

/// A running child and its process group.
pub struct ChildProcess {
    child: Arc<Mutex<std::process::Child>>,
    pid: u32,
    guard: Option<Guard>,
    helpers: Vec<Identity>,
    grace: Duration,
    log: Option<PathBuf>,
    stopped: bool,
}

impl ChildProcess {
    /// Starts `command` as the leader of a new process group, registered for the abort path
    /// before this returns.
    pub fn spawn(mut command: Command, options: &Options) -> Result<Self, SpawnError> {
        let program = command.get_program().to_string_lossy().into_owned();
        let cwd = command
            .get_current_dir()
            .map(|d| format!(" in {}", d.display()))
            .unwrap_or_default();
        let log = match &options.output {
            Output::Log(path) | Output::AppendLog(path) => {
                let append = matches!(options.output, Output::AppendLog(_));
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(append)
                    .truncate(!append)
                    .open(path)
                    .and_then(|file| Ok((file.try_clone()?, file)))
                    .map_err(|source| SpawnError::Log {
                        path: path.clone(),
                        source,
                    })?;
                command.stdout(Stdio::from(file.0)).stderr(Stdio::from(file.1));
                Some(path.clone())
            }
            Output::Inherit => None,
        };
        command.stdin(Stdio::null()).process_group(0);
        let parent = std::process::id();
        let death_signal = options.on_parent_death.raw() as libc::c_ulong;
        // SAFETY: between fork and exec only async-signal-safe calls: prctl, getppid, _exit.
        // PR_SET_PDEATHSIG fires when the thread that forked exits: children are started from the
        // runtime's threads (never a blocking-pool thread), which live until the run is over.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // leakrun died before the prctl took effect: nobody would stop this child.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|source| SpawnError::Spawn { program, cwd, source })?;
        let pid = child.id();
        registry::register(Registered::Group(pid));
        let guard = options.guard.and_then(|grace| Guard::spawn(pid, grace));
        Ok(Self {
            child: Arc::new(Mutex::new(child)),
            pid,
            guard,
            helpers: Vec::new(),
            grace: options.stop_grace,
            log,
            stopped: false,
        })
    }

    /// The process id, which is also its process group's id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The file its output goes to, if any.
    pub fn log(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// How long a stop waits after SIGTERM before SIGKILL.
    pub fn stop_grace(&self) -> Duration {
        self.grace
    }

    /// The pid of its guard process, if it has one.
    pub fn guard_pid(&self) -> Option<u32> {
        self.guard.as_ref().map(Guard::pid)
    }

    /// A handle that tells whether the child has exited.
    pub fn watch(&self) -> ExitWatch {
        ExitWatch {
            child: self.child.clone(),
            log: self.log.clone(),
        }
    }

    /// Its exit status once it has exited.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.watch().exited()
    }

    /// Has the child's guard remove folder `path` (made for the child) if leakrun dies without
    /// stopping it; a child without a guard leaves it to leakrun.
    pub fn remove_if_abandoned(&mut self, path: &std::path::Path) {
        if let Some(guard) = self.guard.as_mut() {
            guard.remove_if_abandoned(path);
        }
    }

    /// Takes on every descendant the child has started outside its own process group (an
    /// Erlang VM's port helpers): registered, guarded and stopped with it.
    pub fn adopt_helpers(&mut self) {
        for helper in procfs::descendants(self.pid) {
            let outside = procfs::Stat::read(helper.pid).is_some_and(|s| s.pgrp != self.pid);
            if outside && !self.helpers.contains(&helper) {
                registry::register(Registered::Process(helper));
                if let Some(guard) = self.guard.as_mut() {
                    guard.add(helper.pid);
                }
                self.helpers.push(helper);
            }
        }
    }

    /// Sends `signal` to the child's group (a folder-run child is passed on an interruption).
    pub fn signal(&self, signal: Signal) {
        if self.exited().is_none() {
            signal::group(self.pid, signal);
        }
    }

    /// Waits until the child exits.
    pub async fn wait(&self) -> ExitStatus {
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the group and the helpers: SIGTERM, SIGKILL after the grace period; says how it
    /// ended.
    pub async fn stop(mut self) -> Stopped {
        let started = Instant::now();
        let before = self.exited();
        self.send_all(Signal::Term);
        let mut ended = None;
        while started.elapsed() < self.grace {
            if self.all_gone() {
                ended = Some(Stopped::Terminated(started.elapsed()));
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let ended = match ended {
            Some(ended) => ended,
            None => {
                self.send_all(Signal::Kill);
                let killed = Instant::now();
                while killed.elapsed() < KILL_WAIT && !self.all_gone() {
                    tokio::time::sleep(POLL).await;
                }
                Stopped::Killed
            }
        };
        self.finish();
        match before {
            Some(status) => Stopped::ExitedBefore(status),
            None => ended,
        }
    }

    /// SIGKILLs the group and the helpers now and waits (bounded) until they are gone.
    pub async fn kill(mut self) {
        self.send_all(Signal::Kill);
        let started = Instant::now();
        while started.elapsed() < KILL_WAIT && !self.all_gone() {
            tokio::time::sleep(POLL).await;
        }
        self.finish();
    }

    fn send_all(&self, signal: Signal) {
        if self.exited().is_none() || procfs::group_alive(self.pid) {
            signal::group(self.pid, signal);
        }
        for helper in &self.helpers {
            if helper.is_alive() {
                signal::process(helper.pid, signal);
            }
        }
    }

    /// The leader has exited (and is reaped), no process of its group is left, no helper lives.
    fn all_gone(&self) -> bool {
        self.exited().is_some() && !procfs::group_alive(self.pid) && !self.helpers.iter().any(Identity::is_alive)
    }

    /// Forgets the child everywhere once it is stopped.
    fn finish(&mut self) {
        self.stopped = true;
        registry::unregister(Registered::Group(self.pid));
        for helper in self.helpers.drain(..) {
            registry::unregister(Registered::Process(helper));
        }
        if let Some(guard) = self.guard.take() {
            guard.release();
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if !self.stopped {
            self.send_all(Signal::Kill);
            let _ = self.child.lock().unwrap_or_else(|p| p.into_inner()).wait();
            self.finish();
        }
    }
}

/// Tells whether a started child has exited, from anywhere.
#[derive(Clone)]
pub struct ExitWatch {
    child: Arc<Mutex<std::process::Child>>,
    log: Option<PathBuf>,
}

impl ExitWatch {
    /// The exit status once the process has exited (reaping it).
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_wait()
            .ok()
            .flatten()
    }

    /// The last `lines` lines of the child's output.
    pub fn log_tail(&self, lines: usize) -> Vec<String> {
        self.log
            .as_deref()
            .map(|path| log::tail_lines(path, lines))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[tokio::test]
    async fn a_stop_reaches_workers_the_child_forked() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::private_server(dir.path().join("out.log"), Duration::from_secs(2));
        let child = ChildProcess::spawn(sh("sleep 30 & sleep 30 & echo started; wait"), &options).unwrap();
        let pgid = child.pid();
        assert!(registry_holds(Registered::Group(pgid)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(procfs::descendants(pgid).len() >= 2, "the workers run");
        let stopped = child.stop().await;
        assert!(matches!(stopped, Stopped::Terminated(_)), "{stopped:?}");
        assert!(!procfs::group_alive(pgid), "no worker is left");
        assert!(!registry_holds(Registered::Group(pgid)));
    }

    #[tokio::test]
    async fn a_child_that_ignores_sigterm_is_killed_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::private_server(dir.path().join("out.log"), Duration::from_millis(300));
        let child = ChildProcess::spawn(sh("trap '' TERM; echo up; while :; do sleep 0.05; done"), &options).unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let pgid = child.pid();
        assert_eq!(child.stop().await, Stopped::Killed);
        assert!(!procfs::group_alive(pgid));
        assert_eq!(log::tail_lines(&dir.path().join("out.log"), 3), ["up"]);
    }

    #[tokio::test]
    async fn a_program_that_does_not_exist_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::private_server(dir.path().join("out.log"), Duration::from_secs(1));
        let error = ChildProcess::spawn(Command::new("leakrun-no-such-program"), &options)
            .err()
            .expect("fails");
        assert!(error.not_found(), "{error}");
    }

    fn registry_holds(entry: Registered) -> bool {
        let before = registry::open();
        registry::unregister(entry);
        let held = registry::open() < before;
        if held {
            registry::register(entry);
        }
        held
    }
}
