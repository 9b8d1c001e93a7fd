//! The HTTP driver: the `[[http]]` workloads of a scenario, one task per connection.
//!
//! The client is hyper's own HTTP/1 connection (`hyper::client::conn::http1`) on a plain tokio
//! `TcpStream`, not reqwest or hyper-util's pooled client: every worker owns exactly one
//! connection, as `wrk` and `hey` do, so there is no pool to look up, no DNS, no TLS and no
//! second task — the worker polls the connection itself while it waits for its answer, and an
//! answer costs no wake-up of another task. That is what lets one leakrun process keep pace with
//! `wrk` on two cores (see `bench/http.sh`), while hyper still does the HTTP. For the same reason
//! the workers run as `wrk`'s threads do: one OS thread per core, each with its own
//! single-threaded runtime and its own share of the connections ([`WorkerPool`]), so no
//! connection's work ever moves between threads. Those threads allocate in the harness domain.
//!
//! Two models. **Closed** (`workers = N`): each worker sends its next request when the last was
//! answered. **Open** (`rate = R`): request `k` is due at `start + k / R`; `connections` workers
//! take the next due request, wait for its time, send it, and its latency counts from the time
//! it was due — a server that stalls cannot slow the schedule down and hide the stall (no
//! coordinated omission). Every loop stops by itself: at the iteration's deadline, when the
//! runner stops the send phase, or when the workload's `requests` are all sent; one request is
//! bounded by the workload's `timeout`, one connect by `run.connect_timeout`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::header::{CONNECTION, HOST, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use super::LoadContext;
use crate::observe::http::{FailureKind, Tally};
use crate::scenario::{HttpMethod, HttpWorkload, KeyOrder, KeySpace, LoadModel};

/// Pause after a failed connect before the next try, so a server that is down is not hammered.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// One workload, prepared once per run: what every request of it needs.
pub struct Route {
    /// The workload as validated.
    pub workload: HttpWorkload,
    method: Method,
    /// The path split around `{key}`; one part when there is none.
    parts: Vec<String>,
    /// The whole URI when the path has no key.
    fixed: Option<Uri>,
    keys: Option<Keys>,
    /// Random text twice the body size; each body is a slice of it at a random offset.
    text: Bytes,
}

/// A key space and, for sequential order, its cursor (kept across iterations, so a run keeps
/// writing new keys rather than rewriting the first iteration's).
struct Keys {
    space: KeySpace,
    width: usize,
    next: AtomicU64,
}

impl Route {
    /// Prepares `workload`.
    pub fn new(workload: HttpWorkload) -> Self {
        let method = match workload.method {
            HttpMethod::Get => Method::GET,
            HttpMethod::Put => Method::PUT,
            HttpMethod::Post => Method::POST,
            HttpMethod::Delete => Method::DELETE,
        };
        let parts: Vec<String> = workload.path.split("{key}").map(str::to_string).collect();
        let fixed = (parts.len() == 1).then(|| workload.path.parse().ok()).flatten();
        let keys = workload.keys.map(|space| Keys {
            space,
            width: (space.count.saturating_sub(1)).to_string().len(),
            next: AtomicU64::new(0),
        });
        let text = random_text(workload.body * 2);
        Self {
            workload,
            method,
            parts,
            fixed,
            keys,
            text,
        }
    }

    /// The route's label in results.
    pub fn name(&self) -> &str {
        &self.workload.name
    }

    fn uri(&self, rng: &mut fastrand::Rng, buffer: &mut String) -> Option<Uri> {
        if let Some(uri) = &self.fixed {
            return Some(uri.clone());
        }
        let keys = self.keys.as_ref()?;
        let index = match keys.space.order {
            KeyOrder::Random => rng.u64(0..keys.space.count),
            KeyOrder::Sequential => keys.next.fetch_add(1, Ordering::Relaxed) % keys.space.count,
        };
        buffer.clear();
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                use std::fmt::Write;
                let _ = write!(buffer, "k{index:0width$}", width = keys.width);
            }
            buffer.push_str(part);
        }
        buffer.parse().ok()
    }

    fn body(&self, rng: &mut fastrand::Rng) -> Bytes {
        let size = self.workload.body;
        if size == 0 {
            return Bytes::new();
        }
        let offset = rng.usize(0..=size);
        self.text.slice(offset..offset + size)
    }
}

/// Letters and digits, `len` of them.
fn random_text(len: usize) -> Bytes {
    let mut rng = fastrand::Rng::new();
    (0..len).map(|_| rng.alphanumeric() as u8).collect::<Vec<u8>>().into()
}

/// What one iteration of one workload shares between its workers.
pub struct Iteration {
    /// The route.
    pub route: Arc<Route>,
    /// The run's shared load context: server instances (worker `w` talks to instance
    /// `w % instances`), connect bound, live counters.
    pub ctx: Arc<LoadContext>,
    /// When the iteration started: the open model's schedule counts from here.
    pub start: Instant,
    /// When sending must stop.
    pub deadline: Instant,
    /// Cancelled when the runner ends the send phase (or on Ctrl-C).
    pub stop: CancellationToken,
    /// Requests handed out so far (closed model) or schedule slots taken (open model).
    pub issued: AtomicU64,
}

