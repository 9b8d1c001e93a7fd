//! The embedded target: leakrun's own warp server, one or more instances on one channel layer
//! (with the private Redis or RabbitMQ that layer may need), run inside leakrun's process.
//!
//! It offers the most a target can: the exact live heap of the server's own allocations
//! ([`crate::heap`]), the resident set of the process that hosts it, its counters read in-process
//! (the same figures `/stats` serves) and what the backend holds. It is settled when every
//! instance reports zero live connections and the live heap holds still. Its sampled
//! allocations (`server.heap_sample`) name the sites where the heap grew.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{self, Backend};
use crate::heap;
use crate::layer::LayerStats;
use crate::load::{Endpoint, LiveCounters};
use crate::observe::clock::RunClock;
use crate::observe::sampled_sites::{Sampled, SampledSites};
use crate::observe::sampler::{
    HeapReading, HeapSource, MemoryProbe, Probes, Sample, SourceError, StateReading, StateSource,
};
use crate::observe::sites::{ProcessHeap, SiteGrowth, SiteReport};
use crate::results::{BackendInfo, TargetInfo};
use crate::scenario::{EmbeddedSpec, Scenario};
use crate::server::{AppState, CacheSource, EmbeddedServer, ServerFaults, ServerStats};

use super::{JudgedMemory, Target, TargetError, settle};

/// The embedded server instances and their backend.
pub struct Embedded {
    servers: Vec<EmbeddedServer>,
    backend: Backend,
    backend_kind: &'static str,
    rooms: Vec<String>,
    /// The sampled stacks between reports; none when sampling is off or the counting allocator
    /// is not installed.
    sites: Option<std::sync::Mutex<SampledSites>>,
}

/// Allocation sites the reports keep after naming.
const SITES_KEPT: usize = 50;

impl Embedded {
    /// Builds the backend and starts every instance on it.
    pub async fn start(scenario: &Scenario, spec: &EmbeddedSpec) -> Result<Self, TargetError> {
        let backend = backend::build(&scenario.backend, spec).await?;
        let mut servers = Vec::with_capacity(backend.layers.len());
        for (instance, layer) in backend.layers.iter().enumerate() {
            let state = AppState::with_cache(
                layer.clone(),
                spec.max_frame,
                ServerFaults::new(spec.faults.leak_per_connection, spec.faults.hold_per_connection),
                spec.cache,
            );
            let port = match spec.port {
                0 => 0,
                first => first + instance as u16,
            };
            let addr = std::net::SocketAddr::new(spec.host, port);
            match EmbeddedServer::start_on(state, addr).await {
                Ok(server) => servers.push(server),
                Err(source) => {
                    for server in servers {
                        server.stop().await;
                    }
                    backend.shutdown().await;
                    return Err(TargetError::Listen { addr, source });
                }
            }
        }
        let sampling = spec.heap_sample > 0 && heap::figures().is_some();
        heap::set_sample_mean(if sampling { spec.heap_sample } else { 0 });
        heap::set_sample_harness(sampling && std::env::var_os("LEAKRUN_SAMPLE_HARNESS").is_some_and(|v| v == "1"));
        Ok(Self {
            servers,
            backend,
            backend_kind: scenario.backend.kind.name(),
            rooms: scenario.rooms.iter().map(|r| r.name.clone()).collect(),
            sites: sampling.then(|| std::sync::Mutex::new(SampledSites::new())),
        })
    }
}

#[async_trait::async_trait]
impl Target for Embedded {
    fn endpoints(&self) -> Vec<Endpoint> {
        self.servers
            .iter()
            .map(|s| Endpoint::embedded(s.addr, &self.rooms))
            .collect()
    }

    fn probes(&self, clock: RunClock) -> Result<Probes, TargetError> {
        let counters = InProcessCounters {
            states: self.servers.iter().map(|s| s.state.clone()).collect(),
            shared_layer: self.backend.shared,
        };
        let caches = CacheSource::new(self.servers.iter().map(|s| s.state.cache.clone()).collect());
        let mut sources: Vec<Box<dyn StateSource>> = vec![Box::new(counters), Box::new(caches)];
        sources.extend(self.backend.state_source());
        Ok(Probes::new(clock, MemoryProbe::own_process(), sources).with_heap(Box::new(CountedHeap)))
    }

    fn frames_out(&self) -> Option<u64> {
        // Plain counter reads: building full stats would lock the layer on every poll.
        Some(
            self.servers
                .iter()
                .map(|s| LiveCounters::get(&s.state.counters.frames_out))
                .sum(),
        )
    }

    async fn settle(&self, _probes: &Probes, bound: Duration) -> bool {
        let idle = || {
            self.servers
                .iter()
                .all(|s| LiveCounters::get(&s.state.counters.live_connections) == 0)
        };
        settle::until_heap_still(idle, || heap::figures().map(|h| h.server_bytes), bound).await
    }

