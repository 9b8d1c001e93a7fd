//! The native heap probe of an external server leakrun starts (`server.heap = "malloc"`).
//!
//! leakrun preloads its library (`libleakrun_malloc.so`, built from `crates/leakrun-malloc` by
//! the same `cargo build`, found next to the `leakrun` binary or at `LEAKRUN_MALLOC_LIB`) into the
//! command with `LD_PRELOAD`. Every process of the server that loads it counts its live malloc
//! bytes and blocks into `<folder>/<pid>.page`, a shared-memory file leakrun maps read-only and
//! reads on every sample; the series is the sum over the server's live process tree. After each
//! settle leakrun reads the sampled live allocations of every process, groups them by call stack,
//! names each stack's site from the binaries' debug info (each address once) and reports how much
//! each site grew since the last time.
//!
//! A process whose allocations the library cannot see is found after readiness and is an error,
//! never a clean verdict: a static binary (no page), a binary that defines `malloc` itself (the
//! library reports it; the executable's symbols name the allocator when they can, `mallctl` for
//! a statically linked jemalloc), or one that links an allocator of its own under other names
//! (prefixed jemalloc, mimalloc, tcmalloc symbols in the executable). A server on a shared-library
//! allocator (`libjemalloc.so.2`) is none of these: the preloaded library comes first in the
//! lookup, forwards to it and counts every block.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use leakrun_heap_sampler::{FLAG_MALLOC_ELSEWHERE, FLAG_READY, REGION_BYTES, Region};

use crate::observe::sampled_sites::{Sampled, SampledSites};
use crate::observe::sampler::{HeapReading, HeapSource, SourceError};
use crate::observe::sites::{ProcessHeap, SiteGrowth, SiteReport};
use crate::process::procfs;
use crate::scenario::HeapSpec;

/// The library's file name.
pub const LIBRARY: &str = "libleakrun_malloc.so";
/// Most processes read (a server's tree).
const MAX_PROCESSES: usize = 256;
/// Symbols of allocators that serve a program without going through `malloc`.
const FOREIGN_ALLOCATORS: [(&str, &str); 9] = [
    ("_rjem_malloc", "jemalloc (tikv-jemallocator)"),
    ("je_malloc", "jemalloc"),
    ("je_mallocx", "jemalloc"),
    ("_rjem_mallocx", "jemalloc (tikv-jemallocator)"),
    ("mi_malloc", "mimalloc"),
    ("mi_heap_malloc", "mimalloc"),
    ("tc_malloc", "tcmalloc"),
    ("rpmalloc", "rpmalloc"),
    ("sn_rust_alloc", "snmalloc"),
];
/// Symbols that name the allocator behind a `malloc` of the executable's own (only asked once the
/// library found the global `malloc` is not its own: unprefixed jemalloc also exports these).
const OWN_MALLOC_ALLOCATORS: [(&str, &str); 5] = [
    ("mallctl", "jemalloc"),
    ("mallocx", "jemalloc"),
    ("mi_malloc", "mimalloc"),
    ("tc_malloc", "tcmalloc"),
    ("rpmalloc", "rpmalloc"),
];

/// Why the probe could not be had, or cannot see the server.
#[derive(Debug, thiserror::Error)]
pub enum MallocError {
    /// The library was not found.
    #[error(
        "server.heap = \"malloc\": the preloaded library {} was not found (looked at {}); `cargo build` builds it next to the leakrun binary, or set LEAKRUN_MALLOC_LIB to its path",
        LIBRARY,
        .looked.display()
    )]
    Missing {
        /// Where it was looked for.
        looked: PathBuf,
    },
    /// The folder for the pages could not be made.
    #[error("server.heap = \"malloc\": cannot prepare the folder for the heap pages: {0}")]
    Folder(#[from] std::io::Error),
    /// The process that serves (holds the listening socket) has no page: it never loaded the
    /// library, though another process of the tree (a wrapper shell, say) did.
    #[error(
        "server.heap = \"malloc\": pid {pid} ({exe}) listens on port {port} but never loaded leakrun's preloaded allocator (a statically linked server, or one started with LD_PRELOAD removed); its heap cannot be counted; use heap = \"none\" (resident memory) for it"
    )]
    ListenerNotLoaded {
        /// The serving process.
        pid: u32,
        /// Its executable.
        exe: String,
        /// The port it listens on.
        port: u16,
    },
    /// No process of the server loaded the library.
    #[error(
        "server.heap = \"malloc\": no process of the server (pid {pid}{more}) loaded leakrun's preloaded allocator within {secs}s of readiness: a statically linked server, or one whose command drops LD_PRELOAD, cannot be counted; use heap = \"none\" (resident memory) for it"
    )]
    NotLoaded {
        /// The server's pid.
        pid: u32,
        /// Its other processes, when it has some.
        more: String,
        /// The bound.
        secs: u64,
    },
    /// A process defines its own `malloc`.
    #[error(
        "server.heap = \"malloc\": pid {pid} ({exe}) has {found} linked in as its `malloc` (not the preloaded one), so leakrun never sees it allocate; use heap = \"none\" (resident memory), or build it with the system allocator"
    )]
    MallocElsewhere {
        /// The process.
        pid: u32,
        /// Its executable.
        exe: String,
        /// What the executable's symbols say it is: `jemalloc (symbol `mallctl`)`, or `an
        /// allocator of its own` when they say nothing.
        found: String,
    },
    /// A process allocates through an allocator of its own under other names.
    #[error(
        "server.heap = \"malloc\": pid {pid} ({exe}) uses {allocator} (symbol `{symbol}`), which does not allocate through malloc, so leakrun never sees it allocate; use heap = \"none\" (resident memory), or build it with the system allocator"
    )]
    OwnAllocator {
        /// The process.
        pid: u32,
        /// Its executable.
        exe: String,
        /// Which allocator.
        allocator: &'static str,
        /// The symbol that gave it away.
        symbol: &'static str,
    },
}

