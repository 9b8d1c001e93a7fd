//! The scenario file as written: serde structs that accept any shape of value a user might type,
//! keep the byte span of each value, and leave every judgement to `validate`.
//!
//! Unknown keys are not rejected here: `parse` collects all of them at once (serde_ignored), so a
//! user sees every misspelt key in one run rather than one per run.
//!
//! The same structs describe the format to editors: `leakrun schema` derives a JSON Schema from
//! them (schemars), the doc comments becoming its descriptions. A field's schema is that of the
//! value inside its span (`#[schemars(with = ...)]`), durations are strings with a unit, and the
//! schema, unlike the parser, does refuse unknown keys (`deny_unknown_fields` for schemars only),
//! because an editor should mark them as the parser's report does.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::units::{DURATION_PATTERN, RawSize};

/// A value with the byte span it was read from.
pub type S<T> = Spanned<T>;

/// A leakrun scenario: the server under test, its channel layer, rooms of WebSocket clients and
/// HTTP workloads, how long to run, and the verdicts expected.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(expecting = "a scenario table")]
#[schemars(deny_unknown_fields)]
pub struct RawScenario {
    /// The scenario's name (required): 1 to 99 letters, digits, `.`, `_` or `-`; the result lands
    /// in `results/<name>.json`.
    #[schemars(with = "String")]
    pub name: Option<S<String>>,
    /// One line on what the scenario reproduces.
    #[schemars(with = "Option<String>")]
    pub description: Option<S<String>>,
    /// `[server]`: the server under test (default: the embedded warp server on 127.0.0.1).
    #[schemars(with = "Option<RawServer>")]
    pub server: Option<S<RawServer>>,
    /// `[backend]`: the channel layer the embedded server uses.
    #[schemars(with = "Option<RawBackend>")]
    pub backend: Option<S<RawBackend>>,
    /// `[[rooms]]`: rooms of WebSocket clients.
    #[serde(default)]
    #[schemars(with = "Vec<RawRoom>")]
    pub rooms: Vec<S<RawRoom>>,
    /// `[[http]]`: HTTP workloads, beside or instead of rooms.
    #[serde(default)]
    #[schemars(with = "Vec<RawHttp>")]
    pub http: Vec<S<RawHttp>>,
    /// `[run]`: iterations and their timing.
    #[schemars(with = "Option<RawRun>")]
    pub run: Option<S<RawRun>>,
    /// `[expect]`: the verdicts the scenario expects (a positive control expects its fault found).
    #[schemars(with = "Option<RawExpect>")]
    pub expect: Option<S<RawExpect>>,
    /// `[thresholds]`: the limits the verdicts judge against.
    #[schemars(with = "Option<RawThresholds>")]
    pub thresholds: Option<S<RawThresholds>>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(expecting = "a table of server settings")]
