//! The server under test, behind one seam.
//!
//! The runner knows only the iteration protocol; everything that differs between kinds of server
//! lives behind [`Target`]: how it starts and is known to be ready, where clients connect, which
//! memory and state sources it offers, how it knows it has settled after an iteration, what it
//! says about itself in the result, and how it stops. Each kind is one file:
//! [`embedded`] (leakrun's warp server on a channel layer, with its private backend services) and
//! [`external`] (a server leakrun starts from a command, or one it watches by pid). A new kind is
//! one new file and one arm in [`start`] (and in the scenario's `ServerSpec`).

pub mod embedded;
pub mod external;
pub mod heap_probe;
pub mod http_probe;
pub mod malloc_heap;
pub mod python_heap;
pub mod settle;

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::load::Endpoint;
use crate::load::template::FrameTemplate;
use crate::observe::clock::RunClock;
use crate::observe::sampler::{Probes, Sample, SourceError};
use crate::observe::sites::SiteReport;
use crate::results::{BackendInfo, TargetInfo};
use crate::scenario::{Scenario, ServerSpec};
use crate::server::ServerStats;

/// Why a target could not be had (an infrastructure problem, exit 3), or was not waited for.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The embedded server's channel layer could not be built.
    #[error(transparent)]
    Backend(Box<crate::backend::BackendError>),
    /// An embedded server instance would not listen.
    #[error("the embedded server would not start on {addr}: {source}")]
    Listen {
        /// The address it was to listen on.
        addr: std::net::SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// An external server could not be started, found or reached.
    #[error(transparent)]
    External(#[from] external::ExternalError),
    /// A signal arrived while the server was starting; it was stopped.
    #[error("interrupted while the server was starting; it was {stopped}")]
    Interrupted {
        /// How it was stopped.
        stopped: String,
    },
}

impl From<crate::backend::BackendError> for TargetError {
    fn from(error: crate::backend::BackendError) -> Self {
        TargetError::Backend(Box::new(error))
    }
}

pub use crate::verdict::leak::JudgedMemory;

/// A server under test for the length of one run.
#[async_trait::async_trait]
pub trait Target: Send + Sync {
    /// Where clients connect: one endpoint per server instance (client `n` takes `n % len`).
    fn endpoints(&self) -> Vec<Endpoint>;

    /// Put before every HTTP workload's path (the path of an external `http_url`).
    fn http_prefix(&self) -> &str {
        ""
    }

    /// How a frame wraps the envelope token.
    fn frame_template(&self) -> FrameTemplate {
        FrameTemplate::bare()
    }

    /// The memory probe and state sources samples are read from.
    fn probes(&self, clock: RunClock) -> Result<Probes, TargetError>;

    /// Frames the server has written so far, when it counts them: a drain waits until these and
    /// the clients' receipts stop moving.
    fn frames_out(&self) -> Option<u64> {
        None
    }

    /// Waits until the server has settled after its clients left, at most `bound`.
    async fn settle(&self, probes: &Probes, bound: Duration) -> bool;

    /// Connections the server has seen closed so far, when it counts them (else the runner counts
    /// the clients' sessions).
    fn closed_connections(&self) -> Option<u64> {
        None
    }

    /// The server's own counters now, when it is leakrun's.
    fn stats(&self) -> Option<ServerStats> {
        None
    }

    /// What the result says of the target; `last` is the latest "after" sample, if any.
    fn info(&self, last: Option<&Sample>) -> TargetInfo;

    /// What the result says of the channel layer or services behind it.
    fn backend(&self) -> BackendInfo;

    /// The memory series the leak verdict judges; `last` as for [`info`](Self::info).
    fn judged_memory(&self, last: Option<&Sample>) -> JudgedMemory;

    /// Where the server's heap grew since the last call, when a heap probe can tell: asked after
    /// each iteration has settled (never under load) and once before the first, which sets the
    /// baseline.
    async fn heap_sites(&self) -> Result<Option<SiteReport>, SourceError> {
        Ok(None)
    }

    /// Names the sites the reports of [`heap_sites`](Self::heap_sites) left raw (a native
    /// sampler's stacks), once, after the last iteration: loading debug info under way would
    /// read as resident memory growing.
    fn name_sites(&self, _lists: Vec<&mut Vec<crate::observe::sites::SiteGrowth>>) {}

    /// Stops what leakrun started for the target; says how the server ended, when that is worth
    /// recording.
    async fn stop(self: Box<Self>) -> Option<String>;
}

/// Starts (or finds) the server `scenario` names and waits until it is ready, or until `cancel`.
/// A started external server's output goes to a log in `out_dir`.
pub async fn start(
    scenario: &Scenario,
    out_dir: &Path,
    cancel: &CancellationToken,
) -> Result<Box<dyn Target>, TargetError> {
    Ok(match &scenario.server {
        ServerSpec::Embedded(spec) => Box::new(embedded::Embedded::start(scenario, spec).await?),
        ServerSpec::External(spec) => Box::new(external::External::start(scenario, spec, out_dir, cancel).await?),
    })
}