/// One process's mapped page.
struct Page {
    map: memmap2::Mmap,
}

impl Page {
    fn region(&self) -> &Region {
        // SAFETY: the mapping is REGION_BYTES long (checked when mapped), page-aligned, and lives
        // as long as `self`; every field of a region is an atomic.
        unsafe { Region::from_memory(self.map.as_ptr()) }
    }
}

/// The probe for one run.
pub struct MallocHeap {
    library: PathBuf,
    folder: tempfile::TempDir,
    spec: HeapSpec,
    /// The server's pid, once started.
    root: Mutex<Option<u32>>,
    pages: Mutex<HashMap<u32, Page>>,
    /// The sampled stacks between reports.
    sites: Mutex<SampledSites>,
}

impl MallocHeap {
    /// Finds the library and makes the pages' folder (in `/dev/shm` when it can).
    pub fn prepare(spec: HeapSpec) -> Result<Self, MallocError> {
        let library = locate()?;
        let shm = Path::new("/dev/shm");
        let builder = {
            let mut b = tempfile::Builder::new();
            b.prefix("leakrun-malloc-");
            b
        };
        let folder = match shm.is_dir() {
            true => builder.tempdir_in(shm).or_else(|_| builder.tempdir())?,
            false => builder.tempdir()?,
        };
        Ok(Self {
            library,
            folder,
            spec,
            root: Mutex::new(None),
            pages: Mutex::new(HashMap::new()),
            sites: Mutex::new(SampledSites::new()),
        })
    }

    /// The folder the pages are published in (removed when the probe is dropped).
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// The variables the server's command gets: the library first on `LD_PRELOAD` (before
    /// `existing`), the pages' folder, the sampling rate, and `PYTHONMALLOC=malloc` unless the
    /// command sets it (CPython's own small-object allocator bypasses malloc).
    pub fn environment(&self, existing: Option<OsString>, python_malloc_set: bool) -> Vec<(String, OsString)> {
        let mut preload = self.library.as_os_str().to_os_string();
        if let Some(existing) = existing.filter(|p| !p.is_empty()) {
            preload.push(":");
            preload.push(existing);
        }
        let mut variables = vec![
            ("LD_PRELOAD".into(), preload),
            ("LEAKRUN_MALLOC_DIR".into(), self.folder.path().into()),
            (
                "LEAKRUN_MALLOC_SAMPLE".into(),
                self.spec.sample_bytes.to_string().into(),
            ),
        ];
        if !python_malloc_set {
            variables.push(("PYTHONMALLOC".into(), "malloc".into()));
        }
        variables
    }

