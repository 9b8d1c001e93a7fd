//! The external target: a server leakrun did not write — a process it starts from the
//! scenario's `command` (a [`ChildProcess`], stopped after the run) or one it only watches
//! (`pid`, `pid_file`).
//!
//! Clients reach it at `ws_url`; its memory is the resident set of its process tree (`ProcessTree`),
//! since no exact heap exists outside leakrun's own process; its own counters come from
//! `stats_url` when the scenario names one. It is settled when its resident memory and counters
//! hold still. If the process exits mid-run, the next sample says so and the run ends with an
//! error naming the exit status and the server's last output.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::heap_probe::{HeapProbeError, HeapProbeHandle};
use super::http_probe::{self, StatsSource};
use super::{JudgedMemory, Target, TargetError, settle};
use crate::backend::Service;
use crate::load::Endpoint;
use crate::load::template::FrameTemplate;
use crate::observe::clock::RunClock;
use crate::observe::sampler::{MemoryProbe, Probes, Sample, SourceError, StateReading, StateSource};
use crate::observe::sites::SiteReport;
use crate::process::{ChildProcess, ExitWatch, Options, Output, Signal, SpawnError, Stopped, procfs};
use crate::results::{BackendInfo, TargetInfo};
use crate::scenario::external::ROOM_PLACEHOLDER;
use crate::scenario::{CommandSpec, ExternalSpec, ProcessSpec, Readiness, Scenario};

/// Pause between readiness attempts.
const READY_POLL: Duration = Duration::from_millis(100);
/// Bound on one readiness attempt.
const READY_ATTEMPT: Duration = Duration::from_secs(1);

/// Bound on waiting for the heap probe's first answer after the server is ready.
const HEAP_PROBE_START: Duration = Duration::from_secs(10);
/// Lines of the server's output an error quotes.
const TAIL_LINES: usize = 8;

