//! One iteration of a run: connect the topology and send for `duration`, quiesce, drain
//! (bounded), disconnect, settle (bounded), then sample "after", and turn what the clients saw
//! into the iteration's figures.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

use super::drain;
use crate::heap;
use crate::load::crew::Crew;
use crate::load::drivers::{Clients, Shift};
use crate::load::http::{self as http_load, Route, WorkerPool};
use crate::load::pacing::FirstSends;
use crate::load::{LiveCounters, LoadContext, Phase};
use crate::observe::analysis::{self, SessionReport};
use crate::observe::clock::secs;
use crate::observe::http::Tally;
use crate::observe::latency::{LatencyBook, SharedHistogram};
use crate::observe::sampler::{OwnUsage, Probes, SourceError};
use crate::results::{IterationFigures, LostWork};
use crate::scenario::RunSpec;
use crate::target::{JudgedMemory, Target};

/// What every iteration runs against: the target, how to read it, the HTTP routes to load.
pub struct Stage<'a> {
    /// The server under test.
    pub target: &'a dyn Target,
    /// Its memory and state sources.
    pub probes: &'a Probes,
    /// The HTTP workloads.
    pub routes: &'a [Arc<Route>],
    /// The HTTP worker threads, when there are workloads.
    pub pool: Option<&'a WorkerPool>,
    /// The delivery p99 past which the server is behind: what tells a loss `while_healthy` from
    /// one `under_backlog`.
    pub delivery_p99_limit: Duration,
}

/// What each iteration works in and the next one reuses: the sessions' reports, gathered for the
/// analysis, and the histogram the rooms' delivery latency is merged into. Made afresh, each
/// iteration grew them again step by step (the vector by doubling, the histogram by a resize at
/// each slower value, up to 136 KiB for a minute's values): in a page-fault trace of a soak
/// (`bench/pagefaults.sh`) the merged histogram's resizes were up to a quarter of the new pages.
///
/// Each client's own vector of reports, given to it with its shift and taken back with its
/// reports, stays here between iterations too.
#[derive(Default)]
pub struct Scratch {
    sessions: Vec<SessionReport>,
    all_rooms: SharedHistogram,
    clients_reports: Vec<Vec<SessionReport>>,
}

impl Scratch {
    /// Takes the merged histogram's counts for values up to `highest_us` now (as
    /// [`SharedHistogram::reserve`] does for the rooms' own).
    pub fn reserve(&mut self, highest_us: u64) {
        self.all_rooms.reserve(highest_us);
    }

    /// Delivery latency over every room of `book`.
    fn delivery_over_rooms(&self, book: &LatencyBook) -> crate::observe::latency::LatencySummary {
        self.all_rooms.clear();
        book.delivery.iter().for_each(|h| self.all_rooms.merge(h));
        self.all_rooms.summary()
    }
}

/// What one iteration gave.
pub struct Outcome {
    /// Its figures, as the result records them.
    pub figures: IterationFigures,
    /// Its losses.
    pub loss: analysis::IterationLoss,
    /// Its latency histograms.
    pub book: LatencyBook,
    /// One merged tally per route.
    pub http: Vec<Tally>,
    /// A signal ended it early.
    pub interrupted: bool,
    /// The "after" sample could not be taken.
    pub failure: Option<SourceError>,
    /// Client tasks and HTTP workers that never reported.
    pub lost: Vec<LostWork>,
}

