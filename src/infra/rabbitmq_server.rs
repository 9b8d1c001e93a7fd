//! A private `rabbitmq-server` for one run (or one test binary), so an AMQP-backed scenario needs
//! no RabbitMQ set up by hand and never touches anyone else's (the machine's own broker on 5672
//! and its epmd on 4369 are never used, signalled or reconfigured).
//!
//! Everything is private and loopback-only: an `epmd` child of ours on a free loopback port
//! (`ERL_EPMD_PORT`), the broker's AMQP listener and its Erlang distribution port on free
//! loopback ports, a unique node name, and a temporary folder holding its config, data (mnesia),
//! logs and an empty plugin list (so no management plugin). The broker runs in the foreground as
//! the leader of its own process group; [`PrivateRabbitMq::stop`] sends SIGTERM to that group,
//! SIGKILL after a grace period, kills the helpers the VM spawned in groups of their own
//! (`erl_child_setup`, `inet_gethost`, the disk monitor shell), then stops our epmd. Dropping it
//! kills everything at once, and the PIDs are registered so an aborting Ctrl-C does too.

use std::ffi::{OsStr, OsString};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{ChildProcess, Options, SpawnError, Stopped, free_ports, procfs};

/// The binary [`PrivateRabbitMq::start`] runs.
pub const DEFAULT_BINARY: &str = "rabbitmq-server";

/// The epmd binary started next to the broker.
const EPMD_BINARY: &str = "epmd";

/// How long a start may take until the broker accepts an AMQP connection (it takes about 6 s).
pub const START_TIMEOUT: Duration = Duration::from_secs(25);

/// How long `stop` waits after SIGTERM before it sends SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long our epmd may take to listen.
const EPMD_START: Duration = Duration::from_secs(3);

/// Why a private rabbitmq-server could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RabbitMqServerError {
    /// The binary is not installed (or not on PATH).
    #[error(
        "{binary:?} was not found on PATH: install it (`apt-get install rabbitmq-server`) or set \
         AMQP_URL / backend.url to use a RabbitMQ you run yourself"
    )]
    NotInstalled {
        /// The binary that was looked for.
        binary: OsString,
    },
    /// A temporary folder or file could not be made.
    #[error("cannot prepare a folder for the private rabbitmq-server: {0}")]
    Io(#[from] std::io::Error),
    /// A binary exists but could not be run.
    #[error("cannot run {binary:?}: {source}")]
    Spawn {
        /// The binary that was run.
        binary: OsString,
        /// What the OS said.
        source: std::io::Error,
    },
    /// No free loopback port could be found.
    #[error("cannot find a free loopback port for rabbitmq-server: {0}")]
    NoPort(std::io::Error),
    /// epmd did not come up.
    #[error("the private epmd on port {port} did not start: {detail}")]
    Epmd {
        /// Its port.
        port: u16,
        /// What went wrong.
        detail: String,
    },
    /// The broker exited before it accepted an AMQP connection.
    #[error("rabbitmq-server exited during start-up ({status}); its output {log:?} ends with: {tail}")]
    Exited {
        /// How it exited.
        status: String,
        /// Its output file.
        log: PathBuf,
        /// The last lines of its output.
        tail: String,
    },
    /// The broker did not accept an AMQP connection in time.
    #[error(
        "rabbitmq-server on port {port} did not accept an AMQP connection within {secs} s; its \
         output {log:?} ends with: {tail}"
    )]
    NotAnswering {
        /// Its AMQP port.
        port: u16,
        /// The time allowed.
        secs: u64,
        /// Its output file.
        log: PathBuf,
        /// The last lines of its output.
        tail: String,
    },
    /// A process did not go away.
    #[error("cannot stop {what} (pid {pid}): {detail}")]
    Stop {
        /// Which process.
        what: &'static str,
        /// Its process id.
        pid: u32,
        /// What went wrong.
        detail: String,
    },
}

/// A rabbitmq-server (with its own epmd) private to this run.
pub struct PrivateRabbitMq {
    // Stopped (or killed on drop) broker first, then epmd: the broker deregisters from it.
    broker: Option<ChildProcess>,
    epmd: Option<ChildProcess>,
    pid: u32,
    epmd_pid: u32,
    port: u16,
    epmd_port: u16,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for PrivateRabbitMq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateRabbitMq")
            .field("pid", &self.pid)
            .field("epmd_pid", &self.epmd_pid)
            .field("port", &self.port)
            .finish()
    }
}

impl PrivateRabbitMq {
    /// Starts `rabbitmq-server` from PATH and waits until it accepts an AMQP connection.
    pub async fn start() -> Result<Self, RabbitMqServerError> {
        Self::start_with(DEFAULT_BINARY).await
    }

