//! The validated scenario: the only shape the runner sees. Every value here has been checked,
//! has its default filled in, and is in the unit the runner works in.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units::{duration_text, option_duration_text};

/// A scenario the runner can trust.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scenario {
    /// Short name; the result lands in `results/<name>.json`.
    pub name: String,
    /// What bug this scenario expresses, in the author's words.
    pub description: String,
    /// The server under test.
    pub server: ServerSpec,
    /// The channel layer behind the embedded server.
    pub backend: BackendSpec,
    /// Rooms and the clients in each.
    pub rooms: Vec<RoomSpec>,
    /// HTTP workloads, beside or instead of rooms.
    #[serde(default)]
    pub http: Vec<HttpWorkload>,
    /// Durations and iteration counts.
    pub run: RunSpec,
    /// Which verdicts the scenario expects to be bad (positive controls).
    pub expect: Expectation,
    /// Limits the verdicts are judged against.
    pub thresholds: Thresholds,
}

/// Which server is under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// leakrun's own warp server, started in-process.
    Embedded,
    /// A server leakrun did not write: started by `command` or watched by `pid` / `pid_file`.
    External,
}

/// `[server]`, validated: the server under test is one kind or the other, and only its own keys
/// exist. In results it is written as one flat table (`target` plus every key), as before.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(into = "ServerRecord", from = "ServerRecord")]
pub enum ServerSpec {
    /// leakrun's own warp server, started in-process.
    Embedded(EmbeddedSpec),
    /// A server leakrun did not write: started by `command` or watched by `pid` / `pid_file`.
    External(ExternalSpec),
}

impl ServerSpec {
    /// Which kind of server this is.
    pub fn target(&self) -> Target {
        match self {
            ServerSpec::Embedded(_) => Target::Embedded,
            ServerSpec::External(_) => Target::External,
        }
    }

    /// The embedded server's keys, if that is the target.
    pub fn embedded(&self) -> Option<&EmbeddedSpec> {
        match self {
            ServerSpec::Embedded(spec) => Some(spec),
            ServerSpec::External(_) => None,
        }
    }

    /// The embedded server's keys, to change them (overrides, `--backend`).
    pub fn embedded_mut(&mut self) -> Option<&mut EmbeddedSpec> {
        match self {
            ServerSpec::Embedded(spec) => Some(spec),
            ServerSpec::External(_) => None,
        }
    }

    /// The external server's keys, if that is the target.
    pub fn external(&self) -> Option<&ExternalSpec> {
        match self {
            ServerSpec::External(spec) => Some(spec),
            ServerSpec::Embedded(_) => None,
        }
    }

    /// How many server instances clients spread over.
    pub fn instances(&self) -> usize {
        self.embedded().map_or(1, |e| e.instances)
    }
}

/// The embedded server's keys of `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddedSpec {
    /// Address the embedded server listens on; always a loopback address.
    pub host: IpAddr,
    /// Port of the first instance (instance `i` listens on `port + i`); 0: a free port each.
    pub port: u16,
    /// How many embedded server instances share the backend; clients spread round-robin.
    pub instances: usize,
    /// Messages a connection's channel holds before further ones are dropped and counted.
    pub capacity: usize,
    /// Largest text frame the server forwards; larger ones are counted and ignored.
    pub max_frame: usize,
    /// Fault switches that exist to prove the detectors.
    pub faults: Faults,
    /// The key/value cache behind `/cache/{key}` and `/info`.
    pub cache: CacheConfig,
    /// Mean bytes allocated between sampled allocations of the server's heap (allocation sites);
    /// 0: no sampling.
    #[serde(default = "default_heap_sample")]
    pub heap_sample: u64,
}

/// One sampled allocation per 512 KiB allocated on average, as jemalloc's `prof.lg_sample`
/// default of 19.
pub const DEFAULT_HEAP_SAMPLE: u64 = 512 * 1024;

fn default_heap_sample() -> u64 {
    DEFAULT_HEAP_SAMPLE
}

impl Default for EmbeddedSpec {
    /// One instance on a free loopback port, the defaults of every key.
    fn default() -> Self {
        Self {
            host: loopback(),
            port: 0,
            instances: 1,
            capacity: 100,
            max_frame: 64 * 1024,
            faults: Faults::default(),
            cache: CacheConfig::default(),
            heap_sample: DEFAULT_HEAP_SAMPLE,
        }
    }
}