/// Runs iteration `index` of the clients `crew` drives against `stage`, recording latency into
/// `book` (empty: a cleared book of an earlier iteration, so a long run does not allocate one per
/// iteration) and working in `scratch`, which it leaves empty.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    run: &RunSpec,
    ctx: &Arc<LoadContext>,
    stage: &Stage<'_>,
    crew: &mut Crew<Clients>,
    index: u32,
    cancel: &CancellationToken,
    book: LatencyBook,
    scratch: &mut Scratch,
) -> Outcome {
    let book = Arc::new(book);
    let (phase_tx, phase_rx) = watch::channel(Phase::Send);
    let started = Instant::now();
    let started_ns = ctx.clock.now_ns();
    let usage_start = OwnUsage::now();
    let failures_before = LiveCounters::get(&ctx.live.connect_failures);
    scratch.clients_reports.resize_with(crew.len(), Vec::new);
    for (member, reports) in scratch.clients_reports.iter_mut().enumerate() {
        let shift = Shift {
            book: book.clone(),
            phase: phase_rx.clone(),
            start: started,
            reports: std::mem::take(reports),
        };
        crew.assign(member, shift);
    }

    let http_stop = cancel.child_token();
    let mut http = heap::spawn_harness(http_workers(
        ctx,
        stage.routes,
        stage.pool,
        started,
        run.duration,
        &http_stop,
        index,
    ));
    let mut http_done: Option<(Vec<Tally>, Vec<LostWork>)> = None;
    // HTTP alone ends as soon as its workers do (a workload bounded by `requests`).
    let http_only = crew.is_empty() && !stage.routes.is_empty();
    let mut interrupted = tokio::select! {
        _ = sleep(run.duration) => false,
        _ = cancel.cancelled() => true,
        done = &mut http, if http_only => {
            http_done = Some(match done {
                Ok(done) => done,
                Err(error) => (
                    vec![Tally::default(); stage.routes.len()],
                    stage.routes.iter().map(|route| http_lost(index, route, join_failure(&error))).collect(),
                ),
            });
            false
        }
    };
    let send_s = started.elapsed().as_secs_f64();
    let _ = phase_tx.send(Phase::Quiesce);
    http_stop.cancel();
    let drain_started = Instant::now();
    let drained = if interrupted {
        false
    } else if crew.is_empty() {
        true
    } else {
        let reading = || (LiveCounters::get(&ctx.live.received), stage.target.frames_out());
        drain::until_still(reading, run.drain, cancel).await
    };
    interrupted |= cancel.is_cancelled();
    let drain_s = drain_started.elapsed().as_secs_f64();
    // leakrun's own cost, read while every connection is still open.
    let usage_end = OwnUsage::now();
    let _ = phase_tx.send(Phase::Disconnect);

    // Every session ends within its close wait after the disconnect phase; the bound is a guard.
    let join_bound = run.connect_timeout + Duration::from_secs(5);
    let mut lost = Vec::new();
    let (http_tallies, http_lost) = match http_done {
        Some(done) => done,
        None => {
            let bound = join_bound
                + stage
                    .routes
                    .iter()
                    .map(|r| r.workload.timeout)
                    .max()
                    .unwrap_or_default();
            let abort = http.abort_handle();
            let every_route = |why: String| {
                let lost = stage
                    .routes
                    .iter()
                    .map(|route| http_lost(index, route, why.clone()))
                    .collect();
                (vec![Tally::default(); stage.routes.len()], lost)
            };
            match timeout(bound, http).await {
                Ok(Ok(done)) => done,
                Ok(Err(error)) => every_route(join_failure(&error)),
                Err(_) => {
                    abort.abort();
                    every_route(format!("did not end within {}", humantime::format_duration(bound)))
                }
            }
        }
    };
    lost.extend(http_lost);
    let sessions = &mut scratch.sessions;
    sessions.clear();
    for (member, kept) in scratch.clients_reports.iter_mut().enumerate() {
        match crew.answer(member, join_bound).await {
            Ok(mut reports) => {
                sessions.append(&mut reports);
                *kept = reports;
            }
            Err(why) => lost.push(LostWork {
                iteration: index,
                what: crew.work().spec(member).label.clone(),
                why: why.to_string(),
            }),
        }
    }

    let settle_started = Instant::now();
    let settled = stage.target.settle(stage.probes, run.settle).await;
    // A heap probe's snapshot holds the server while it is taken: only now, with every client
    // gone, and the settle time includes it.
    let heap_probe = stage.target.heap_sites().await;
    let settle_s = settle_started.elapsed().as_secs_f64();
    let (mut after, mut failure) = match stage.probes.sample().await {
        Ok(sample) => (sample, None),
        Err(error) => (Default::default(), Some(error)),
    };
    let heap_probe = match heap_probe {
        Ok(report) => report,
        Err(error) => {
            failure.get_or_insert(error);
            None
        }
    };
    if let Some(report) = &heap_probe {
        // The snapshot's figures: its blocks are the only exact count, and its bytes go with them.
        after.heap_bytes = Some(report.bytes);
        after.heap_blocks = Some(report.blocks);
        after.heap_processes = Some(report.processes.len() as u32);
    }
    let server_after = stage.target.stats().map(|mut stats| {
        stats.layer.fault_dropped_envelopes.clear();
        stats
    });

    let loss = {
        let windows = book.lock_windows();
        let health = analysis::Health {
            windows: &windows,
            p99_limit_us: stage.delivery_p99_limit.as_micros() as u64,
        };
        analysis::analyze(sessions, &ctx.rooms, &ctx.clock, health)
    };
    let session_count = sessions.len() as u64;
    let first_sends = FirstSends::of(sessions);
    // The reports go now; their vector stays for the next iteration.
    sessions.clear();
    let figures = IterationFigures {
        index,
        warmup: index < run.warmup,
        started_s: secs(started_ns),
        send_s,
        drain_s,
        drained,
        settle_s,
        settled,
        sessions: session_count,
        connect_failures: LiveCounters::get(&ctx.live.connect_failures) - failures_before,
        totals: loss.totals,
        deliveries_per_s: loss.totals.received as f64 / (send_s + drain_s).max(1e-9),
        delivery: scratch.delivery_over_rooms(&book),
        first_sends,
        generator: usage_start.figures(
            &usage_end,
            send_s + drain_s,
            session_count,
            matches!(stage.target.judged_memory(None), JudgedMemory::Heap { exact: true, .. }),
        ),
        http: stage
            .routes
            .iter()
            .zip(&http_tallies)
            .map(|(route, tally)| tally.figures(route.name()))
            .collect(),
        server_after,
        heap_probe,
        after,
        interrupted,
    };
    let book = Arc::try_unwrap(book).unwrap_or_else(|shared| {
        let copy = LatencyBook::new(ctx.rooms.len());
        copy.merge(&shared);
        copy
    });
    Outcome {
        figures,
        loss,
        book,
        http: http_tallies,
        interrupted,
        failure,
        lost,
    }
}

