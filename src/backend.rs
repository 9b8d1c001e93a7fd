//! Builds the channel layers a scenario names — one per embedded server instance — wrapped in their
//! fault switches when any are on, with what the run needs around them: the backend's version, a
//! private server when no URL was given, a state source that probes what the backend holds, and a
//! shutdown that leaves nothing behind.
//!
//! The memory layer is one object that every instance shares. A Redis layer is one object per
//! instance (each has its own shared receiver, as each server process has in channels_redis), all on
//! one key prefix, so instances deliver to one another through Redis.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::infra::PrivateRedis;
use crate::layer::redis::{RedisListsConfig, RedisListsLayer, RedisProbe, RedisPubSubConfig, RedisPubSubLayer};
use crate::layer::{ChannelLayer, FaultyLayer, MemoryLayer};
use crate::observe::sampler::{StateReading, StateSource};
use crate::scenario::{BackendKind, Scenario};

/// Where the backend's URL came from.
pub const FROM_SCENARIO: &str = "backend.url";
/// The environment variable that names a Redis for the Redis layers.
pub const REDIS_URL: &str = "REDIS_URL";

/// A built backend and what to report about it.
pub struct Backend {
    /// The layer of each server instance (the same object for all when the layer is shared).
    pub layers: Vec<Arc<dyn ChannelLayer>>,
    /// One layer object serves every instance, so its state is counted once, not per instance.
    pub shared: bool,
    /// Name and version for the results.
    pub version: String,
    /// The server used, credentials removed; none for the in-process layer.
    pub endpoint: Option<String>,
    /// Where the server came from: `backend.url`, `REDIS_URL`, or a private server.
    pub source: String,
    redis: Vec<RedisLayer>,
    private: Option<PrivateRedis>,
}

/// Why a backend could not be built (an infrastructure problem, exit 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// A Redis layer of either design, for probing and shutting down.
#[derive(Clone)]
enum RedisLayer {
    PubSub(Arc<RedisPubSubLayer>),
    Lists(Arc<RedisListsLayer>),
}

impl RedisLayer {
    async fn probe(&self) -> Result<RedisProbe, String> {
        match self {
            RedisLayer::PubSub(layer) => layer.probe().await,
            RedisLayer::Lists(layer) => layer.probe().await,
        }
        .map_err(|e| e.to_string())
    }

    async fn shutdown(&self) {
        match self {
            RedisLayer::PubSub(layer) => layer.shutdown().await,
            RedisLayer::Lists(layer) => layer.shutdown().await,
        }
    }

    fn as_layer(&self) -> Arc<dyn ChannelLayer> {
        match self {
            RedisLayer::PubSub(layer) => layer.clone(),
            RedisLayer::Lists(layer) => layer.clone(),
        }
    }
}

/// Builds the layers for `scenario`'s server instances.
pub async fn build(scenario: &Scenario) -> Result<Backend, BackendError> {
    let instances = scenario.server.instances.max(1);
    let capacity = scenario.server.capacity;
    let mut backend = match scenario.backend.kind {
        BackendKind::Memory => {
            let layer: Arc<dyn ChannelLayer> = Arc::new(MemoryLayer::new(capacity));
            Backend {
                layers: vec![layer; instances],
                shared: true,
                version: format!("in-process (leakrun {})", env!("CARGO_PKG_VERSION")),
                endpoint: None,
                source: "in-process".into(),
                redis: Vec::new(),
                private: None,
            }
        }
        BackendKind::Redis | BackendKind::RedisLists => build_redis(scenario, instances).await?,
    };
    let faults = &scenario.server.faults;
    if faults.drop_one_in.is_some() || faults.keep_membership_on_disconnect {
        let wrap = |layer: Arc<dyn ChannelLayer>| -> Arc<dyn ChannelLayer> {
            Arc::new(FaultyLayer::new(
                layer,
                faults.drop_one_in,
                faults.keep_membership_on_disconnect,
            ))
        };
        backend.layers = if backend.shared {
            vec![wrap(backend.layers[0].clone()); instances]
        } else {
            backend.layers.drain(..).map(wrap).collect()
        };
    }
    Ok(backend)
}