/// `[server]` as results record it: one flat table whatever the target (the embedded keys hold
/// their defaults for an external target).
#[derive(Serialize, Deserialize)]
struct ServerRecord {
    target: Target,
    #[serde(default = "loopback")]
    host: IpAddr,
    #[serde(default)]
    port: u16,
    instances: usize,
    capacity: usize,
    max_frame: usize,
    faults: Faults,
    #[serde(default)]
    cache: CacheConfig,
    #[serde(default = "default_heap_sample")]
    heap_sample: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external: Option<ExternalSpec>,
}

impl From<ServerSpec> for ServerRecord {
    fn from(spec: ServerSpec) -> Self {
        let (embedded, external) = match spec {
            ServerSpec::Embedded(embedded) => (embedded, None),
            ServerSpec::External(external) => (EmbeddedSpec::default(), Some(external)),
        };
        let target = if external.is_some() {
            Target::External
        } else {
            Target::Embedded
        };
        Self {
            target,
            host: embedded.host,
            port: embedded.port,
            instances: embedded.instances,
            capacity: embedded.capacity,
            max_frame: embedded.max_frame,
            faults: embedded.faults,
            cache: embedded.cache,
            heap_sample: embedded.heap_sample,
            external,
        }
    }
}

impl From<ServerRecord> for ServerSpec {
    fn from(record: ServerRecord) -> Self {
        match record.external {
            Some(external) => ServerSpec::External(external),
            None => ServerSpec::Embedded(EmbeddedSpec {
                host: record.host,
                port: record.port,
                instances: record.instances,
                capacity: record.capacity,
                max_frame: record.max_frame,
                faults: record.faults,
                cache: record.cache,
                heap_sample: record.heap_sample,
            }),
        }
    }
}

/// How the cache limits itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// At most `max_items` entries, each for at most `ttl`.
    Bounded,
    /// Every key ever written stays: the leaky cache.
    Unbounded,
}

/// The cache's settings: `[server.cache]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    /// Bounded or not.
    pub mode: CacheMode,
    /// Most entries held (bounded only).
    pub max_items: usize,
    /// How long an entry lives after its last write (bounded only).
    #[serde(with = "duration_text")]
    pub ttl: Duration,
    /// Largest value a `PUT` may send; larger bodies are refused with 413.
    pub max_body: usize,
}

impl Default for CacheConfig {
    /// The well-behaved cache of the seed: 1,000 items, 60 seconds; values up to 1 MiB.
    fn default() -> Self {
        Self {
            mode: CacheMode::Bounded,
            max_items: 1000,
            ttl: Duration::from_secs(60),
            max_body: 1024 * 1024,
        }
    }
}

/// An external server under test: how leakrun gets hold of its process, and how clients reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalSpec {
    /// Started by leakrun, or watched.
    pub process: ProcessSpec,
    /// WebSocket URL with `{room}` where the room name goes, e.g. `ws://127.0.0.1:8000/ws/chat/{room}/`.
    pub ws_url: String,
    /// Base URL of the server's plain HTTP side, for HTTP workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_url: Option<String>,
    /// The URLs may name a host other than loopback.
    pub allow_remote: bool,
    /// How a message wraps the envelope token: text with one `{{envelope}}`; none: the bare token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_template: Option<String>,
    /// A URL answering a JSON document whose numbers become state series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats_url: Option<String>,
    /// Names in the stats document that are running totals (recorded, not judged); a trailing `*`
    /// matches any rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stats_counters: Vec<String>,
}

/// A heap probe leakrun adds to a server it starts, without changing the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeapProbe {
    /// None: the server's resident memory is judged.
    None,
    /// tracemalloc in every Python process of the server, through a `sitecustomize` helper.
    Python,
    /// leakrun's counting allocator preloaded into every process of the server (`LD_PRELOAD`).
    Malloc,
}

/// `server.heap` and its settings, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeapSpec {
    /// Which probe.
    pub probe: HeapProbe,
    /// Traceback frames kept per allocation (Python).
    pub frames: u32,
    /// Allocation sites reported after each iteration.
    pub sites: usize,
    /// Mean bytes allocated between sampled allocations (malloc); 0: no sites.
    #[serde(default = "default_heap_sample")]
    pub sample_bytes: u64,
}

