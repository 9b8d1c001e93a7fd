//! Samplers: memory and server state on the run clock.
//!
//! One [`Sample`] holds the target's resident set (`/proc/<pid>/statm`, held open and read without
//! allocating; for the embedded server the runner's own process; summed over a [`ProcessTree`]
//! for an external one), the exact live heap of the server domain (see [`crate::heap`]) and the
//! counters of every [`StateSource`]: the server's own (live connections, groups, memberships, channels,
//! buffered messages) and the backend's (keys, subscriptions, memory). A background task takes one
//! every `sample_interval` into a down-sampled table ([`SampleTable`], which keeps its memory flat
//! for the whole run and makes the result's [`Timeline`] at the end) — once the table's stride
//! has doubled, only the ticks it keeps and one a second ([`LIVENESS_CHECK`]); the runner takes
//! the iteration's "after" sample itself once the server has settled. A source that fails to
//! answer (a backend that went away) stops the sampler and is reported, so the run can end with a
//! clear error.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::clock::{RunClock, secs};
use super::cpu::CpuProbe;
pub use super::sample::Sample;
use super::sample_table::SampleTable;
use super::timeline::Timeline;
use crate::heap;
use crate::process::procfs::{self, ProcFile};
use crate::process::tree::ProcessTree;

/// Most samples kept in a run's timeline.
pub const TIMELINE_CAP: usize = 1200;

/// Longest the background sampler goes without reading its sources. Once the timeline's stride
/// has doubled past this, it reads only the samples it keeps and, between them, once in this
/// long to find a source that went away: reading every tick, ten times a second for the whole
/// run, would churn leakrun's own allocator (a Redis probe is five round trips and a scan) for
/// samples the table drops.
pub const LIVENESS_CHECK: Duration = Duration::from_secs(1);

/// What one state source read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateReading {
    /// Counters that must return to their start when every client is gone.
    pub state: BTreeMap<String, u64>,
    /// Counters for reference only.
    pub info: BTreeMap<String, u64>,
}

