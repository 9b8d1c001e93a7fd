//! The runner: one scenario, start to result file.
//!
//! It stands the server up once, then runs each iteration — connect the topology, send for
//! `duration`, quiesce, drain (bounded), disconnect, settle (bounded) — and judges what the
//! observers saw. The server lives across iterations: what stays behind after every client is
//! gone is what a leak looks like. Interrupted or not, a result file is written.
//!
//! The server is the embedded one (one or more instances on a channel layer, read in-process) or
//! an external one (`crate::external`): started or watched, reached at its own URLs, measured by the
//! resident memory of its process tree and its `stats_url`, and always stopped when leakrun
//! started it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

use crate::backend;
use crate::external::{ExternalTarget, probe::StatsSource};
use crate::heap;
use crate::layer::LayerStats;
use crate::load::drivers::{self, ClientSpec};
use crate::load::http::{self as http_load, Route, WorkerPool};
use crate::load::template::FrameTemplate;
use crate::load::{Endpoint, LiveCounters, LoadContext, Phase};
use crate::observe::analysis::{self, LossRecord, LossTotals, SessionReport};
use crate::observe::clock::{RunClock, secs};
use crate::observe::events::EventLog;
use crate::observe::http::Tally;
use crate::observe::latency::{LatencyBook, SharedHistogram};
use crate::observe::sampler::{MemoryProbe, Probes, Sampler, StateReading, StateSource};
use crate::results::{self, *};
use crate::scenario::{ExternalSpec, LoadedScenario, ProcessSpec};
use crate::server::{AppState, CacheSource, EmbeddedServer, ServerFaults, ServerStats};
use crate::verdict::leak::IterationMemory;
use crate::verdict::{self, Verdicts, gaps::RoomLoss, latency::RoomLatency};

/// How long deliveries must stay still before the drain counts as done.
const DRAIN_QUIET: Duration = Duration::from_millis(300);
/// Churn events kept per run.
const MAX_EVENTS: usize = 20_000;
/// How long the server's live heap must stay still before an iteration counts as settled.
const HEAP_QUIET: Duration = Duration::from_millis(300);
/// How far the live heap may move within [`HEAP_QUIET`] and still count as still.
const HEAP_QUIET_BYTES: i64 = 256;
/// Bound on waiting for a still heap before the first client connects.
const BEFORE_SETTLE: Duration = Duration::from_secs(3);
/// How long an external server's resident memory and state must stay still to count as settled.
const RSS_QUIET: Duration = Duration::from_millis(500);
/// How far its resident memory may move within [`RSS_QUIET`] and still count as still.
const RSS_QUIET_BYTES: u64 = 64 * 1024;

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// Folder the result lands in.
    pub out_dir: PathBuf,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Cancelled on Ctrl-C.
    pub cancel: CancellationToken,
}

/// A finished run.
pub struct RunOutcome {
    /// The result as written.
    pub result: RunResult,
    /// Where it was written.
    pub path: PathBuf,
}