impl Default for HeapSpec {
    /// No probe; one frame, ten sites and one sample per 512 KiB when one is chosen.
    fn default() -> Self {
        Self {
            probe: HeapProbe::None,
            frames: 1,
            sites: 10,
            sample_bytes: DEFAULT_HEAP_SAMPLE,
        }
    }
}

/// How leakrun gets hold of an external server's process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProcessSpec {
    /// leakrun starts it, waits until it is ready, and stops it after the run.
    Command(CommandSpec),
    /// A running process leakrun only watches.
    Pid {
        /// Its process id.
        pid: u32,
    },
    /// A running process, its id read from a file when the run starts; only watched.
    PidFile {
        /// The file holding the process id.
        path: std::path::PathBuf,
    },
}

/// A server process leakrun starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandSpec {
    /// What to run.
    pub line: CommandLine,
    /// Working directory; none: leakrun's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<std::path::PathBuf>,
    /// Variables added to leakrun's environment for the server.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub env: std::collections::BTreeMap<String, String>,
    /// When the server counts as ready.
    pub ready: Readiness,
    /// Bound on waiting for readiness.
    #[serde(with = "duration_text")]
    pub ready_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when stopping it.
    #[serde(with = "duration_text")]
    pub stop_grace: Duration,
    /// The heap probe leakrun adds to it.
    #[serde(default)]
    pub heap: HeapSpec,
}

/// A command line as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CommandLine {
    /// One string, run by `sh -c` (variables, redirections and `&&` work).
    Shell(String),
    /// Program and arguments, run as they are.
    Argv(Vec<String>),
}

impl CommandLine {
    /// The program and its arguments as leakrun runs them.
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandLine::Shell(line) => vec!["sh".into(), "-c".into(), line.clone()],
            CommandLine::Argv(argv) => argv.clone(),
        }
    }

    /// The line for messages.
    pub fn display(&self) -> String {
        match self {
            CommandLine::Shell(line) => line.clone(),
            CommandLine::Argv(argv) => argv.join(" "),
        }
    }
}

/// When a started server counts as ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "at", rename_all = "snake_case")]
pub enum Readiness {
    /// An HTTP GET of this URL gets any response.
    Url(String),
    /// A TCP connection to this port on the `ws_url` host is accepted.
    Port(u16),
}

fn loopback() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// Deliberate faults. All off unless a scenario turns them on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// Silently drop every Nth group message in the channel layer.
    pub drop_one_in: Option<u64>,
    /// Delay each group send in the channel layer by this long: a slow server, whose connection
    /// cannot write out its channel while it sends.
    #[serde(default, with = "option_duration_text")]
    pub delay_group_send: Option<Duration>,
    /// Keep a closed connection's group membership and channel buffer.
    pub keep_membership_on_disconnect: bool,
    /// Bytes the server keeps for good after each closed connection (0: off): the known-size leak
    /// that checks the bytes-per-connection figure.
    pub leak_per_connection: usize,
    /// Bytes each open connection holds in 4 KiB pieces and frees when it closes (0: off): heap back
    /// to baseline, resident memory kept by the allocator — the retention control.
    pub hold_per_connection: usize,
    /// The django/channels#1683 mechanism on the `redis-lists` layer: the shared receive belongs
    /// to a waiting connection and is cancelled when that connection closes, after Redis popped a
    /// message and before it was handed on.
    pub cancel_shared_receive: bool,
}

impl Faults {
    /// True when any switch in the server itself (not the layer) is on.
    pub fn any_in_server(&self) -> bool {
        self.leak_per_connection > 0 || self.hold_per_connection > 0
    }
}

/// Channel-layer backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// In-process layer; needs nothing installed.
    Memory,
    /// Redis pub/sub: a Redis channel per group and per connection channel.
    Redis,
    /// The channels_redis-style core layer: sorted-set groups, one inbox per server instance, one
    /// shared blocking receiver per instance.
    RedisLists,
    /// RabbitMQ: an exchange per run, a queue per server instance bound by group.
    Amqp,
}