/// Why a state source stopped answering: the run cannot go on judging what it no longer sees.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// A backend server (Redis, RabbitMQ) stopped answering.
    #[error("{what} at {endpoint} went away: {cause}")]
    Backend {
        /// `Redis` or `RabbitMQ`.
        what: &'static str,
        /// Its URL, credentials removed.
        endpoint: String,
        /// What the client said.
        cause: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The server leakrun started exited.
    #[error("the server (pid {pid}) exited during the run ({status}); {tail}")]
    ServerExited {
        /// Its pid.
        pid: u32,
        /// How it exited.
        status: String,
        /// Its last output.
        tail: String,
    },
    /// A server leakrun only watches is gone.
    #[error("the watched server process {pid} is gone")]
    WatchedGone {
        /// Its pid.
        pid: u32,
    },
    /// The heap probe inside the server stopped answering.
    #[error("server.heap = \"{probe}\": {reason}")]
    HeapProbe {
        /// Which probe.
        probe: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The server's `stats_url` did not answer a JSON document.
    #[error("stats_url {url}: {reason}")]
    Stats {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// A source of named counters, read for every sample.
#[async_trait::async_trait]
pub trait StateSource: Send + Sync {
    /// Reads the counters; an error means the source is gone and says why.
    async fn read(&self) -> Result<StateReading, SourceError>;
}

/// The server's live heap at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HeapReading {
    /// Live bytes.
    pub bytes: i64,
    /// Live blocks, where the source counts them cheaply.
    pub blocks: Option<i64>,
    /// Live bytes of leakrun's own clients and observers (embedded target only), for reference.
    pub harness_bytes: Option<i64>,
    /// Processes the figures sum, where there can be several.
    pub processes: Option<u32>,
}

/// A source of the server's live heap, read for every sample: the counting allocator for the
/// embedded server, a probe inside an external one.
#[async_trait::async_trait]
pub trait HeapSource: Send + Sync {
    /// The heap now; `None` when this build or target has none to offer.
    async fn read(&self) -> Result<Option<HeapReading>, SourceError>;
}

/// leakrun's own cost while an iteration's connections are open: its CPU over the send and
/// drain, and its memory at the end of the drain, each also per connection, so a reader sees when
/// the load generator, not the server, is the limit. For the embedded target the process holds
/// the server too: `server_heap_bytes` is the server's share of the heap, `harness_heap_bytes`
/// the clients' and observers'.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GeneratorFigures {
    /// Client connection sessions in the iteration.
    pub connections: u64,
    /// CPU seconds (user and system) of the leakrun process over the send and drain.
    pub cpu_s: f64,
    /// `cpu_s` over the wall time and the machine's cores: 1.0 is every core busy.
    pub cpu_share: f64,
    /// CPU milliseconds per connection.
    pub cpu_ms_per_connection: f64,
    /// Resident bytes of the leakrun process at the end of the drain.
    pub rss_bytes: u64,
    /// `rss_bytes` per connection.
    pub rss_per_connection: u64,
    /// Live heap of leakrun's clients and observers then (counting allocator only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_heap_bytes: Option<i64>,
    /// `harness_heap_bytes` per connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_heap_per_connection: Option<i64>,
    /// Live heap of the embedded server then, per connection (embedded target only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_heap_per_connection: Option<i64>,
}

/// leakrun's own process usage at one moment: CPU seconds so far, resident bytes, heap figures.
#[derive(Debug, Clone, Copy)]
pub struct OwnUsage {
    cpu_s: f64,
    rss_bytes: u64,
    heap: Option<heap::HeapFigures>,
}

impl OwnUsage {
    /// The usage now.
    pub fn now() -> Self {
        // SAFETY: getrusage writes one rusage into the zeroed struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let cpu_s = if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
            let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            seconds(usage.ru_utime) + seconds(usage.ru_stime)
        } else {
            0.0
        };
        Self {
            cpu_s,
            rss_bytes: MemoryProbe::own_process().rss().unwrap_or(0),
            heap: heap::figures(),
        }
    }

    /// The figures of the span from `self` to `end`, `wall_s` long, over `connections`;
    /// `server_heap` says whether the process's server domain is the target's.
    pub fn figures(&self, end: &OwnUsage, wall_s: f64, connections: u64, server_heap: bool) -> GeneratorFigures {
        let n = connections.max(1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let cpu_s = (end.cpu_s - self.cpu_s).max(0.0);
        let harness = end.heap.map(|h| h.harness_bytes);
        GeneratorFigures {
            connections,
            cpu_s,
            cpu_share: cpu_s / (wall_s.max(1e-9) * cores),
            cpu_ms_per_connection: cpu_s * 1000.0 / n as f64,
            rss_bytes: end.rss_bytes,
            rss_per_connection: end.rss_bytes / n,
            harness_heap_bytes: harness,
            harness_heap_per_connection: harness.map(|b| b / n as i64),
            server_heap_per_connection: end.heap.filter(|_| server_heap).map(|h| h.server_bytes / n as i64),
        }
    }
}

/// Reads the resident set of one process, or of a process and all its descendants.
pub struct MemoryProbe {
    pid: u32,
    /// The process's `/proc/<pid>/statm`, held open: a reading of one process (leakrun's own, ten
    /// times a second in every embedded run) allocates nothing, so the sampler does not churn the
    /// allocator whose resident set it measures. None when the process was gone at the start.
    statm: Option<ProcFile>,
    /// For a tree's readings: its members, walked again at each reading. None for a probe of
    /// one process, and for a tree whose root was gone at the start.
    tree: Option<Mutex<ProcessTree>>,
    /// A tree probe (its readings are sums), even when the root was gone at the start.
    sums_tree: bool,
}

impl MemoryProbe {
    /// A probe of this process (the embedded server runs in it).
    pub fn own_process() -> Self {
        Self::for_pid(std::process::id())
    }

    /// A probe of process `pid`.
    pub fn for_pid(pid: u32) -> Self {
        Self {
            pid,
            statm: ProcFile::open(pid, "statm"),
            tree: None,
            sums_tree: false,
        }
    }

    /// A probe of process `pid` and every process below it (a server's forked workers): its
    /// readings are sums.
    pub fn for_tree(pid: u32) -> Self {
        Self {
            tree: ProcessTree::new(pid).map(Mutex::new),
            sums_tree: true,
            ..Self::for_pid(pid)
        }
    }

    /// Resident bytes now and how many processes they sum (1 unless this is a tree probe), or
    /// `None` when the process is gone.
    pub fn reading(&self) -> Option<(u64, u32)> {
        if !self.sums_tree {
            return self.rss().map(|rss| (rss, 1));
        }
        let mut tree = self.tree.as_ref()?.lock().unwrap_or_else(|p| p.into_inner());
        if !tree.walk() {
            return None;
        }
        let members = tree.members();
        // A member that ended since the walk reads as nothing.
        let rss = members.iter().filter_map(|m| procfs::resident_bytes(&m.statm)).sum();
        Some((rss, members.len() as u32))
    }

    /// Resident bytes of the process itself (not its tree) now, or `None` when it is gone.
    pub fn rss(&self) -> Option<u64> {
        self.statm.as_ref().and_then(procfs::resident_bytes)
    }
}

/// Everything a sample is read from.
pub struct Probes {
    clock: RunClock,
    memory: MemoryProbe,
    sources: Vec<Box<dyn StateSource>>,
    heap: Option<Box<dyn HeapSource>>,
    own_cpu: CpuProbe,
    /// The target's CPU, when it is another process than leakrun's.
    target_cpu: Option<CpuProbe>,
}

impl Probes {
    /// Probes on `clock` of resident memory and state, without a heap series.
    /// The CPU is read of the memory probe's process (and its tree, when it sums one).
    pub fn new(clock: RunClock, memory: MemoryProbe, sources: Vec<Box<dyn StateSource>>) -> Self {
        let own_cpu = CpuProbe::own_process();
        let target = memory.pid;
        let target_cpu = (target != own_cpu.pid() || memory.sums_tree).then(|| CpuProbe::new(target, memory.sums_tree));
        Self {
            clock,
            memory,
            sources,
            heap: None,
            own_cpu,
            target_cpu,
        }
    }

    /// The same with the server's heap read from `heap`.
    pub fn with_heap(self, heap: Box<dyn HeapSource>) -> Self {
        Self {
            heap: Some(heap),
            ..self
        }
    }

    /// A sample now; an error when a state source is gone.
    pub async fn sample(&self) -> Result<Sample, SourceError> {
        let mut state = BTreeMap::new();
        let mut info = BTreeMap::new();
        for source in &self.sources {
            let reading = source.read().await?;
            state.extend(reading.state);
            info.extend(reading.info);
        }
        let heap = match &self.heap {
            Some(source) => source.read().await?,
            None => None,
        };
        let memory = self.memory.reading();
        let own = self.own_cpu.since_last();
        let target = match &self.target_cpu {
            Some(probe) => probe.since_last(),
            None => own,
        };
        Ok(Sample {
            at_s: secs(self.clock.now_ns()),
            rss_bytes: memory.map(|(rss, _)| rss),
            rss_processes: memory.filter(|_| self.memory.sums_tree).map(|(_, n)| n),
            heap_bytes: heap.map(|h| h.bytes),
            heap_blocks: heap.and_then(|h| h.blocks),
            heap_processes: heap.and_then(|h| h.processes),
            harness_heap_bytes: heap.and_then(|h| h.harness_bytes),
            state,
            info,
            target_cpu: target.map(|w| w.cores),
            leakrun_cpu: own.map(|w| w.cores),
            cpu_window_s: own.or(target).map(|w| w.window_s),
            ..Sample::default()
        })
    }
}

/// The background sampler: a sample every `interval` into the shared timeline until finished,
/// or until a state source fails, which it reports through [`Sampler::failed`]. Ticks the
/// timeline would drop are not read, but for a [`LIVENESS_CHECK`].
pub struct Sampler {
    table: Arc<Mutex<SampleTable>>,
    stop: CancellationToken,
    failed: CancellationToken,
    failure: Arc<Mutex<Option<SourceError>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling.
    pub fn start(probes: Arc<Probes>, interval: Duration) -> Self {
        Self::start_keeping(probes, interval, TIMELINE_CAP)
    }

    /// Starts sampling into a timeline of at most `cap` samples.
    fn start_keeping(probes: Arc<Probes>, interval: Duration, cap: usize) -> Self {
        let table = Arc::new(Mutex::new(SampleTable::new(cap)));
        let stop = CancellationToken::new();
        let failed = CancellationToken::new();
        let failure = Arc::new(Mutex::new(None));
        let task = heap::spawn_harness({
            let table = table.clone();
            let stop = stop.clone();
            let failed = failed.clone();
            let failure = failure.clone();
            async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut last_read: Option<tokio::time::Instant> = None;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = ticks.tick() => {
                            // Off the stride the table would drop the sample: read only to check
                            // the sources are alive, once a LIVENESS_CHECK.
                            let check = last_read.is_none_or(|at| at.elapsed() >= LIVENESS_CHECK);
                            {
                                let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
                                if !table.keeps_next() && !check {
                                    table.pass();
                                    continue;
                                }
                            }
                            last_read = Some(tokio::time::Instant::now());
                            match probes.sample().await {
                                Ok(sample) => table.lock().unwrap_or_else(|p| p.into_inner()).push(&sample),
                                Err(error) => {
                                    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                                    failed.cancel();
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        });
        Self {
            table,
            stop,
            failed,
            failure,
            task,
        }
    }

    /// Cancelled when a state source failed.
    pub fn failed(&self) -> CancellationToken {
        self.failed.clone()
    }

    /// Why a state source failed, once it has.
    pub fn failure(&self) -> Option<SourceError> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops sampling and returns the timeline.
    pub async fn finish(self) -> Timeline<Sample> {
        self.stop.cancel();
        let _ = self.task.await;
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *table, SampleTable::new(2)).into_timeline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn own_rss_is_read_and_a_gone_process_reads_none() {
        let rss = MemoryProbe::own_process().rss().expect("own process");
        assert!(rss > 1024 * 1024, "{rss}");
        let status = std::fs::read_to_string("/proc/self/status").expect("own status");
        let vm_rss_kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        // The same counter in pages and in KiB, read a moment apart while other tests run.
        let apart = rss.abs_diff(vm_rss_kib * 1024);
        assert!(apart < 8 * 1024 * 1024, "statm {rss} B, status {vm_rss_kib} KiB");
        // PIDs are at most 2^22 on Linux; this one cannot exist.
        assert_eq!(MemoryProbe::for_pid(u32::MAX - 1).rss(), None);
        assert_eq!(MemoryProbe::for_tree(u32::MAX - 1).reading(), None);
    }

    #[test]
    fn a_tree_reading_sums_the_children() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        let own = MemoryProbe::own_process().rss().expect("own");
        let (sum, count) = MemoryProbe::for_tree(std::process::id()).reading().expect("tree");
        let _ = child.kill();
        let _ = child.wait();
        assert!(count >= 2, "this process and its sleeping child: {count}");
        assert!(sum > own, "{sum} > {own}");
    }

    /// Counts its reads into `reads`, each reading its count as `memberships`; the read
    /// numbered `fail_at` fails.
    struct Counting {
        reads: Arc<AtomicU64>,
        fail_at: Option<u64>,
    }

    #[async_trait::async_trait]
    impl StateSource for Counting {
        async fn read(&self) -> Result<StateReading, SourceError> {
            let n = self.reads.fetch_add(1, Ordering::Relaxed);
            if Some(n) == self.fail_at {
                return Err(SourceError::WatchedGone { pid: 15 });
            }
            Ok(StateReading {
                state: BTreeMap::from([("memberships".to_string(), n)]),
                info: BTreeMap::new(),
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_sampler_past_its_cap_reads_only_what_it_keeps_and_once_a_second() {
        let clock = RunClock::start();
        let reads = Arc::new(AtomicU64::new(0));
        let source = Box::new(Counting {
            reads: reads.clone(),
            fail_at: None,
        });
        let probes = Arc::new(Probes::new(clock, MemoryProbe::own_process(), vec![source]));
        // 10 ms ticks into 4 samples: the stride is past a second's worth of ticks within 2 s.
        let sampler = Sampler::start_keeping(probes, Duration::from_millis(10), 4);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let early = reads.load(Ordering::Relaxed);
        assert!(early >= 8, "while the stride is short every tick is read: {early}");
        tokio::time::sleep(Duration::from_millis(2850)).await;
        let timeline = sampler.finish().await;
        let read = reads.load(Ordering::Relaxed);
        // About 300 ticks: up to the stride 128 (1.28 s) about 2 × 8 kept reads, and a liveness
        // read a second.
        assert!(timeline.offered >= 200, "{}", timeline.offered);
        assert!(read < 40, "{read} of {} ticks read", timeline.offered);
        assert!(timeline.samples.len() <= 4 && timeline.samples.len() >= 2);
        let memberships: Vec<u64> = timeline.samples.iter().map(|s| s.state["memberships"]).collect();
        assert!(memberships.windows(2).all(|w| w[0] < w[1]), "{memberships:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_sampler_samples_on_its_interval_and_stops_when_a_source_fails() {
        let clock = RunClock::start();
        let source = Box::new(Counting {
            reads: Default::default(),
            fail_at: Some(15),
        });
        let probes = Arc::new(Probes::new(clock, MemoryProbe::own_process(), vec![source]));
        let sampler = Sampler::start(probes, Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(1050)).await;
        assert!(!sampler.failed().is_cancelled());
        // Ticks at 0, 100, ..., 1000 ms so far; the 16th read fails.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(sampler.failed().is_cancelled());
        assert!(
            matches!(sampler.failure(), Some(SourceError::WatchedGone { pid: 15 })),
            "{:?}",
            sampler.failure()
        );
        let timeline = sampler.finish().await;
        assert_eq!(timeline.samples.len(), 15, "{:?}", timeline.samples.len());
        assert_eq!(timeline.samples[10].state["memberships"], 10);
        assert!(timeline.samples[3].rss_bytes.is_some());
    }
}
