//! Allocation sites from sampled native heaps (leakrun's own counting allocator, or the library
//! it preloads into a server): the live samples of each process, grouped by call stack, compared
//! with the last report.
//!
//! Reports carry raw stacks while the run goes on; the names come once, at the end, from
//! [`SampledSites::name`]: loading a binary's debug info takes tens of megabytes, which under way
//! would read as the server's resident memory growing. A raw stack is kept once, in a table of
//! the stacks seen, and a report names it by its index there: each iteration's report (kept
//! until the end, for naming) holds a few bytes per changed stack, not up to 40 return addresses
//! spelled out in hex.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use leakrun_heap_sampler::Region;

use super::sites::SiteGrowth;
use super::symbols::{self, Mapping, Symbolizer};

/// How a raw stack's site reads until it is named: `stack of pid <pid>`.
const RAW_SITE: &str = "stack of pid ";
/// How a raw stack's traceback reads until it is named: its index in the table, `#<index>`.
const RAW_STACK: &str = "#";
/// Most raw stacks one report keeps (largest change first).
const MAX_RAW_STACKS: usize = 2000;
/// Most distinct stacks a run keeps; the samples of stacks first seen after that are summed
/// under one entry per process, [`OTHER_STACKS`].
const MAX_STACKS: usize = 50_000;
/// The table index of the stacks not kept.
const OTHER_STACKS: u32 = u32::MAX;

/// One process's sampled region, as a report reads it.
pub struct Sampled<'a> {
    /// The process.
    pub pid: u32,
    /// Its region.
    pub region: &'a Region,
    /// Its executable.
    pub exe: PathBuf,
}

/// One process's call stack.
type Stack = (u32, Arc<[u64]>);

/// Estimated live bytes and blocks per (process, stack index).
type StackTotals = HashMap<(u32, u32), (i64, i64)>;

/// The state between reports: the stacks seen, the last estimate per stack, and each process's
/// mappings.
#[derive(Default)]
pub struct SampledSites {
    stacks: Vec<Stack>,
    index: HashMap<Stack, u32>,
    previous: Option<StackTotals>,
    processes: HashMap<u32, (Vec<Mapping>, PathBuf)>,
    /// How many times a process's mappings were read.
    maps_reads: u64,
}

impl SampledSites {
    /// Nothing reported yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of `frames` of process `pid` in the table, added when it is new (or
    /// [`OTHER_STACKS`] once the table is full), and whether it was added now.
    fn intern(&mut self, pid: u32, frames: Vec<u64>) -> (u32, bool) {
        let key: Stack = (pid, frames.into());
        if let Some(at) = self.index.get(&key) {
            return (*at, false);
        }
        if self.stacks.len() >= MAX_STACKS {
            return (OTHER_STACKS, false);
        }
        let at = self.stacks.len() as u32;
        self.stacks.push(key.clone());
        self.index.insert(key, at);
        (at, true)
    }

    /// Whether every frame of stack `at` lies in a mapping known for its process.
    fn mapped(&self, at: u32) -> bool {
        let (pid, frames) = &self.stacks[at as usize];
        let Some((maps, _)) = self.processes.get(pid) else {
            return false;
        };
        frames
            .iter()
            .all(|&frame| maps.iter().any(|m| (m.start..m.end).contains(&frame)))
    }