impl BackendKind {
    /// Every kind with the name a scenario writes for it.
    pub const ALL: &'static [(&'static str, BackendKind)] = &[
        ("memory", BackendKind::Memory),
        ("redis", BackendKind::Redis),
        ("redis-lists", BackendKind::RedisLists),
        ("amqp", BackendKind::Amqp),
    ];

    /// The name as written in a scenario.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, kind)| *kind == self)
            .map_or("memory", |(name, _)| name)
    }

    /// The kind a name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, kind)| *kind)
    }

    /// The kinds, quoted, for messages.
    pub fn valid_names() -> String {
        Self::ALL
            .iter()
            .map(|(n, _)| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// True for the layers that talk to Redis.
    pub fn is_redis(self) -> bool {
        matches!(self, BackendKind::Redis | BackendKind::RedisLists)
    }

    /// The environment variable naming a server for this kind, if it needs one.
    pub fn url_variable(self) -> Option<&'static str> {
        match self {
            BackendKind::Memory => None,
            BackendKind::Redis | BackendKind::RedisLists => Some("REDIS_URL"),
            BackendKind::Amqp => Some("AMQP_URL"),
        }
    }

    /// The server the kind talks to, in messages: `Redis` or `RabbitMQ` (`in-process` for memory).
    pub fn server_name(self) -> &'static str {
        match self {
            BackendKind::Memory => "in-process",
            BackendKind::Redis | BackendKind::RedisLists => "Redis",
            BackendKind::Amqp => "RabbitMQ",
        }
    }

    /// The server program leakrun starts when no URL is given (what a CI job must install).
    pub fn private_server(self) -> Option<&'static str> {
        match self {
            BackendKind::Memory => None,
            BackendKind::Redis | BackendKind::RedisLists => Some("redis-server"),
            BackendKind::Amqp => Some("rabbitmq-server"),
        }
    }
}

/// `[backend]`, validated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendSpec {
    /// Which channel layer the embedded server uses.
    pub kind: BackendKind,
    /// Server URL from the scenario; without one, the environment's (`REDIS_URL`, `AMQP_URL`) or
    /// a private server leakrun starts for the run.
    pub url: Option<String>,
    /// Where `url` came from when not from the scenario file (e.g. `REDIS_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_source: Option<String>,
    /// External target: the variable the command gets the service's URL in (default: the
    /// kind's `REDIS_URL` / `AMQP_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// The URL may name a host other than loopback.
    pub allow_remote: bool,
    /// `redis-lists`: how long a group membership lives without being refreshed.
    #[serde(with = "duration_text")]
    pub group_expiry: Duration,
    /// `redis-lists`: how long an undelivered message waits in a channel.
    #[serde(with = "duration_text")]
    pub expiry: Duration,
}

/// One room and its client groups.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomSpec {
    /// Room (group) name, as it appears in `/ws/chat/{room}`.
    pub name: String,
    /// Groups of clients joining this room.
    pub clients: Vec<ClientGroup>,
}

/// A group of identical clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientGroup {
    /// How the clients connect and leave.
    pub pattern: Pattern,
    /// How many clients of this kind.
    pub count: usize,
    /// Messages per second each client sends while connected (0: listen only).
    pub rate: f64,
    /// Size in bytes of each text frame sent (the envelope padded up to this size).
    pub payload: usize,
    /// Whether the client reads what the server sends.
    pub reader: Reader,
    /// When each session's first message goes out.
    #[serde(default)]
    pub phase: SendPhase,
}

/// When a session's send schedule starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SendPhase {
    /// At a random offset within the first send interval, seeded per run: a thousand clients at
    /// one message per 10 s send about a hundred messages a second, not a thousand in a burst.
    #[default]
    Spread,
    /// The moment the session connects: every client connected together sends together.
    Aligned,
}

/// How a client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reader {
    /// Reads every frame as it arrives.
    Normal,
    /// Never reads: a frozen tab. The server's buffers for it fill up.
    Paused,
}

/// How a client closes its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseMode {
    /// Sends a close frame and waits for the server's.
    Graceful,
    /// Drops the TCP connection without a close frame, like a killed process.
    Abrupt,
}