impl Iteration {
    /// The iteration of `route` that starts at `start` and sends until `deadline` or `stop`.
    pub fn new(
        route: Arc<Route>,
        ctx: Arc<LoadContext>,
        start: Instant,
        deadline: Instant,
        stop: CancellationToken,
    ) -> Self {
        Self {
            route,
            ctx,
            start,
            deadline,
            stop,
            issued: AtomicU64::new(0),
        }
    }

    /// The next request this worker may send, and when it was due; `None` when the workload is
    /// done.
    async fn next_slot(&self) -> Option<Instant> {
        if self.stop.is_cancelled() {
            return None;
        }
        let k = self.issued.fetch_add(1, Ordering::Relaxed);
        if self.route.workload.requests.is_some_and(|total| k >= total) {
            return None;
        }
        match self.route.workload.model {
            LoadModel::Closed { .. } => {
                let now = Instant::now();
                (now < self.deadline).then_some(now)
            }
            LoadModel::Open { rate, .. } => {
                let due = self.start + Duration::from_secs_f64(k as f64 / rate);
                if due >= self.deadline {
                    return None;
                }
                if due > Instant::now() {
                    tokio::select! {
                        _ = sleep_until(due) => {}
                        _ = self.stop.cancelled() => return None,
                    }
                }
                Some(due)
            }
        }
    }
}

/// One keep-alive connection, polled by the worker that owns it.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
    closed: bool,
}

impl Conn {
    async fn open(addr: SocketAddr, bound: Duration) -> Result<Self, FailureKind> {
        let tcp = match timeout(bound, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            _ => return Err(FailureKind::Connect),
        };
        let _ = tcp.set_nodelay(true);
        let (sender, driver) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|_| FailureKind::Connect)?;
        Ok(Self {
            sender,
            driver: Box::pin(driver),
            closed: false,
        })
    }

    /// Runs `work` while polling the connection, which is what moves its bytes.
    async fn driven<T>(
        driver: &mut Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
        closed: &mut bool,
        work: impl Future<Output = T>,
    ) -> T {
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                biased;
                _ = driver.as_mut(), if !*closed => *closed = true,
                out = &mut work => return out,
            }
        }
    }

    /// Sends `request` and reads the whole answer: its status.
    async fn exchange(&mut self, request: Request<Full<Bytes>>) -> Result<u16, FailureKind> {
        let Conn { sender, driver, closed } = self;
        Self::driven(driver, closed, sender.ready()).await.map_err(classify)?;
        let response = Self::driven(driver, closed, sender.send_request(request))
            .await
            .map_err(classify)?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        loop {
            match Self::driven(driver, closed, body.frame()).await {
                None => return Ok(status),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(classify(error)),
            }
        }
    }
}

fn classify(error: hyper::Error) -> FailureKind {
    use std::error::Error as _;
    let io_reset = || {
        error
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof
                )
            })
    };
    if error.is_timeout() {
        FailureKind::Timeout
    } else if error.is_parse() || error.is_parse_status() || error.is_parse_too_large() {
        FailureKind::Protocol
    } else if error.is_incomplete_message() || error.is_closed() || error.is_canceled() || io_reset() {
        FailureKind::Reset
    } else {
        FailureKind::Other
    }
}

/// One worker to run: the index of its route, its iteration, and its index within the workload.
pub type Job = (usize, Arc<Iteration>, usize);

/// What one pool thread is handed: its share of an iteration's workers, and where their tallies go.
struct Batch {
    jobs: Vec<Job>,
    done: tokio::sync::oneshot::Sender<Vec<(usize, Tally)>>,
}

/// The threads HTTP workers run on: one per core, each with a single-threaded runtime, started
/// once per run (so no thread is created while the server is measured) and ended when the pool
/// is dropped. Everything they allocate is counted in the harness domain.
pub struct WorkerPool {
    threads: Vec<tokio::sync::mpsc::UnboundedSender<Batch>>,
}

impl WorkerPool {
    /// Starts one thread per core.
    pub fn start() -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut threads = Vec::new();
        for n in 0..cores {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            std::thread::Builder::new()
                .name(format!("leakrun-http-{n}"))
                .spawn(move || crate::heap::within(crate::heap::Domain::Harness, || serve_batches(runtime, rx)))?;
            threads.push(tx);
        }
        Ok(Self { threads })
    }

    /// Runs `jobs` spread over the pool's threads; resolves to each job's route index and tally
    /// once every worker has stopped.
    pub fn run(&self, jobs: Vec<Job>) -> impl Future<Output = Vec<(usize, Tally)>> + Send + 'static {
        let mut shares: Vec<Vec<Job>> = self.threads.iter().map(|_| Vec::new()).collect();
        let count = shares.len().max(1);
        for (n, job) in jobs.into_iter().enumerate() {
            shares[n % count].push(job);
        }
        let mut results = Vec::new();
        for (thread, jobs) in self.threads.iter().zip(shares) {
            if jobs.is_empty() {
                continue;
            }
            let (done, rx) = tokio::sync::oneshot::channel();
            // A thread that is gone drops the batch: its receiver reads no tallies.
            let _ = thread.send(Batch { jobs, done });
            results.push(rx);
        }
        async move {
            let mut tallies = Vec::new();
            for rx in results {
                tallies.extend(rx.await.unwrap_or_default());
            }
            tallies
        }
    }
}

