//! The leak verdict: what stays behind after every client is gone, and whether it grows.
//!
//! Judged from the "after" sample of each iteration (taken once the server has settled) against the
//! "before" sample taken before any client connected:
//! * the live heap (exact, server domain): a robust slope over the iterations after warm-up, past
//!   `thresholds.heap_growth` per iteration and grown by as much from first to last, is a leak;
//! * each server state counter (connections, memberships, channels, ...): ending above where it
//!   started is a leak, whatever the bytes say — state that is never released is the bug;
//! * resident memory: where the heap is exact, RSS only tells retention from clean — RSS kept well
//!   above the heap's own growth while the heap stayed flat is the allocator holding freed pages,
//!   not a leak (the hyper report in the seeds). Without a heap series (an external server), RSS
//!   growth past `thresholds.rss_growth` per iteration is judged as the leak, and the evidence
//!   names the process (tree) it was read from.

use serde::{Deserialize, Serialize};

use super::fit::theil_sen;
use crate::observe::sampler::Sample;
use crate::observe::sites::SiteGrowth;
use crate::scenario::LeakLimits;

/// Iterations after warm-up needed to fit a slope.
pub const MIN_JUDGED: usize = 3;

/// Outcome of the leak verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakOutcome {
    /// Nothing grows and nothing stays behind.
    Clean,
    /// The heap returned to its baseline but resident memory stayed up: the allocator keeps freed
    /// pages. Not a leak.
    Retention,
    /// Memory or state grows with each iteration, or state is never released.
    Leak,
}

/// How one series came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesClass {
    /// Within its limit.
    Clean,
    /// RSS kept by the allocator (RSS series only).
    Retention,
    /// Past its limit.
    Leak,
    /// Shown for reference; not judged.
    Info,
    /// Not enough iterations to judge.
    NotJudged,
}

/// Which memory series the verdict judges, as the target offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JudgedMemory {
    /// A heap series (`heap_bytes`), with RSS beside it telling retention.
    Heap {
        /// What the heap is, in words (`live heap`, `traced Python heap (tracemalloc in pid 42)`).
        what: String,
        /// Counted by leakrun's own allocator in its own process (the embedded server).
        exact: bool,
    },
    /// Resident memory only, described for the verdict (`rss of pid 123 and 2 child processes`).
    Rss {
        /// Where the RSS comes from, in words.
        source: String,
    },
}

/// One iteration's memory figures, as the verdict needs them.
#[derive(Debug, Clone)]
pub struct IterationMemory {
    /// 0-based iteration index.
    pub index: u32,
    /// Excluded from the fits.
    pub warmup: bool,
    /// The sample after the iteration settled.
    pub after: Sample,
    /// Connections the server closed during the iteration.
    pub connections_closed: u64,
    /// HTTP requests answered during the iteration.
    pub requests: u64,
    /// The server reached zero connections and a still heap before the after sample.
    pub settled: bool,
    /// Where the heap grew during the iteration, when a heap probe reported it.
    pub sites: Option<Vec<SiteGrowth>>,
}

/// One judged series with its evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesVerdict {
    /// `heap_bytes`, `heap_blocks`, `rss_bytes`, or a state counter's name.
    pub name: String,
    /// `bytes`, `blocks` or `count`.
    pub unit: String,
    /// Value before any client connected.
    pub before: Option<f64>,
    /// Value after each iteration, warm-up included (index = iteration).
    pub after: Vec<Option<f64>>,
    /// Robust slope per iteration over the iterations after warm-up.
    pub slope_per_iteration: Option<f64>,
    /// Last judged value minus the first.
    pub growth: Option<f64>,
    /// Steps between consecutive judged iterations in which the value rose (by more than half the
    /// robust slope, when that is positive), and steps in all.
    pub rising_steps: [u32; 2],
    /// Slope divided by the connections closed per iteration.
    pub per_connection: Option<f64>,
    /// Slope divided by the HTTP requests answered per iteration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_request: Option<f64>,
    /// How it came out.
    pub class: SeriesClass,
    /// What the numbers say, in words a person can act on.
    pub evidence: String,
}

/// The leak verdict with its evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeakVerdict {
    /// What the run showed.
    pub outcome: LeakOutcome,
    /// The scenario expected a leak.
    pub expected_leak: bool,
    /// The scenario expected retention (`expect.retention`).
    #[serde(default)]
    pub expected_retention: bool,
    /// Outcome matches the expectation (retention counts as no leak).
    pub met: bool,
    /// One line for people.
    pub summary: String,
    /// Iterations the fits used (after warm-up).
    pub judged_iterations: u32,
    /// Mean connections closed per judged iteration.
    pub connections_closed_per_iteration: f64,
    /// Growth per iteration of the judged memory series (heap, else RSS).
    pub bytes_per_iteration: Option<f64>,
    /// The same per closed connection.
    pub bytes_per_connection: Option<f64>,
    /// Mean HTTP requests answered per judged iteration.
    #[serde(default)]
    pub requests_per_iteration: f64,
    /// Growth per iteration per HTTP request answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_request: Option<f64>,
    /// Every series.
    pub series: Vec<SeriesVerdict>,
    /// Allocation sites whose live bytes grew, largest growth first (when a heap probe names
    /// them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<SiteVerdict>,
}