/// Why a task ended without its report.
fn join_failure(error: &tokio::task::JoinError) -> String {
    if error.is_panic() {
        "panicked".into()
    } else {
        "was cancelled".into()
    }
}

/// A route's workers, lost for `why`.
fn http_lost(iteration: u32, route: &Route, why: String) -> LostWork {
    LostWork {
        iteration,
        what: format!("http {}", route.name()),
        why,
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
    ctx_iteration: u32,
) -> impl std::future::Future<Output = (Vec<Tally>, Vec<LostWork>)> + Send + 'static {
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
    let mut expected = vec![0usize; count];
    jobs.iter().for_each(|(index, _, _)| expected[*index] += 1);
    let names: Vec<String> = routes.iter().map(|r| r.name().to_string()).collect();
    let iteration = ctx_iteration;
    let running = pool.filter(|_| !jobs.is_empty()).map(|pool| pool.run(jobs));
    async move {
        let mut tallies = vec![Tally::default(); count];
        let mut reported = vec![0usize; count];
        if let Some(running) = running {
            for (index, tally) in running.await {
                tallies[index].merge(&tally);
                reported[index] += 1;
            }
        }
        // A worker that panicked, or a thread that was gone, reports nothing: say so.
        let lost = (0..count)
            .filter(|&i| reported[i] < expected[i])
            .map(|i| LostWork {
                iteration,
                what: format!("http {}", names[i]),
                why: format!(
                    "{} of {} workers did not report",
                    expected[i] - reported[i],
                    expected[i]
                ),
            })
            .collect();
        (tallies, lost)
    }
}
