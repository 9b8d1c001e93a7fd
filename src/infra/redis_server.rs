//! A private `redis-server` for one run (or one test), so a Redis-backed scenario needs no
//! Redis set up by hand and never touches anyone else's.
//!
//! It listens on a free loopback port (never 6379), persists nothing, keeps its files and log in
//! a temporary folder, and runs as a [`ChildProcess`]: its own process group, stopped with SIGTERM
//! and then SIGKILL by [`PrivateRedis::stop`], killed on drop, on an abort, and when leakrun
//! itself dies.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::process::{ChildProcess, Options, Output, SpawnError, free_port};

/// The binary [`PrivateRedis::start`] runs.
pub const DEFAULT_BINARY: &str = "redis-server";

/// How long a start may take before it gives up, PING included.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `stop` waits after SIGTERM before it sends SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How long a failed start waits for the SIGKILLed child to be reaped.
const KILL_WAIT: Duration = Duration::from_millis(400);

/// Ports picked in a row before a start gives up on port races.
const PORT_ATTEMPTS: usize = 3;

/// Why a private redis-server could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RedisServerError {
    /// The binary is not installed (or not on PATH).
    #[error(
        "{binary:?} was not found on PATH: install it (`apt-get install redis-server`) or set \
         REDIS_URL / backend.url to use a Redis you run yourself"
    )]
    NotInstalled {
        /// The binary that was looked for.
        binary: OsString,
    },
    /// A temporary folder or log file could not be made.
    #[error("cannot prepare a folder for the private redis-server: {0}")]
    Io(#[from] std::io::Error),
    /// The binary exists but could not be run.
    #[error("cannot run {binary:?}: {source}")]
    Spawn {
        /// The binary that was run.
        binary: OsString,
        /// What the OS said.
        source: std::io::Error,
    },
    /// No free loopback port could be found.
    #[error("cannot find a free loopback port for redis-server: {0}")]
    NoPort(std::io::Error),
    /// The process exited before it answered PING.
    #[error("redis-server exited during start-up ({status}); its log {log:?} ends with: {tail}")]
    Exited {
        /// How it exited.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// The process did not answer PING in time.
    #[error("redis-server on port {port} did not answer PING within {secs} s; its log {log:?} ends with: {tail}")]
    NotAnswering {
        /// The port it was told to listen on.
        port: u16,
        /// The time allowed.
        secs: u64,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// Waiting for the process to end failed.
    #[error("cannot stop redis-server (pid {pid}): {source}")]
    Stop {
        /// Its process id.
        pid: u32,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// A redis-server child process private to this run.
pub struct PrivateRedis {
    process: Option<ChildProcess>,
    pid: u32,
    port: u16,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for PrivateRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateRedis")
            .field("pid", &self.pid)
            .field("port", &self.port)
            .finish()
    }
}

impl PrivateRedis {
    /// Starts `redis-server` from PATH on a free loopback port and waits until it answers PING.
    pub async fn start() -> Result<Self, RedisServerError> {
        Self::start_with(DEFAULT_BINARY).await
    }

    /// Like [`start`](Self::start) with another binary (a name looked up on PATH, or a path).
    pub async fn start_with(binary: impl AsRef<OsStr>) -> Result<Self, RedisServerError> {
        let binary = binary.as_ref();
        // Leave room inside START_TIMEOUT to kill a server that never answered.
        let deadline = Instant::now() + START_TIMEOUT - KILL_WAIT;
        let dir = tempfile::Builder::new().prefix("leakrun-redis-").tempdir()?;
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port().map_err(RedisServerError::NoPort)?;
            let process = spawn(binary, port, dir.path())?;
            let pid = process.pid();
            match wait_until_ready(&process, port, dir.path(), deadline).await {
                Ok(()) => {
                    return Ok(Self {
                        process: Some(process),
                        pid,
                        port,
                        dir,
                    });
                }
                Err(error) => {
                    // Never leave a half-started server behind.
                    process.kill().await;
                    // Another process may have taken the port between our probe and redis'
                    // bind: try a new one while time is left. Anything else is final.
                    let retry = matches!(error, RedisServerError::Exited { .. }) && Instant::now() < deadline;
                    last_error = Some(error);
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| RedisServerError::NoPort(std::io::Error::other("no attempt was made"))))
    }

    /// The URL clients connect to, `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its log file.
    pub fn log_path(&self) -> PathBuf {
        log_path(self.dir.path())
    }

    /// Stops it: SIGTERM, then SIGKILL if it is still running after a grace period; waits for it.
    pub async fn stop(mut self) -> Result<(), RedisServerError> {
        let Some(process) = self.process.take() else {
            return Ok(());
        };
        let pid = self.pid;
        process.stop().await;
        if crate::process::procfs::alive(pid) {
            return Err(RedisServerError::Stop {
                pid,
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "still running after SIGKILL"),
            });
        }
        Ok(())
    }
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("redis-server.log")
}

fn spawn(binary: &OsStr, port: u16, dir: &Path) -> Result<ChildProcess, RedisServerError> {
    let mut command = std::process::Command::new(binary);
    command
        .arg("--port")
        .arg(port.to_string())
        .args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ])
        .arg("--dir")
        .arg(dir);
    let options = Options {
        output: Output::AppendLog(log_path(dir)),
        ..Options::private_server(log_path(dir), STOP_GRACE)
    };
    ChildProcess::spawn(command, &options).map_err(|error| match error {
        SpawnError::Log { source, .. } => RedisServerError::Io(source),
        error if error.not_found() => RedisServerError::NotInstalled {
            binary: binary.to_os_string(),
        },
        SpawnError::Spawn { source, .. } => RedisServerError::Spawn {
            binary: binary.to_os_string(),
            source,
        },
    })
}

/// Polls PING until it answers, the child exits, or `deadline` passes.
async fn wait_until_ready(
    process: &ChildProcess,
    port: u16,
    dir: &Path,
    deadline: Instant,
) -> Result<(), RedisServerError> {
    let url = format!("redis://127.0.0.1:{port}/");
    loop {
        if let Some(status) = process.exited() {
            return Err(RedisServerError::Exited {
                status: status.to_string(),
                log: log_path(dir),
                tail: log_tail(dir),
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RedisServerError::NotAnswering {
                port,
                secs: START_TIMEOUT.as_secs(),
                log: log_path(dir),
                tail: log_tail(dir),
            });
        }
        if tokio::time::timeout(left, ping(&url)).await.unwrap_or(false) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25).min(left)).await;
    }
}

async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)));
    let Ok(mut conn) = client.get_multiplexed_async_connection_with_config(&config).await else {
        return false;
    };
    matches!(redis::cmd("PING").query_async::<String>(&mut conn).await, Ok(pong) if pong == "PONG")
}

fn log_tail(dir: &Path) -> String {
    let tail = crate::process::log::tail_lines(&log_path(dir), 5).join(" | ");
    if tail.is_empty() { "(empty)".to_string() } else { tail }
}