/// One allocation site's growth over the judged iterations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteVerdict {
    /// `file:line`.
    pub site: String,
    /// The call path, innermost first, when the probe keeps more than one frame.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traceback: Vec<String>,
    /// Live bytes it added per judged iteration.
    pub bytes_per_iteration: f64,
    /// Live blocks it added per judged iteration.
    pub blocks_per_iteration: f64,
    /// Bytes per iteration divided by the connections closed per iteration.
    pub bytes_per_connection: Option<f64>,
    /// Judged iterations in which it grew.
    #[serde(default)]
    pub grew_in: u32,
}

impl LeakVerdict {
    /// Holds the verdict to a stricter expectation than "no leak": it must be retention (the
    /// retention detector's positive control). A clean outcome then misses the expectation.
    pub fn expect_retention(mut self) -> Self {
        self.expected_retention = true;
        self.met = self.outcome == LeakOutcome::Retention;
        self.summary.push_str(match self.outcome {
            LeakOutcome::Retention => " (expected: positive control)",
            _ => " (but the scenario expected retention: the detector missed its positive control)",
        });
        self
    }
}

/// Judges the after-samples of `iterations` against `before` and `limits`, the live heap first.
pub fn judge(before: &Sample, iterations: &[IterationMemory], limits: &LeakLimits, expect_leak: bool) -> LeakVerdict {
    let memory = JudgedMemory::Heap {
        what: "live heap".into(),
        exact: true,
    };
    judge_memory(before, iterations, limits, expect_leak, &memory)
}

/// Judges an external server, whose memory is the resident set described by `memory_source`
/// (e.g. `rss of pid 123 and 2 child processes`): there is no heap series, so RSS is the judged
/// memory series.
pub fn judge_external(
    before: &Sample,
    iterations: &[IterationMemory],
    limits: &LeakLimits,
    expect_leak: bool,
    memory_source: &str,
) -> LeakVerdict {
    let memory = JudgedMemory::Rss {
        source: memory_source.into(),
    };
    judge_memory(before, iterations, limits, expect_leak, &memory)
}

/// Judges the after-samples of `iterations` on the memory series the target offers.
pub fn judge_memory(
    before: &Sample,
    iterations: &[IterationMemory],
    limits: &LeakLimits,
    expect_leak: bool,
    memory: &JudgedMemory,
) -> LeakVerdict {
    let (heap_what, external) = match memory {
        JudgedMemory::Heap { what, .. } => (Some(what.as_str()), None),
        JudgedMemory::Rss { source } => (None, Some(source.as_str())),
    };
    let judged: Vec<&IterationMemory> = iterations.iter().filter(|i| !i.warmup).collect();
    let mean = |of: fn(&IterationMemory) -> u64| {
        if judged.is_empty() {
            0.0
        } else {
            judged.iter().map(|i| of(i) as f64).sum::<f64>() / judged.len() as f64
        }
    };
    let per = Per {
        connections: mean(|i| i.connections_closed),
        requests: mean(|i| i.requests),
    };
    let closed_per_iteration = per.connections;
    let has_heap =
        heap_what.is_some() && before.heap_bytes.is_some() && iterations.iter().all(|i| i.after.heap_bytes.is_some());
    let mut series = Vec::new();

    let heap = memory_series(
        "heap_bytes",
        "bytes",
        |s| s.heap_bytes.map(|v| v as f64),
        before,
        iterations,
        per,
    );
    let rss = memory_series(
        "rss_bytes",
        "bytes",
        |s| s.rss_bytes.map(|v| v as f64),
        before,
        iterations,
        per,
    );
    let bytes_per_iteration;
    if has_heap {
        let heap = judge_growth(
            heap,
            limits.heap_growth as f64,
            judged.len(),
            heap_what.unwrap_or("live heap"),
        );
        bytes_per_iteration = heap.slope_per_iteration;
        let rss = judge_retention(rss, &heap, before, iterations, limits);
        series.push(heap);
        series.push(judge_info(
            memory_series(
                "heap_blocks",
                "blocks",
                |s| s.heap_blocks.map(|v| v as f64),
                before,
                iterations,
                per,
            ),
            "live heap blocks",
        ));
        series.push(rss);
    } else if let Some(source) = external {
        let what = format!("resident memory of the external server ({source})");
        let mut rss = judge_growth(rss, limits.rss_growth as f64, judged.len(), &what);
        rss.evidence.push_str(
            "; the server runs outside leakrun, so there is no exact heap series: its RSS is judged, and memory its allocator keeps cannot be told apart from a leak",
        );
        bytes_per_iteration = rss.slope_per_iteration;
        series.push(rss);
    } else {
        let mut rss = judge_growth(rss, limits.rss_growth as f64, judged.len(), "resident memory");
        rss.evidence
            .push_str(" (no exact heap series for this target, so RSS is judged and retention cannot be told apart)");
        bytes_per_iteration = rss.slope_per_iteration;
        series.push(rss);
    }

    // A state counter's start: where it stood after warm-up (run-wide things a first iteration
    // creates once, such as a backend's sequence key, are not a leak), or before the run.
    let state_start = iterations.iter().rev().find(|i| i.warmup).map(|i| &i.after);
    let mut names: Vec<&String> = before.state.keys().collect();
    for i in iterations {
        names.extend(i.after.state.keys());
    }
    names.sort();
    names.dedup();
    for name in names {
        let values = memory_series(
            name,
            "count",
            |s| s.state.get(name).map(|&v| v as f64),
            before,
            iterations,
            per,
        );
        let start = state_start.map_or(values.before, |sample| {
            sample.state.get(name.as_str()).map(|&v| v as f64)
        });
        series.push(judge_state(
            values,
            start,
            state_start.is_some(),
            limits.state_growth as f64,
            judged.len(),
        ));
    }
    let mut info_names: Vec<&String> = before.info.keys().collect();
    for i in iterations {
        info_names.extend(i.after.info.keys());
    }
    info_names.sort();
    info_names.dedup();
    for name in info_names {
        let unit = if name.ends_with("_bytes") { "bytes" } else { "count" };
        let values = memory_series(
            name,
            unit,
            |s| s.info.get(name).map(|&v| v as f64),
            before,
            iterations,
            per,
        );
        series.push(judge_info(values, name));
    }

    let any = |class: SeriesClass| series.iter().any(|s| s.class == class);
    let outcome = if any(SeriesClass::Leak) {
        LeakOutcome::Leak
    } else if any(SeriesClass::Retention) {
        LeakOutcome::Retention
    } else {
        LeakOutcome::Clean
    };
    let bytes_per_connection = bytes_per_iteration
        .filter(|_| closed_per_iteration > 0.0)
        .map(|b| b / closed_per_iteration);
    let bytes_per_request = bytes_per_iteration
        .filter(|_| per.requests > 0.0)
        .map(|b| b / per.requests);
    let sites = if has_heap {
        site_growth(&judged, closed_per_iteration)
    } else {
        Vec::new()
    };
    let top_site = sites
        .first()
        .zip(bytes_per_iteration.filter(|b| *b > 0.0))
        .map(|(first, total)| {
            let share = (first.bytes_per_iteration / total * 100.0).clamp(0.0, 100.0);
            format!(", {share:.0}% of it at {}", first.site)
        });
    let mut summary = summarize(
        outcome,
        &series,
        judged.len(),
        bytes_per_connection,
        bytes_per_request,
        top_site.as_deref(),
        expect_leak,
    );
    let unsettled = judged.iter().filter(|i| !i.settled).count();
    if unsettled > 0 {
        summary.push_str(&format!(
            "; {unsettled} iteration(s) did not settle within run.settle, so their after samples may still hold in-flight work"
        ));
    }
    LeakVerdict {
        outcome,
        expected_leak: expect_leak,
        expected_retention: false,
        met: (outcome == LeakOutcome::Leak) == expect_leak,
        summary,
        judged_iterations: judged.len() as u32,
        connections_closed_per_iteration: closed_per_iteration,
        bytes_per_iteration,
        bytes_per_connection,
        requests_per_iteration: per.requests,
        bytes_per_request,
        series,
        sites,
    }
}