fn serve_batches(runtime: tokio::runtime::Runtime, mut batches: tokio::sync::mpsc::UnboundedReceiver<Batch>) {
    runtime.block_on(async {
        while let Some(batch) = batches.recv().await {
            let tasks: Vec<_> = batch
                .jobs
                .into_iter()
                .map(|(route, it, index)| (route, tokio::spawn(worker(it, index))))
                .collect();
            let mut tallies = Vec::new();
            for (route, task) in tasks {
                if let Ok(tally) = task.await {
                    tallies.push((route, tally));
                }
            }
            let _ = batch.done.send(tallies);
        }
    });
}

/// Answers counted locally before they are added to the shared progress counter.
const PROGRESS_BATCH: u64 = 256;

/// Runs worker `index` of `it` until the workload is done; returns what it observed.
pub async fn worker(it: Arc<Iteration>, index: usize) -> Tally {
    let route = &it.route;
    let Some(target) = it
        .ctx
        .targets
        .get(index % it.ctx.targets.len().max(1))
        .map(|e| e.http_addr)
    else {
        return Tally::default();
    };
    let answered = &it.ctx.live.http_answered;
    let host = HeaderValue::from_str(&target.to_string()).unwrap_or(HeaderValue::from_static("127.0.0.1"));
    let keep_alive = route.workload.keep_alive;
    let mut rng = fastrand::Rng::new();
    let mut path = String::new();
    let mut tally = Tally::default();
    let mut conn: Option<Conn> = None;
    let mut unreported = 0u64;
    while let Some(due) = it.next_slot().await {
        tally.start(due);
        let Some(uri) = route.uri(&mut rng, &mut path) else {
            tally.failed(FailureKind::Other, 1);
            continue;
        };
        let mut request = Request::new(Full::new(route.body(&mut rng)));
        *request.method_mut() = route.method.clone();
        *request.uri_mut() = uri;
        request.headers_mut().insert(HOST, host.clone());
        if !keep_alive {
            request
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let outcome = timeout(route.workload.timeout, async {
            if conn.as_ref().is_none_or(|c| c.closed || c.sender.is_closed()) {
                conn = Some(Conn::open(target, it.ctx.connect_timeout).await?);
            }
            match conn.as_mut() {
                Some(c) => c.exchange(request).await,
                None => Err(FailureKind::Connect),
            }
        })
        .await
        .unwrap_or(Err(FailureKind::Timeout));
        let micros = due.elapsed().as_micros() as u64;
        match outcome {
            Ok(status) => {
                tally.answered(status, micros);
                unreported += 1;
                if unreported == PROGRESS_BATCH {
                    answered.fetch_add(unreported, Ordering::Relaxed);
                    unreported = 0;
                }
                if !keep_alive {
                    conn = None;
                }
            }
            Err(kind) => {
                tally.failed(kind, micros);
                conn = None;
                if kind == FailureKind::Connect {
                    tokio::select! {
                        _ = sleep(CONNECT_BACKOFF) => {}
                        _ = it.stop.cancelled() => {}
                    }
                }
            }
        }
    }
    answered.fetch_add(unreported, Ordering::Relaxed);
    tally.end(Instant::now());
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::HttpMethod;

    fn workload(path: &str, keys: Option<KeySpace>, body: usize) -> HttpWorkload {
        HttpWorkload {
            name: format!("PUT {path}"),
            method: HttpMethod::Put,
            path: path.into(),
            keys,
            body,
            model: LoadModel::Closed { workers: 1 },
            requests: None,
            keep_alive: true,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn sequential_keys_are_padded_to_one_width_and_wrap() {
        let route = Route::new(workload(
            "/cache/{key}/x",
            Some(KeySpace {
                count: 12,
                order: KeyOrder::Sequential,
            }),
            0,
        ));
        let mut rng = fastrand::Rng::with_seed(1);
        let mut buffer = String::new();
        let uris: Vec<String> = (0..13)
            .map(|_| route.uri(&mut rng, &mut buffer).unwrap().to_string())
            .collect();
        assert_eq!(uris[0], "/cache/k00/x");
        assert_eq!(uris[11], "/cache/k11/x");
        assert_eq!(uris[12], "/cache/k00/x");
    }

    #[test]
    fn bodies_are_random_text_of_the_given_size() {
        let route = Route::new(workload("/", None, 10_000));
        let mut rng = fastrand::Rng::with_seed(7);
        let a = route.body(&mut rng);
        let b = route.body(&mut rng);
        assert_eq!((a.len(), b.len()), (10_000, 10_000));
        assert!(a.iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(a, b);
        assert_eq!(route.uri(&mut rng, &mut String::new()).unwrap(), "/");
    }
}
