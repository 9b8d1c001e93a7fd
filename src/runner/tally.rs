//! What a run's iterations add up to — memory after each, latency, HTTP tallies, losses — and the
//! three verdicts judged over them at the end.

use std::sync::Arc;

use super::iteration;
use crate::load::http::Route;
use crate::observe::analysis::{Forensics, LossRecord, LossTotals};
use crate::observe::cpu;
use crate::observe::http::Tally;
use crate::observe::latency::LatencyBook;
use crate::observe::sampler::Sample;
use crate::results::{MAX_LOSS_RECORDS, RoomTimeline, RunResult};
use crate::scenario::LoadedScenario;
use crate::target::JudgedMemory;
use crate::verdict::leak::IterationMemory;
use crate::verdict::{self, Verdicts, gaps::RoomLoss, gaps::ServerCpu, latency::RoomLatency};

/// What the iterations add up to, judged at the end.
pub struct Tallies {
    pub(super) memory: Vec<IterationMemory>,
    book: LatencyBook,
    /// The last iteration's book, emptied, for the next iteration to record into.
    spare: Option<LatencyBook>,
    http: Vec<Tally>,
    totals_per_room: Vec<LossTotals>,
    pub(super) records: Vec<LossRecord>,
    pub(super) total_records: u64,
    forensics: Forensics,
    /// What each iteration works in, reused by the next.
    pub(super) scratch: iteration::Scratch,
}

impl Tallies {
    /// Nothing yet, for `rooms` rooms and `routes` HTTP routes, with room for the memory of
    /// `iterations` iterations taken now (the run's plan, so its vector does not grow in steps).
    pub fn new(rooms: usize, routes: usize, iterations: usize) -> Self {
        Self {
            memory: Vec::with_capacity(iterations),
            book: LatencyBook::new(rooms),
            spare: None,
            http: vec![Tally::default(); routes],
            totals_per_room: vec![LossTotals::default(); rooms],
            records: Vec::new(),
            total_records: 0,
            forensics: Forensics::default(),
            scratch: iteration::Scratch::default(),
        }
    }

    /// Every list of allocation sites the judged memory and the result's iterations hold, for
    /// naming them once at the end.
    pub fn site_lists<'a>(
        &'a mut self,
        result: &'a mut RunResult,
    ) -> Vec<&'a mut Vec<crate::observe::sites::SiteGrowth>> {
        let judged = self.memory.iter_mut().filter_map(|m| m.sites.as_mut());
        let reported = result
            .iterations
            .iter_mut()
            .filter_map(|i| i.heap_probe.as_mut().map(|r| &mut r.sites));
        judged.chain(reported).collect()
    }

    /// Takes every latency window's buckets and the histograms' counts up to `highest_us` now
    /// ([`crate::observe::latency::LatencyBook::reserve`]), in the run's book, in the one the
    /// iterations record into and in the iterations' scratch, for a run long enough to fill them:
    /// its own memory then stays flat from the start instead of rising through its first twenty
    /// minutes and in a step at each new slowest delivery.
    pub fn reserve_latency(&mut self, highest_us: u64) {
        self.book.reserve(highest_us);
        let mut spare = self.spare_book();
        spare.reserve(highest_us);
        self.spare = Some(spare);
        self.scratch.reserve(highest_us);
    }

    /// An empty latency book for the next iteration: the last one's, cleared, when there was one.
    pub fn spare_book(&mut self) -> LatencyBook {
        self.spare
            .take()
            .unwrap_or_else(|| LatencyBook::new(self.book.delivery.len()))
    }

    /// Adds one iteration's outcome; its figures go into the result.
    pub fn add(&mut self, outcome: iteration::Outcome, connections_closed: u64, result: &mut RunResult) {
        // An interrupted iteration is reported, not judged: what was in flight when the signal
        // came would count as lost.
        if outcome.interrupted {
            result.iterations.push(outcome.figures);
            return;
        }
        if !outcome.interrupted && outcome.failure.is_none() {
            self.memory.push(IterationMemory {
                index: outcome.figures.index,
                warmup: outcome.figures.warmup,
                after: outcome.figures.after.clone(),
                connections_closed,
                requests: outcome.http.iter().map(Tally::answers).sum(),
                settled: outcome.figures.settled,
                sites: outcome.figures.heap_probe.as_ref().map(|r| r.sites.clone()),
            });
        }
        for (sum, route) in self.http.iter_mut().zip(&outcome.http) {
            sum.add_iteration(route);
        }
        for (sum, room) in self.totals_per_room.iter_mut().zip(&outcome.loss.per_room) {
            sum.add(room);
        }
        self.total_records += outcome.loss.total_records;
        self.forensics.add(&outcome.loss.forensics);
        let room_left = MAX_LOSS_RECORDS.saturating_sub(self.records.len());
        self.records.extend(outcome.loss.records.into_iter().take(room_left));
        self.book.merge(&outcome.book);
        let mut book = outcome.book;
        book.clear();
        self.spare = Some(book);
        result.iterations.push(outcome.figures);
    }
}