/// Most sites a verdict lists.
const MAX_SITES: usize = 50;

/// Per allocation site, its growth per judged iteration (an iteration whose report does not name
/// it counts as no growth); only sites that grew. Steady growth first: sites are ordered by their
/// median growth per iteration, so a cache that filled once (one large step) comes after a site
/// that grows a little every iteration, then by the mean.
fn site_growth(judged: &[&IterationMemory], closed_per_iteration: f64) -> Vec<SiteVerdict> {
    let reported: Vec<&Vec<SiteGrowth>> = judged.iter().filter_map(|i| i.sites.as_ref()).collect();
    if reported.is_empty() {
        return Vec::new();
    }
    let n = reported.len();
    // Per site: bytes and blocks it added in each reporting iteration.
    type Steps<'a> = std::collections::BTreeMap<(&'a str, &'a [String]), Vec<(i64, i64)>>;
    let mut steps: Steps<'_> = Default::default();
    for (at, report) in reported.iter().enumerate() {
        for site in report.iter() {
            let per = steps
                .entry((site.site.as_str(), site.traceback.as_slice()))
                .or_insert_with(|| vec![(0, 0); n]);
            per[at].0 = per[at].0.saturating_add(site.bytes);
            per[at].1 = per[at].1.saturating_add(site.blocks);
        }
    }
    let mut sites: Vec<(f64, SiteVerdict)> = steps
        .into_iter()
        .filter_map(|((site, traceback), per)| {
            let bytes: i64 = per.iter().map(|p| p.0).fold(0, i64::saturating_add);
            let blocks: i64 = per.iter().map(|p| p.1).fold(0, i64::saturating_add);
            (bytes > 0).then(|| {
                let mut sorted: Vec<i64> = per.iter().map(|p| p.0).collect();
                sorted.sort_unstable();
                let median = sorted[n / 2] as f64;
                let per_iteration = bytes as f64 / n as f64;
                let verdict = SiteVerdict {
                    site: site.to_string(),
                    traceback: traceback.to_vec(),
                    bytes_per_iteration: per_iteration,
                    blocks_per_iteration: blocks as f64 / n as f64,
                    bytes_per_connection: (closed_per_iteration > 0.0).then(|| per_iteration / closed_per_iteration),
                    grew_in: per.iter().filter(|p| p.0 > 0).count() as u32,
                };
                (median, verdict)
            })
        })
        .collect();
    sites.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| b.1.bytes_per_iteration.total_cmp(&a.1.bytes_per_iteration))
    });
    sites.truncate(MAX_SITES);
    sites.into_iter().map(|(_, site)| site).collect()
}

/// Mean work per judged iteration that a slope is divided by.
#[derive(Debug, Clone, Copy)]
struct Per {
    connections: f64,
    requests: f64,
}