/// Why an external server could not be had (an infrastructure problem, exit 3).
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    /// The `ws_url` host does not resolve.
    #[error("server.ws_url {url}: cannot resolve its host: {reason}")]
    Resolve {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The folder for the server's log could not be made.
    #[error("cannot create {dir}: {source}")]
    LogFolder {
        /// The folder.
        dir: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The command could not be started.
    #[error("server.command: {0}")]
    Spawn(#[from] SpawnError),
    /// The command's program does not exist.
    #[error("server.command: {error}; {hint}")]
    NotInstalled {
        /// What the system said.
        error: SpawnError,
        /// What to do about it.
        hint: &'static str,
    },
    /// The heap probe did not answer, or cannot see the server; the server was stopped.
    #[error("{error}; the server was {stopped}; {tail}")]
    HeapProbe {
        /// Why.
        error: HeapProbeError,
        /// How the server was stopped.
        stopped: String,
        /// Its last output.
        tail: String,
    },
    /// The heap probe's folder could not be prepared.
    #[error(transparent)]
    HeapFolder(#[from] HeapProbeError),
    /// `stats_url` cannot be read.
    #[error("server.stats_url: {0}")]
    StatsUrl(#[from] http_probe::GetError),
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
pub struct External {
    pid: u32,
    process: Option<ChildProcess>,
    spec: ExternalSpec,
    /// Where clients open their TCP connections.
    addr: SocketAddr,
    /// Each room's WebSocket URL, indexed like the scenario's rooms.
    room_urls: Vec<String>,
    /// Where `[[http]]` workloads connect: `http_url`'s host and port, else `addr`.
    http_addr: SocketAddr,
    /// `http_url`'s path without its trailing `/`, put before every workload's path.
    http_prefix: String,
    /// The heap probe inside the server, when the scenario asks for one.
    heap: Option<HeapProbeHandle>,
    /// The service the server needs (`[backend]`), when it needs one.
    service: Option<Service>,
}

impl External {
    /// Starts (or finds) the server of `spec` and waits until it is ready, or until `cancel`; a
    /// started server's output goes to `<out_dir>/<scenario>.server.log`.
    pub async fn start(
        scenario: &Scenario,
        spec: &ExternalSpec,
        out_dir: &Path,
        cancel: &CancellationToken,
    ) -> Result<Self, TargetError> {
        // The service first: the server may need it to start at all.
        let service = Service::obtain(&scenario.backend).await?;
        let started = Self::start_server(scenario, spec, out_dir, cancel, service.as_ref()).await;
        match started {
            Ok(mut target) => {
                target.service = service;
                Ok(target)
            }
            Err(error) => {
                if let Some(service) = service {
                    service.shutdown().await;
                }
                Err(error)
            }
        }
    }

    /// Starts (or finds) the server itself, with the service's URL in its environment.
    async fn start_server(
        scenario: &Scenario,
        spec: &ExternalSpec,
        out_dir: &Path,
        cancel: &CancellationToken,
        service: Option<&Service>,
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
        let room_urls = scenario
            .rooms
            .iter()
            .map(|room| spec.ws_url.replace(ROOM_PLACEHOLDER, &room.name))
            .collect();
        let mut probe = None;
        let (pid, process) = match &spec.process {
            ProcessSpec::Command(command) => {
                std::fs::create_dir_all(out_dir).map_err(|source| ExternalError::LogFolder {
                    dir: out_dir.to_path_buf(),
                    source,
                })?;
                let log = out_dir.join(format!("{}.server.log", scenario.name));
                let heap = HeapProbeHandle::prepare(command).map_err(ExternalError::from)?;
                let extra = Environment {
                    heap: heap.as_ref(),
                    service,
                };
                let mut process = spawn(command, &log, &extra).map_err(not_installed)?;
                if let Some(folder) = heap.as_ref().and_then(HeapProbeHandle::folder) {
                    process.remove_if_abandoned(folder);
                }
                let check = Check::new(&command.ready, addr);
                let pid = process.pid();
                let process = wait_ready(process, &check, command.ready_timeout, cancel).await?;
                if let Some(heap) = &heap
                    && let Err(error) = heap.wait_ready(pid, addr.port(), HEAP_PROBE_START).await
                {
                    let tail = log_tail(&process.watch(), process.log());
                    let stopped = describe(process.stop().await, command.stop_grace);
                    return Err(ExternalError::HeapProbe { error, stopped, tail }.into());
                }
                probe = heap;
                (pid, Some(process))
            }
            ProcessSpec::Pid { pid } => (watched(*pid, "server.pid")?, None),
            ProcessSpec::PidFile { path } => (watched(read_pid_file(path)?, "server.pid_file")?, None),
        };
        Ok(Self {
            pid,
            process,
            spec: spec.clone(),
            addr,
            room_urls,
            http_addr: http_addr.unwrap_or(addr),
            http_prefix,
            heap: probe,
            service: None,
        })
    }

    /// The server's process id (for a started server, also its process group).
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

#[async_trait::async_trait]
impl Target for External {
    fn endpoints(&self) -> Vec<Endpoint> {
        vec![Endpoint {
            addr: self.addr,
            room_urls: self.room_urls.clone(),
            http_addr: self.http_addr,
        }]
    }

    fn http_prefix(&self) -> &str {
        &self.http_prefix
    }

    fn frame_template(&self) -> FrameTemplate {
        self.spec
            .send_template
            .as_deref()
            .map_or_else(FrameTemplate::bare, FrameTemplate::new)
    }

    fn probes(&self, clock: RunClock) -> Result<Probes, TargetError> {
        let mut sources: Vec<Box<dyn StateSource>> = vec![Box::new(Liveness {
            pid: self.pid,
            watch: self
                .process
                .as_ref()
                .map(|p| (p.watch(), p.log().map(Path::to_path_buf))),
        })];
        if let Some(url) = self.spec.stats_url.as_deref() {
            let stats = StatsSource::new(url, &self.spec.stats_counters).map_err(ExternalError::from)?;
            sources.push(Box::new(stats));
        }
        sources.extend(self.service.as_ref().and_then(Service::state_source));
        let probes = Probes::new(clock, MemoryProbe::for_tree(self.pid), sources);
        Ok(match &self.heap {
            Some(heap) => probes.with_heap(heap.source()),
            None => probes,
        })
    }

    async fn heap_sites(&self) -> Result<Option<SiteReport>, SourceError> {
        match &self.heap {
            Some(heap) => heap.sites().await.map(Some),
            None => Ok(None),
        }
    }

    fn name_sites(&self, lists: Vec<&mut Vec<crate::observe::sites::SiteGrowth>>) {
        if let Some(heap) = &self.heap {
            heap.name_sites(lists);
        }
    }

    async fn settle(&self, probes: &Probes, bound: Duration) -> bool {
        let read = || async {
            let sample = probes.sample().await.ok()?;
            Some((sample.rss_bytes.unwrap_or(0), sample.state))
        };
        settle::until_rss_still(read, bound).await
    }

    fn info(&self, last: Option<&Sample>) -> TargetInfo {
        TargetInfo {
            kind: "external".into(),
            pid: self.pid,
            started: self.process.is_some(),
            command: match &self.spec.process {
                ProcessSpec::Command(command) => Some(command.line.display()),
                _ => None,
            },
            memory_source: memory_source(self.pid, last.and_then(|s| s.rss_processes)),
            cpu_source: Some(format!(
                "utime + stime of pid {} and its descendants in /proc, summed over its process tree",
                self.pid
            )),
            log: self
                .process
                .as_ref()
                .and_then(|p| p.log())
                .map(|p| p.display().to_string()),
            stopped: None,
        }
    }

    fn backend(&self) -> BackendInfo {
        match &self.service {
            Some(service) => service.info(),
            None => BackendInfo {
                kind: "external".into(),
                version: String::new(),
                endpoint: None,
                source: "the external server's own channel layer, if any".into(),
            },
        }
    }

    fn judged_memory(&self, last: Option<&Sample>) -> JudgedMemory {
        match &self.heap {
            Some(heap) => heap.judged(self.pid, last.and_then(|s| s.heap_processes).unwrap_or(1)),
            None => JudgedMemory::Rss {
                source: memory_source(self.pid, last.and_then(|s| s.rss_processes)),
            },
        }
    }

    /// Stops a server leakrun started (SIGTERM, SIGKILL after the grace period) and says how it
    /// ended; a watched one is left running.
    async fn stop(self: Box<Self>) -> Option<String> {
        let External {
            process, service, pid, ..
        } = *self;
        let stopped = match process {
            Some(process) => {
                let grace = process.stop_grace();
                describe(process.stop().await, grace)
            }
            None => format!("left running (pid {pid}, watched, not started by leakrun)"),
        };
        // The server first: it may still be using its service while it shuts down.
        if let Some(service) = service {
            service.shutdown().await;
        }
        Some(stopped)
    }
}

/// What leakrun adds to a started server's environment.
struct Environment<'a> {
    /// The heap probe's variables.
    heap: Option<&'a HeapProbeHandle>,
    /// The service's URL, in the variable `backend.url_env` names.
    service: Option<&'a Service>,
}

/// Starts `spec`'s command as a child of its own group, its output going to `log`, with the
/// service's URL and the heap probe's variables when there are some.
fn spawn(spec: &CommandSpec, log: &Path, extra: &Environment<'_>) -> Result<ChildProcess, SpawnError> {
    let argv = spec.line.argv();
    let mut command = std::process::Command::new(&argv[0]);
    command.args(&argv[1..]).envs(&spec.env);
    if let Some(service) = extra.service {
        let (variable, url) = service.environment();
        command.env(variable, url);
    }
    if let Some(heap) = extra.heap {
        command.envs(heap.environment(spec));
    }
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let options = Options {
        output: Output::Log(log.to_path_buf()),
        stop_grace: spec.stop_grace,
        on_parent_death: Signal::Kill,
        // The user's server gets its grace even when leakrun dies: it may want to shut down
        // cleanly.
        guard: Some(spec.stop_grace),
    };
    ChildProcess::spawn(command, &options)
}

/// A spawn error, with what to do when the program is not there: the examples' programs live in
/// the virtual environments `scripts/install-services` makes under `target/`.
fn not_installed(error: SpawnError) -> ExternalError {
    if !error.not_found() {
        return ExternalError::Spawn(error);
    }
    let ours = matches!(&error, SpawnError::Spawn { program, .. } if program.contains("target/"));
    ExternalError::NotInstalled {
        error,
        hint: match ours {
            true => {
                "it lives in a virtual environment scripts/install-services makes under target/: run scripts/install-services first"
            }
            false => "is the program installed, and is it on PATH or the path right from server.cwd?",
        },
    }
}

/// How a stop ended, in words for the result.
fn describe(stopped: Stopped, grace: Duration) -> String {
    match stopped {
        Stopped::ExitedBefore(status) => format!("had exited by itself ({status})"),
        Stopped::Terminated(took) => format!("stopped by SIGTERM in {:.2}s", took.as_secs_f64()),
        Stopped::Killed => format!(
            "killed with SIGKILL: still running {}s after SIGTERM (server.stop_grace)",
            grace.as_secs_f64()
        ),
    }
}

/// The last lines of a started server's output, for messages.
fn log_tail(watch: &ExitWatch, log: Option<&Path>) -> String {
    let Some(path) = log else {
        return "(no log)".into();
    };
    let lines = watch.log_tail(TAIL_LINES);
    if lines.is_empty() {
        return format!("(its output in {} is empty)", path.display());
    }
    format!(
        "its output ({}) ends with:\n    {}",
        path.display(),
        lines.join("\n    ")
    )
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

async fn resolve(ws_url: &str) -> Result<SocketAddr, ExternalError> {
    let failed = |reason: String| ExternalError::Resolve {
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
    Url(http_probe::HttpGet),
    Port(SocketAddr),
}

impl Check {
    fn new(ready: &Readiness, ws_addr: SocketAddr) -> Self {
        match ready {
            Readiness::Url(url) => match http_probe::HttpGet::new(url) {
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

    async fn attempt(&self) -> Result<(), ReadyError> {
        match self {
            Check::Url(get) => get.get().await.map(drop).map_err(ReadyError::Get),
            Check::Port(addr) => {
                match tokio::time::timeout(READY_ATTEMPT, tokio::net::TcpStream::connect(addr)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(ReadyError::Connect(e)),
                    Err(_) => Err(ReadyError::ConnectTimeout),
                }
            }
        }
    }
}

/// Why one readiness attempt failed.
#[derive(Debug, thiserror::Error)]
enum ReadyError {
    /// The GET of `ready_url` got no answer.
    #[error(transparent)]
    Get(http_probe::GetError),
    /// The port refused the connection.
    #[error(transparent)]
    Connect(std::io::Error),
    /// The connection did not complete in time.
    #[error("connect timed out")]
    ConnectTimeout,
}

async fn wait_ready(
    process: ChildProcess,
    check: &Check,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<ChildProcess, TargetError> {
    let deadline = Instant::now() + timeout;
    let watch = process.watch();
    let log = process.log().map(Path::to_path_buf);
    let grace = process.stop_grace();
    let mut last: String;
    loop {
        if let Some(status) = watch.exited() {
            let tail = log_tail(&watch, log.as_deref());
            let _ = process.stop().await;
            return Err(ExternalError::Exited {
                status: status.to_string(),
                check: check.describe(),
                tail,
            }
            .into());
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let attempt = tokio::select! {
            attempt = tokio::time::timeout(remaining.max(Duration::from_millis(1)), check.attempt()) => attempt,
            _ = cancel.cancelled() => {
                let stopped = describe(process.stop().await, grace);
                return Err(TargetError::Interrupted { stopped });
            }
        };
        match attempt {
            Ok(Ok(())) => return Ok(process),
            Ok(Err(error)) => last = error.to_string(),
            Err(_) => last = "attempt cut short by the timeout".into(),
        }
        if Instant::now() >= deadline {
            let tail = log_tail(&watch, log.as_deref());
            let stopped = describe(process.stop().await, grace);
            return Err(ExternalError::NotReady {
                timeout: humantime::format_duration(timeout).to_string(),
                check: check.describe(),
                last,
                stopped,
                tail,
            }
            .into());
        }
        tokio::time::sleep(READY_POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

fn watched(pid: u32, key: &str) -> Result<u32, ExternalError> {
    if procfs::alive(pid) {
        Ok(pid)
    } else {
        Err(ExternalError::NoProcess {
            source_key: key.into(),
            pid,
        })
    }
}

fn read_pid_file(path: &Path) -> Result<u32, ExternalError> {
    let failed = |reason: String| ExternalError::PidFile {
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

/// Fails a sample once the server's process is gone.
struct Liveness {
    pid: u32,
    watch: Option<(ExitWatch, Option<PathBuf>)>,
}

#[async_trait::async_trait]
impl StateSource for Liveness {
    async fn read(&self) -> Result<StateReading, SourceError> {
        if let Some((watch, log)) = &self.watch {
            if let Some(status) = watch.exited() {
                return Err(SourceError::ServerExited {
                    pid: self.pid,
                    status: status.to_string(),
                    tail: log_tail(watch, log.as_deref()),
                });
            }
        } else if !procfs::alive(self.pid) {
            return Err(SourceError::WatchedGone { pid: self.pid });
        }
        Ok(StateReading::default())
    }
}