/// Why a run produced no result at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The result could not be written.
    #[error("cannot write the result to {dir}: {source}")]
    Output {
        /// The folder.
        dir: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Runs `loaded` and writes its result.
pub async fn run(loaded: &LoadedScenario, options: &RunOptions) -> Result<RunOutcome, RunError> {
    let scenario = &loaded.scenario;
    let clock = RunClock::start();
    let started_at = clock.wall(0);
    let mut result = RunResult {
        schema_version: SCHEMA_VERSION,
        tool: ToolInfo {
            name: "leakrun".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        scenario: ScenarioInfo {
            name: scenario.name.clone(),
            file: loaded.path.display().to_string(),
            hash: loaded.source_hash.clone(),
            resolved: without_credentials(scenario),
            sources: loaded.sources.clone(),
        },
        host: HostFacts::collect(),
        backend: BackendInfo {
            kind: scenario.backend.kind.name().into(),
            version: String::new(),
            endpoint: None,
            source: String::new(),
        },
        started_at,
        finished_at: String::new(),
        elapsed_s: 0.0,
        status: Status::Error,
        expectation_met: false,
        error: None,
        iterations: Vec::new(),
        verdicts: None,
        losses: LossLog::default(),
        events: EventLogOut::default(),
        target: None,
        server: None,
        before: None,
        timeline: Timeline::new(2),
        http: Vec::new(),
    };

    match execute(loaded, options, &clock, &mut result).await {
        Ok(interrupted) => {
            let met = result.verdicts.as_ref().is_some_and(Verdicts::all_met);
            result.expectation_met = met;
            result.status = match (interrupted, met) {
                (true, _) => Status::Interrupted,
                (false, true) => Status::Pass,
                (false, false) => Status::Fail,
            };
        }
        Err(message) => {
            result.status = Status::Error;
            result.error = Some(message);
        }
    }
    result.finished_at = clock.wall(clock.now_ns());
    result.elapsed_s = secs(clock.now_ns());
    let path = results::write_atomic(&options.out_dir, &result).map_err(|source| RunError::Output {
        dir: options.out_dir.clone(),
        source,
    })?;
    Ok(RunOutcome { result, path })
}

/// Runs the iterations; `Ok(true)` when interrupted, `Err` on an infrastructure failure.
async fn execute(
    loaded: &LoadedScenario,
    options: &RunOptions,
    clock: &RunClock,
    result: &mut RunResult,
) -> Result<bool, String> {
    let scenario = &loaded.scenario;
    if let Some(spec) = &scenario.server.external {
        return execute_external(loaded, options, clock, result, spec).await;
    }
    let backend = backend::build(scenario).await.map_err(|e| e.to_string())?;
    result.backend.version = backend.version.clone();
    result.backend.endpoint = backend.endpoint.clone();
    result.backend.source = backend.source.clone();
    result.target = Some(TargetInfo {
        kind: "embedded".into(),
        pid: std::process::id(),
        started: true,
        command: None,
        memory_source: format!(
            "rss of leakrun's own process (pid {}), which hosts the embedded server{}",
            std::process::id(),
            if heap::figures().is_some() {
                "; its live heap is counted exactly"
            } else {
                ""
            }
        ),
        log: None,
        stopped: None,
    });
    let outcome = run_on(loaded, options, clock, result, Under::Embedded(&backend)).await;
    backend.shutdown().await;
    outcome
}

/// Runs against an external server: start (or find) it, run, and stop it whatever happened.
async fn execute_external(
    loaded: &LoadedScenario,
    options: &RunOptions,
    clock: &RunClock,
    result: &mut RunResult,
    spec: &ExternalSpec,
) -> Result<bool, String> {
    let scenario = &loaded.scenario;
    result.backend = BackendInfo {
        kind: "external".into(),
        version: String::new(),
        endpoint: None,
        source: "the external server's own channel layer, if any".into(),
    };
    let rooms: Vec<String> = scenario.rooms.iter().map(|r| r.name.clone()).collect();
    let log = options.out_dir.join(format!("{}.server.log", scenario.name));
    if let ProcessSpec::Command(_) = spec.process {
        std::fs::create_dir_all(&options.out_dir)
            .map_err(|e| format!("cannot create {}: {e}", options.out_dir.display()))?;
    }
    let target = match ExternalTarget::start(spec, &rooms, &log, &options.cancel).await {
        Ok(target) => target,
        Err(crate::external::TargetError::Interrupted { .. }) => return Ok(true),
        Err(error) => return Err(error.to_string()),
    };
    let command = match &spec.process {
        ProcessSpec::Command(command) => Some(command.line.display()),
        _ => None,
    };
    result.target = Some(TargetInfo {
        kind: "external".into(),
        pid: target.pid(),
        started: target.started(),
        command,
        memory_source: crate::external::memory_source(target.pid(), None),
        log: target.log().map(|p| p.display().to_string()),
        stopped: None,
    });
    let outcome = run_on(loaded, options, clock, result, Under::External(&target)).await;
    let stopped = target.stop().await;
    if let Some(info) = result.target.as_mut() {
        info.stopped = Some(stopped);
    }
    outcome
}

/// The server a run drives.
#[derive(Clone, Copy)]
enum Under<'a> {
    /// Embedded instances on this backend's layers.
    Embedded(&'a backend::Backend),
    /// An external server, started or watched.
    External(&'a ExternalTarget),
}

/// Runs the iterations on the server `under`; the caller stops an external server and shuts the
/// backend down whatever happens.
async fn run_on(
    loaded: &LoadedScenario,
    options: &RunOptions,
    clock: &RunClock,
    result: &mut RunResult,
    under: Under<'_>,
) -> Result<bool, String> {
    let scenario = &loaded.scenario;
    let rooms: Vec<String> = scenario.rooms.iter().map(|r| r.name.clone()).collect();
    let mut servers = Vec::new();
    let (targets, probes, shared_layer) = match under {
        Under::Embedded(backend) => {
            let faults = &scenario.server.faults;
            for (instance, layer) in backend.layers.iter().enumerate() {
                let state = AppState::with_cache(
                    layer.clone(),
                    scenario.server.max_frame,
                    ServerFaults::new(faults.leak_per_connection, faults.hold_per_connection),
                    scenario.server.cache,
                );
                let port = match scenario.server.port {
                    0 => 0,
                    first => first + instance as u16,
                };
                let addr = std::net::SocketAddr::new(scenario.server.host, port);
                match EmbeddedServer::start_on(state, addr).await {
                    Ok(server) => servers.push(server),
                    Err(e) => {
                        stop_servers(servers).await;
                        return Err(format!("the embedded server would not start on {addr}: {e}"));
                    }
                }
            }
            let embedded = EmbeddedState {
                states: servers.iter().map(|s| s.state.clone()).collect(),
                shared_layer: backend.shared,
            };
            let caches = CacheSource::new(servers.iter().map(|s| s.state.cache.clone()).collect());
            let mut sources: Vec<Box<dyn StateSource>> = vec![Box::new(embedded), Box::new(caches)];
            sources.extend(backend.state_source());
            let targets: Vec<Endpoint> = servers.iter().map(|s| Endpoint::embedded(s.addr, &rooms)).collect();
            let probes = Probes::new(*clock, MemoryProbe::own_process(), sources);
            (targets, probes, backend.shared)
        }
        Under::External(target) => {
            let mut sources = vec![target.liveness()];
            let spec = scenario.server.external.as_ref();
            if let Some(url) = spec.and_then(|s| s.stats_url.as_deref()) {
                let counters = spec.map(|s| s.stats_counters.as_slice()).unwrap_or_default();
                sources.push(Box::new(StatsSource::new(url, counters)?));
            }
            let targets = vec![Endpoint {
                addr: target.addr,
                room_urls: target.room_urls.clone(),
                http_addr: target.http_addr,
            }];
            let probes = Probes::new(*clock, target.memory_probe(), sources).without_heap();
            (targets, probes, false)
        }
    };
    let template = scenario
        .server
        .external
        .as_ref()
        .and_then(|s| s.send_template.as_deref())
        .map_or_else(FrameTemplate::bare, FrameTemplate::new);
    let ctx = Arc::new(LoadContext {
        clock: *clock,
        targets,
        template,
        rooms: rooms.clone(),
        connect_timeout: scenario.run.connect_timeout,
        next_session: AtomicU64::new(0),
        live: LiveCounters::default(),
        events: EventLog::new(MAX_EVENTS),
    });
    let clients = drivers::clients(scenario, ctx.targets.len());
    let probes = Arc::new(probes);
    // The worker threads start before the first sample, so nothing they cost is the server's.
    let prefix = match under {
        Under::External(target) => target.http_prefix.as_str(),
        Under::Embedded(_) => "",
    };
    let routes: Vec<Arc<Route>> = scenario
        .http
        .iter()
        .cloned()
        .map(|mut workload| {
            workload.path = format!("{prefix}{}", workload.path);
            Arc::new(Route::new(workload))
        })
        .collect();
    let pool = if routes.is_empty() {
        None
    } else {
        match WorkerPool::start() {
            Ok(pool) => Some(pool),
            Err(e) => {
                stop_servers(servers).await;
                return Err(format!("cannot start the HTTP worker threads: {e}"));
            }
        }
    };
    settle(&servers, &probes, BEFORE_SETTLE).await;
    let before = match probes.sample().await {
        Ok(sample) => sample,
        Err(error) => {
            stop_servers(servers).await;
            return Err(format!("cannot take the first sample: {error}"));
        }
    };
    let sampler = Sampler::start(probes.clone(), scenario.run.sample_interval);
    // Ends an iteration early: Ctrl-C, or a state source (a backend) that stopped answering.
    let stop = options.cancel.child_token();
    let stop_on_failure = heap::spawn_harness({
        let (failed, stop) = (sampler.failed(), stop.clone());
        async move {
            failed.cancelled().await;
            stop.cancel();
        }
    });
    let mut memory: Vec<IterationMemory> = Vec::new();
    let mut closed_so_far = closed_connections(&servers);
    let progress = Progress::start(
        options.progress,
        scenario.run.iterations,
        scenario.run.duration,
        ctx.clone(),
    );

    let mut run_http: Vec<Tally> = vec![Tally::default(); routes.len()];
    let run_book = LatencyBook::new(rooms.len());
    let mut totals_per_room = vec![LossTotals::default(); rooms.len()];
    let mut records: Vec<LossRecord> = Vec::new();
    let mut total_records = 0u64;
    let mut interrupted = false;
    let mut sampler_failure: Option<String> = None;
    for index in 0..scenario.run.iterations {
        if stop.is_cancelled() {
            interrupted = true;
            break;
        }
        progress.iteration(index);
        let stage = Stage {
            servers: &servers,
            probes: &probes,
            shared_layer,
            routes: &routes,
            pool: pool.as_ref(),
        };
        let outcome = run_iteration(loaded, &ctx, &stage, &clients, index, &stop).await;
        let closed_now = closed_connections(&servers);
        if let Some(failure) = &outcome.failure {
            sampler_failure.get_or_insert_with(|| failure.clone());
        }
        // An external server's closed connections are counted from the clients' side: every
        // session of the iteration has closed by its end.
        let connections_closed = match under {
            Under::Embedded(_) => closed_now - closed_so_far,
            Under::External(_) => outcome.figures.sessions,
        };
        if !outcome.interrupted && outcome.failure.is_none() {
            memory.push(IterationMemory {
                index,
                warmup: outcome.figures.warmup,
                after: outcome.figures.after.clone(),
                connections_closed,
                requests: outcome.http.iter().map(Tally::answers).sum(),
                settled: outcome.figures.settled,
            });
        }
        closed_so_far = closed_now;
        run_book.merge(&outcome.book);
        for (sum, route) in run_http.iter_mut().zip(&outcome.http) {
            sum.add_iteration(route);
        }
        for (sum, room) in totals_per_room.iter_mut().zip(&outcome.loss.per_room) {
            sum.add(room);
        }
        total_records += outcome.loss.records.len() as u64;
        let room_left = MAX_LOSS_RECORDS.saturating_sub(records.len());
        records.extend(outcome.loss.records.into_iter().take(room_left));
        result.iterations.push(outcome.figures);
        if outcome.failure.is_some() {
            break;
        }
        if outcome.interrupted {
            interrupted = true;
            break;
        }
    }
    progress.finish();
    stop_on_failure.abort();
    let failure = sampler_failure.or_else(|| sampler.failure());
    result.timeline = sampler.finish().await;

    let embedded = !servers.is_empty();
    let server = aggregate_stats(&servers, shared_layer);
    stop_servers(servers).await;
    if let (Under::External(target), Some(info)) = (under, result.target.as_mut()) {
        let processes = result.iterations.last().and_then(|i| i.after.rss_processes);
        info.memory_source = crate::external::memory_source(target.pid(), processes);
    }
    if let Some(failure) = failure {
        let (events, not_kept) = ctx.events.take();
        result.events = EventLogOut { events, not_kept };
        result.server = embedded.then_some(server);
        result.before = Some(before);
        return Err(format!(
            "stopped after {} iteration(s): {failure}",
            result.iterations.len()
        ));
    }
    if !result.iterations.is_empty() {
        let mut totals = LossTotals::default();
        totals_per_room.iter().for_each(|r| totals.add(r));
        let per_room = rooms
            .iter()
            .zip(&totals_per_room)
            .map(|(room, t)| RoomLoss {
                room: room.clone(),
                totals: *t,
            })
            .collect();
        let gaps = verdict::gaps::judge(
            totals,
            per_room,
            verdict::gaps::LossRecords {
                kept: &records,
                complete: total_records == records.len() as u64,
            },
            server.layer.dropped_full,
            server.layer.fault_dropped,
            &scenario.thresholds,
            scenario.expect.gaps,
        );
        let delivery = rooms
            .iter()
            .zip(&run_book.delivery)
            .map(|(room, h)| RoomLatency {
                room: room.clone(),
                delivery: h.summary(),
            })
            .collect();
        result.http = routes
            .iter()
            .zip(&run_http)
            .map(|(route, tally)| tally.figures(route.name()))
            .collect();
        let latency = verdict::latency::judge(
            delivery,
            run_book.connect.summary(),
            &result.http,
            &scenario.thresholds,
            scenario.expect.latency_breach,
        );
        let leak = match under {
            Under::Embedded(_) => {
                verdict::leak::judge(&before, &memory, &scenario.thresholds.leak, scenario.expect.leak)
            }
            Under::External(_) => verdict::leak::judge_external(
                &before,
                &memory,
                &scenario.thresholds.leak,
                scenario.expect.leak,
                result.target.as_ref().map_or("", |t| t.memory_source.as_str()),
            ),
        };
        let leak = if scenario.expect.retention {
            leak.expect_retention()
        } else {
            leak
        };
        result.verdicts = Some(Verdicts { gaps, latency, leak });
    }
    result.losses = LossLog {
        truncated: total_records > records.len() as u64,
        total_records,
        records,
    };
    let (events, not_kept) = ctx.events.take();
    result.events = EventLogOut { events, not_kept };
    result.server = embedded.then_some(server);
    result.before = Some(before);
    Ok(interrupted)
}

/// The servers an iteration runs against, how to read them, and the HTTP routes to load.
struct Stage<'a> {
    servers: &'a [EmbeddedServer],
    probes: &'a Probes,
    shared_layer: bool,
    routes: &'a [Arc<Route>],
    pool: Option<&'a WorkerPool>,
}

struct IterationOutcome {
    figures: IterationFigures,
    loss: analysis::IterationLoss,
    book: LatencyBook,
    /// One merged tally per route.
    http: Vec<Tally>,
    interrupted: bool,
    failure: Option<String>,
}

async fn run_iteration(
    loaded: &LoadedScenario,
    ctx: &Arc<LoadContext>,
    stage: &Stage<'_>,
    clients: &[ClientSpec],
    index: u32,
    cancel: &CancellationToken,
) -> IterationOutcome {
    let run = &loaded.scenario.run;
    let book = Arc::new(LatencyBook::new(ctx.rooms.len()));
    let (phase_tx, phase_rx) = watch::channel(Phase::Send);
    let started = Instant::now();
    let started_ns = ctx.clock.now_ns();
    let failures_before = LiveCounters::get(&ctx.live.connect_failures);
    let tasks: Vec<_> = clients
        .iter()
        .map(|spec| {
            heap::spawn_harness(drivers::drive(
                ctx.clone(),
                book.clone(),
                spec.clone(),
                phase_rx.clone(),
                started,
            ))
        })
        .collect();

    let http_stop = cancel.child_token();
    let mut http = heap::spawn_harness(http_workers(
        ctx,
        stage.routes,
        stage.pool,
        started,
        run.duration,
        &http_stop,
    ));
    let mut http_done: Option<Vec<Tally>> = None;
    // HTTP alone ends as soon as its workers do (a workload bounded by `requests`).
    let http_only = clients.is_empty() && !stage.routes.is_empty();
    let mut interrupted = tokio::select! {
        _ = sleep(run.duration) => false,
        _ = cancel.cancelled() => true,
        tallies = &mut http, if http_only => {
            http_done = Some(tallies.unwrap_or_default());
            false
        }
    };
    let send_s = started.elapsed().as_secs_f64();
    let _ = phase_tx.send(Phase::Quiesce);
    http_stop.cancel();
    let drain_started = Instant::now();
    let drained = if interrupted {
        false
    } else if clients.is_empty() {
        true
    } else {
        drain(ctx, stage.servers, run.drain, cancel).await
    };
    interrupted |= cancel.is_cancelled();
    let drain_s = drain_started.elapsed().as_secs_f64();
    let _ = phase_tx.send(Phase::Disconnect);

    // Every session ends within its close wait after the disconnect phase; the bound is a guard.
    let join_bound = run.connect_timeout + Duration::from_secs(5);
    let http_tallies = match http_done {
        Some(tallies) => tallies,
        None => {
            let bound = join_bound
                + stage
                    .routes
                    .iter()
                    .map(|r| r.workload.timeout)
                    .max()
                    .unwrap_or_default();
            let abort = http.abort_handle();
            match timeout(bound, http).await {
                Ok(Ok(tallies)) => tallies,
                _ => {
                    abort.abort();
                    vec![Tally::default(); stage.routes.len()]
                }
            }
        }
    };
    let mut sessions: Vec<SessionReport> = Vec::new();
    for task in tasks {
        let abort = task.abort_handle();
        match timeout(join_bound, task).await {
            Ok(Ok(reports)) => sessions.extend(reports),
            Ok(Err(_)) => {}
            Err(_) => abort.abort(),
        }
    }

    let settle_started = Instant::now();
    let settled = settle(stage.servers, stage.probes, run.settle).await;
    let settle_s = settle_started.elapsed().as_secs_f64();
    let (after, failure) = match stage.probes.sample().await {
        Ok(sample) => (sample, None),
        Err(error) => (Default::default(), Some(error)),
    };
    let mut server_after = aggregate_stats(stage.servers, stage.shared_layer);
    server_after.layer.fault_dropped_envelopes.clear();
    let server_after = (!stage.servers.is_empty()).then_some(server_after);

    let loss = analysis::analyze(&sessions, &ctx.rooms, &ctx.clock);
    let all_rooms = SharedHistogram::default();
    book.delivery.iter().for_each(|h| all_rooms.merge(h));
    let figures = IterationFigures {
        index,
        warmup: index < run.warmup,
        started_s: secs(started_ns),
        send_s,
        drain_s,
        drained,
        settle_s,
        settled,
        sessions: sessions.len() as u64,
        connect_failures: LiveCounters::get(&ctx.live.connect_failures) - failures_before,
        totals: loss.totals,
        deliveries_per_s: loss.totals.received as f64 / (send_s + drain_s).max(1e-9),
        delivery: all_rooms.summary(),
        http: stage
            .routes
            .iter()
            .zip(&http_tallies)
            .map(|(route, tally)| tally.figures(route.name()))
            .collect(),
        server_after,
        after,
    };
    let book = Arc::try_unwrap(book).unwrap_or_else(|shared| {
        let copy = LatencyBook::new(ctx.rooms.len());
        copy.merge(&shared);
        copy
    });
    IterationOutcome {
        figures,
        loss,
        book,
        http: http_tallies,
        interrupted,
        failure,
    }
}

/// Runs every HTTP workload's workers for one iteration; one merged tally per route.
fn http_workers(
    ctx: &Arc<LoadContext>,
    routes: &[Arc<Route>],
    pool: Option<&WorkerPool>,
    start: Instant,
    duration: Duration,
    stop: &CancellationToken,
) -> impl std::future::Future<Output = Vec<Tally>> + Send + 'static {
    let mut jobs = Vec::new();
    for (index, route) in routes.iter().enumerate() {
        let it = Arc::new(http_load::Iteration::new(
            route.clone(),
            ctx.clone(),
            start,
            start + duration,
            stop.clone(),
        ));
        for worker in 0..route.workload.model.concurrency() {
            jobs.push((index, it.clone(), worker));
        }
    }
    let count = routes.len();
    let running = pool.filter(|_| !jobs.is_empty()).map(|pool| pool.run(jobs));
    async move {
        let mut tallies = vec![Tally::default(); count];
        if let Some(running) = running {
            for (index, tally) in running.await {
                tallies[index].merge(&tally);
            }
        }
        tallies
    }
}

/// The scenario as it goes into the result: a backend URL's password is not written down.
fn without_credentials(scenario: &crate::scenario::Scenario) -> crate::scenario::Scenario {
    let mut resolved = scenario.clone();
    resolved.backend.url = resolved.backend.url.map(|url| crate::layer::redis::redact(&url));
    resolved
}

async fn stop_servers(servers: Vec<EmbeddedServer>) {
    for server in servers {
        server.stop().await;
    }
}

/// The embedded server instances as a state source: their counters, read in-process (the same
/// figures `/stats` serves).
struct EmbeddedState {
    states: Vec<Arc<AppState>>,
    shared_layer: bool,
}

#[async_trait::async_trait]
impl StateSource for EmbeddedState {
    async fn read(&self) -> Result<StateReading, String> {
        Ok(StateReading {
            state: state_series(&aggregate_states(&self.states, self.shared_layer)),
            info: Default::default(),
        })
    }
}

/// Waits until deliveries stop moving for [`DRAIN_QUIET`], at most `bound`.
async fn drain(ctx: &LoadContext, servers: &[EmbeddedServer], bound: Duration, cancel: &CancellationToken) -> bool {
    let deadline = Instant::now() + bound;
    // Plain counter reads: building full stats would lock the layer on every poll.
    let frames_out = || {
        servers
            .iter()
            .map(|s| LiveCounters::get(&s.state.counters.frames_out))
            .sum::<u64>()
    };
    let reading = || (LiveCounters::get(&ctx.live.received), frames_out());
    let mut last = reading();
    let mut still_since = Instant::now();
    while Instant::now() < deadline && !cancel.is_cancelled() {
        sleep(Duration::from_millis(25)).await;
        let now = reading();
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if still_since.elapsed() >= DRAIN_QUIET {
            return true;
        }
    }
    false
}

/// Waits until every instance reports zero live connections and the server's live heap has
/// stayed within [`HEAP_QUIET_BYTES`] for [`HEAP_QUIET`], at most `bound`. An external server
/// (no instances here) is settled by its resident memory and state instead.
async fn settle(servers: &[EmbeddedServer], probes: &Probes, bound: Duration) -> bool {
    if servers.is_empty() {
        return settle_external(probes, bound).await;
    }
    let deadline = Instant::now() + bound;
    let mut window: std::collections::VecDeque<(Instant, i64)> = std::collections::VecDeque::new();
    loop {
        let now = Instant::now();
        let idle = servers
            .iter()
            .all(|s| LiveCounters::get(&s.state.counters.live_connections) == 0);
        let still = match probes.heap_bytes() {
            None => true,
            Some(bytes) => {
                window.push_back((now, bytes));
                while window
                    .front()
                    .is_some_and(|(at, _)| now.duration_since(*at) > HEAP_QUIET)
                {
                    window.pop_front();
                }
                let (low, high) = window
                    .iter()
                    .fold((i64::MAX, i64::MIN), |(lo, hi), (_, b)| (lo.min(*b), hi.max(*b)));
                let spans_window = window
                    .front()
                    .is_some_and(|(at, _)| now.duration_since(*at) >= HEAP_QUIET - Duration::from_millis(25));
                spans_window && high - low <= HEAP_QUIET_BYTES
            }
        };
        if idle && still {
            return true;
        }
        if !idle {
            window.clear();
        }
        if now >= deadline {
            return false;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until an external server's resident memory has moved less than [`RSS_QUIET_BYTES`] and
/// its state series (from `stats_url`) not at all for [`RSS_QUIET`], at most `bound`.
async fn settle_external(probes: &Probes, bound: Duration) -> bool {
    type Reading = (Instant, u64, std::collections::BTreeMap<String, u64>);
    let deadline = Instant::now() + bound;
    let mut window: std::collections::VecDeque<Reading> = std::collections::VecDeque::new();
    loop {
        let now = Instant::now();
        let Ok(sample) = probes.sample().await else {
            return false;
        };
        window.push_back((now, sample.rss_bytes.unwrap_or(0), sample.state));
        // Keep one reading at or before the window's start, so the window always spans it.
        while window
            .get(1)
            .is_some_and(|(at, _, _)| now.duration_since(*at) >= RSS_QUIET)
        {
            window.pop_front();
        }
        let spans_window = window
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) >= RSS_QUIET);
        let (low, high) = window
            .iter()
            .fold((u64::MAX, 0), |(lo, hi), (_, rss, _)| (lo.min(*rss), hi.max(*rss)));
        let state_still = window
            .iter()
            .all(|(_, _, state)| Some(state) == window.back().map(|w| &w.2));
        if spans_window && high - low <= RSS_QUIET_BYTES && state_still {
            return true;
        }
        if now >= deadline {
            return false;
        }
        sleep(Duration::from_millis(100)).await;
    }
}

/// Connections every instance has closed so far.
fn closed_connections(servers: &[EmbeddedServer]) -> u64 {
    servers
        .iter()
        .map(|s| {
            let c = &s.state.counters;
            LiveCounters::get(&c.connections_opened).saturating_sub(LiveCounters::get(&c.live_connections))
        })
        .sum()
}

/// Server state counters by name: the series a leak verdict requires to return to their start.
fn state_series(stats: &ServerStats) -> std::collections::BTreeMap<String, u64> {
    [
        ("live_connections", stats.live_connections),
        ("groups", stats.layer.groups),
        ("memberships", stats.layer.memberships),
        ("channels", stats.layer.channels),
        ("buffered", stats.layer.buffered),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

/// Counters summed over instances; a layer shared by every instance is counted once.
fn aggregate_stats(servers: &[EmbeddedServer], shared_layer: bool) -> ServerStats {
    let states: Vec<&AppState> = servers.iter().map(|s| s.state.as_ref()).collect();
    aggregate_states(&states, shared_layer)
}

fn aggregate_states<S: std::ops::Deref<Target = AppState>>(states: &[S], shared_layer: bool) -> ServerStats {
    let Some(first) = states.first() else {
        return ServerStats::default();
    };
    let mut stats = first.stats();
    for state in &states[1..] {
        if shared_layer {
            stats.add_counters(&state.counters.snapshot(LayerStats::default()));
        } else {
            let other = state.stats();
            stats.add_counters(&other);
            stats.layer.add(&other.layer);
        }
    }
    stats
}

/// The progress display: iteration, elapsed against planned time, messages and gaps so far.
struct Progress {
    bar: ProgressBar,
    iterations: u32,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(visible: bool, iterations: u32, duration: Duration, ctx: Arc<LoadContext>) -> Self {
        let total = duration.as_secs_f64() * iterations as f64;
        let bar = ProgressBar::with_draw_target(
            Some(total.ceil() as u64),
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:24}] {elapsed}/{duration} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let ticking = bar.clone();
        let ticker = heap::spawn_harness(async move {
            let started = Instant::now();
            loop {
                sleep(Duration::from_millis(200)).await;
                let live = &ctx.live;
                ticking.set_position(started.elapsed().as_secs());
                let heap = heap::figures()
                    .map(|h| {
                        format!(
                            " · server heap {}",
                            bytesize::ByteSize::b(h.server_bytes.max(0) as u64).display().iec()
                        )
                    })
                    .unwrap_or_default();
                ticking.set_message(format!(
                    "sent {} · received {} · gaps so far {} · connects {} · http answers {}{heap}",
                    LiveCounters::get(&live.sent),
                    LiveCounters::get(&live.received),
                    LiveCounters::get(&live.suspected_gaps),
                    LiveCounters::get(&live.connects),
                    LiveCounters::get(&live.http_answered),
                ));
            }
        });
        Self {
            bar,
            iterations,
            ticker,
        }
    }

    fn iteration(&self, index: u32) {
        self.bar
            .set_prefix(format!("iteration {}/{}", index + 1, self.iterations));
    }

    fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}