#[schemars(deny_unknown_fields)]
pub struct RawServer {
    /// `"embedded"` (default: leakrun's own warp server) or `"external"` (a server leakrun did not
    /// write, started with `command` or watched through `pid` / `pid_file`).
    #[schemars(with = "Option<String>", extend("enum" = ["embedded", "external"]))]
    pub target: Option<S<String>>,
    /// Embedded: the loopback address to listen on (127.0.0.0/8, ::1, "localhost"); default
    /// "127.0.0.1".
    #[schemars(with = "Option<String>")]
    pub host: Option<S<String>>,
    /// Embedded: the port (0, the default: a free one); instance i listens on port + i.
    #[schemars(with = "Option<i64>")]
    pub port: Option<S<i64>>,
    /// Embedded: servers sharing one backend, clients assigned round-robin (default 1).
    #[schemars(with = "Option<i64>")]
    pub instances: Option<S<i64>>,
    /// Embedded: messages per connection channel before drops (default 100).
    #[schemars(with = "Option<i64>")]
    pub capacity: Option<S<i64>>,
    /// Embedded: larger text frames are counted and ignored (default "64KiB").
    #[schemars(with = "Option<RawSize>")]
    pub max_frame: Option<S<RawSize>>,
    /// `[server.faults]`: fault switches of the embedded server, for positive controls.
    #[schemars(with = "Option<RawFaults>")]
    pub faults: Option<S<RawFaults>>,
    /// External: the command that starts the server, a string (run by `sh -c`) or an array
    /// (program and arguments).
    #[schemars(with = "Option<RawCommand>")]
    pub command: Option<S<RawCommand>>,
    /// External: the command's working directory (default: the directory leakrun runs in).
    #[schemars(with = "Option<String>")]
    pub cwd: Option<S<String>>,
    /// External: variables added to leakrun's environment for the command.
    #[schemars(with = "Option<std::collections::BTreeMap<String, String>>")]
    pub env: Option<S<std::collections::BTreeMap<String, String>>>,
    /// External: ready when a GET of this URL gets any HTTP answer (default: the `ws_url`'s port
    /// accepts).
    #[schemars(with = "Option<String>")]
    pub ready_url: Option<S<String>>,
    /// External: ready when this port on the `ws_url` host accepts a connection.
    #[schemars(with = "Option<i64>")]
    pub ready_port: Option<S<i64>>,
    /// External: bound on waiting for ready (default "20s"); past it the run ends with exit 3.
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub ready_timeout: Option<S<String>>,
    /// External: time between SIGTERM and SIGKILL when stopping the server (default "5s").
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub stop_grace: Option<S<String>>,
    /// External, instead of `command`: the process id of a server you started; leakrun watches it
    /// and leaves it running.
    #[schemars(with = "Option<i64>")]
    pub pid: Option<S<i64>>,
    /// External, instead of `command`: a file holding that process id (read when the run starts).
    #[schemars(with = "Option<String>")]
    pub pid_file: Option<S<String>>,
    /// External: the WebSocket URL of a room; `{room}` is replaced by each room's name.
    #[schemars(with = "Option<String>")]
    pub ws_url: Option<S<String>>,
    /// External: the server's plain HTTP base URL, for `[[http]]` workloads.
    #[schemars(with = "Option<String>")]
    pub http_url: Option<S<String>>,
    /// External: URLs may name a host other than 127.0.0.1, ::1 or localhost (default false).
    #[schemars(with = "Option<bool>")]
    pub allow_remote: Option<S<bool>>,
    /// External: the text a client sends, with one `{{envelope}}` where the envelope token goes
    /// (default: the bare token).
    #[schemars(with = "Option<String>")]
    pub send_template: Option<S<String>>,
    /// External: a URL answering JSON; every non-negative number in it becomes a state series.
    #[schemars(with = "Option<String>")]
    pub stats_url: Option<S<String>>,
    /// External: names in the `stats_url` document that are running totals (`"frames_*"` matches a
    /// prefix): recorded, not judged.
    #[schemars(with = "Option<Vec<String>>")]
    pub stats_counters: Option<S<Vec<String>>>,
    /// External, with `command`: a heap probe leakrun adds to the server without changing it:
    /// `"python"` (tracemalloc, started by a `sitecustomize` on `PYTHONPATH`), `"malloc"`
    /// (leakrun's counting allocator preloaded with `LD_PRELOAD`: the exact heap of a dynamically
    /// linked glibc server on the system allocator) or `"none"` (default: resident memory only).
    #[schemars(with = "Option<String>", extend("enum" = ["none", "python", "malloc"]))]
    pub heap: Option<S<String>>,
    /// External, with `heap = "python"`: frames of each allocation's traceback kept (default 1:
    /// the line that allocated; more: the call path, at more cost).
    #[schemars(with = "Option<i64>")]
    pub heap_frames: Option<S<i64>>,
    /// External, with a heap probe: allocation sites reported after each iteration, largest
    /// growth first (default 10).
    #[schemars(with = "Option<i64>")]
    pub heap_sites: Option<S<i64>>,
    /// The embedded server, or external with `heap = "malloc"`: mean bytes allocated between
    /// sampled allocations, whose call stacks name the allocation sites that grew (default
    /// "512KiB"; smaller finds small leaks' sites sooner at more cost; 0: no sites).
    #[schemars(with = "Option<RawSize>")]
    pub heap_sample: Option<S<RawSize>>,
    /// `[server.cache]`: the embedded server's key/value cache behind `/cache/{key}`.
    #[schemars(with = "Option<RawCache>")]
    pub cache: Option<S<RawCache>>,
}

/// `[server.cache]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(expecting = "a table of cache settings")]
#[schemars(deny_unknown_fields)]
pub struct RawCache {
    /// `"bounded"` (default: `max_items`, `ttl`) or `"unbounded"` (every key stays).
    #[schemars(with = "Option<String>", extend("enum" = ["bounded", "unbounded"]))]
    pub mode: Option<S<String>>,
    /// Bounded: items kept (default 1000); the oldest write goes first.
    #[schemars(with = "Option<i64>")]
    pub max_items: Option<S<i64>>,
    /// Bounded: an entry lives this long after its last write (default "60s").
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub ttl: Option<S<String>>,
    /// Larger PUT bodies are answered 413 (default "1MiB").
    #[schemars(with = "Option<RawSize>")]
    pub max_body: Option<S<RawSize>>,
}

