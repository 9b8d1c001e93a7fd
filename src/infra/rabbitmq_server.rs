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
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The binary [`PrivateRabbitMq::start`] runs.
pub const DEFAULT_BINARY: &str = "rabbitmq-server";

/// The epmd binary started next to the broker.
const EPMD_BINARY: &str = "epmd";

/// How long a start may take until the broker accepts an AMQP connection (it takes about 6 s).
pub const START_TIMEOUT: Duration = Duration::from_secs(25);

/// How long `stop` waits after SIGTERM before it sends SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long we wait for a SIGKILLed process to go.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// How long our epmd may take to listen.
const EPMD_START: Duration = Duration::from_secs(3);

/// Ports the machine's own RabbitMQ and epmd use (AMQP, distribution, epmd): never taken.
const RESERVED_PORTS: [u16; 3] = [5672, 25672, 4369];

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
#[derive(Debug)]
pub struct PrivateRabbitMq {
    broker: Option<Child>,
    epmd: Option<Child>,
    pid: u32,
    /// The VM and its helpers, seen once the broker was ready (registered for the abort path,
    /// which SIGKILLs PIDs one by one, not groups).
    helpers: Vec<u32>,
    epmd_pid: u32,
    port: u16,
    epmd_port: u16,
    dir: tempfile::TempDir,
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
        let [port, dist_port, epmd_port] = free_ports()?;
        let deadline = Instant::now() + START_TIMEOUT;

        let mut epmd = spawn_epmd(epmd_port, dir.path())?;
        let epmd_pid = epmd.id().unwrap_or_default();
        super::register(epmd_pid);
        if let Err(error) = wait_for_epmd(&mut epmd, epmd_port).await {
            kill_child(&mut epmd, epmd_pid).await;
            return Err(error);
        }

