//! The runner: one scenario, start to result file.
//!
//! It stands the server up once through the [`Target`] seam, then runs each iteration
//! ([`iteration`]): connect the topology, send for `duration`, quiesce, drain (bounded),
//! disconnect, settle (bounded), sample. The server lives across iterations: what stays behind
//! after every client is gone is what a leak looks like. Interrupted or not, a result file is
//! written. Nothing here knows what kind of server it drives.

mod drain;
pub mod iteration;
mod redaction;
mod tally;

use redaction::{info_without_credentials, sources_without_credentials, without_credentials};

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::heap;
use crate::load::drivers;
use crate::load::http::{Route, WorkerPool};
use crate::load::pacing::ConnectPacer;
use crate::load::{LiveCounters, LoadContext};
use crate::observe::clock::{RunClock, secs};
use crate::observe::events::EventLog;
use crate::observe::sampler::SourceError;
use crate::results::{self, *};
use crate::scenario::LoadedScenario;
use crate::target::{self, JudgedMemory, Target, TargetError};
use crate::verdict::Verdicts;

/// Churn events kept per run.
const MAX_EVENTS: usize = 20_000;
/// Bound on waiting for a still server before the first client connects.
const BEFORE_SETTLE: Duration = Duration::from_secs(3);
/// Sending time from which a run takes its latency windows' buckets and its histograms' counts
/// when it starts (a few MiB): past the span of the room windows (25.6 s of 100 ms windows), they
/// would be taken one by one for many minutes, and the histograms would grow at each new slowest
/// value.
const RESERVE_LATENCY_FROM: Duration = Duration::from_secs(60);

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// Folder the result lands in.
    pub out_dir: PathBuf,
    /// Who shows the run's progress, if anyone.
    pub progress: Option<Arc<dyn Progress>>,
    /// Cancelled by an interrupting signal.
    pub cancel: CancellationToken,
}

/// What a run tells whoever shows its progress.
pub trait Progress: Send + Sync {
    /// The iterations begin: the plan, and the counters the clients move.
    fn started(&self, plan: &Plan, live: Arc<LoadContext>);
    /// Iteration `index` (0-based) begins.
    fn iteration(&self, index: u32);
    /// The iterations are over.
    fn finished(&self);
}

/// What a run will do, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Iterations planned.
    pub iterations: u32,
    /// Send time of each.
    pub duration: Duration,
    /// The scenario has rooms of WebSocket clients.
    pub websocket: bool,
    /// The scenario has HTTP workloads.
    pub http: bool,
    /// The target's live heap is counted exactly (leakrun's own server domain).
    pub exact_heap: bool,
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
    /// Another run of this scenario is writing into the same folder.
    #[error(transparent)]
    Busy(results::write::LockError),
    /// The result could not be written.
    #[error("cannot write the result to {dir}: {source}")]
    Output {
        /// The folder.
        dir: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Why a run ended with status `error` (an infrastructure problem, exit 3).
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The server under test could not be had.
    #[error(transparent)]
    Target(TargetError),
    /// The HTTP workers could not start.
    #[error("cannot start the HTTP worker threads: {0}")]
    Workers(std::io::Error),
    /// The first sample could not be taken.
    #[error("cannot take the first sample: {0}")]
    FirstSample(SourceError),
    /// A memory or state source stopped answering mid-run.
    #[error("stopped after {iterations} iteration(s): {source}")]
    Stopped {
        /// Iterations recorded.
        iterations: usize,
        /// What stopped answering.
        source: SourceError,
    },
}

