//! The server under test when leakrun did not write it: a process leakrun starts from the
//! scenario's `command` and stops after the run, or one it only watches (`pid`, `pid_file`).
//!
//! Clients reach it at `ws_url`; its memory is the resident set of its process tree (sysinfo),
//! since no exact heap exists outside leakrun's own process; its own counters come from
//! `stats_url` when the scenario names one. If the process exits mid-run, the next sample says so
//! and the run ends with an error naming the exit status and the server's last output.

pub mod probe;
pub mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::observe::sampler::{MemoryProbe, StateReading, StateSource};
use crate::scenario::external::ROOM_PLACEHOLDER;
use crate::scenario::{ExternalSpec, ProcessSpec, Readiness};
use process::{ExitWatch, ServerProcess};
use tokio_util::sync::CancellationToken;

/// Pause between readiness attempts.
const READY_POLL: Duration = Duration::from_millis(100);
/// Bound on one readiness attempt.
const READY_ATTEMPT: Duration = Duration::from_secs(1);

/// Why an external server could not be had (an infrastructure problem, exit 3).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The `ws_url` host does not resolve.
    #[error("server.ws_url {url}: cannot resolve its host: {reason}")]
    Resolve {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The command could not be started.
    #[error("server.command: {0}")]
    Spawn(#[from] process::SpawnError),
    /// The command exited before it was ready.
    #[error("server.command exited during start-up ({status}) before {check}; {tail}")]
    Exited {
        /// How it exited.
        status: String,
        /// The readiness check it never passed.
        check: String,
        /// Its last output.
        tail: String,
    },
    /// The command did not become ready in time; it was stopped.
    #[error(
        "server.command did not become ready within server.ready_timeout = {timeout}: {check} never succeeded (last attempt: {last}); the server was {stopped}; {tail}"
    )]
    NotReady {
        /// The bound.
        timeout: String,
        /// The readiness check.
        check: String,
        /// The last attempt's error.
        last: String,
        /// How it was stopped.
        stopped: String,
        /// Its last output.
        tail: String,
    },
    /// Ctrl-C while waiting for the server to be ready; it was stopped.
    #[error("interrupted while waiting for server.command to be ready; the server was {stopped}")]
    Interrupted {
        /// How it was stopped.
        stopped: String,
    },
    /// A watched process does not exist.
    #[error(
        "{source_key}: no process {pid} is running; start the server first, or let leakrun start it with server.command"
    )]
    NoProcess {
        /// `server.pid` or `server.pid_file`.
        source_key: String,
        /// The id.
        pid: u32,
    },
    /// A pid file could not be read.
    #[error("server.pid_file {path}: {reason}")]
    PidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// An external server for the length of a run.
pub struct ExternalTarget {
    pid: u32,
    process: Option<ServerProcess>,
    /// Where clients open their TCP connections.
    pub addr: SocketAddr,
    /// Each room's WebSocket URL, indexed like the scenario's rooms.
    pub room_urls: Vec<String>,
    /// Where `[[http]]` workloads connect: `http_url`'s host and port, else `addr`.
    pub http_addr: SocketAddr,
    /// `http_url`'s path without its trailing `/`, put before every workload's path.
    pub http_prefix: String,
}

impl ExternalTarget {
    /// Starts (or finds) the server of `spec` and waits until it is ready, or until `cancel`; a
    /// started server's output goes to `log`.
    pub async fn start(
        spec: &ExternalSpec,
        rooms: &[String],
        log: &Path,
        cancel: &CancellationToken,
    ) -> Result<Self, TargetError> {
        let http_addr = match &spec.http_url {
            Some(url) => Some(resolve(url).await?),
            None => None,
        };
        let addr = match (spec.ws_url.is_empty(), http_addr) {
            (true, Some(addr)) => addr,
            _ => resolve(&spec.ws_url).await?,
        };
        let http_prefix = spec
            .http_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        let room_urls = rooms
            .iter()
            .map(|room| spec.ws_url.replace(ROOM_PLACEHOLDER, room))
            .collect();
        let (pid, process) = match &spec.process {
            ProcessSpec::Command(command) => {
                let process = ServerProcess::spawn(command, log)?;
                let check = Check::new(&command.ready, addr);
                let pid = process.pid();
                let process = wait_ready(process, &check, command.ready_timeout, cancel).await?;
                (pid, Some(process))
            }
            ProcessSpec::Pid { pid } => (watched(*pid, "server.pid")?, None),
            ProcessSpec::PidFile { path } => (watched(read_pid_file(path)?, "server.pid_file")?, None),
        };
        Ok(Self {
            pid,
            process,
            addr,
            room_urls,
            http_addr: http_addr.unwrap_or(addr),
            http_prefix,
        })
    }

    /// The server's process id (for a started server, also its process group).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// True when leakrun started the server (and will stop it).
    pub fn started(&self) -> bool {
        self.process.is_some()
    }

    /// The started server's log file.
    pub fn log(&self) -> Option<&Path> {
        self.process.as_ref().map(|p| p.log())
    }

    /// The resident set of the server's process tree.
    pub fn memory_probe(&self) -> MemoryProbe {
        MemoryProbe::for_tree(self.pid)
    }