    /// The stacks whose estimated live bytes changed since the last call, largest growth first
    /// (the first call sets the baseline and reports none). A process's mappings, for naming its
    /// stacks later, are read at its first report and again only when a stack first seen has a
    /// frame outside them (a library loaded since): the maps of a process with many threads
    /// run to tens of KiB, and reading them with every iteration's report took new pages.
    pub fn report(&mut self, processes: &[Sampled<'_>]) -> Vec<SiteGrowth> {
        let mut totals = StackTotals::new();
        for process in processes {
            let mut stale = !self.processes.contains_key(&process.pid);
            for sample in process.region.live() {
                let (stack, new) = self.intern(process.pid, sample.frames);
                if new && !stale {
                    stale = !self.mapped(stack);
                }
                let entry = totals.entry((process.pid, stack)).or_default();
                entry.0 = entry.0.saturating_add(sample.weight as i64);
                entry.1 += (sample.weight / sample.size.max(1)).max(1) as i64;
            }
            if stale {
                self.maps_reads += 1;
                let maps = symbols::executable_mappings(process.pid);
                if !maps.is_empty() {
                    self.processes.insert(process.pid, (maps, process.exe.clone()));
                }
            }
        }
        let Some(before) = self.previous.replace(totals) else {
            return Vec::new();
        };
        let now = self.previous.as_ref().expect("just stored");
        let mut changed: Vec<SiteGrowth> = now
            .iter()
            .map(|(key, n)| (key, *n, before.get(key).copied().unwrap_or_default()))
            .chain(
                before
                    .iter()
                    .filter(|(key, _)| !now.contains_key(*key))
                    .map(|(key, b)| (key, (0, 0), *b)),
            )
            .filter(|(_, n, b)| n.0 != b.0)
            .map(|((pid, stack), n, b)| SiteGrowth {
                site: format!("{RAW_SITE}{pid}"),
                traceback: vec![format!("{RAW_STACK}{stack}")],
                bytes: n.0 - b.0,
                blocks: n.1 - b.1,
            })
            .collect();
        changed.sort_by_key(|s| std::cmp::Reverse(s.bytes.unsigned_abs()));
        changed.truncate(MAX_RAW_STACKS);
        changed.sort_by_key(|s| std::cmp::Reverse(s.bytes));
        changed
    }

    /// Names the raw stacks in `lists` (each resolved once), merges the stacks that name the same
    /// site and traceback, and keeps each list's `limit` largest.
    pub fn name(&self, lists: Vec<&mut Vec<SiteGrowth>>, limit: usize) {
        let mut symbolizer = Symbolizer::new();
        let mut named: HashMap<(String, Vec<String>), (String, Vec<String>)> = HashMap::new();
        for list in lists {
            let mut merged: BTreeMap<(String, Vec<String>), (i64, i64)> = BTreeMap::new();
            for site in list.drain(..) {
                let key = (site.site, site.traceback);
                let name = match named.get(&key) {
                    Some(name) => name.clone(),
                    None => {
                        let name = self.describe(&mut symbolizer, &key.0, &key.1);
                        named.insert(key, name.clone());
                        name
                    }
                };
                let entry = merged.entry(name).or_default();
                entry.0 = entry.0.saturating_add(site.bytes);
                entry.1 = entry.1.saturating_add(site.blocks);
            }
            let mut sites: Vec<SiteGrowth> = merged
                .into_iter()
                .filter(|(_, (bytes, _))| *bytes != 0)
                .map(|((site, traceback), (bytes, blocks))| SiteGrowth {
                    site,
                    traceback,
                    bytes,
                    blocks,
                })
                .collect();
            sites.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.site.cmp(&b.site)));
            sites.truncate(limit);
            *list = sites;
        }
    }

    /// The name of one raw stack; a site that is not raw keeps its own.
    fn describe(&self, symbolizer: &mut Symbolizer, site: &str, traceback: &[String]) -> (String, Vec<String>) {
        let Some(pid) = site.strip_prefix(RAW_SITE).and_then(|p| p.parse::<u32>().ok()) else {
            return (site.to_string(), traceback.to_vec());
        };
        let stack = match traceback {
            [only] => only.strip_prefix(RAW_STACK).and_then(|i| i.parse::<u32>().ok()),
            _ => None,
        };
        if stack == Some(OTHER_STACKS) {
            let site = format!("stacks of pid {pid} first seen after the first {MAX_STACKS}");
            return (site, Vec::new());
        }
        let Some((_, pcs)) = stack.and_then(|i| self.stacks.get(i as usize)) else {
            return (site.to_string(), traceback.to_vec());
        };
        let raw = || pcs.iter().map(|pc| format!("{pc:#x}")).collect::<Vec<_>>();
        let Some((maps, exe)) = self.processes.get(&pid) else {
            return (site.to_string(), raw());
        };
        let frames: Vec<symbols::Frame> = pcs
            .iter()
            .enumerate()
            .flat_map(|(i, pc)| symbolizer.frames(maps, *pc, i > 0))
            .collect();
        let described = symbols::describe(&frames, exe);
        (described.site, described.traceback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_its_stacks_by_index_and_naming_restores_them() {
        let r = Region::boxed();
        r.set_mean(1024);
        let stack = |f: &mut [u64; leakrun_heap_sampler::DEPTH]| {
            f[0] = 0x1111;
            f[1] = 0x2222;
            2
        };
        assert!(r.record(0x10_0000, 4096, stack));
        // No such process: no mappings, so the stack is named by its addresses.
        let process = || Sampled {
            pid: u32::MAX - 1,
            region: &r,
            exe: PathBuf::from("/nonexistent"),
        };
        let mut sites = SampledSites::new();
        assert!(
            sites.report(&[process()]).is_empty(),
            "the first report is the baseline"
        );
        assert!(r.record(0x20_0000, 4096, stack));
        assert!(r.record(0x30_0000, 64, |f| {
            f[0] = 0x3333;
            1
        }));
        let mut report = sites.report(&[process()]);
        assert_eq!(report.len(), 2, "{report:?}");
        assert_eq!(sites.stacks.len(), 2, "each stack is kept once");
        let grown = report.iter().find(|s| s.bytes >= 4096).expect("the 4 KiB stack grew");
        assert_eq!(grown.site, format!("stack of pid {}", u32::MAX - 1));
        assert_eq!(grown.traceback, vec!["#0".to_string()]);
        sites.name(vec![&mut report], 10);
        let tracebacks: Vec<&Vec<String>> = report.iter().map(|s| &s.traceback).collect();
        assert!(
            tracebacks.contains(&&vec!["0x1111".to_string(), "0x2222".to_string()]),
            "{report:?}"
        );
        assert!(tracebacks.contains(&&vec!["0x3333".to_string()]), "{report:?}");
    }

    #[test]
    fn mappings_are_read_once_and_again_only_for_a_frame_outside_them() {
        let r = Region::boxed();
        r.set_mean(1024);
        // A frame in this test binary's own code, which its first reading of the maps covers.
        let own = mappings_are_read_once_and_again_only_for_a_frame_outside_them as fn() as usize as u64;
        let in_binary = move |f: &mut [u64; leakrun_heap_sampler::DEPTH]| {
            f[0] = own;
            1
        };
        let process = || Sampled {
            pid: std::process::id(),
            region: &r,
            exe: std::env::current_exe().unwrap(),
        };
        let mut sites = SampledSites::new();
        assert!(r.record(0x10_0000, 4096, in_binary));
        sites.report(&[process()]);
        assert_eq!(sites.maps_reads, 1, "read at the first report");
        for at in [0x20_0000, 0x30_0000, 0x40_0000] {
            assert!(r.record(at, 4096, in_binary));
            sites.report(&[process()]);
        }
        assert_eq!(sites.maps_reads, 1, "a known stack inside known mappings reads nothing");
        assert!(r.record(0x50_0000, 64, |f| {
            f[0] = 0x3333;
            1
        }));
        sites.report(&[process()]);
        assert_eq!(sites.maps_reads, 2, "a new stack with a frame outside every mapping");
        assert!(r.record(0x60_0000, 64, |f| {
            f[0] = 0x3333;
            1
        }));
        sites.report(&[process()]);
        assert_eq!(sites.maps_reads, 2, "that stack is known now");
    }

    #[test]
    fn stacks_past_the_table_are_summed_under_one_entry() {
        let mut sites = SampledSites::new();
        for i in 0..MAX_STACKS as u64 {
            assert_eq!(sites.intern(7, vec![i]), (i as u32, true));
        }
        assert_eq!(sites.intern(7, vec![0]), (0, false), "a known stack keeps its index");
        assert_eq!(sites.intern(7, vec![u64::MAX]), (OTHER_STACKS, false));
        let mut symbolizer = Symbolizer::new();
        let (site, traceback) = sites.describe(&mut symbolizer, "stack of pid 7", &[format!("#{OTHER_STACKS}")]);
        assert!(site.contains("first seen after the first 50000"), "{site}");
        assert!(traceback.is_empty());
    }
}
