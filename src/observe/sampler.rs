//! Samplers: memory and server state on the run clock.
//!
//! One [`Sample`] holds the target's resident set (sysinfo, for the embedded server the runner's
//! own process), the exact live heap of the server domain (see [`crate::heap`]) and the server's
//! state counters — live connections, groups, memberships, channels, buffered messages. A background
//! task takes one every `sample_interval` into a down-sampled [`Timeline`]; the runner takes the
//! iteration's "after" sample itself once the server has settled.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio_util::sync::CancellationToken;

use super::clock::{RunClock, secs};
use super::timeline::Timeline;
use crate::heap;

/// Most samples kept in a run's timeline.
pub const TIMELINE_CAP: usize = 1200;

/// Memory and state at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub at_s: f64,
    /// Resident set of the target process, bytes.
    pub rss_bytes: Option<u64>,
    /// Live heap bytes of the server domain (embedded target with the counting allocator only).
    pub heap_bytes: Option<i64>,
    /// Live heap blocks of the server domain.
    pub heap_blocks: Option<i64>,
    /// Live heap bytes of leakrun's own clients and observers, for reference; never judged.
    pub harness_heap_bytes: Option<i64>,
    /// Server state counters by name.
    pub state: BTreeMap<String, u64>,
}

/// Reads the resident set of one process.
pub struct MemoryProbe {
    pid: Pid,
    system: Mutex<System>,
}

impl MemoryProbe {
    /// A probe of this process (the embedded server runs in it).
    pub fn own_process() -> Self {
        Self::for_pid(std::process::id())
    }

    /// A probe of process `pid`.
    pub fn for_pid(pid: u32) -> Self {
        Self {
            pid: Pid::from_u32(pid),
            system: Mutex::new(System::new()),
        }
    }

    /// Resident bytes now, or `None` when the process is gone.
    pub fn rss(&self) -> Option<u64> {
        let mut system = self.system.lock().unwrap_or_else(|p| p.into_inner());
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            true,
            ProcessRefreshKind::nothing().with_memory(),
        );
        system.process(self.pid).map(|p| p.memory())
    }
}

/// Reads the server's state counters.
pub type StateReader = Box<dyn Fn() -> BTreeMap<String, u64> + Send + Sync>;

/// Everything a sample is read from.
pub struct Probes {
    clock: RunClock,
    memory: MemoryProbe,
    state: StateReader,
}

impl Probes {
    /// Probes on `clock`.
    pub fn new(clock: RunClock, memory: MemoryProbe, state: StateReader) -> Self {
        Self { clock, memory, state }
    }

    /// A sample now.
    pub fn sample(&self) -> Sample {
        let heap = heap::figures();
        Sample {
            at_s: secs(self.clock.now_ns()),
            rss_bytes: self.memory.rss(),
            heap_bytes: heap.map(|h| h.server_bytes),
            heap_blocks: heap.map(|h| h.server_blocks),
            harness_heap_bytes: heap.map(|h| h.harness_bytes),
            state: (self.state)(),
        }
    }

    /// Live server heap bytes now, without the rest of a sample (for settle polling).
    pub fn heap_bytes(&self) -> Option<i64> {
        heap::figures().map(|h| h.server_bytes)
    }
}

/// The background sampler: a sample every `interval` into the shared timeline until cancelled.
pub struct Sampler {
    timeline: Arc<Mutex<Timeline<Sample>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling.
    pub fn start(probes: Arc<Probes>, interval: Duration) -> Self {
        let timeline = Arc::new(Mutex::new(Timeline::new(TIMELINE_CAP)));
        let stop = CancellationToken::new();
        let task = heap::spawn_harness({
            let timeline = timeline.clone();
            let stop = stop.clone();
            async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = ticks.tick() => {
                            let sample = probes.sample();
                            timeline.lock().unwrap_or_else(|p| p.into_inner()).push(sample);
                        }
                    }
                }
            }
        });
        Self { timeline, stop, task }
    }

    /// Stops sampling and returns the timeline.
    pub async fn finish(self) -> Timeline<Sample> {
        self.stop.cancel();
        let _ = self.task.await;
        let mut timeline = self.timeline.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *timeline, Timeline::new(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_rss_is_read_and_a_gone_process_reads_none() {
        let rss = MemoryProbe::own_process().rss().expect("own process");
        assert!(rss > 1024 * 1024, "{rss}");
        // PIDs are at most 2^22 on Linux; this one cannot exist.
        assert_eq!(MemoryProbe::for_pid(u32::MAX - 1).rss(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_sampler_samples_on_its_interval_until_finished() {
        let clock = RunClock::start();
        let reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = reads.clone();
        let state: StateReader = Box::new(move || {
            let n = counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            BTreeMap::from([("memberships".to_string(), n)])
        });
        let probes = Arc::new(Probes::new(clock, MemoryProbe::own_process(), state));
        let sampler = Sampler::start(probes, Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(1050)).await;
        let timeline = sampler.finish().await;
        // Ticks at 0, 100, ..., 1000 ms.
        assert_eq!(timeline.samples.len(), 11, "{:?}", timeline.samples.len());
        assert_eq!(timeline.samples[10].state["memberships"], 10);
        assert!(timeline.samples[3].rss_bytes.is_some());
    }
}