/// The warning when leakrun itself was saturated: over a stretch of samples, or over an
/// iteration's send and drain (its `generator` figures).
pub fn saturation_warning(result: &RunResult) -> Option<String> {
    let cores = cpu::usable_cores();
    crate::observe::saturation::saturation(&result.timeline.samples, cores).or_else(|| {
        result
            .iterations
            .iter()
            .find(|i| i.generator.cpu_share >= cpu::SATURATED_SHARE && i.send_s + i.drain_s >= cpu::MIN_SATURATED_S)
            .map(|i| {
                format!(
                    "leakrun itself was saturated: in iteration {} its process kept {:.0}% of the {cores:.0} core(s) it may use busy over the send and drain, so the load it offered and the latencies it measured are bounded by its own work: its figures are a lower bound of what the server can take",
                    i.index + 1,
                    i.generator.cpu_share * 100.0
                )
            })
    })
}

/// The target's mean CPU over the samples taken while an iteration's load was on (send and
/// drain), for the gaps summary; none when no such sample read it.
pub fn cpu_under_load(result: &RunResult, embedded: bool) -> Option<ServerCpu> {
    let loaded = |at: f64| {
        result
            .iterations
            .iter()
            .any(|i| at > i.started_s && at <= i.started_s + i.send_s + i.drain_s)
    };
    let figures: Vec<f64> = result
        .timeline
        .samples
        .iter()
        .filter(|s| loaded(s.at_s))
        .filter_map(|s| s.target_cpu)
        .collect();
    if figures.is_empty() {
        return None;
    }
    Some(ServerCpu {
        mean_cores: figures.iter().sum::<f64>() / figures.len() as f64,
        peak_cores: figures.iter().copied().fold(0.0, f64::max),
        samples: figures.len() as u64,
        shared_with_clients: embedded,
    })
}

/// The three verdicts over everything the iterations saw.
pub fn judge(
    loaded: &LoadedScenario,
    tallies: &Tallies,
    routes: &[Arc<Route>],
    server: Option<&crate::server::ServerStats>,
    before: &Sample,
    memory: JudgedMemory,
    result: &mut RunResult,
) -> Verdicts {
    let scenario = &loaded.scenario;
    let rooms: Vec<&str> = scenario.rooms.iter().map(|r| r.name.as_str()).collect();
    let mut totals = LossTotals::default();
    tallies.totals_per_room.iter().for_each(|r| totals.add(r));
    let per_room = rooms
        .iter()
        .zip(&tallies.totals_per_room)
        .map(|(room, t)| RoomLoss {
            room: room.to_string(),
            totals: *t,
        })
        .collect();
    let embedded = matches!(scenario.server, crate::scenario::ServerSpec::Embedded(_));
    let gaps = verdict::gaps::judge(
        totals,
        per_room,
        &tallies.records,
        &tallies.forensics,
        cpu_under_load(result, embedded),
        server.map_or(0, |s| s.layer.dropped_full),
        server.map_or(0, |s| s.layer.fault_dropped),
        &scenario.thresholds,
        scenario.expect.gaps,
    );
    let book = &tallies.book;
    result.delivery_timeline = book.lock_windows().summaries();
    result.delivery_timeline_per_room = rooms
        .iter()
        .zip(book.room_timelines())
        .map(|(room, windows)| RoomTimeline {
            room: room.to_string(),
            windows,
        })
        .collect();
    result.connect_timeline = book.connect_timeline();
    let windows = book.lock_windows();
    for sample in &mut result.timeline.samples {
        if let Some(sketch) = windows.at((sample.at_s.max(0.0) * 1e9) as u64) {
            sample.delivery_p50_us = Some(sketch.quantile(0.5));
            sample.delivery_p99_us = Some(sketch.quantile(0.99));
            sample.delivery_max_us = Some(sketch.max_us());
        }
    }
    drop(windows);
    let delivery = rooms
        .iter()
        .zip(book.delivery.iter().zip(&book.send_lag))
        .map(|(room, (delivery, lag))| RoomLatency {
            room: room.to_string(),
            delivery: delivery.summary(),
            send_lag: lag.summary(),
        })
        .collect();
    result.http = routes
        .iter()
        .zip(&tallies.http)
        .map(|(route, tally)| tally.figures(route.name()))
        .collect();
    let latency = verdict::latency::judge(
        delivery,
        book.connect.summary(),
        &result.http,
        &scenario.thresholds,
        scenario.expect.latency_breach,
    );
    let limits = &scenario.thresholds.leak;
    let leak = verdict::leak::judge_memory(before, &tallies.memory, limits, scenario.expect.leak, &memory);
    let leak = if scenario.expect.retention {
        leak.expect_retention()
    } else {
        leak
    };
    Verdicts { gaps, latency, leak }
}