/// `server.command`: one string for `sh -c`, or program and arguments.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(
    untagged,
    expecting = "a string (run by `sh -c`) or an array of strings (program and arguments)"
)]
pub enum RawCommand {
    /// `command = "python3 manage.py runserver"`.
    Line(String),
    /// `command = ["python3", "server.py", "--port", "8000"]`.
    Argv(Vec<String>),
}

/// `[server.faults]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(expecting = "a table of fault switches")]
#[schemars(deny_unknown_fields)]
pub struct RawFaults {
    /// The layer silently drops every Nth group message.
    #[schemars(with = "Option<i64>")]
    pub drop_one_in: Option<S<i64>>,
    /// Each group send is delayed by this long, e.g. "20ms" (a slow server).
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub delay_group_send: Option<S<String>>,
    /// Memberships and channels are kept after a client disconnects.
    #[schemars(with = "Option<bool>")]
    pub keep_membership_on_disconnect: Option<S<bool>>,
    /// The server keeps this many bytes per closed connection (a leak of known size).
    #[schemars(with = "Option<RawSize>")]
    pub leak_per_connection: Option<S<RawSize>>,
    /// Each open connection holds this many bytes, freed on close (retention, not a leak).
    #[schemars(with = "Option<RawSize>")]
    pub hold_per_connection: Option<S<RawSize>>,
    /// `redis-lists` only: the django/channels#1683 mechanism (the shared receive is cancelled
    /// with the newest connection).
    #[schemars(with = "Option<bool>")]
    pub cancel_shared_receive: Option<S<bool>>,
}

/// `[backend]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(expecting = "a table of backend settings")]
#[schemars(deny_unknown_fields)]
pub struct RawBackend {
    /// The channel layer: `"memory"` (default, in-process), `"redis"` (pub/sub), `"redis-lists"`
    /// (the channels_redis core layer) or `"amqp"` (RabbitMQ).
    #[schemars(with = "Option<String>", extend("enum" = ["memory", "redis", "redis-lists", "amqp"]))]
    pub kind: Option<S<String>>,
    /// The server's URL; else `REDIS_URL` / `AMQP_URL`, else a private server for the run.
    #[schemars(with = "Option<String>")]
    pub url: Option<S<String>>,
    /// A URL host other than loopback is refused unless true.
    #[schemars(with = "Option<bool>")]
    pub allow_remote: Option<S<bool>>,
    /// External target: the environment variable the server's command gets the service's URL in
    /// (default `REDIS_URL` or `AMQP_URL`).
    #[schemars(with = "Option<String>")]
    pub url_env: Option<S<String>>,
    /// `redis-lists`: membership expiry (default "1d").
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub group_expiry: Option<S<String>>,
    /// `redis-lists`: message expiry (default "60s").
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub expiry: Option<S<String>>,
}

/// One `[[rooms]]` entry.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(expecting = "a room table with `name` and `[[rooms.clients]]`")]
#[schemars(deny_unknown_fields)]
pub struct RawRoom {
    /// The room's name (required): 1 to 99 letters, digits, `.`, `_` or `-`.
    #[schemars(with = "String")]
    pub name: Option<S<String>>,
    /// `[[rooms.clients]]`: groups of clients in the room.
    #[serde(default)]
    #[schemars(with = "Vec<RawClients>")]
    pub clients: Vec<S<RawClients>>,
}