    async fn heap_sites(&self) -> Result<Option<SiteReport>, SourceError> {
        let (Some(sites), Some(figures)) = (&self.sites, heap::figures()) else {
            return Ok(None);
        };
        let started = std::time::Instant::now();
        let pid = std::process::id();
        let exe = std::env::current_exe().unwrap_or_default();
        let sampled = [Sampled {
            pid,
            region: heap::sampled(),
            exe,
        }];
        let grown = sites.lock().expect("sites lock").report(&sampled);
        Ok(Some(SiteReport {
            bytes: figures.server_bytes,
            blocks: figures.server_blocks,
            processes: vec![ProcessHeap {
                pid,
                bytes: figures.server_bytes,
                blocks: figures.server_blocks,
            }],
            sites: grown,
            took_s: started.elapsed().as_secs_f64(),
        }))
    }

    fn name_sites(&self, lists: Vec<&mut Vec<SiteGrowth>>) {
        if let Some(sites) = &self.sites {
            sites.lock().expect("sites lock").name(lists, SITES_KEPT);
        }
    }

    fn closed_connections(&self) -> Option<u64> {
        Some(
            self.servers
                .iter()
                .map(|s| {
                    let c = &s.state.counters;
                    LiveCounters::get(&c.connections_opened).saturating_sub(LiveCounters::get(&c.live_connections))
                })
                .sum(),
        )
    }

    fn stats(&self) -> Option<ServerStats> {
        Some(aggregate(
            &self.servers.iter().map(|s| s.state.as_ref()).collect::<Vec<_>>(),
            self.backend.shared,
        ))
    }

    fn info(&self, _last: Option<&Sample>) -> TargetInfo {
        let pid = std::process::id();
        TargetInfo {
            kind: "embedded".into(),
            pid,
            started: true,
            command: None,
            memory_source: format!(
                "rss of leakrun's own process (pid {pid}), which hosts the embedded server{}",
                if heap::figures().is_some() {
                    "; its live heap is counted exactly"
                } else {
                    ""
                }
            ),
            cpu_source: Some(format!(
                "leakrun's own process (pid {pid}): the embedded server runs on the same tokio runtime threads as the clients, so its CPU is not told apart"
            )),
            log: None,
            stopped: None,
        }
    }

    fn backend(&self) -> BackendInfo {
        BackendInfo {
            kind: self.backend_kind.into(),
            version: self.backend.version.clone(),
            endpoint: self.backend.endpoint.clone(),
            source: self.backend.source.clone(),
        }
    }

    fn judged_memory(&self, _last: Option<&Sample>) -> JudgedMemory {
        JudgedMemory::Heap {
            what: "live heap".into(),
            exact: true,
        }
    }

    async fn stop(self: Box<Self>) -> Option<String> {
        let Embedded { servers, backend, .. } = *self;
        for server in servers {
            server.stop().await;
        }
        backend.shutdown().await;
        None
    }
}

/// The counting allocator's server domain: the embedded server's exact live heap (none when the
/// binary is built without it).
struct CountedHeap;

#[async_trait::async_trait]
impl HeapSource for CountedHeap {
    async fn read(&self) -> Result<Option<HeapReading>, SourceError> {
        Ok(heap::figures().map(|h| HeapReading {
            bytes: h.server_bytes,
            blocks: Some(h.server_blocks),
            harness_bytes: Some(h.harness_bytes),
            processes: None,
        }))
    }
}

/// The instances' counters as a state source, read in-process (the figures `/stats` serves).
struct InProcessCounters {
    states: Vec<Arc<AppState>>,
    shared_layer: bool,
}

#[async_trait::async_trait]
impl StateSource for InProcessCounters {
    async fn read(&self) -> Result<StateReading, SourceError> {
        let states: Vec<&AppState> = self.states.iter().map(Arc::as_ref).collect();
        Ok(StateReading {
            state: state_series(&aggregate(&states, self.shared_layer)),
            info: Default::default(),
        })
    }
}

/// Server state counters by name: the series a leak verdict requires to return to their start.
fn state_series(stats: &ServerStats) -> std::collections::BTreeMap<String, u64> {
    [
        ("live_connections", stats.live_connections),
        ("groups", stats.layer.groups),
        ("memberships", stats.layer.memberships),
        ("channels", stats.layer.channels),
        ("buffered", stats.layer.buffered),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

/// Counters summed over instances; a layer shared by every instance is counted once.
fn aggregate(states: &[&AppState], shared_layer: bool) -> ServerStats {
    let Some(first) = states.first() else {
        return ServerStats::default();
    };
    let mut stats = first.stats();
    for state in &states[1..] {
        if shared_layer {
            stats.add_counters(&state.counters.snapshot(LayerStats::default()));
        } else {
            let other = state.stats();
            stats.add_counters(&other);
            stats.layer.add(&other.layer);
        }
    }
    stats
}