/// Connection patterns.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Pattern {
    /// Connect at the start of the iteration (spread over `ramp`) and stay until it ends.
    Steady {
        /// Time over which the group's clients connect, evenly spread.
        #[serde(default, with = "duration_text")]
        ramp: Duration,
    },
    /// Connect, stay `up`, close, wait `down`, reconnect as a new sender; repeat.
    Cycle {
        /// How long each session stays connected.
        #[serde(with = "duration_text")]
        up: Duration,
        /// How long to wait before reconnecting.
        #[serde(with = "duration_text")]
        down: Duration,
        /// How each session closes.
        close: CloseMode,
        /// Time over which the group's clients make their first connect, evenly spread.
        #[serde(default, with = "duration_text")]
        ramp: Duration,
    },
    /// Browser tabs: open all over `ramp`, hold, close them all; one wave per iteration.
    Tabs {
        /// Time over which the tabs open, evenly spread.
        #[serde(with = "duration_text")]
        ramp: Duration,
        /// How long the tabs stay open after the ramp; none: until the iteration ends.
        #[serde(with = "option_duration_text")]
        hold: Option<Duration>,
        /// How the tabs close.
        close: CloseMode,
    },
}

impl Pattern {
    /// The pattern's name as written in a scenario.
    pub fn name(&self) -> &'static str {
        match self {
            Pattern::Steady { .. } => "steady",
            Pattern::Cycle { .. } => "cycle",
            Pattern::Tabs { .. } => "tabs",
        }
    }
}

/// One `[[http]]` workload: requests of one kind, sent by workers (closed model) or on a
/// schedule (open model).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpWorkload {
    /// The route's label in results: the `name` given, else `METHOD path`.
    pub name: String,
    /// Request method.
    pub method: HttpMethod,
    /// Path template; `{key}` is replaced by a key from `keys`.
    pub path: String,
    /// Where keys come from, when the path has `{key}`.
    pub keys: Option<KeySpace>,
    /// Bytes of random text sent as the body of each request (0: none).
    pub body: usize,
    /// Closed or open model.
    pub model: LoadModel,
    /// Requests per iteration, across all workers; none: as many as fit in `run.duration`.
    pub requests: Option<u64>,
    /// Reuse each connection for the next request; false: one connection per request.
    pub keep_alive: bool,
    /// Bound on one request, from sending it to the end of its response.
    #[serde(with = "duration_text")]
    pub timeout: Duration,
}

/// Request methods a workload may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET.
    Get,
    /// PUT.
    Put,
    /// POST.
    Post,
    /// DELETE.
    Delete,
}

impl HttpMethod {
    /// Every method with the name a scenario writes for it.
    pub const ALL: &'static [(&'static str, HttpMethod)] = &[
        ("GET", HttpMethod::Get),
        ("PUT", HttpMethod::Put),
        ("POST", HttpMethod::Post),
        ("DELETE", HttpMethod::Delete),
    ];

    /// The method as written.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("GET", |(name, _)| name)
    }

    /// True for the methods that send a body.
    pub fn has_body(self) -> bool {
        matches!(self, HttpMethod::Put | HttpMethod::Post)
    }
}

/// The keys a path's `{key}` takes: `k` and a zero-padded index below `count`, so every key of
/// one space has the same length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySpace {
    /// How many distinct keys.
    pub count: u64,
    /// In which order they are drawn.
    pub order: KeyOrder,
}

/// How keys are drawn from a key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyOrder {
    /// Uniformly at random.
    Random,
    /// 0, 1, 2, ... across the whole run (not restarting each iteration), wrapping at the end.
    Sequential,
}

/// How a workload paces its requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LoadModel {
    /// `workers` connections, each sending its next request when the last was answered (as `hey`
    /// and `wrk` do). Latency is the request's own time.
    Closed {
        /// Concurrent workers.
        workers: usize,
    },
    /// `rate` requests per second on a fixed schedule, sent over `connections` connections.
    /// Latency counts from each request's intended time, so a slow server cannot hide its stalls
    /// by slowing the sender down (no coordinated omission).
    Open {
        /// Requests per second, across the workload.
        rate: f64,
        /// Connections sending the schedule.
        connections: usize,
    },
}

impl LoadModel {
    /// Connections (and so tasks) the workload uses.
    pub fn concurrency(&self) -> usize {
        match self {
            LoadModel::Closed { workers } => *workers,
            LoadModel::Open { connections, .. } => *connections,
        }
    }
}

