//! `leakrun serve` and `leakrun load`: the embedded server and the HTTP driver, each on its own.
//!
//! `serve` keeps one embedded server up on a loopback port until Ctrl-C, so a person can point
//! `curl`, `hey` or `wrk` at the same server a scenario runs; `load` drives one loopback URL with
//! the same workers a `[[http]]` workload uses and prints what they saw. Together they are how
//! `bench/http.sh` measures leakrun's driver beside `wrk`, `hey` and `oha` against one server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::exit::Exit;
use crate::layer::{ChannelLayer, MemoryLayer};
use crate::load::http::{Iteration, Route, WorkerPool};
use crate::load::{LiveCounters, LoadContext};
use crate::observe::clock::RunClock;
use crate::observe::events::EventLog;
use crate::observe::http::Tally;
use crate::scenario::http::parse_loopback;
use crate::scenario::{CacheConfig, CacheMode, HttpMethod, HttpWorkload, LoadModel};
use crate::server::{AppState, EmbeddedServer, ServerFaults};

/// What `serve` stands up.
pub struct ServeOptions {
    /// Loopback address.
    pub host: String,
    /// Port; 0 for a free one.
    pub port: u16,
    /// Cache mode.
    pub cache: CacheMode,
}

/// Serves until `cancel`; prints the address first.
pub async fn serve(options: ServeOptions, cancel: CancellationToken) -> Exit {
    let host = match parse_loopback(&options.host) {
        Ok(host) => host,
        Err(message) => {
            eprintln!("error: --host: {message}");
            return Exit::Usage;
        }
    };
    let layer: Arc<dyn ChannelLayer> = Arc::new(MemoryLayer::new(100));
    let cache = CacheConfig {
        mode: options.cache,
        ..CacheConfig::default()
    };
    let state = AppState::with_cache(layer, 64 * 1024, ServerFaults::off(), cache);
    let addr = SocketAddr::new(host, options.port);
    // The server's tasks are spawned outside the harness domain, as in a run.
    let server = match EmbeddedServer::start_on(state, addr).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("error: cannot listen on {addr}: {error}");
            return Exit::Infrastructure;
        }
    };
    println!("serving on http://{} (Ctrl-C stops)", server.addr);
    cancel.cancelled().await;
    server.stop().await;
    Exit::Pass
}

/// What `load` sends.
pub struct LoadOptions {
    /// `http://<loopback>:<port>/<path>`.
    pub url: String,
    /// Request method.
    pub method: HttpMethod,
    /// Body bytes per request.
    pub body: usize,
    /// Closed model: this many connections, each sending when the last answer came.
    pub connections: usize,
    /// Open model instead: requests per second (over `connections` connections).
    pub rate: Option<f64>,
    /// How long to send.
    pub duration: Duration,
    /// Stop after this many requests.
    pub requests: Option<u64>,
    /// One connection per request.
    pub no_keep_alive: bool,
    /// Bound on one request.
    pub timeout: Duration,
    /// Print JSON instead of a line.
    pub json: bool,
}

/// Drives `options.url` and prints the route's figures.
pub async fn load(options: LoadOptions, cancel: CancellationToken) -> Exit {
    let (addr, path) = match target(&options.url) {
        Ok(target) => target,
        Err(message) => {
            eprintln!("error: {}: {message}", options.url);
            return Exit::Usage;
        }
    };
    let model = match options.rate {
        Some(rate) if rate.is_finite() && (crate::scenario::values::MIN_RATE..=1_000_000.0).contains(&rate) => {
            LoadModel::Open {
                rate,
                connections: options.connections,
            }
        }
        Some(rate) => {
            eprintln!(
                "error: --rate {rate}: valid: {} to 1000000 requests per second",
                crate::scenario::values::MIN_RATE
            );
            return Exit::Usage;
        }
        None => LoadModel::Closed {
            workers: options.connections,
        },
    };
    if options.connections == 0 || options.duration.is_zero() || options.timeout.is_zero() {
        eprintln!("error: --connections, --duration and --timeout must be more than 0");
        return Exit::Usage;
    }
    let workload = HttpWorkload {
        name: format!("{} {path}", options.method.name()),
        method: options.method,
        path,
        keys: None,
        body: options.body,
        model,
        requests: options.requests,
        keep_alive: !options.no_keep_alive,
        timeout: options.timeout,
    };
    let ctx = Arc::new(LoadContext {
        clock: RunClock::start(),
        targets: vec![crate::load::Endpoint {
            addr,
            room_urls: Vec::new(),
            http_addr: addr,
        }],
        template: crate::load::template::FrameTemplate::bare(),
        rooms: Vec::new(),
        connect_timeout: Duration::from_secs(5),
        next_session: AtomicU64::new(0),
        next_sender: AtomicU64::new(0),
        live: LiveCounters::default(),
        events: EventLog::new(0),
        phase_seed: 0,
        pacer: None,
    });
    let route = Arc::new(Route::new(workload));
    let start = Instant::now();
    let it = Arc::new(Iteration::new(
        route.clone(),
        ctx,
        start,
        start + options.duration,
        cancel.child_token(),
    ));
    let pool = match WorkerPool::start() {
        Ok(pool) => pool,
        Err(error) => {
            eprintln!("error: cannot start the worker threads: {error}");
            return Exit::Infrastructure;
        }
    };
    let jobs = (0..options.connections).map(|index| (0, it.clone(), index)).collect();
    let mut tally = Tally::default();
    for (_, one) in pool.run(jobs).await {
        tally.merge(&one);
    }
    let figures = tally.figures(route.name());
    if options.json {
        match serde_json::to_string_pretty(&figures) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("error: {error}");
                return Exit::Infrastructure;
            }
        }
    } else {
        println!("{}", figures.line());
    }
    if figures.answered == 0 {
        Exit::Infrastructure
    } else {
        Exit::Pass
    }
}

/// The loopback address and path of an `http://` URL.
fn target(url: &str) -> Result<(SocketAddr, String), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL ({e})"))?;
    if uri.scheme_str() != Some("http") {
        return Err("valid: an http:// URL (no TLS)".into());
    }
    let host = uri.host().ok_or("the URL names no host")?;
    let ip = parse_loopback(host.trim_start_matches('[').trim_end_matches(']'))?;
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    Ok((SocketAddr::new(ip, port), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http_urls_are_targets() {
        let (addr, path) = target("http://127.0.0.1:3030/cache/k1?x=1").unwrap();
        assert_eq!(addr.to_string(), "127.0.0.1:3030");
        assert_eq!(path, "/cache/k1?x=1");
        assert_eq!(target("http://localhost:8080").unwrap().1, "/");
        assert_eq!(target("http://[::1]:9/").unwrap().0.to_string(), "[::1]:9");
        assert!(target("http://10.0.0.1:80/").unwrap_err().contains("not a loopback"));
        assert!(target("https://127.0.0.1/").unwrap_err().contains("http://"));
        assert!(target("example.com").is_err());
    }
}