    /// Like [`start`](Self::start) with another binary (a name looked up on PATH, or a path).
    pub async fn start_with(binary: impl AsRef<OsStr>) -> Result<Self, RabbitMqServerError> {
        let binary = resolve(binary.as_ref())?;
        let dir = tempfile::Builder::new().prefix("leakrun-rabbitmq-").tempdir()?;
        let [port, dist_port, epmd_port] = match free_ports(3).map_err(RabbitMqServerError::NoPort)?[..] {
            [a, b, c] => [a, b, c],
            _ => {
                return Err(RabbitMqServerError::NoPort(std::io::Error::other(
                    "fewer than three ports",
                )));
            }
        };
        let deadline = Instant::now() + START_TIMEOUT;

        let epmd = spawn_epmd(epmd_port, dir.path())?;
        let epmd_pid = epmd.pid();
        if let Err(error) = wait_for_epmd(&epmd, epmd_port).await {
            epmd.kill().await;
            return Err(error);
        }
        let broker = match spawn_broker(&binary, dir.path(), port, dist_port, epmd_port) {
            Ok(broker) => broker,
            Err(error) => {
                epmd.kill().await;
                return Err(error);
            }
        };
        let pid = broker.pid();
        let mut server = Self {
            broker: Some(broker),
            epmd: Some(epmd),
            pid,
            epmd_pid,
            port,
            epmd_port,
            dir,
        };
        let ready = match server.broker.as_ref() {
            Some(broker) => wait_until_ready(broker, port, server.dir.path(), deadline).await,
            None => Ok(()),
        };
        match ready {
            Ok(()) => {
                if let Some(broker) = server.broker.as_mut() {
                    broker.adopt_helpers();
                }
                Ok(server)
            }
            Err(error) => {
                // Never leave a half-started broker behind.
                server.kill_all().await;
                Err(error)
            }
        }
    }

    /// The URL clients connect to, `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The loopback port of its AMQP listener.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's process id (the `rabbitmq-server` script, leader of its process group).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The process id of the epmd started for it.
    pub fn epmd_pid(&self) -> u32 {
        self.epmd_pid
    }

    /// The loopback port of that epmd.
    pub fn epmd_port(&self) -> u16 {
        self.epmd_port
    }

    /// The file holding the broker's standard output and error.
    pub fn log_path(&self) -> PathBuf {
        log_path(self.dir.path())
    }

    /// Every process of the broker still running: its group and the helpers the VM started in
    /// groups of their own (descendants of the broker), not including epmd.
    pub fn broker_pids(&self) -> Vec<u32> {
        procfs::descendants(self.pid).iter().map(|p| p.pid).collect()
    }

    /// Stops it: SIGTERM to the broker's process group and its helpers, SIGKILL after a grace
    /// period, then our epmd. Waits until they are gone.
    pub async fn stop(mut self) -> Result<(), RabbitMqServerError> {
        let mut result = Ok(());
        if let Some(mut broker) = self.broker.take() {
            // Helpers started since the start (a disk monitor's shell) go with it too.
            broker.adopt_helpers();
            if broker.stop().await == Stopped::Killed && procfs::group_alive(self.pid) {
                result = Err(RabbitMqServerError::Stop {
                    what: "rabbitmq-server",
                    pid: self.pid,
                    detail: "still running after SIGKILL".into(),
                });
            }
        }
        if let Some(epmd) = self.epmd.take() {
            epmd.kill().await;
            if procfs::alive(self.epmd_pid) && result.is_ok() {
                result = Err(RabbitMqServerError::Stop {
                    what: "epmd",
                    pid: self.epmd_pid,
                    detail: "still running after SIGKILL".into(),
                });
            }
        }
        result
    }

    /// SIGKILL for everything at once (failed start).
    async fn kill_all(&mut self) {
        if let Some(mut broker) = self.broker.take() {
            broker.adopt_helpers();
            broker.kill().await;
        }
        if let Some(epmd) = self.epmd.take() {
            epmd.kill().await;
        }
    }
}

/// The binary to run: Debian's `/usr/sbin/rabbitmq-server` is a wrapper that re-runs the real
/// script as the `rabbitmq` user with its system-wide log redirection, which would neither read
/// our environment reliably nor write to our folder, so the real script next to it is used.
fn resolve(binary: &OsStr) -> Result<PathBuf, RabbitMqServerError> {
    let not_installed = || RabbitMqServerError::NotInstalled {
        binary: binary.to_os_string(),
    };
    let path = Path::new(binary);
    let found = if path.components().count() > 1 {
        path.is_file().then(|| path.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(binary))
                .find(|candidate| candidate.is_file())
        })
    };
    let found = found.ok_or_else(not_installed)?;
    let real = std::fs::canonicalize(&found).unwrap_or(found);
    if real.file_name() == Some(OsStr::new("rabbitmq-script-wrapper"))
        && let Some(script) = real.parent().map(|dir| dir.join("rabbitmq-server"))
        && script.is_file()
    {
        return Ok(script);
    }
    Ok(real)
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("rabbitmq-server.out")
}