/// Runs `loaded` and writes its result.
pub async fn run(loaded: &LoadedScenario, options: &RunOptions) -> Result<RunOutcome, RunError> {
    let scenario = &loaded.scenario;
    // Held until the result is written: a second run of this scenario into this folder would
    // write over this one's result and server log.
    let _lock = results::write::RunLock::acquire(&options.out_dir, &scenario.name).map_err(|error| match error {
        results::write::LockError::Io { source, .. } => RunError::Output {
            dir: options.out_dir.clone(),
            source,
        },
        busy => RunError::Busy(busy),
    })?;
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
            sources: sources_without_credentials(&loaded.sources),
        },
        host: HostFacts::collect(),
        backend: BackendInfo {
            kind: match scenario.server.external() {
                Some(_) => "external".into(),
                None => scenario.backend.kind.name().into(),
            },
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
        phase_seed: fastrand::u64(..),
        // Room for every planned iteration (at most MAX_ITERATIONS) up front: a vector that
        // doubles takes a step of memory at the 16th, 32nd, ... iteration of a long run, which a
        // soak reads as leakrun's own memory rising.
        iterations: Vec::with_capacity(scenario.run.iterations as usize),
        verdicts: None,
        losses: LossLog::default(),
        events: EventLogOut::default(),
        target: None,
        server: None,
        before: None,
        timeline: Timeline::new(2),
        delivery_timeline: Vec::new(),
        delivery_timeline_per_room: Vec::new(),
        connect_timeline: Vec::new(),
        http: Vec::new(),
        incomplete: Vec::new(),
        warnings: Vec::new(),
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
            // Verdicts over part of what happened are no verdicts: said, and not a pass.
            if !interrupted && !result.incomplete.is_empty() {
                result.status = Status::Error;
                result.error = Some(incomplete_message(&result.incomplete));
            }
        }
        Err(failure) => {
            result.status = Status::Error;
            result.error = Some(failure.to_string());
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

/// Starts the target, runs the iterations on it and stops it whatever happened; `Ok(true)` when
/// interrupted.
async fn execute(
    loaded: &LoadedScenario,
    options: &RunOptions,
    clock: &RunClock,
    result: &mut RunResult,
) -> Result<bool, Failure> {
    let target = match target::start(&loaded.scenario, &options.out_dir, &options.cancel).await {
        Ok(target) => target,
        Err(TargetError::Interrupted { .. }) => return Ok(true),
        Err(error) => return Err(Failure::Target(error)),
    };
    result.backend = target.backend();
    result.target = Some(info_without_credentials(target.info(None)));
    let outcome = run_on(loaded, options, clock, result, target.as_ref()).await;
    let last = result.iterations.last().map(|i| &i.after);
    let mut info = target.info(last);
    info.stopped = target.stop().await;
    result.target = Some(info_without_credentials(info));
    outcome
}

/// Runs the iterations on `target` and judges them; the caller stops the target.
async fn run_on(
    loaded: &LoadedScenario,
    options: &RunOptions,
    clock: &RunClock,
    result: &mut RunResult,
    target: &dyn Target,
) -> Result<bool, Failure> {
    let scenario = &loaded.scenario;
    let rooms: Vec<String> = scenario.rooms.iter().map(|r| r.name.clone()).collect();
    let probes = Arc::new(target.probes(*clock).map_err(Failure::Target)?);
    let ctx = Arc::new(LoadContext {
        clock: *clock,
        targets: target.endpoints(),
        template: target.frame_template(),
        rooms: rooms.clone(),
        connect_timeout: scenario.run.connect_timeout,
        next_session: AtomicU64::new(0),
        next_sender: AtomicU64::new(0),
        live: LiveCounters::default(),
        events: EventLog::new(MAX_EVENTS),
        phase_seed: result.phase_seed,
        pacer: scenario.run.connect_rate.map(ConnectPacer::new),
    });
    // One long-lived task per client for the whole run (see `load::crew`).
    let mut crew = drivers::Clients::new(ctx.clone(), drivers::clients(scenario, ctx.targets.len())).crew();
    let routes: Vec<Arc<Route>> = scenario
        .http
        .iter()
        .cloned()
        .map(|mut workload| {
            workload.path = format!("{}{}", target.http_prefix(), workload.path);
            Arc::new(Route::new(workload))
        })
        .collect();
    // The worker threads start before the first sample, so nothing they cost is the server's.
    let pool = match routes.is_empty() {
        true => None,
        false => Some(WorkerPool::start().map_err(Failure::Workers)?),
    };
    target.settle(&probes, BEFORE_SETTLE).await;
    // A heap probe's first report is the baseline the sites after each iteration are measured
    // from; it comes before the first sample, so what the probe's own snapshot leaves in the
    // server's resident memory is there from the start and never passes for the server's.
    target.heap_sites().await.map_err(Failure::FirstSample)?;
    let before = probes.sample().await.map_err(Failure::FirstSample)?;
    let sampler = crate::observe::sampler::Sampler::start(probes.clone(), scenario.run.sample_interval);
    // Ends an iteration early: a signal, or a state source (a backend) that stopped answering.
    let stop = options.cancel.child_token();
    let stop_on_failure = heap::spawn_harness({
        let (failed, stop) = (sampler.failed(), stop.clone());
        async move {
            failed.cancelled().await;
            stop.cancel();
        }
    });
    if let Some(progress) = &options.progress {
        let plan = Plan {
            iterations: scenario.run.iterations,
            duration: scenario.run.duration,
            websocket: !rooms.is_empty(),
            http: !routes.is_empty(),
            exact_heap: matches!(target.judged_memory(None), JudgedMemory::Heap { exact: true, .. })
                && heap::figures().is_some(),
        };
        progress.started(&plan, ctx.clone());
    }
    let stage = iteration::Stage {
        target,
        probes: &probes,
        routes: &routes,
        pool: pool.as_ref(),
        delivery_p99_limit: scenario.thresholds.delivery.p99.unwrap_or(Duration::from_millis(500)),
    };
    let mut tallies = tally::Tallies::new(rooms.len(), routes.len(), scenario.run.iterations as usize);
    // The result's records too take their room for the run's plan now, rather than in doublings
    // that leave the records' old homes as holes in the heap (a new page a few iterations).
    result.iterations.reserve(scenario.run.iterations as usize);
    if scenario.run.duration.saturating_mul(scenario.run.iterations) >= RESERVE_LATENCY_FROM {
        // No delivery of an iteration is later than its sending and draining time.
        let longest = scenario.run.duration.saturating_add(scenario.run.drain);
        tallies.reserve_latency(u64::try_from(longest.as_micros()).unwrap_or(u64::MAX));
    }
    let mut closed_so_far = target.closed_connections();
    let mut interrupted = false;
    let mut failure: Option<SourceError> = None;
    for index in 0..scenario.run.iterations {
        if stop.is_cancelled() {
            interrupted = true;
            break;
        }
        if let Some(progress) = &options.progress {
            progress.iteration(index);
        }
        let book = tallies.spare_book();
        let outcome = iteration::run(
            &scenario.run,
            &ctx,
            &stage,
            &mut crew,
            index,
            &stop,
            book,
            &mut tallies.scratch,
        )
        .await;
        // A server that does not count closed connections: every session of the iteration has
        // closed by its end.
        let closed_now = target.closed_connections();
        let connections_closed = match (closed_now, closed_so_far) {
            (Some(now), Some(before)) => now - before,
            _ => outcome.figures.sessions,
        };
        closed_so_far = closed_now;
        if let Some(error) = &outcome.failure {
            failure.get_or_insert_with(|| error.clone());
        }
        result.incomplete.extend(outcome.lost.iter().cloned());
        let ended = outcome.interrupted || outcome.failure.is_some();
        tallies.add(outcome, connections_closed, result);
        if ended {
            interrupted = failure.is_none();
            break;
        }
    }
    drop(crew);
    if let Some(progress) = &options.progress {
        progress.finished();
    }
    stop_on_failure.abort();
    let failure = failure.or_else(|| sampler.failure());
    result.timeline = sampler.finish().await;
    // Allocation sites are named once, now that no sample measures leakrun's memory any more.
    let site_lists = tallies.site_lists(result);
    if !site_lists.is_empty() {
        stage.target.name_sites(site_lists);
    }
    result.warnings.extend(tally::saturation_warning(result));
    let (events, not_kept) = ctx.events.take();
    result.events = EventLogOut { events, not_kept };
    let server = target.stats();
    result.server = server.clone();
    result.before = Some(before.clone());
    if let Some(source) = failure {
        return Err(Failure::Stopped {
            iterations: result.iterations.len(),
            source,
        });
    }
    if result.iterations.iter().any(|i| !i.interrupted) {
        let last = result.iterations.iter().rfind(|i| !i.interrupted).map(|i| &i.after);
        let memory = target.judged_memory(last);
        result.verdicts = Some(tally::judge(
            loaded,
            &tallies,
            &routes,
            server.as_ref(),
            &before,
            memory,
            result,
        ));
    }
    result.losses = LossLog {
        truncated: tallies.total_records > tallies.records.len() as u64,
        total_records: tallies.total_records,
        records: tallies.records,
    };
    Ok(interrupted)
}

/// The error of a result whose load did not all report: how many, and the first few by name.
fn incomplete_message(lost: &[LostWork]) -> String {
    const NAMED: usize = 5;
    let named: Vec<String> = lost
        .iter()
        .take(NAMED)
        .map(|l| format!("{} in iteration {} {}", l.what, l.iteration + 1, l.why))
        .collect();
    let more = match lost.len().saturating_sub(NAMED) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    format!(
        "incomplete: {} client session task(s) or HTTP route(s) never reported, so their messages are missing from the verdicts: {}{more}",
        lost.len(),
        named.join("; ")
    )
}