    /// Waits, at most `bound`, until a process of the server `root` holds counted blocks, and
    /// checks that the library sees every process of it allocate — above all the ones that
    /// listen on `port`, the server's own (a wrapper's page must not stand in for them).
    pub async fn verify(&self, root: u32, port: u16, bound: Duration) -> Result<(), MallocError> {
        *self.root.lock().expect("root lock") = Some(root);
        let deadline = Instant::now() + bound;
        let mut scanned: HashMap<String, Option<(&'static str, &'static str)>> = HashMap::new();
        loop {
            let counted = self.with_pages(|pages| {
                for (pid, region) in pages {
                    let exe = String::from_utf8_lossy(&region.exe()).into_owned();
                    if region.header.flags.load(std::sync::atomic::Ordering::Acquire) & FLAG_MALLOC_ELSEWHERE != 0 {
                        let found = match allocator_in(Path::new(&exe), &OWN_MALLOC_ALLOCATORS) {
                            Some((symbol, allocator)) => format!("{allocator} (symbol `{symbol}`)"),
                            None => "an allocator of its own".into(),
                        };
                        return Err(MallocError::MallocElsewhere { pid: *pid, exe, found });
                    }
                    let foreign = *scanned
                        .entry(exe.clone())
                        .or_insert_with(|| allocator_in(Path::new(&exe), &FOREIGN_ALLOCATORS));
                    if let Some((symbol, allocator)) = foreign {
                        return Err(MallocError::OwnAllocator {
                            pid: *pid,
                            exe,
                            allocator,
                            symbol,
                        });
                    }
                }
                Ok(pages.iter().any(|(_, r)| r.live_blocks() > 0))
            })?;
            if counted {
                return self.listeners_counted(root, port);
            }
            if Instant::now() >= deadline {
                let others = procfs::descendants(root).len();
                return Err(MallocError::NotLoaded {
                    pid: root,
                    more: match others {
                        0 => String::new(),
                        n => format!(" and {n} child process{}", if n == 1 { "" } else { "es" }),
                    },
                    secs: bound.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every process of the tree that listens on `port` has a page of its own.
    fn listeners_counted(&self, root: u32, port: u16) -> Result<(), MallocError> {
        let tree: Vec<u32> = std::iter::once(root)
            .chain(procfs::descendants(root).into_iter().map(|i| i.pid))
            .take(MAX_PROCESSES)
            .collect();
        let counted: Vec<u32> = self.with_pages(|pages| pages.iter().map(|(pid, _)| *pid).collect());
        match procfs::listening(&tree, port)
            .into_iter()
            .find(|pid| !counted.contains(pid))
        {
            Some(pid) => Err(MallocError::ListenerNotLoaded {
                pid,
                exe: std::fs::read_link(format!("/proc/{pid}/exe"))
                    .map_or_else(|_| "?".into(), |p| p.display().to_string()),
                port,
            }),
            None => Ok(()),
        }
    }

    /// Runs `f` over the valid pages of the server's live processes (pid, region).
    fn with_pages<T>(&self, f: impl FnOnce(&[(u32, &Region)]) -> T) -> T {
        let root = *self.root.lock().expect("root lock");
        let mut pids: Vec<u32> = match root {
            Some(root) => std::iter::once(root)
                .chain(procfs::descendants(root).into_iter().map(|i| i.pid))
                .take(MAX_PROCESSES)
                .collect(),
            None => Vec::new(),
        };
        pids.sort_unstable();
        let mut pages = self.pages.lock().expect("pages lock");
        pages.retain(|pid, _| pids.binary_search(pid).is_ok());
        for pid in &pids {
            if !pages.contains_key(pid)
                && let Some(page) = self.map(*pid)
            {
                pages.insert(*pid, page);
            }
        }
        let regions: Vec<(u32, &Region)> = pids
            .iter()
            .filter_map(|pid| pages.get(pid).map(|p| (*pid, p.region())))
            .filter(|(pid, region)| is_current(*pid, region))
            .collect();
        f(&regions)
    }

    /// Maps `<folder>/<pid>.page` read-only, when it is there and whole.
    fn map(&self, pid: u32) -> Option<Page> {
        let file = std::fs::File::open(self.folder.path().join(format!("{pid}.page"))).ok()?;
        if file.metadata().ok()?.len() < REGION_BYTES as u64 {
            return None;
        }
        // SAFETY: a read-only shared mapping of a file only the server's processes write, and
        // only through atomics; its length was checked.
        let map = unsafe { memmap2::MmapOptions::new().len(REGION_BYTES).map(&file) }.ok()?;
        Some(Page { map })
    }

    /// Live bytes and blocks summed over the server's processes now.
    fn read_now(&self) -> HeapReading {
        self.with_pages(|pages| HeapReading {
            bytes: pages.iter().map(|(_, r)| r.live_bytes()).sum(),
            blocks: Some(pages.iter().map(|(_, r)| r.live_blocks()).sum()),
            harness_bytes: None,
            processes: Some(pages.len() as u32),
        })
    }

    /// The stacks whose estimated live bytes changed since the last call (the first call sets
    /// the baseline and reports none); raw until [`MallocHeap::name_sites`].
    pub fn sites(&self) -> SiteReport {
        let started = Instant::now();
        let mut report = SiteReport::default();
        let mut tracker = self.sites.lock().expect("sites lock");
        report.sites = self.with_pages(|pages| {
            let sampled: Vec<Sampled<'_>> = pages
                .iter()
                .map(|(pid, region)| Sampled {
                    pid: *pid,
                    region,
                    exe: PathBuf::from(String::from_utf8_lossy(&region.exe()).into_owned()),
                })
                .collect();
            for process in &sampled {
                let bytes = process.region.live_bytes();
                let blocks = process.region.live_blocks();
                report.bytes += bytes;
                report.blocks += blocks;
                report.processes.push(ProcessHeap {
                    pid: process.pid,
                    bytes,
                    blocks,
                });
            }
            tracker.report(&sampled)
        });
        report.took_s = started.elapsed().as_secs_f64();
        report
    }

    /// Names the raw stacks of every report (once, at the end of the run).
    pub fn name_sites(&self, lists: Vec<&mut Vec<SiteGrowth>>) {
        self.sites.lock().expect("sites lock").name(lists, self.spec.sites);
    }
}

/// Whether `region` was written by the image `pid` runs now (an `exec` into a program that does
/// not load the library leaves the previous image's page behind).
fn is_current(pid: u32, region: &Region) -> bool {
    use std::sync::atomic::Ordering::Acquire;
    if !region.is_valid() || region.header.flags.load(Acquire) & FLAG_READY == 0 {
        return false;
    }
    if region.header.pid.load(Acquire) != pid {
        return false;
    }
    match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(exe) => exe.as_os_str().as_encoded_bytes() == region.exe().as_slice(),
        // Another user's process: its page is trusted as it is.
        Err(_) => true,
    }
}

/// Where the library is: `LEAKRUN_MALLOC_LIB`, else next to the running `leakrun`.
fn locate() -> Result<PathBuf, MallocError> {
    let looked = match std::env::var_os("LEAKRUN_MALLOC_LIB") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join(LIBRARY)))
            .unwrap_or_else(|| PathBuf::from(LIBRARY)),
    };
    match looked.is_file() {
        true => Ok(std::fs::canonicalize(&looked).unwrap_or(looked)),
        false => Err(MallocError::Missing { looked }),
    }
}

/// The first of `table`'s symbols (symbol, allocator) the executable defines, in its symbol
/// tables.
fn allocator_in(exe: &Path, table: &[(&'static str, &'static str)]) -> Option<(&'static str, &'static str)> {
    use object::{Object as _, ObjectSymbol as _};
    let file = std::fs::File::open(exe).ok()?;
    // SAFETY: read-only mapping, only parsed.
    let data = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let parsed = object::File::parse(&*data).ok()?;
    let names: std::collections::HashSet<&str> = parsed
        .symbols()
        .chain(parsed.dynamic_symbols())
        .filter(|s| s.is_definition())
        .filter_map(|s| s.name().ok())
        .collect();
    table.iter().find(|(symbol, _)| names.contains(symbol)).copied()
}

/// A sample's heap reading: the counters in the pages, summed.
#[async_trait::async_trait]
impl HeapSource for std::sync::Arc<MallocHeap> {
    async fn read(&self) -> Result<Option<HeapReading>, SourceError> {
        Ok(Some(self.read_now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_library_goes_first_on_ld_preload_and_python_uses_malloc() {
        let dir = tempfile::tempdir().unwrap();
        let library = dir.path().join(LIBRARY);
        std::fs::write(&library, b"").unwrap();
        // SAFETY: the variable is set before any thread of this test reads it.
        unsafe { std::env::set_var("LEAKRUN_MALLOC_LIB", &library) };
        let probe = MallocHeap::prepare(HeapSpec::default()).unwrap();
        unsafe { std::env::remove_var("LEAKRUN_MALLOC_LIB") };
        let env: BTreeMap<String, OsString> = probe
            .environment(Some("/x/other.so".into()), false)
            .into_iter()
            .collect();
        let canonical = std::fs::canonicalize(&library).unwrap();
        assert_eq!(
            env["LD_PRELOAD"],
            OsString::from(format!("{}:/x/other.so", canonical.display()))
        );
        assert_eq!(env["PYTHONMALLOC"], OsString::from("malloc"));
        assert_eq!(env["LEAKRUN_MALLOC_SAMPLE"], OsString::from((512 * 1024).to_string()));
        let kept: BTreeMap<String, OsString> = probe.environment(None, true).into_iter().collect();
        assert!(!kept.contains_key("PYTHONMALLOC"));
    }
}