fn memory_series(
    name: &str,
    unit: &str,
    read: impl Fn(&Sample) -> Option<f64>,
    before: &Sample,
    iterations: &[IterationMemory],
    per: Per,
) -> SeriesVerdict {
    let points: Vec<(f64, f64)> = iterations
        .iter()
        .filter(|i| !i.warmup)
        .filter_map(|i| read(&i.after).map(|v| (i.index as f64, v)))
        .collect();
    let slope = if points.len() >= MIN_JUDGED {
        theil_sen(&points).map(|f| f.slope)
    } else {
        None
    };
    // A steady rise climbs about its slope in most steps; a step that rose by less than half the
    // slope is noise (a level step mid-run makes a slope, and noise beside it goes either way).
    let rise_that_counts = slope.filter(|s| *s > 0.0).map_or(0.0, |s| s / 2.0);
    let rising = steps_rising_past(points.iter().map(|p| p.1), rise_that_counts);
    let growth = match (points.first(), points.last()) {
        (Some(first), Some(last)) if points.len() >= 2 => Some(last.1 - first.1),
        _ => None,
    };
    SeriesVerdict {
        name: name.to_string(),
        unit: unit.to_string(),
        before: read(before),
        after: iterations.iter().map(|i| read(&i.after)).collect(),
        slope_per_iteration: slope,
        growth,
        rising_steps: [rising, points.len().saturating_sub(1) as u32],
        per_connection: slope.filter(|_| per.connections > 0.0).map(|s| s / per.connections),
        per_request: slope.filter(|_| per.requests > 0.0).map(|s| s / per.requests),
        class: SeriesClass::NotJudged,
        evidence: String::new(),
    }
}

/// Heap (or RSS without a heap): a leak when the robust slope and the growth both pass `limit`
/// and the value rose by half the slope or more in at least half of the steps. The last condition
/// keeps a single level step (a table that doubled once, mid-run) from passing as a leak:
/// Theil–Sen resists spikes, not steps.
fn judge_growth(mut s: SeriesVerdict, limit: f64, judged: usize, what: &str) -> SeriesVerdict {
    let trail = trail(&s);
    let (Some(slope), Some(growth)) = (s.slope_per_iteration, s.growth) else {
        s.class = SeriesClass::NotJudged;
        s.evidence = format!(
            "{what}: {trail}; not judged: a slope needs {MIN_JUDGED} iterations after warm-up, this run has {judged}"
        );
        return s;
    };
    let per_connection = [
        s.per_connection
            .map(|b| format!(", {} per closed connection", signed_bytes(b))),
        s.per_request.map(|b| format!(", {} per request", signed_bytes(b))),
    ]
    .into_iter()
    .flatten()
    .collect::<String>();
    let [rose, steps] = s.rising_steps;
    let spread = 2 * rose >= steps;
    if slope > limit && growth > limit && spread {
        s.class = SeriesClass::Leak;
        s.evidence = format!(
            "{what}: {trail} after each iteration; grows {} per iteration{per_connection} (robust slope over {judged} iterations, rose in {rose} of {steps} steps; limit {})",
            signed_bytes(slope),
            bytes(limit)
        );
    } else if slope > limit && growth > limit {
        s.class = SeriesClass::Clean;
        s.evidence = format!(
            "{what}: {trail}; {} per iteration, but it rose in only {rose} of {steps} steps: a one-off step, not steady growth",
            signed_bytes(slope)
        );
    } else {
        s.class = SeriesClass::Clean;
        s.evidence = format!(
            "{what}: {trail}; {} per iteration{per_connection}, within the limit of {}",
            signed_bytes(slope),
            bytes(limit)
        );
    }
    s
}

/// RSS beside an exact heap: retention when RSS stayed well above what the heap explains.
fn judge_retention(
    mut rss: SeriesVerdict,
    heap: &SeriesVerdict,
    before: &Sample,
    iterations: &[IterationMemory],
    limits: &LeakLimits,
) -> SeriesVerdict {
    let trail = trail(&rss);
    let last = iterations.last().map(|i| &i.after);
    let total_heap = |s: &Sample| s.heap_bytes.unwrap_or(0) + s.harness_heap_bytes.unwrap_or(0);
    let (Some(rss_before), Some(Some(rss_after)), Some(last)) = (before.rss_bytes, last.map(|l| l.rss_bytes), last)
    else {
        rss.class = SeriesClass::Info;
        rss.evidence = format!("resident memory: {trail}");
        return rss;
    };
    let rss_rise = rss_after as f64 - rss_before as f64;
    let heap_rise = (total_heap(last) - total_heap(before)) as f64;
    let kept = rss_rise - heap_rise.max(0.0);
    let heap_flat = heap.class != SeriesClass::Leak;
    let rising = rss.slope_per_iteration.is_some_and(|s| s > limits.rss_growth as f64)
        && steep_steps(&rss, iterations, limits.rss_growth as f64) * 2 >= rss.rising_steps[1];
    if heap_flat && (kept > limits.retention as f64 || rising) {
        rss.class = SeriesClass::Retention;
        rss.evidence = format!(
            "resident memory: {trail}; up {} since the start while the whole live heap rose {}{}: the allocator keeps freed pages (retention, not a leak)",
            signed_bytes(rss_rise),
            signed_bytes(heap_rise),
            if rising { ", and still rising" } else { "" }
        );
    } else {
        rss.class = SeriesClass::Clean;
        rss.evidence = format!(
            "resident memory: {trail}; up {} since the start, {} of it beyond the live heap (retention limit {})",
            signed_bytes(rss_rise),
            signed_bytes(kept.max(0.0)),
            bytes(limits.retention as f64)
        );
    }
    rss
}

