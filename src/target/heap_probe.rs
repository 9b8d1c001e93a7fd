//! The heap probe leakrun adds to an external server it starts (`server.heap`): one face for the
//! Python probe ([`python_heap`](super::python_heap)) and the preloaded allocator
//! ([`malloc_heap`](super::malloc_heap)), so the external target handles either the same way.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use super::JudgedMemory;
use super::malloc_heap::{MallocError, MallocHeap};
use super::python_heap::{ProbeError, PythonHeap};
use crate::observe::sampler::{HeapSource, SourceError};
use crate::observe::sites::{SiteGrowth, SiteReport};
use crate::scenario::{CommandSpec, HeapProbe};

/// Why a heap probe could not be had or does not see the server.
#[derive(Debug, thiserror::Error)]
pub enum HeapProbeError {
    /// The Python probe.
    #[error(transparent)]
    Python(#[from] ProbeError),
    /// The preloaded allocator.
    #[error(transparent)]
    Malloc(#[from] MallocError),
}

/// A heap probe for one run.
#[derive(Clone)]
pub enum HeapProbeHandle {
    /// tracemalloc in every Python process.
    Python(Arc<PythonHeap>),
    /// The preloaded counting allocator.
    Malloc(Arc<MallocHeap>),
}

impl HeapProbeHandle {
    /// The probe `command` asks for, prepared (none for `heap = "none"`).
    pub fn prepare(command: &CommandSpec) -> Result<Option<Self>, HeapProbeError> {
        Ok(match command.heap.probe {
            HeapProbe::None => None,
            HeapProbe::Python => Some(Self::Python(Arc::new(PythonHeap::prepare(command.heap)?))),
            HeapProbe::Malloc => Some(Self::Malloc(Arc::new(MallocHeap::prepare(command.heap)?))),
        })
    }

    /// The variables the command gets, given what it would have had.
    pub fn environment(&self, command: &CommandSpec) -> Vec<(String, OsString)> {
        let inherited = |name: &str| {
            command
                .env
                .get(name)
                .map(OsString::from)
                .or_else(|| std::env::var_os(name))
        };
        match self {
            Self::Python(heap) => heap.environment(inherited("PYTHONPATH")),
            Self::Malloc(heap) => heap.environment(inherited("LD_PRELOAD"), inherited("PYTHONMALLOC").is_some()),
        }
    }

    /// A folder made for the server's processes, which must not outlive the run (the preloaded
    /// heap's shared-memory pages).
    pub fn folder(&self) -> Option<&std::path::Path> {
        match self {
            Self::Python(_) => None,
            Self::Malloc(heap) => Some(heap.folder()),
        }
    }

    /// Waits, at most `bound` after readiness, until the probe sees the server `pid`, which
    /// serves on `port`.
    pub async fn wait_ready(&self, pid: u32, port: u16, bound: Duration) -> Result<(), HeapProbeError> {
        match self {
            Self::Python(heap) => Ok(heap.wait_for_answer(bound).await?),
            Self::Malloc(heap) => Ok(heap.verify(pid, port, bound).await?),
        }
    }

    /// The heap series' source.
    pub fn source(&self) -> Box<dyn HeapSource> {
        match self {
            Self::Python(heap) => Box::new(heap.clone()),
            Self::Malloc(heap) => Box::new(heap.clone()),
        }
    }

    /// Where the heap grew since the last call.
    pub async fn sites(&self) -> Result<SiteReport, SourceError> {
        match self {
            Self::Python(heap) => heap.sites().await,
            Self::Malloc(heap) => Ok(heap.sites()),
        }
    }

    /// Names what the reports left raw (the preloaded allocator's stacks), once, at the end.
    pub fn name_sites(&self, lists: Vec<&mut Vec<SiteGrowth>>) {
        if let Self::Malloc(heap) = self {
            heap.name_sites(lists);
        }
    }

    /// The judged memory series, in words, for a server `pid` whose figures sum `processes`.
    pub fn judged(&self, pid: u32, processes: u32) -> JudgedMemory {
        let more = match processes {
            0 | 1 => String::new(),
            2 => " and 1 more process".into(),
            n => format!(" and {} more processes", n - 1),
        };
        match self {
            Self::Python(_) => JudgedMemory::Heap {
                what: format!("traced Python heap (tracemalloc in pid {pid}{more})"),
                exact: false,
            },
            Self::Malloc(_) => JudgedMemory::Heap {
                what: format!("live malloc heap (leakrun's preloaded allocator in pid {pid}{more})"),
                // Exact, but in another process: `exact` names leakrun's own.
                exact: false,
            },
        }
    }
}