/// One `[[rooms.clients]]` group.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(expecting = "a client group table")]
#[schemars(deny_unknown_fields)]
pub struct RawClients {
    /// `"steady"` (default: connect at the start, stay), `"cycle"` (connect, stay `up`, close,
    /// wait `down`, reconnect as a new sender) or `"tabs"` (open `count` over `ramp`, hold, close
    /// all: one wave per iteration).
    #[schemars(with = "Option<String>", extend("enum" = ["steady", "cycle", "tabs"]))]
    pub pattern: Option<S<String>>,
    /// Clients in the group (default 1).
    #[schemars(with = "Option<i64>")]
    pub count: Option<S<i64>>,
    /// Messages per second per client (0: listen only; default 1, for `tabs` 0).
    #[schemars(with = "Option<f64>")]
    pub rate: Option<S<f64>>,
    /// Frame size: bytes as an integer or a string with a unit (default 64).
    #[schemars(with = "Option<RawSize>")]
    pub payload: Option<S<RawSize>>,
    /// `"normal"` (default) or `"paused"` (a frozen tab that never reads).
    #[schemars(with = "Option<String>", extend("enum" = ["normal", "paused"]))]
    pub reader: Option<S<String>>,
    /// `cycle`: how long a client stays connected (default "1s").
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub up: Option<S<String>>,
    /// `cycle`: how long it stays away before reconnecting (default "100ms").
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub down: Option<S<String>>,
    /// `cycle` and `tabs`: `"graceful"` (default, a close frame) or `"abrupt"`.
    #[schemars(with = "Option<String>", extend("enum" = ["graceful", "abrupt"]))]
    pub close: Option<S<String>>,
    /// The time over which the group's clients connect, evenly spread (default 0: all at once);
    /// `steady` and `cycle` clients connect over it, `tabs` open the wave over it.
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub ramp: Option<S<String>>,
    /// `"spread"` (default: each session's first message at a random offset within its first
    /// send interval, seeded per run) or `"aligned"` (every session sends its first message the
    /// moment it connects: a burst).
    #[schemars(with = "Option<String>", extend("enum" = ["spread", "aligned"]))]
    pub phase: Option<S<String>>,
    /// `tabs`: how long the open tabs are held (default: until the iteration ends).
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub hold: Option<S<String>>,
}

/// One `[[http]]` workload.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(expecting = "an HTTP workload table")]
#[schemars(deny_unknown_fields)]
pub struct RawHttp {
    /// The route's label in results (default: method and path, e.g. "PUT /cache/{key}").
    #[schemars(with = "Option<String>")]
    pub name: Option<S<String>>,
    /// `"GET"` (default), `"PUT"`, `"POST"` or `"DELETE"`.
    #[schemars(with = "Option<String>", extend("enum" = ["GET", "PUT", "POST", "DELETE"]))]
    pub method: Option<S<String>>,
    /// The request path (required), e.g. "/" or "/cache/{key}"; `{key}` becomes `k` and a
    /// zero-padded index below `keys`.
    #[schemars(with = "String")]
    pub path: Option<S<String>>,
    /// The key space of `{key}` (default 1000).
    #[schemars(with = "Option<i64>")]
    pub keys: Option<S<i64>>,
    /// `"random"` (default) or `"sequential"` (0, 1, 2, ... across the whole run, wrapping).
    #[schemars(with = "Option<String>", extend("enum" = ["random", "sequential"]))]
    pub key_order: Option<S<String>>,
    /// Bytes of random text per request (PUT and POST only).
    #[schemars(with = "Option<RawSize>")]
    pub body: Option<S<RawSize>>,
    /// Closed model: workers, each sending its next request when the last is answered (default 1).
    #[schemars(with = "Option<i64>")]
    pub workers: Option<S<i64>>,
    /// Open model: requests per second on a schedule, latency from the intended time.
    #[schemars(with = "Option<f64>")]
    pub rate: Option<S<f64>>,
    /// Open model: connections the scheduled requests go over (default 32).
    #[schemars(with = "Option<i64>")]
    pub connections: Option<S<i64>>,
    /// Requests per iteration across the workers (default: as many as fit).
    #[schemars(with = "Option<i64>")]
    pub requests: Option<S<i64>>,
    /// false: a new connection for every request (default true).
    #[schemars(with = "Option<bool>")]
    pub keep_alive: Option<S<bool>>,
    /// Bound on one request, from sending it to the last byte of the answer (default "10s").
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub timeout: Option<S<String>>,
}

/// `[run]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(expecting = "a table of run settings")]
#[schemars(deny_unknown_fields)]
pub struct RawRun {
    /// Sending time per iteration (default "10s").
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub duration: Option<S<String>>,
    /// Iterations (default 1).
    #[schemars(with = "Option<i64>")]
    pub iterations: Option<S<i64>>,
    /// Warm-up iterations, not judged (default 1 when iterations > 1).
    #[schemars(with = "Option<i64>")]
    pub warmup: Option<S<i64>>,
    /// Bound on waiting for in-flight messages (default "5s").
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub drain: Option<S<String>>,
    /// Bound on waiting for zero connections and a still heap after an iteration (default "10s").
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub settle: Option<S<String>>,
    /// Bound on one WebSocket connect (default "5s").
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub connect_timeout: Option<S<String>>,
    /// Most WebSocket connects per second across the whole run, every client and reconnect
    /// included (default: no limit); connect latency is measured from each paced time.
    #[schemars(with = "Option<f64>")]
    pub connect_rate: Option<S<f64>>,
    /// Interval of the memory and state timeline (default "100ms").
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub sample_interval: Option<S<String>>,
}

