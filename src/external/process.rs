//! A server process leakrun starts for a run, and always stops.
//!
//! The server runs in a process group of its own, so a stop reaches the workers it forks as well
//! as the process itself: SIGTERM to the group, then SIGKILL after the grace period. Paths that
//! skip the stop are covered too:
//! * an error or a panic drops the [`ServerProcess`], which SIGKILLs the group;
//! * a second Ctrl-C exits through [`crate::infra::kill_registered`], which knows the group;
//! * leakrun itself killed (SIGKILL, an OOM kill, a crash): the kernel SIGKILLs the direct child
//!   (`PR_SET_PDEATHSIG`), and a small guard process — `sh`, holding the read end of a pipe only
//!   leakrun writes to — sees the pipe close and stops the whole group, grandchildren included.
//!
//! The server's standard output and error go to a log file whose last lines every error quotes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::scenario::CommandSpec;

/// How often a stop looks whether the group is gone.
const STOP_POLL: Duration = Duration::from_millis(20);
/// Bound on waiting for a SIGKILLed group to disappear.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// Bytes of the log an error quotes, at most.
const TAIL_BYTES: u64 = 2048;

/// The guard: waits on its standard input; `done` means leakrun stopped the group itself, end of
/// input means leakrun is gone and the group must be stopped (SIGTERM, then SIGKILL after the
/// grace period, in tenths of a second). `$1` is the group, `$2` the grace. (dash's `kill` takes a
/// negative id as a group after the signal, and no `--`.)
const GUARD_SCRIPT: &str = r#"IFS= read -r line
[ "$line" = done ] && exit 0
kill -TERM "-$1" 2>/dev/null || exit 0
i=0
while [ "$i" -lt "$2" ] && kill -0 "-$1" 2>/dev/null; do sleep 0.1; i=$((i+1)); done
kill -KILL "-$1" 2>/dev/null
exit 0"#;

/// Why a server process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The log file could not be created.
    #[error("cannot create the server's log {path}: {source}")]
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

/// A running server process and its process group.
pub struct ServerProcess {
    child: Arc<Mutex<std::process::Child>>,
    pid: u32,
    guard: Option<Guard>,
    grace: Duration,
    log: PathBuf,
    stopped: bool,
}

impl ServerProcess {
    /// Starts `spec`'s command in a new process group, its output going to `log`.
    pub fn spawn(spec: &CommandSpec, log: &Path) -> Result<Self, SpawnError> {
        let log_file = File::create(log).map_err(|source| SpawnError::Log {
            path: log.to_path_buf(),
            source,
        })?;
        let err_file = log_file.try_clone().map_err(|source| SpawnError::Log {
            path: log.to_path_buf(),
            source,
        })?;
        let argv = spec.line.argv();
        let mut command = std::process::Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(err_file))
            .process_group(0);
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        let parent = std::process::id();
        // SAFETY: between fork and exec only async-signal-safe calls: prctl, getppid, _exit.
        // PR_SET_PDEATHSIG fires when the thread that forked exits; the runner starts servers
        // from its runtime's threads, which live until the run is over.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // leakrun died before the prctl took effect: nobody would stop this server.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|source| SpawnError::Spawn {
            program: argv[0].clone(),
            cwd: spec
                .cwd
                .as_ref()
                .map(|d| format!(" in {}", d.display()))
                .unwrap_or_default(),
            source,
        })?;
        let pid = child.id();
        crate::infra::register_group(pid);
        let guard = Guard::spawn(pid, spec.stop_grace);
        Ok(Self {
            child: Arc::new(Mutex::new(child)),
            pid,
            guard,
            grace: spec.stop_grace,
            log: log.to_path_buf(),
            stopped: false,
        })
    }

    /// The process id, which is also its process group's id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The server's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// A handle that tells whether the process has exited, for the liveness probe.
    pub fn watch(&self) -> ExitWatch {
        ExitWatch {
            child: self.child.clone(),
            log: self.log.clone(),
        }
    }

    /// Stops the group: SIGTERM, SIGKILL after the grace period; says how it ended.
    pub async fn stop(mut self) -> String {
        let started = Instant::now();
        let before = self.watch().exited();
        signal_group(self.pid, libc::SIGTERM);
        let mut how = None;
        while started.elapsed() < self.grace {
            if self.watch().exited().is_some() && !group_alive(self.pid) {
                how = Some(format!("stopped by SIGTERM in {:.2}s", started.elapsed().as_secs_f64()));
                break;
            }
            tokio::time::sleep(STOP_POLL).await;
        }
        let how = match how {
            Some(how) => how,
            None => {
                signal_group(self.pid, libc::SIGKILL);
                let killed = Instant::now();
                while killed.elapsed() < KILL_WAIT && (self.watch().exited().is_none() || group_alive(self.pid)) {
                    tokio::time::sleep(STOP_POLL).await;
                }
                format!(
                    "killed with SIGKILL: still running {}s after SIGTERM (server.stop_grace)",
                    self.grace.as_secs_f64()
                )
            }
        };
        self.finish();
        match before {
            Some(status) => format!("had exited by itself ({status})"),
            None => how,
        }
    }

    /// Forgets the group everywhere once it is stopped.
    fn finish(&mut self) {
        self.stopped = true;
        crate::infra::unregister_group(self.pid);
        if let Some(guard) = self.guard.take() {
            guard.release();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if !self.stopped {
            signal_group(self.pid, libc::SIGKILL);
            let _ = self.child.lock().unwrap_or_else(|p| p.into_inner()).wait();
            self.finish();
        }
    }
}

/// Tells whether a started server has exited.
#[derive(Clone)]
pub struct ExitWatch {
    child: Arc<Mutex<std::process::Child>>,
    log: PathBuf,
}

impl ExitWatch {
    /// The exit status once the process has exited.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_wait()
            .ok()
            .flatten()
    }

    /// The last lines of the server's output, for messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

/// The last lines of a log file, or a note that it is empty.
pub fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)));
    let mut text = String::new();
    let _ = file.take(TAIL_BYTES).read_to_string(&mut text);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return format!("(its output in {} is empty)", path.display());
    }
    let last = &lines[lines.len().saturating_sub(8)..];
    format!(
        "its output ({}) ends with:\n    {}",
        path.display(),
        last.join("\n    ")
    )
}

/// The guard process (see the module comment).
struct Guard {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
}

impl Guard {
    /// Starts a guard for group `pgid`; none if `sh` cannot be run (the direct child is still
    /// covered by PR_SET_PDEATHSIG).
    fn spawn(pgid: u32, grace: Duration) -> Option<Self> {
        let tenths = (grace.as_millis() / 100).max(1).to_string();
        let mut child = std::process::Command::new("sh")
            .args(["-c", GUARD_SCRIPT, "leakrun-guard", &pgid.to_string(), &tenths])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group: a Ctrl-C at the terminal must not end it before leakrun stops.
            .process_group(0)
            .spawn()
            .ok()?;
        let stdin = child.stdin.take()?;
        Some(Self { child, stdin })
    }

    /// Tells the guard the group is stopped and waits for it to end (briefly; killed after).
    fn release(mut self) {
        let _ = self.stdin.write_all(b"done\n");
        drop(self.stdin);
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` to every process of group `pgid`.
pub fn signal_group(pgid: u32, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else { return };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) on a negative id signals a process group leakrun created.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// True while some process of group `pgid` is alive. Zombies do not count: an orphaned worker
/// that exited waits for init to reap it, and is gone for every purpose here.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses, so read after
        // the last `)`.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let group = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
        group == Some(pgid) && state != Some("Z") && state != Some("X")
    })
}