/// How many steps between judged iterations rose by more than `limit`: a slope made by one step
/// of a few MiB (an allocator taking a new region once) is not memory still rising.
fn steep_steps(series: &SeriesVerdict, iterations: &[IterationMemory], limit: f64) -> u32 {
    let judged = iterations
        .iter()
        .zip(&series.after)
        .filter(|(i, _)| !i.warmup)
        .filter_map(|(_, v)| *v);
    steps_rising_past(judged, limit)
}

/// How many steps between consecutive values rose by more than `threshold`.
fn steps_rising_past(values: impl IntoIterator<Item = f64>, threshold: f64) -> u32 {
    let mut values = values.into_iter();
    let Some(mut previous) = values.next() else {
        return 0;
    };
    let mut rising = 0;
    for value in values {
        if value - previous > threshold {
            rising += 1;
        }
        previous = value;
    }
    rising
}

/// A series shown for reference: its trail and slope, not judged.
fn judge_info(mut s: SeriesVerdict, label: &str) -> SeriesVerdict {
    s.class = SeriesClass::Info;
    let slope = match s.slope_per_iteration {
        Some(v) if s.unit == "bytes" => format!("; {} per iteration", signed_bytes(v)),
        Some(v) => format!("; {v:+.1} per iteration"),
        None => String::new(),
    };
    s.evidence = format!("{label}: {}{slope} (for reference, not judged)", trail(&s));
    s
}

/// A state counter: a leak when it ends above where it started (`start`, after warm-up or before
/// the run).
fn judge_state(
    mut s: SeriesVerdict,
    start: Option<f64>,
    after_warmup: bool,
    tolerance: f64,
    judged: usize,
) -> SeriesVerdict {
    let trail = trail(&s);
    let start = start.unwrap_or(0.0);
    let from = if after_warmup {
        "where it stood after warm-up"
    } else {
        "its start"
    };
    let end = s.after.iter().rev().flatten().next().copied().unwrap_or(start);
    if end > start + tolerance {
        s.class = SeriesClass::Leak;
        let per = match s.slope_per_iteration {
            Some(slope) if slope > 0.0 => format!("; {} per iteration are never released", trim_number(slope)),
            _ if judged < MIN_JUDGED => format!("; ends {} above {from}", trim_number(end - start)),
            _ => format!("; stays {} above {from}", trim_number(end - start)),
        };
        s.evidence = format!("{}: {trail} after each iteration{per}", s.name);
    } else {
        s.class = SeriesClass::Clean;
        s.evidence = format!("{}: {trail}; back to {from} after the last iteration", s.name);
    }
    s
}

