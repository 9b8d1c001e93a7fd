//! CPU per sample: how busy the target and leakrun itself were over each sample window, in cores
//! (1.0 is one core busy for the whole window), read from `utime + stime` in `/proc/<pid>/stat`.
//!
//! An external server is summed over its process tree (forked workers included); the embedded
//! server over its own threads in leakrun's process (`/proc/self/task/<tid>/stat`), and leakrun's
//! own figure is then the rest of the process. When leakrun itself keeps most of the cores
//! it may use busy over a stretch, the load it offered and the latencies it measured are bounded
//! by its own work: [`saturation`] says so.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::process::procfs::{self, ProcFile, Stat};
use crate::process::threads::ThreadSet;
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

/// A process or thread, by (id, start time) so a recycled id is not taken for the one it replaced.
type Id = (u32, u64);

/// The CPU ticks of one reading: the root's, when the probe reads a process, and every other
/// process (of a tree) or thread (of a set) read.
#[derive(Clone)]
struct Ticks {
    root: Option<(Id, u64)>,
    /// Empty, and so never allocated, for a probe of one process.
    others: HashMap<Id, u64>,
}

impl Ticks {
    /// Ticks spent since `previous`, a process or thread absent then counting all of its ticks.
    fn since(&self, previous: &Ticks) -> u64 {
        let before = |id: &Id| match previous.root {
            Some((root, ticks)) if root == *id => ticks,
            _ => previous.others.get(id).copied().unwrap_or(0),
        };
        self.root
            .iter()
            .map(|(id, t)| (id, t))
            .chain(self.others.iter())
            .map(|(id, &t)| t.saturating_sub(before(id)))
            .sum()
    }
}

/// What the previous reading found: when, and the ticks.
struct Reading {
    at: Instant,
    ticks: Ticks,
}

/// Reads the CPU of a process, of a process and its descendants, or of a set of leakrun's own
/// threads, between calls.
pub struct CpuProbe {
    pid: u32,
    subject: Subject,
    last: Mutex<Option<Reading>>,
}

/// What a probe reads.
enum Subject {
    /// A process, or a process and its tree.
    Process {
        /// For a probe of a tree: its members, walked again at each reading (none when the root
        /// was gone at the start: every reading is then none too).
        tree: Option<Mutex<ProcessTree>>,
        /// The root's `/proc/<pid>/stat`, held open: a probe of one process (leakrun's own, read
        /// with every sample) allocates nothing. None when the process was gone at the start.
        stat: Option<ProcFile>,
    },
    /// Threads of leakrun's own process, each `/proc/self/task/<tid>/stat` held open while the
    /// thread is in the set.
    Threads {
        set: ThreadSet,
        files: Mutex<Vec<(u32, ProcFile)>>,
    },
}

impl CpuProbe {
    /// A probe of process `pid` alone (`tree` false) or with every process below it.
    pub fn new(pid: u32, tree: bool) -> Self {
        Self {
            pid,
            subject: Subject::Process {
                tree: tree.then(|| ProcessTree::new(pid).map(Mutex::new)).flatten(),
                stat: ProcFile::open(pid, "stat"),
            },
            last: Mutex::new(None),
        }
    }

    /// A probe of leakrun's own process.
    pub fn own_process() -> Self {
        Self::new(std::process::id(), false)
    }

    /// A probe of the threads of leakrun's process in `set`, as they join and leave it. A thread
    /// that ended within a window takes that window's ticks with it (a lower bound).
    pub fn threads(set: ThreadSet) -> Self {
        Self {
            pid: std::process::id(),
            subject: Subject::Threads {
                set,
                files: Mutex::new(Vec::new()),
            },
            last: Mutex::new(None),
        }
    }

    /// The process this probe reads (for a thread set, leakrun's own).
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

    /// The CPU ticks of everything read; none when the root is gone, or the set is empty.
    fn ticks(&self) -> Option<Ticks> {
        match &self.subject {
            Subject::Process { tree, stat } => {
                let root = Stat::read_from(stat.as_ref()?).filter(Stat::is_live)?;
                let mut others = HashMap::new();
                if let Some(tree) = tree {
                    let mut tree = tree.lock().unwrap_or_else(|p| p.into_inner());
                    if !tree.walk() {
                        return None;
                    }
                    for member in &tree.members()[1..] {
                        if let Some(stat) = Stat::read_from(&member.stat).filter(Stat::is_live) {
                            others.insert((member.pid, member.start_time), stat.cpu_ticks);
                        }
                    }
                }
                Some(Ticks {
                    root: Some(((self.pid, root.start_time), root.cpu_ticks)),
                    others,
                })
            }
            Subject::Threads { set, files } => {
                let tids = set.tids();
                if tids.is_empty() {
                    return None;
                }
                let mut files = files.lock().unwrap_or_else(|p| p.into_inner());
                files.retain(|(tid, _)| tids.contains(tid));
                for &tid in tids.iter() {
                    if !files.iter().any(|(held, _)| *held == tid)
                        && let Some(file) = ProcFile::open(self.pid, &format!("task/{tid}/stat"))
                    {
                        files.push((tid, file));
                    }
                }
                drop(tids);
                let others = files
                    .iter()
                    .filter_map(|(tid, file)| {
                        let stat = Stat::read_from(file)?;
                        Some(((*tid, stat.start_time), stat.cpu_ticks))
                    })
                    .collect();
                Some(Ticks { root: None, others })
            }
        }
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
    fn a_thread_probe_counts_its_threads_and_no_others() {
        let set = ThreadSet::new();
        let (joined, stop) = (
            set.clone(),
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
        let (spinning, quit) = (stop.clone(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let spinner = std::thread::spawn(move || {
            joined.join_current();
            ready_tx.send(()).unwrap();
            let mut spin = 0u64;
            while !spinning.load(std::sync::atomic::Ordering::Relaxed) {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
            joined.leave_current();
        });
        ready_rx.recv().unwrap();
        let probe = CpuProbe::threads(set.clone());
        assert_eq!(probe.since_last(), None, "the first call only starts the window");
        std::thread::sleep(std::time::Duration::from_millis(500));
        let busy = probe.since_last().expect("a reading of the spinning thread");
        quit.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.join().unwrap();
        assert!(busy.cores > 0.3, "the spinning thread's CPU is counted: {busy:?}");

        // This thread spins while the set holds only an idle one: none of it is counted.
        let idle = set.clone();
        let (idle_tx, idle_rx) = std::sync::mpsc::channel::<()>();
        let (joined_tx, joined_rx) = std::sync::mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            idle.join_current();
            joined_tx.send(()).unwrap();
            let _ = idle_rx.recv();
        });
        joined_rx.recv().unwrap();
        let quiet = CpuProbe::threads(set.clone());
        quiet.since_last();
        let until = Instant::now() + std::time::Duration::from_millis(400);
        let mut spin = 0u64;
        while Instant::now() < until {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let window = quiet.since_last().expect("a reading of the idle thread");
        drop(idle_tx);
        sleeper.join().unwrap();
        assert!(window.cores < 0.1, "only the idle thread is counted: {window:?}");
        assert_eq!(
            CpuProbe::threads(ThreadSet::new()).since_last(),
            None,
            "an empty set reads none"
        );
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