        let mut broker = match spawn_broker(&binary, dir.path(), port, dist_port, epmd_port) {
            Ok(child) => child,
            Err(error) => {
                kill_child(&mut epmd, epmd_pid).await;
                return Err(error);
            }
        };
        let pid = broker.id().unwrap_or_default();
        super::register(pid);
        let mut server = Self {
            broker: None,
            epmd: Some(epmd),
            pid,
            helpers: Vec::new(),
            epmd_pid,
            port,
            epmd_port,
            dir,
        };
        match wait_until_ready(&mut broker, port, server.dir.path(), deadline).await {
            Ok(()) => {
                server.broker = Some(broker);
                server.helpers = descendants(pid);
                for &helper in &server.helpers {
                    super::register(helper);
                }
                Ok(server)
            }
            Err(error) => {
                // Never leave a half-started broker behind.
                server.broker = Some(broker);
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
        descendants(self.pid)
    }

    /// Stops it: SIGTERM to the broker's process group, SIGKILL after a grace period, then the
    /// VM's helpers and our epmd. Waits until they are gone.
    pub async fn stop(mut self) -> Result<(), RabbitMqServerError> {
        let mut result = Ok(());
        if let Some(mut broker) = self.broker.take() {
            let helpers = descendants(self.pid);
            signal_group(self.pid, Signal::Term);
            let exited = tokio::time::timeout(STOP_GRACE, broker.wait()).await.is_ok();
            if !exited {
                signal_group(self.pid, Signal::Kill);
                if tokio::time::timeout(KILL_WAIT, broker.wait()).await.is_err() {
                    result = Err(RabbitMqServerError::Stop {
                        what: "rabbitmq-server",
                        pid: self.pid,
                        detail: "still running after SIGKILL".into(),
                    });
                }
            }
            reap_helpers(&helpers).await;
            super::unregister(self.pid);
            self.forget_helpers();
        }
        if let Some(mut epmd) = self.epmd.take() {
            let pid = self.epmd_pid;
            kill_child(&mut epmd, pid).await;
            if matches!(epmd.try_wait(), Ok(None)) && result.is_ok() {
                result = Err(RabbitMqServerError::Stop {
                    what: "epmd",
                    pid,
                    detail: "still running after SIGKILL".into(),
                });
            }
        }
        result
    }

    fn forget_helpers(&mut self) {
        for helper in std::mem::take(&mut self.helpers) {
            super::unregister(helper);
        }
    }

    /// SIGKILL for everything at once (failed start).
    async fn kill_all(&mut self) {
        if let Some(mut broker) = self.broker.take() {
            let helpers = descendants(self.pid);
            signal_group(self.pid, Signal::Kill);
            let _ = tokio::time::timeout(KILL_WAIT, broker.wait()).await;
            reap_helpers(&helpers).await;
            super::unregister(self.pid);
        }
        if let Some(mut epmd) = self.epmd.take() {
            kill_child(&mut epmd, self.epmd_pid).await;
        }
    }
}

impl Drop for PrivateRabbitMq {
    fn drop(&mut self) {
        if let Some(mut broker) = self.broker.take() {
            for pid in descendants(self.pid) {
                signal_pid(pid, Signal::Kill);
            }
            signal_group(self.pid, Signal::Kill);
            let _ = broker.start_kill();
            super::unregister(self.pid);
            self.forget_helpers();
        }
        if let Some(mut epmd) = self.epmd.take() {
            let _ = epmd.start_kill();
            super::unregister(self.epmd_pid);
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

/// Three distinct loopback ports that were free a moment ago, none of the machine's broker's.
fn free_ports() -> Result<[u16; 3], RabbitMqServerError> {
    // Hold all listeners until the three are chosen so they differ.
    let mut held = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..16 {
        if ports.len() == 3 {
            break;
        }
        let listener =
            TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).map_err(RabbitMqServerError::NoPort)?;
        let port = listener.local_addr().map_err(RabbitMqServerError::NoPort)?.port();
        if !RESERVED_PORTS.contains(&port) {
            ports.push(port);
        }
        held.push(listener);
    }
    match ports[..] {
        [amqp, dist, epmd] => Ok([amqp, dist, epmd]),
        _ => Err(RabbitMqServerError::NoPort(std::io::Error::other(
            "the OS kept offering reserved ports",
        ))),
    }
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
fn spawn_epmd(port: u16, dir: &Path) -> Result<Child, RabbitMqServerError> {
    let log = std::fs::File::create(dir.join("epmd.out"))?;
    let log_err = log.try_clone()?;
    Command::new(EPMD_BINARY)
        .args(["-address", "127.0.0.1", "-port"])
        .arg(port.to_string())
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .env("ERL_EPMD_PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| spawn_error(Path::new(EPMD_BINARY), source))
}

async fn wait_for_epmd(epmd: &mut Child, port: u16) -> Result<(), RabbitMqServerError> {
    let deadline = Instant::now() + EPMD_START;
    loop {
        if let Ok(Some(status)) = epmd.try_wait() {
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
) -> Result<Child, RabbitMqServerError> {
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
    let log = std::fs::File::create(log_path(dir))?;
    let log_err = log.try_clone()?;
    let node = format!("leakrun-{}@localhost", crate::layer::redis::unique_id());
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
        .env_remove("RABBITMQ_ALLOW_INPUT")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        // Its own process group, so one signal reaches the script and the VM it started.
        .process_group(0)
        .kill_on_drop(true);
    command.spawn().map_err(|source| spawn_error(binary, source))
}

/// Polls until an AMQP connection (guest/guest) succeeds, the broker exits, or `deadline`.
async fn wait_until_ready(
    child: &mut Child,
    port: u16,
    dir: &Path,
    deadline: Instant,
) -> Result<(), RabbitMqServerError> {
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
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
    let text = std::fs::read_to_string(log_path(dir)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    if tail.is_empty() { "(empty)".to_string() } else { tail }
}

/// SIGKILLs a direct child of ours, waits for it, and forgets its PID.
async fn kill_child(child: &mut Child, pid: u32) {
    let _ = child.start_kill();
    let _ = tokio::time::timeout(KILL_WAIT, child.wait()).await;
    super::unregister(pid);
}

/// SIGKILLs the VM's helpers that outlived it (they sit in process groups of their own) and
/// waits, bounded, until they are gone.
async fn reap_helpers(helpers: &[u32]) {
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let alive: Vec<u32> = helpers.iter().copied().filter(|&pid| alive(pid)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return;
        }
        for pid in alive {
            signal_pid(pid, Signal::Kill);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; it is gone for our purposes once its state is Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Every live descendant of `root` (children, grandchildren, ...), from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parents = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command: state, ppid, ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    // Each pass adds the children of one found process: bounded by the process count.
    while i < found.len() && i <= parents.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        i += 1;
    }
    found.retain(|&pid| pid != root);
    found
}

#[derive(Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

#[cfg(unix)]
fn raw_signal(signal: Signal) -> libc::c_int {
    match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    }
}

/// Signals the process group led by `leader` (our broker child, started with its own group).
#[cfg(unix)]
fn signal_group(leader: u32, signal: Signal) {
    let Ok(pid) = libc::pid_t::try_from(leader) else { return };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals the process group we created for our child;
    // it touches no memory of ours.
    unsafe {
        libc::kill(-pid, raw_signal(signal));
    }
}

/// Signals one process (a helper of our broker).
#[cfg(unix)]
fn signal_pid(target: u32, signal: Signal) {
    let Ok(pid) = libc::pid_t::try_from(target) else { return };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a positive pid only sends a signal.
    unsafe {
        libc::kill(pid, raw_signal(signal));
    }
}

#[cfg(not(unix))]
fn signal_group(_leader: u32, _signal: Signal) {}

#[cfg(not(unix))]
fn signal_pid(_target: u32, _signal: Signal) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_not_reserved() {
        let ports = free_ports().expect("ports");
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
        assert!(ports.iter().all(|p| !RESERVED_PORTS.contains(p)));
    }

    #[test]
    fn missing_binary_is_not_installed() {
        let error = resolve(OsStr::new("leakrun-no-such-rabbitmq-server")).expect_err("missing");
        assert!(matches!(error, RabbitMqServerError::NotInstalled { .. }), "{error}");
    }
}