/// `[run]`, validated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    /// How long clients send in each iteration.
    #[serde(with = "duration_text")]
    pub duration: Duration,
    /// How many iterations against the same server.
    pub iterations: u32,
    /// How many leading iterations are warm-up (excluded from leak fits).
    pub warmup: u32,
    /// Upper bound on waiting for in-flight messages after sending stops.
    #[serde(with = "duration_text")]
    pub drain: Duration,
    /// Upper bound on waiting for the server to report zero live connections.
    #[serde(with = "duration_text")]
    pub settle: Duration,
    /// Upper bound on one WebSocket connect (TCP and handshake).
    #[serde(with = "duration_text")]
    pub connect_timeout: Duration,
    /// Most WebSocket connects per second across the run; none: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_rate: Option<f64>,
    /// How often memory and server state are sampled for the timeline.
    #[serde(with = "duration_text")]
    pub sample_interval: Duration,
}

/// `[expect]`: which verdicts a scenario expects to come out bad.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Expectation {
    /// The scenario expects lost, duplicated, reordered or misrouted messages.
    pub gaps: bool,
    /// The scenario expects a latency threshold to be exceeded.
    pub latency_breach: bool,
    /// The scenario expects memory or server state to leak.
    pub leak: bool,
    /// The scenario expects the leak verdict to be retention: resident memory kept while the
    /// live heap comes back (the retention detector's positive control).
    #[serde(default)]
    pub retention: bool,
}

/// `[thresholds]`, validated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Thresholds {
    /// Lost messages allowed (gaps plus tail loss) before the gaps verdict fails.
    pub gaps: u64,
    /// Duplicated deliveries allowed.
    pub duplicates: u64,
    /// Out-of-order deliveries allowed.
    pub reordered: u64,
    /// Deliveries from another room allowed.
    pub misrouted: u64,
    /// Unconfirmed deliveries allowed (messages an abruptly closed sender may never have had
    /// read); `None`: counted, not judged.
    #[serde(default)]
    pub unconfirmed: Option<u64>,
    /// Delivery latency limits, per room.
    pub delivery: LatencyLimits,
    /// Limit on the p99 of WebSocket connect time.
    #[serde(with = "option_duration_text")]
    pub connect_p99: Option<Duration>,
    /// Limit on the p99 of each HTTP route's latency.
    #[serde(default, with = "option_duration_text")]
    pub http_p99: Option<Duration>,
    /// HTTP requests that may fail without an answer (connect, timeout, reset, ...) per route.
    #[serde(default)]
    pub http_errors: u64,
    /// Limits of the leak verdict.
    pub leak: LeakLimits,
}

/// Limits the leak verdict judges memory and state series against.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeakLimits {
    /// Live heap growth per iteration (robust slope, bytes) past which the heap leaks.
    pub heap_growth: u64,
    /// Resident memory growth per iteration past which RSS leaks; judged only where no exact heap
    /// series exists (an external server).
    pub rss_growth: u64,
    /// Resident memory kept above the live heap's growth, in bytes, past which a clean heap is
    /// reported as allocator retention.
    pub retention: u64,
    /// How far above its starting value a state counter (connections, memberships, ...) may end.
    pub state_growth: u64,
}

/// Percentile limits for one latency histogram.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencyLimits {
    /// Median limit.
    #[serde(with = "option_duration_text")]
    pub p50: Option<Duration>,
    /// 99th percentile limit.
    #[serde(with = "option_duration_text")]
    pub p99: Option<Duration>,
    /// 99.9th percentile limit.
    #[serde(with = "option_duration_text")]
    pub p999: Option<Duration>,
    /// Maximum limit.
    #[serde(with = "option_duration_text")]
    pub max: Option<Duration>,
}

impl Scenario {
    /// Total clients across all rooms and groups.
    pub fn client_count(&self) -> usize {
        self.rooms
            .iter()
            .flat_map(|room| &room.clients)
            .map(|group| group.count)
            .sum()
    }

    /// Total HTTP connections across all workloads.
    pub fn http_concurrency(&self) -> usize {
        self.http.iter().map(|w| w.model.concurrency()).sum()
    }
}