    /// A state source that fails once the server's process is gone, so the run ends with a clear
    /// error instead of judging a dead process.
    pub fn liveness(&self) -> Box<dyn StateSource> {
        Box::new(Liveness {
            pid: self.pid,
            watch: self.process.as_ref().map(|p| p.watch()),
        })
    }

    /// Stops a server leakrun started (SIGTERM, SIGKILL after the grace period) and says how it
    /// ended; a watched one is left running.
    pub async fn stop(self) -> String {
        match self.process {
            Some(process) => process.stop().await,
            None => format!("left running (pid {}, watched, not started by leakrun)", self.pid),
        }
    }
}

/// Where `rss_bytes` comes from, in words for the result.
pub fn memory_source(pid: u32, processes: Option<u32>) -> String {
    match processes {
        Some(n) if n > 1 => format!(
            "rss of pid {pid} and {} child process{}, summed over its process tree",
            n - 1,
            if n == 2 { "" } else { "es" }
        ),
        _ => format!("rss of pid {pid}"),
    }
}

async fn resolve(ws_url: &str) -> Result<SocketAddr, TargetError> {
    let failed = |reason: String| TargetError::Resolve {
        url: ws_url.to_string(),
        reason,
    };
    let url = url::Url::parse(&ws_url.replace(ROOM_PLACEHOLDER, "room")).map_err(|e| failed(e.to_string()))?;
    let host = url.host_str().ok_or_else(|| failed("no host".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| failed(e.to_string()))?
        .collect();
    // `localhost` may resolve to ::1 first while servers commonly bind 127.0.0.1 only.
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs.first().copied().ok_or_else(|| failed("no address".into()))
}

/// A readiness check of a started server.
enum Check {
    Url(probe::HttpGet),
    Port(SocketAddr),
}

impl Check {
    fn new(ready: &Readiness, ws_addr: SocketAddr) -> Self {
        match ready {
            Readiness::Url(url) => match probe::HttpGet::new(url) {
                Ok(get) => Check::Url(get),
                Err(_) => Check::Port(ws_addr),
            },
            Readiness::Port(port) => Check::Port(SocketAddr::new(ws_addr.ip(), *port)),
        }
    }

    fn describe(&self) -> String {
        match self {
            Check::Url(get) => format!("a GET of {} answering", get.url()),
            Check::Port(addr) => format!("{addr} accepting a connection"),
        }
    }

    async fn attempt(&self) -> Result<(), String> {
        match self {
            Check::Url(get) => get.get().await.map(drop),
            Check::Port(addr) => {
                match tokio::time::timeout(READY_ATTEMPT, tokio::net::TcpStream::connect(addr)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("connect timed out".into()),
                }
            }
        }
    }
}

async fn wait_ready(
    process: ServerProcess,
    check: &Check,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<ServerProcess, TargetError> {
    let deadline = Instant::now() + timeout;
    let watch = process.watch();
    let mut last: String;
    loop {
        if let Some(status) = watch.exited() {
            let tail = watch.log_tail();
            let _ = process.stop().await;
            return Err(TargetError::Exited {
                status: status.to_string(),
                check: check.describe(),
                tail,
            });
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let attempt = tokio::select! {
            attempt = tokio::time::timeout(remaining.max(Duration::from_millis(1)), check.attempt()) => attempt,
            _ = cancel.cancelled() => {
                let stopped = process.stop().await;
                return Err(TargetError::Interrupted { stopped });
            }
        };
        match attempt {
            Ok(Ok(())) => return Ok(process),
            Ok(Err(error)) => last = error,
            Err(_) => last = "attempt cut short by the timeout".into(),
        }
        if Instant::now() >= deadline {
            let tail = watch.log_tail();
            let stopped = process.stop().await;
            return Err(TargetError::NotReady {
                timeout: humantime::format_duration(timeout).to_string(),
                check: check.describe(),
                last,
                stopped,
                tail,
            });
        }
        tokio::time::sleep(READY_POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

fn watched(pid: u32, key: &str) -> Result<u32, TargetError> {
    if process_alive(pid) {
        Ok(pid)
    } else {
        Err(TargetError::NoProcess {
            source_key: key.into(),
            pid,
        })
    }
}

fn read_pid_file(path: &Path) -> Result<u32, TargetError> {
    let failed = |reason: String| TargetError::PidFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| failed(format!("cannot read it: {e}")))?;
    let text = text.trim();
    text.parse::<u32>()
        .ok()
        .filter(|&pid| pid > 1)
        .ok_or_else(|| failed(format!("holds `{text}`, not a process id")))
}

/// True while process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Fails a sample once the server's process is gone.
struct Liveness {
    pid: u32,
    watch: Option<ExitWatch>,
}

#[async_trait::async_trait]
impl StateSource for Liveness {
    async fn read(&self) -> Result<StateReading, String> {
        if let Some(watch) = &self.watch {
            if let Some(status) = watch.exited() {
                return Err(format!(
                    "the server (pid {}) exited during the run ({status}); {}",
                    self.pid,
                    watch.log_tail()
                ));
            }
        } else if !process_alive(self.pid) {
            return Err(format!("the watched server process {} is gone", self.pid));
        }
        Ok(StateReading::default())
    }
}