fn spawn_error(binary: &Path, source: std::io::Error) -> RabbitMqServerError {
    if source.kind() == std::io::ErrorKind::NotFound {
        RabbitMqServerError::NotInstalled {
            binary: binary.as_os_str().to_os_string(),
        }
    } else {
        RabbitMqServerError::Spawn {
            binary: binary.as_os_str().to_os_string(),
            source,
        }
    }
}

/// Our own epmd, in the foreground (so it is our child with a known PID), loopback only.
fn spawn_epmd(port: u16, dir: &Path) -> Result<ChildProcess, RabbitMqServerError> {
    let mut command = Command::new(EPMD_BINARY);
    command
        .args(["-address", "127.0.0.1", "-port"])
        .arg(port.to_string())
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .env("ERL_EPMD_PORT", port.to_string());
    spawn_child(command, &dir.join("epmd.out"), Path::new(EPMD_BINARY))
}

/// Starts one process of the broker's as a [`ChildProcess`] writing to `log`.
fn spawn_child(command: Command, log: &Path, binary: &Path) -> Result<ChildProcess, RabbitMqServerError> {
    ChildProcess::spawn(command, &Options::private_server(log, STOP_GRACE)).map_err(|error| match error {
        SpawnError::Log { source, .. } => RabbitMqServerError::Io(source),
        SpawnError::Spawn { source, .. } => spawn_error(binary, source),
    })
}

async fn wait_for_epmd(epmd: &ChildProcess, port: u16) -> Result<(), RabbitMqServerError> {
    let deadline = Instant::now() + EPMD_START;
    loop {
        if let Some(status) = epmd.exited() {
            return Err(RabbitMqServerError::Epmd {
                port,
                detail: format!("exited ({status})"),
            });
        }
        if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(RabbitMqServerError::Epmd {
                port,
                detail: format!("not listening after {} s", EPMD_START.as_secs()),
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn spawn_broker(
    binary: &Path,
    dir: &Path,
    port: u16,
    dist_port: u16,
    epmd_port: u16,
) -> Result<ChildProcess, RabbitMqServerError> {
    let config = dir.join("rabbitmq.conf");
    std::fs::write(
        &config,
        format!("listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users.guest = true\n"),
    )?;
    let plugins = dir.join("enabled_plugins");
    std::fs::write(&plugins, "[].\n")?;
    // An empty env file, so the system's rabbitmq-env.conf (node name, ports) is not read.
    let env_file = dir.join("rabbitmq-env.conf");
    std::fs::write(&env_file, "")?;
    let node = format!("leakrun-{}@localhost", crate::naming::unique_id());
    let mut command = Command::new(binary);
    command
        .current_dir(dir)
        .env("HOME", dir)
        .env("RABBITMQ_CONF_ENV_FILE", &env_file)
        .env("RABBITMQ_CONFIG_FILE", &config)
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
        .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", dir.join("log"))
        .env("RABBITMQ_PID_FILE", dir.join("rabbitmq.pid"))
        .env("RABBITMQ_FEATURE_FLAGS_FILE", dir.join("feature_flags"))
        .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
        .env("RABBITMQ_NODENAME", node)
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .env("RABBITMQ_DIST_PORT", dist_port.to_string())
        // The distribution listener on loopback too (it binds every interface otherwise).
        .env(
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
            "-kernel inet_dist_use_interface {127,0,0,1}",
        )
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .env_remove("ERL_FLAGS")
        .env_remove("RABBITMQ_ALLOW_INPUT");
    // Its own process group (as every child's), so one signal reaches the script and the VM.
    spawn_child(command, &log_path(dir), binary)
}

/// Polls until an AMQP connection (guest/guest) succeeds, the broker exits, or `deadline`.
async fn wait_until_ready(
    child: &ChildProcess,
    port: u16,
    dir: &Path,
    deadline: Instant,
) -> Result<(), RabbitMqServerError> {
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    loop {
        if let Some(status) = child.exited() {
            return Err(RabbitMqServerError::Exited {
                status: status.to_string(),
                log: log_path(dir),
                tail: log_tail(dir),
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RabbitMqServerError::NotAnswering {
                port,
                secs: START_TIMEOUT.as_secs(),
                log: log_path(dir),
                tail: log_tail(dir),
            });
        }
        // Only try AMQP once the port listens: a refused connect is cheap, a half-booted
        // broker's handshake is not.
        if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .is_ok()
        {
            let attempt = lapin::Connection::connect(&url, lapin::ConnectionProperties::default());
            if let Ok(Ok(conn)) = tokio::time::timeout(left.min(Duration::from_secs(3)), attempt).await {
                let _ = conn.close(200, "ready".into()).await;
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100).min(left)).await;
    }
}

fn log_tail(dir: &Path) -> String {
    let tail = crate::process::log::tail_lines(&log_path(dir), 5).join(" | ");
    if tail.is_empty() { "(empty)".to_string() } else { tail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_is_not_installed() {
        let error = resolve(OsStr::new("leakrun-no-such-rabbitmq-server")).expect_err("missing");
        assert!(matches!(error, RabbitMqServerError::NotInstalled { .. }), "{error}");
    }
}