fn summarize(
    outcome: LeakOutcome,
    series: &[SeriesVerdict],
    judged: usize,
    per_connection: Option<f64>,
    per_request: Option<f64>,
    top_site: Option<&str>,
    expect_leak: bool,
) -> String {
    let of = |class: SeriesClass| {
        series
            .iter()
            .filter(|s| s.class == class)
            .map(|s| s.evidence.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut line = match outcome {
        LeakOutcome::Leak => format!("leak: {}", of(SeriesClass::Leak)),
        LeakOutcome::Retention => format!(
            "retention, not a leak: {}; {}",
            series
                .iter()
                .find(|s| s.name == "heap_bytes" && s.class == SeriesClass::Clean)
                .map_or("state released", |s| s.evidence.split("; ").next().unwrap_or_default()),
            of(SeriesClass::Retention)
        ),
        LeakOutcome::Clean => {
            let heap = series
                .iter()
                .find(|s| s.name == "heap_bytes" || (s.name == "rss_bytes" && s.class != SeriesClass::Info))
                .map(|s| s.evidence.clone())
                .unwrap_or_default();
            let states = series
                .iter()
                .filter(|s| s.unit == "count" && s.class == SeriesClass::Clean)
                .count();
            let states = match states {
                0 => String::new(),
                n => format!("; {n} state counter(s) back to their start"),
            };
            format!("clean over {judged} iteration(s) after warm-up: {heap}{states}")
        }
    };
    if outcome == LeakOutcome::Leak
        && let Some(b) = per_connection
        && !line.contains("per closed connection")
    {
        line.push_str(&format!(" ({} per closed connection)", signed_bytes(b)));
    }
    if outcome == LeakOutcome::Leak
        && let Some(b) = per_request
        && !line.contains("per request")
    {
        line.push_str(&format!(" ({} per request)", signed_bytes(b)));
    }
    if outcome == LeakOutcome::Leak
        && let Some(site) = top_site
    {
        line.push_str(site);
    }
    line.push_str(super::expectation_note(outcome == LeakOutcome::Leak, expect_leak));
    line
}

/// `before → after0 → after1 …`, shortened in the middle for long runs.
fn trail(s: &SeriesVerdict) -> String {
    let show = |v: Option<f64>| match v {
        None => "?".to_string(),
        Some(v) if s.unit == "bytes" => bytes(v),
        Some(v) => trim_number(v),
    };
    let mut items: Vec<String> = vec![show(s.before)];
    let n = s.after.len();
    for (i, v) in s.after.iter().enumerate() {
        if n > 8 && (4..n - 2).contains(&i) {
            if i == 4 {
                items.push("…".into());
            }
            continue;
        }
        items.push(show(*v));
    }
    items.join(" → ")
}

fn trim_number(v: f64) -> String {
    if (v - v.round()).abs() < 0.05 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

fn bytes(v: f64) -> String {
    if v.abs() < 1024.0 {
        format!("{} B", trim_number(v))
    } else {
        bytesize::ByteSize::b(v.abs() as u64).display().iec().to_string()
    }
}

fn signed_bytes(v: f64) -> String {
    let sign = if v < 0.0 { "-" } else { "+" };
    format!("{sign}{}", bytes(v.abs()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn limits() -> LeakLimits {
        LeakLimits {
            heap_growth: 1024,
            rss_growth: 1 << 20,
            retention: 16 << 20,
            state_growth: 0,
        }
    }

    fn sample(heap: i64, rss: u64, memberships: u64) -> Sample {
        Sample {
            heap_bytes: Some(heap),
            heap_blocks: Some(heap / 100),
            harness_heap_bytes: Some(1 << 20),
            rss_bytes: Some(rss),
            state: BTreeMap::from([("memberships".into(), memberships)]),
            ..Sample::default()
        }
    }

    fn run(points: impl Fn(u32) -> Sample, n: u32, closed: u64) -> Vec<IterationMemory> {
        (0..n)
            .map(|i| IterationMemory {
                index: i,
                warmup: i == 0,
                after: points(i),
                connections_closed: closed,
                requests: 0,
                settled: true,
                sites: None,
            })
            .collect()
    }

    fn site(name: &str, bytes: i64) -> SiteGrowth {
        SiteGrowth {
            site: name.into(),
            traceback: Vec::new(),
            bytes,
            blocks: bytes / 4096,
        }
    }

    #[test]
    fn a_leaking_probe_heap_names_its_largest_site_and_its_share() {
        let before = sample(10_000_000, 50 << 20, 0);
        // 4 KiB per each of 20 closed connections per iteration, nearly all at one line.
        let mut its = run(|i| sample(10_000_000 + 81_920 * i as i64, 60 << 20, 0), 6, 20);
        for it in its.iter_mut() {
            it.sites = Some(vec![
                site("chat/consumers.py:41", 78_000),
                site("twisted/base.py:953", 900),
            ]);
        }
        // A site only one iteration reports counts as no growth in the others.
        its[3].sites.as_mut().unwrap().push(site("once.py:1", 5_000));
        let memory = JudgedMemory::Heap {
            what: "traced Python heap (tracemalloc in pid 7)".into(),
            exact: false,
        };
        let v = judge_memory(&before, &its, &limits(), true, &memory);
        assert_eq!(v.outcome, LeakOutcome::Leak, "{}", v.summary);
        assert!(
            v.summary.contains("4.0 KiB per closed connection")
                && v.summary
                    .ends_with("95% of it at chat/consumers.py:41 (expected: positive control)"),
            "{}",
            v.summary
        );
        assert_eq!(
            v.sites.iter().map(|s| s.site.as_str()).collect::<Vec<_>>(),
            ["chat/consumers.py:41", "twisted/base.py:953", "once.py:1"]
        );
        assert_eq!(v.sites[0].bytes_per_iteration, 78_000.0);
        assert_eq!(v.sites[0].bytes_per_connection, Some(3_900.0));
        assert_eq!((v.sites[0].grew_in, v.sites[1].grew_in, v.sites[2].grew_in), (5, 5, 1));
        // A site that grew once, by more than a steady one, still comes after it.
        assert_eq!(v.sites[2].bytes_per_iteration, 1_000.0);
        assert!(v.sites[2].bytes_per_iteration > v.sites[1].bytes_per_iteration);
        assert!(
            v.series[0]
                .evidence
                .starts_with("traced Python heap (tracemalloc in pid 7)")
        );
        // Without reports there are no sites; RSS alone has none either.
        let bare = run(|i| sample(10_000_000 + 81_920 * i as i64, 60 << 20, 0), 6, 20);
        assert!(judge_memory(&before, &bare, &limits(), true, &memory).sites.is_empty());
        assert!(
            judge_external(&before, &its, &limits(), true, "rss of pid 7")
                .sites
                .is_empty()
        );
    }

    #[test]
    fn a_steady_heap_slope_is_a_leak_measured_per_connection() {
        let before = sample(1_000_000, 50 << 20, 0);
        // Warm-up costs 300 KB once, then 256 B for each of 100 closed connections per iteration,
        // with a few hundred bytes of noise.
        let its = run(
            |i| {
                sample(
                    1_300_000 + 25_600 * i as i64 + [0, 300, -200][i as usize % 3],
                    60 << 20,
                    0,
                )
            },
            11,
            100,
        );
        let v = judge(&before, &its, &limits(), false);
        assert_eq!(v.outcome, LeakOutcome::Leak);
        assert!(!v.met);
        let per_conn = v.bytes_per_connection.unwrap();
        assert!((per_conn - 256.0).abs() < 10.0, "{per_conn}");
        assert!(v.summary.contains("per closed connection"), "{}", v.summary);
    }

    #[test]
    fn a_heap_slope_is_also_measured_per_http_request() {
        let before = sample(1_000_000, 50 << 20, 0);
        // 200 requests per iteration, each keeping 10,000 bytes, no WebSocket connections.
        let its: Vec<IterationMemory> = run(|i| sample(1_000_000 + 2_000_000 * i as i64, 60 << 20, 0), 6, 0)
            .into_iter()
            .map(|i| IterationMemory { requests: 200, ..i })
            .collect();
        let v = judge(&before, &its, &limits(), true);
        assert_eq!(v.outcome, LeakOutcome::Leak);
        assert_eq!(v.requests_per_iteration, 200.0);
        assert_eq!(v.bytes_per_request, Some(10_000.0));
        assert_eq!(v.bytes_per_connection, None);
        assert!(v.summary.contains("per request"), "{}", v.summary);
        assert_eq!(v.series[0].per_request, Some(10_000.0));
    }

    #[test]
    fn a_flat_heap_with_noise_is_clean() {
        let before = sample(1_000_000, 50 << 20, 0);
        let its = run(
            |i| sample(1_300_000 + [0, 700, -500, 900][i as usize % 4], 52 << 20, 0),
            10,
            20,
        );
        let v = judge(&before, &its, &limits(), false);
        assert_eq!(v.outcome, LeakOutcome::Clean, "{}", v.summary);
        assert!(v.met);
    }

    #[test]
    fn state_that_never_returns_is_a_leak_whatever_the_bytes() {
        let before = sample(1_000_000, 50 << 20, 0);
        let its = run(|i| sample(1_000_000, 50 << 20, 20 * (i as u64 + 1)), 4, 20);
        let v = judge(&before, &its, &limits(), true);
        assert_eq!(v.outcome, LeakOutcome::Leak);
        assert!(v.met);
        let memberships = v.series.iter().find(|s| s.name == "memberships").unwrap();
        assert_eq!(memberships.class, SeriesClass::Leak);
        assert_eq!(
            memberships.evidence,
            "memberships: 0 → 20 → 40 → 60 → 80 after each iteration; 20 per iteration are never released"
        );
    }

    #[test]
    fn a_state_counter_that_a_warm_up_sets_once_is_not_a_leak() {
        let before = sample(1_000_000, 50 << 20, 0);
        // A run-wide key created by the first iteration and kept: 0 before, 1 after every one.
        let its = run(|_| sample(1_000_000, 50 << 20, 1), 5, 20);
        let v = judge(&before, &its, &limits(), false);
        let s = v.series.iter().find(|s| s.name == "memberships").unwrap();
        assert_eq!(s.class, SeriesClass::Clean, "{}", s.evidence);
        assert!(s.evidence.contains("where it stood after warm-up"), "{}", s.evidence);
        // Without warm-up the same counter ends above its start: a leak.
        let cold: Vec<_> = its
            .into_iter()
            .map(|i| IterationMemory { warmup: false, ..i })
            .collect();
        assert_eq!(judge(&before, &cold, &limits(), true).outcome, LeakOutcome::Leak);
    }

    #[test]
    fn rss_kept_while_the_heap_returns_is_retention() {
        let before = sample(1_000_000, 50 << 20, 0);
        let its = run(|_| sample(1_000_100, 130 << 20, 0), 6, 200);
        let v = judge(&before, &its, &limits(), false);
        assert_eq!(v.outcome, LeakOutcome::Retention, "{}", v.summary);
        assert!(v.met, "retention is not a leak");
        assert!(v.summary.starts_with("retention, not a leak"), "{}", v.summary);
    }

    #[test]
    fn rss_that_steps_up_once_beside_a_flat_heap_is_not_still_rising() {
        // Measured on a Python server under the heap probe: RSS stepped up 3.7 MiB once, at a
        // different iteration each run, and stayed; 10 MiB above its start, under the limit.
        let before = sample(1_000_000, 44 << 20, 0);
        let mib = |m: f64| (m * (1 << 20) as f64) as u64;
        let rss = [51.0, 49.4, 49.6, 53.3, 53.3, 53.4];
        let its = run(|i| sample(1_000_100, mib(rss[i as usize]), 0), 6, 100);
        let v = judge(&before, &its, &limits(), false);
        assert_eq!(v.outcome, LeakOutcome::Clean, "{}", v.summary);
        // The same rise kept up step after step is retention, still rising.
        let steady = [51.0, 52.5, 54.0, 55.5, 57.0, 58.5];
        let its = run(|i| sample(1_000_100, mib(steady[i as usize]), 0), 6, 100);
        let v = judge(&before, &its, &limits(), false);
        assert_eq!(v.outcome, LeakOutcome::Retention, "{}", v.summary);
        assert!(v.summary.contains("still rising"), "{}", v.summary);
    }

    #[test]
    fn without_a_heap_rss_growth_is_judged() {
        let mut before = sample(0, 50 << 20, 0);
        before.heap_bytes = None;
        let its = run(
            |i| {
                let mut s = sample(0, (60 << 20) + (4 << 20) * i as u64, 0);
                s.heap_bytes = None;
                s
            },
            6,
            200,
        );
        let v = judge(&before, &its, &limits(), true);
        assert_eq!(v.outcome, LeakOutcome::Leak, "{}", v.summary);
        assert_eq!(v.bytes_per_iteration, Some((4 << 20) as f64));
    }

    #[test]
    fn an_external_server_is_judged_by_the_rss_of_its_process_tree_in_words() {
        let external = |s: Sample| Sample {
            heap_bytes: None,
            heap_blocks: None,
            harness_heap_bytes: None,
            rss_processes: Some(3),
            ..s
        };
        let before = external(sample(0, 50 << 20, 0));
        let its = run(|i| external(sample(0, (60 << 20) + (12 << 20) * i as u64, 0)), 11, 200);
        let source = "rss of pid 42 and 2 child processes, summed over its process tree";
        let v = judge_external(&before, &its, &limits(), true, source);
        assert_eq!(v.outcome, LeakOutcome::Leak, "{}", v.summary);
        assert!(v.met);
        let rss = &v.series[0];
        assert_eq!(rss.name, "rss_bytes");
        assert!(
            rss.evidence
                .starts_with(&format!("resident memory of the external server ({source})")),
            "{}",
            rss.evidence
        );
        assert!(rss.evidence.contains("no exact heap series"), "{}", rss.evidence);
        assert!(v.summary.contains("per closed connection"), "{}", v.summary);
        // No heap series is judged, even where leakrun's own allocator had figures.
        assert!(v.series.iter().all(|s| s.name != "heap_bytes"));
    }

    #[test]
    fn a_single_level_step_is_not_a_leak() {
        let before = sample(1_000_000, 50 << 20, 0);
        // Ten judged iterations, flat, with one 40 KB step in the middle (a table that doubled).
        let its = run(
            |i| sample(1_300_000 + if i > 5 { 40_000 } else { 0 }, 52 << 20, 0),
            11,
            200,
        );
        let v = judge(&before, &its, &limits(), false);
        let heap = &v.series[0];
        assert!(
            heap.slope_per_iteration.unwrap() > 1024.0,
            "Theil–Sen alone is fooled by a step"
        );
        assert_eq!(heap.rising_steps, [1, 9]);
        assert_eq!(v.outcome, LeakOutcome::Clean, "{}", v.summary);
    }

    #[test]
    fn a_level_step_beside_noise_that_rose_is_not_a_leak() {
        // Five judged iterations, as a short external run has: the heap jitters by a few KiB and
        // steps up 600 KiB once. Noise rose in two of the four steps, the step in a third.
        let heaps = [40_000_000, 40_003_000, 40_001_000, 40_615_000, 40_617_000];
        let its = run(|i| sample(heaps[(i as usize).saturating_sub(1)], 60 << 20, 0), 6, 20);
        let v = judge(&sample(39_000_000, 58 << 20, 0), &its, &limits(), false);
        let heap = &v.series[0];
        assert!(
            heap.slope_per_iteration.unwrap() > 64.0 * 1024.0,
            "the step makes a slope"
        );
        assert_eq!(heap.rising_steps, [1, 4], "only the step rose by half the slope");
        assert_eq!(v.outcome, LeakOutcome::Clean, "{}", v.summary);
        // The same jitter on a steady 100 KiB per iteration is still a leak.
        let leaking = run(
            |i| {
                sample(
                    heaps[(i as usize).saturating_sub(1) % 3] + i64::from(i) * 100_000,
                    60 << 20,
                    0,
                )
            },
            6,
            20,
        );
        let v = judge(&sample(39_000_000, 58 << 20, 0), &leaking, &limits(), false);
        assert_eq!(v.series[0].rising_steps, [4, 4]);
        assert_eq!(v.outcome, LeakOutcome::Leak, "{}", v.summary);
    }

    /// Of 200 seeded runs of ten judged iterations after a warm-up (the heap after each from
    /// `heap`: the iteration and the run's level step, from the run's random source), how many the
    /// verdict calls a leak.
    fn leaks_called(heap: impl Fn(u32, u32, &mut fastrand::Rng) -> i64) -> usize {
        (0..200)
            .filter(|seed| {
                let mut rng = fastrand::Rng::with_seed(0x1ea4_2026_1206 + seed);
                let step_at = rng.u32(3..=8);
                let heaps: Vec<i64> = (0..11).map(|i| heap(i, step_at, &mut rng)).collect();
                let its = run(|i| sample(heaps[i as usize], 60 << 20, 0), 11, 20);
                judge(&sample(39_000_000, 58 << 20, 0), &its, &limits(), false).outcome == LeakOutcome::Leak
            })
            .count()
    }

    #[test]
    fn the_rising_rule_keeps_noisy_leaks_and_drops_steps_over_many_seeded_runs() {
        // A steady 4 KiB per iteration (four times the limit) under noise as wide as the slope
        // either way: found in nearly every run.
        let leak = leaks_called(|i, _, rng| 40_000_000 + i64::from(i) * 4096 + rng.i64(-4096..=4096));
        assert!(leak >= 190, "a noisy steady leak found in {leak} of 200 runs");
        // One 600 KiB level step mid-run under noise just inside the limit either way: never a
        // leak (counting any rise as rising, 69 of these 200 runs were).
        let step = leaks_called(|i, at, rng| 40_000_000 + if i >= at { 600_000 } else { 0 } + rng.i64(-900..=900));
        assert_eq!(step, 0, "a level step called a leak in {step} of 200 runs");
        // Noise alone, twice the limit either way: never a leak.
        let flat = leaks_called(|_, _, rng| 40_000_000 + rng.i64(-2048..=2048));
        assert_eq!(flat, 0, "a flat heap called a leak in {flat} of 200 runs");
    }

    #[test]
    fn too_few_iterations_are_not_judged_on_slope() {
        let before = sample(1_000_000, 50 << 20, 0);
        let its = run(|i| sample(1_000_000 + 100_000 * i as i64, 50 << 20, 0), 2, 10);
        let v = judge(&before, &its, &limits(), false);
        let heap = &v.series[0];
        assert_eq!(heap.class, SeriesClass::NotJudged);
        assert!(heap.evidence.contains("needs 3 iterations"), "{}", heap.evidence);
        assert_eq!(v.outcome, LeakOutcome::Clean);
    }

    #[test]
    fn a_retention_control_is_missed_by_a_clean_outcome() {
        let before = sample(1000, 10 << 20, 0);
        let its = run(|_| sample(1000, 10 << 20, 0), 5, 100);
        let v = judge(&before, &its, &limits(), false);
        assert_eq!(v.outcome, LeakOutcome::Clean);
        assert!(v.met);
        let strict = v.expect_retention();
        assert!(!strict.met, "{}", strict.summary);
        assert!(strict.expected_retention);
        assert!(
            strict.summary.ends_with("the detector missed its positive control)"),
            "{}",
            strict.summary
        );
    }
}
