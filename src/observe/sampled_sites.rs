//! Allocation sites from sampled native heaps (leakrun's own counting allocator, or the library
//! it preloads into a server): the live samples of each process, grouped by call stack, compared
//! with the last report.
//!
//! Reports carry raw stacks (return addresses of one process) while the run goes on; the names
//! come once, at the end, from [`SampledSites::name`]: loading a binary's debug info takes tens
//! of megabytes, which under way would read as the server's resident memory growing.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use leakrun_heap_sampler::Region;

use super::sites::SiteGrowth;
use super::symbols::{self, Mapping, Symbolizer};

/// How a raw stack's site reads until it is named: `stack of pid <pid>`.
const RAW_SITE: &str = "stack of pid ";
/// Most raw stacks one report keeps (largest change first).
const MAX_RAW_STACKS: usize = 2000;

/// One process's sampled region, as a report reads it.
pub struct Sampled<'a> {
    /// The process.
    pub pid: u32,
    /// Its region.
    pub region: &'a Region,
    /// Its executable.
    pub exe: PathBuf,
}

/// Estimated live bytes and blocks per (process, stack).
type StackTotals = HashMap<(u32, Vec<u64>), (i64, i64)>;

/// The state between reports: the last estimate per stack, and each process's mappings.
#[derive(Default)]
pub struct SampledSites {
    previous: Option<StackTotals>,
    processes: HashMap<u32, (Vec<Mapping>, PathBuf)>,
}

impl SampledSites {
    /// Nothing reported yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stacks whose estimated live bytes changed since the last call, largest growth first
    /// (the first call sets the baseline and reports none). Each process's mappings are read now,
    /// for naming its stacks later.
    pub fn report(&mut self, processes: &[Sampled<'_>]) -> Vec<SiteGrowth> {
        let mut totals = StackTotals::new();
        for process in processes {
            let maps = symbols::executable_mappings(process.pid);
            if !maps.is_empty() {
                self.processes.insert(process.pid, (maps, process.exe.clone()));
            }
            for sample in process.region.live() {
                let entry = totals.entry((process.pid, sample.frames)).or_default();
                entry.0 = entry.0.saturating_add(sample.weight as i64);
                entry.1 += (sample.weight / sample.size.max(1)).max(1) as i64;
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
            .map(|((pid, frames), n, b)| SiteGrowth {
                site: format!("{RAW_SITE}{pid}"),
                traceback: frames.iter().map(|pc| format!("{pc:#x}")).collect(),
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
        let pid = site.strip_prefix(RAW_SITE).and_then(|p| p.parse::<u32>().ok());
        let Some((maps, exe)) = pid.and_then(|pid| self.processes.get(&pid)) else {
            return (site.to_string(), traceback.to_vec());
        };
        let frames: Vec<symbols::Frame> = traceback
            .iter()
            .filter_map(|pc| u64::from_str_radix(pc.trim_start_matches("0x"), 16).ok())
            .enumerate()
            .flat_map(|(i, pc)| symbolizer.frames(maps, pc, i > 0))
            .collect();
        let described = symbols::describe(&frames, exe);
        (described.site, described.traceback)
    }
}