/// `[expect]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(expecting = "a table of expected verdicts")]
#[schemars(deny_unknown_fields)]
pub struct RawExpect {
    /// true for a positive control: the gaps verdict must find lost messages.
    #[schemars(with = "Option<bool>")]
    pub gaps: Option<S<bool>>,
    /// true: the latency verdict must breach its thresholds.
    #[schemars(with = "Option<bool>")]
    pub latency_breach: Option<S<bool>>,
    /// true: the leak verdict must find a leak.
    #[schemars(with = "Option<bool>")]
    pub leak: Option<S<bool>>,
    /// true: the leak verdict must be retention (a clean outcome misses it too).
    #[schemars(with = "Option<bool>")]
    pub retention: Option<S<bool>>,
}

/// `[thresholds]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(expecting = "a table of thresholds")]
#[schemars(deny_unknown_fields)]
pub struct RawThresholds {
    /// Lost messages allowed (default 0).
    #[schemars(with = "Option<i64>")]
    pub gaps: Option<S<i64>>,
    /// Duplicated messages allowed (default 0).
    #[schemars(with = "Option<i64>")]
    pub duplicates: Option<S<i64>>,
    /// Reordered messages allowed (default 0).
    #[schemars(with = "Option<i64>")]
    pub reordered: Option<S<i64>>,
    /// Misrouted messages (from another room) allowed (default 0).
    #[schemars(with = "Option<i64>")]
    pub misrouted: Option<S<i64>>,
    /// Unconfirmed messages (abruptly closed senders' frames nobody received) allowed; not judged
    /// unless set.
    #[schemars(with = "Option<i64>")]
    pub unconfirmed: Option<S<i64>>,
    /// Delivery latency p50 limit, e.g. "100ms".
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub delivery_p50: Option<S<String>>,
    /// Delivery latency p99 limit (default "500ms").
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub delivery_p99: Option<S<String>>,
    /// Delivery latency p99.9 limit.
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub delivery_p999: Option<S<String>>,
    /// Delivery latency maximum.
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub delivery_max: Option<S<String>>,
    /// Connect latency p99 limit (default "1s").
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub connect_p99: Option<S<String>>,
    /// HTTP latency p99 limit, per route.
    #[schemars(with = "Option<String>", extend("pattern" = DURATION_PATTERN))]
    pub http_p99: Option<S<String>>,
    /// Requests per route that may get no answer before the latency verdict breaches.
    #[schemars(with = "Option<i64>")]
    pub http_errors: Option<S<i64>>,
    /// Live heap growth per iteration that is a leak (default "1KiB").
    #[schemars(with = "Option<RawSize>")]
    pub heap_growth: Option<S<RawSize>>,
    /// RSS growth per iteration that is a leak, where there is no heap series (default "1MiB").
    #[schemars(with = "Option<RawSize>")]
    pub rss_growth: Option<S<RawSize>>,
    /// RSS kept beyond the heap's growth that is called retention (default "16MiB").
    #[schemars(with = "Option<RawSize>")]
    pub retention: Option<S<RawSize>>,
    /// How far above its start a state counter may end (default 0).
    #[schemars(with = "Option<i64>")]
    pub state_growth: Option<S<i64>>,
}

/// Table paths (indices removed) that are lists of tables, written `[[name]]`.
pub const LIST_TABLES: &[&str] = &["rooms", "rooms.clients", "http"];

/// The keys a table at `table_path` (indices removed, e.g. `rooms.clients`) accepts.
pub fn keys_of(table_path: &str) -> Option<&'static [&'static str]> {
    use serde_aux::serde_introspection::serde_introspect as keys;
    Some(match table_path {
        "" => keys::<RawScenario>(),
        "server" => keys::<RawServer>(),
        "server.faults" => keys::<RawFaults>(),
        "server.cache" => keys::<RawCache>(),
        "http" => keys::<RawHttp>(),
        "backend" => keys::<RawBackend>(),
        "rooms" => keys::<RawRoom>(),
        "rooms.clients" => keys::<RawClients>(),
        "run" => keys::<RawRun>(),
        "expect" => keys::<RawExpect>(),
        "thresholds" => keys::<RawThresholds>(),
        _ => return None,
    })
}