async fn build_redis(scenario: &Scenario, instances: usize) -> Result<Backend, BackendError> {
    let spec = &scenario.backend;
    let (url, source, private) = match &spec.url {
        Some(url) => (
            url.clone(),
            spec.url_source.clone().unwrap_or_else(|| FROM_SCENARIO.into()),
            None,
        ),
        None => {
            let private = PrivateRedis::start()
                .await
                .map_err(|e| BackendError(format!("no Redis for backend.kind = \"{}\": {e}", spec.kind.name())))?;
            let source = format!("private redis-server (pid {}) for this run", private.pid());
            (private.url(), source, Some(private))
        }
    };
    let endpoint = crate::layer::redis::redact(&url);
    let unreachable = |e: &dyn std::fmt::Display| {
        BackendError(format!(
            "Redis at {endpoint} (from {source}) is unreachable: {e}; start it, or unset {REDIS_URL} and remove backend.url to let leakrun start a private redis-server"
        ))
    };
    let version = crate::layer::redis::redis_version(&url)
        .await
        .map_err(|e| unreachable(&e))?;
    let prefix = crate::layer::redis::run_prefix();
    let mut redis = Vec::with_capacity(instances);
    for _ in 0..instances {
        let layer = match spec.kind {
            BackendKind::Redis => RedisLayer::PubSub(Arc::new(
                RedisPubSubLayer::connect(RedisPubSubConfig::new(&url, &prefix, scenario.server.capacity))
                    .await
                    .map_err(|e| unreachable(&e))?,
            )),
            _ => {
                let mut config = RedisListsConfig::new(&url, &prefix, scenario.server.capacity)
                    .with_cancel_shared_receive(scenario.server.faults.cancel_shared_receive);
                config.expiry = spec.expiry;
                config.group_expiry = spec.group_expiry;
                RedisLayer::Lists(Arc::new(
                    RedisListsLayer::connect(config).await.map_err(|e| unreachable(&e))?,
                ))
            }
        };
        redis.push(layer);
    }
    Ok(Backend {
        layers: redis.iter().map(RedisLayer::as_layer).collect(),
        shared: false,
        version: format!("redis {version}"),
        endpoint: Some(endpoint),
        source,
        redis,
        private,
    })
}

impl Backend {
    /// A state source reading what the backend itself holds for the run, if it is a server.
    pub fn state_source(&self) -> Option<Box<dyn StateSource>> {
        self.redis.first().map(|layer| {
            Box::new(RedisState {
                layer: layer.clone(),
                endpoint: self.endpoint.clone().unwrap_or_default(),
            }) as Box<dyn StateSource>
        })
    }

    /// Stops the layers' tasks, removes what they hold in the backend, and stops a private server.
    pub async fn shutdown(mut self) {
        for layer in &self.redis {
            layer.shutdown().await;
        }
        self.layers.clear();
        self.redis.clear();
        if let Some(private) = self.private.take() {
            let _ = private.stop().await;
        }
    }
}

/// The run's keys, memberships and subscriptions in Redis (judged: they must return to their
/// start), and the server's memory and client counts (for reference).
struct RedisState {
    layer: RedisLayer,
    endpoint: String,
}

#[async_trait::async_trait]
impl StateSource for RedisState {
    async fn read(&self) -> Result<StateReading, String> {
        let probe = self
            .layer
            .probe()
            .await
            .map_err(|e| format!("Redis at {} went away: {e}", self.endpoint))?;
        Ok(StateReading {
            state: BTreeMap::from([
                ("redis_keys".to_string(), probe.keys),
                ("redis_groups".to_string(), probe.groups),
                ("redis_memberships".to_string(), probe.memberships),
                ("redis_subscribers".to_string(), probe.subscribers),
            ]),
            info: BTreeMap::from([
                ("redis_used_memory_bytes".to_string(), probe.used_memory),
                ("redis_connected_clients".to_string(), probe.connected_clients),
                ("redis_blocked_clients".to_string(), probe.blocked_clients),
            ]),
        })
    }
}
