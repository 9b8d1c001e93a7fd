//! CPU per sample: how busy the target and leakrun itself were over each sample window, in cores
//! (1.0 is one core busy for the whole window), read from `utime + stime` in `/proc/<pid>/stat`.
//!
//! An external server is summed over its process tree (forked workers included); the embedded
//! server runs on the same tokio runtime threads as leakrun's clients, so its CPU cannot be told
//! apart and leakrun's whole process stands in for it. When leakrun itself keeps most of the cores
//! it may use busy over a stretch, the load it offered and the latencies it measured are bounded
//! by its own work: [`saturation`] says so.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::process::procfs::{self, ProcFile, Stat};
use crate::process::tree::ProcessTree;

/// leakrun's CPU at or above this share of the cores it may use is saturated.
pub const SATURATED_SHARE: f64 = 0.9;
/// A saturated stretch shorter than this many seconds is a burst, not a limit.
pub const MIN_SATURATED_S: f64 = 1.0;

/// CPU over one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuWindow {
    /// Cores busy on average over the window.
    pub cores: f64,
    /// The window's length, seconds.
    pub window_s: f64,
}

/// The CPU ticks of one reading: the root's, and, for a tree, every descendant's, each by (pid,
/// start time) so a recycled pid is not taken for the process it replaced.
#[derive(Clone)]
struct Ticks {
    root: ((u32, u64), u64),
    /// Empty, and so never allocated, for a probe of one process.
    descendants: HashMap<(u32, u64), u64>,
}

impl Ticks {
    /// Ticks spent since `previous`, a process absent then counting all of its ticks.
    fn since(&self, previous: &Ticks) -> u64 {
        let before = |id: &(u32, u64)| {
            if *id == previous.root.0 {
                previous.root.1
            } else {
                previous.descendants.get(id).copied().unwrap_or(0)
            }
        };
        std::iter::once((&self.root.0, &self.root.1))
            .chain(self.descendants.iter())
            .map(|(id, &t)| t.saturating_sub(before(id)))
            .sum()
    }
}

/// What the previous reading found: when, and the ticks.
struct Reading {
    at: Instant,
    ticks: Ticks,
}

/// Reads the CPU of a process, or of a process and its descendants, between calls.
pub struct CpuProbe {
    pid: u32,
    /// For a probe of a tree: its members, walked again at each reading (none when the root was
    /// gone at the start: every reading is then none too).
    tree: Option<Mutex<ProcessTree>>,
    /// The root's `/proc/<pid>/stat`, held open: a probe of one process (leakrun's own, read with
    /// every sample) allocates nothing. None when the process was gone at the start.
    stat: Option<ProcFile>,
    last: Mutex<Option<Reading>>,
}

impl CpuProbe {
    /// A probe of process `pid` alone (`tree` false) or with every process below it.
    pub fn new(pid: u32, tree: bool) -> Self {
        Self {
            pid,
            tree: tree.then(|| ProcessTree::new(pid).map(Mutex::new)).flatten(),
            stat: ProcFile::open(pid, "stat"),
            last: Mutex::new(None),
        }
    }

    /// A probe of leakrun's own process.
    pub fn own_process() -> Self {
        Self::new(std::process::id(), false)
    }

    /// The process this probe reads.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The CPU since the previous call; none on the first call and when the process is gone. A
    /// process of the tree that ended within the window takes its last window's ticks with it
    /// (a lower bound); one that started within it counts all of its ticks.
    pub fn since_last(&self) -> Option<CpuWindow> {
        let now = Instant::now();
        let ticks = self.ticks()?;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let previous = last.replace(Reading {
            at: now,
            ticks: ticks.clone(),
        })?;
        let window_s = now.duration_since(previous.at).as_secs_f64();
        if window_s <= 0.0 {
            return None;
        }
        Some(CpuWindow {
            cores: ticks.since(&previous.ticks) as f64 / procfs::ticks_per_second() / window_s,
            window_s,
        })
    }

    /// The CPU ticks of every process read; none when the root is gone.
    fn ticks(&self) -> Option<Ticks> {
        let root = Stat::read_from(self.stat.as_ref()?).filter(Stat::is_live)?;
        let mut descendants = HashMap::new();
        if let Some(tree) = &self.tree {
            let mut tree = tree.lock().unwrap_or_else(|p| p.into_inner());
            if !tree.walk() {
                return None;
            }
            for member in &tree.members()[1..] {
                if let Some(stat) = Stat::read_from(&member.stat).filter(Stat::is_live) {
                    descendants.insert((member.pid, member.start_time), stat.cpu_ticks);
                }
            }
        }
        Some(Ticks {
            root: ((self.pid, root.start_time), root.cpu_ticks),
            descendants,
        })
    }
}

/// The cores leakrun may use.
pub fn usable_cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_shows_as_about_one_core() {
        let probe = CpuProbe::own_process();
        assert_eq!(probe.since_last(), None, "the first call only starts the window");
        let until = Instant::now() + std::time::Duration::from_millis(400);
        let mut spin = 0u64;
        while Instant::now() < until {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let window = probe.since_last().expect("a second reading");
        assert!(window.window_s >= 0.4, "{window:?}");
        // The process's CPU: this thread's and whatever the other tests of this binary ran
        // meanwhile on other threads, so at least most of a core and at most every core.
        assert!(window.cores > 0.5 && window.cores <= usable_cores() * 1.1, "{window:?}");
        assert_eq!(CpuProbe::new(u32::MAX - 1, true).since_last(), None);
    }

    #[test]
    fn a_tree_probe_counts_a_busy_child() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("sh");
        let probe = CpuProbe::new(std::process::id(), true);
        probe.since_last();
        std::thread::sleep(std::time::Duration::from_millis(500));
        let window = probe.since_last();
        let _ = child.kill();
        let _ = child.wait();
        let window = window.expect("a reading");
        assert!(window.cores > 0.3, "the spinning child's CPU is in the sum: {window:?}");
    }
}
