//! Builds the channel layers a scenario names — one per embedded server instance — wrapped in their
//! fault switches when any are on, with what the run needs around them: the backend's version, a
//! private server when no URL was given, a state source that probes what the backend holds, and a
//! shutdown that leaves nothing behind.
//!
//! The memory layer is one object that every instance shares. A Redis or RabbitMQ layer is one
//! object per instance (each has its own receiver, as each server process has in Django Channels),
//! all on one run prefix, so instances deliver to one another through the backend.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::infra::{PrivateRabbitMq, PrivateRedis};
use crate::layer::amqp::{AmqpConfig, AmqpLayer};
use crate::layer::redis::{RedisListsConfig, RedisListsLayer, RedisPubSubConfig, RedisPubSubLayer};
use crate::layer::{ChannelLayer, FaultyLayer, MemoryLayer};
use crate::observe::sampler::{StateReading, StateSource};
use crate::scenario::{BackendKind, Scenario};

/// Where the backend's URL came from when the scenario file gave it.
pub const FROM_SCENARIO: &str = "backend.url";

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
    /// Where the server came from: `backend.url`, `REDIS_URL`, `AMQP_URL`, or a private server.
    pub source: String,
    servers: Vec<ServerLayer>,
    private: Option<PrivateServer>,
}

/// Why a backend could not be built (an infrastructure problem, exit 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// A server leakrun started for this run.
enum PrivateServer {
    Redis(Box<PrivateRedis>),
    RabbitMq(Box<PrivateRabbitMq>),
}

impl PrivateServer {
    async fn start(kind: BackendKind) -> Result<Self, String> {
        match kind {
            BackendKind::Amqp => PrivateRabbitMq::start()
                .await
                .map(|server| PrivateServer::RabbitMq(Box::new(server)))
                .map_err(|e| e.to_string()),
            _ => PrivateRedis::start()
                .await
                .map(|server| PrivateServer::Redis(Box::new(server)))
                .map_err(|e| e.to_string()),
        }
    }

    fn url(&self) -> String {
        match self {
            PrivateServer::Redis(s) => s.url(),
            PrivateServer::RabbitMq(s) => s.url(),
        }
    }

    fn describe(&self) -> String {
        match self {
            PrivateServer::Redis(s) => format!("private redis-server (pid {}) for this run", s.pid()),
            PrivateServer::RabbitMq(s) => format!(
                "private rabbitmq-server (pid {}, epmd pid {}) for this run",
                s.pid(),
                s.epmd_pid()
            ),
        }
    }

    async fn stop(self) {
        match self {
            PrivateServer::Redis(s) => {
                let _ = s.stop().await;
            }
            PrivateServer::RabbitMq(s) => {
                let _ = s.stop().await;
            }
        }
    }
}

/// A layer on a backend server, for probing and shutting down.
#[derive(Clone)]
enum ServerLayer {
    PubSub(Arc<RedisPubSubLayer>),
    Lists(Arc<RedisListsLayer>),
    Amqp(Arc<AmqpLayer>),
}

impl ServerLayer {
    /// What the backend holds for the run: state that must come back down, and reference figures.
    async fn probe(&self) -> Result<StateReading, String> {
        let redis = match self {
            ServerLayer::PubSub(layer) => layer.probe().await,
            ServerLayer::Lists(layer) => layer.probe().await,
            ServerLayer::Amqp(layer) => {
                let probe = layer.probe().await.map_err(|e| e.to_string())?;
                return Ok(StateReading {
                    state: BTreeMap::from([
                        ("amqp_queues".to_string(), probe.queues),
                        ("amqp_messages".to_string(), probe.messages),
                        ("amqp_consumers".to_string(), probe.consumers),
                        ("amqp_exchanges".to_string(), probe.exchanges),
                    ]),
                    info: BTreeMap::new(),
                });
            }
        };
        let probe = redis.map_err(|e| e.to_string())?;
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

    async fn shutdown(&self) {
        match self {
            ServerLayer::PubSub(layer) => layer.shutdown().await,
            ServerLayer::Lists(layer) => layer.shutdown().await,
            ServerLayer::Amqp(layer) => layer.shutdown().await,
        }
    }

    fn as_layer(&self) -> Arc<dyn ChannelLayer> {
        match self {
            ServerLayer::PubSub(layer) => layer.clone(),
            ServerLayer::Lists(layer) => layer.clone(),
            ServerLayer::Amqp(layer) => layer.clone(),
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
                servers: Vec::new(),
                private: None,
            }
        }
        BackendKind::Redis | BackendKind::RedisLists | BackendKind::Amqp => {
            build_on_server(scenario, instances).await?
        }
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

/// Redis or RabbitMQ: the server from the URL, or a private one; a layer per instance on it.
async fn build_on_server(scenario: &Scenario, instances: usize) -> Result<Backend, BackendError> {
    let spec = &scenario.backend;
    let variable = spec.kind.url_variable().unwrap_or_default();
    let program = spec.kind.private_server().unwrap_or_default();
    let (url, source, private) = match &spec.url {
        Some(url) => (
            url.clone(),
            spec.url_source.clone().unwrap_or_else(|| FROM_SCENARIO.into()),
            None,
        ),
        None => {
            let private = PrivateServer::start(spec.kind)
                .await
                .map_err(|e| BackendError(format!("no server for backend.kind = \"{}\": {e}", spec.kind.name())))?;
            (private.url(), private.describe(), Some(private))
        }
    };
    let endpoint = crate::layer::redis::redact(&url);
    let unreachable = |e: &dyn std::fmt::Display| {
        BackendError(format!(
            "{} at {endpoint} (from {source}) is unreachable: {e}; start it, or unset {variable} and remove backend.url to let leakrun start a private {program}",
            if spec.kind == BackendKind::Amqp {
                "RabbitMQ"
            } else {
                "Redis"
            }
        ))
    };
    let prefix = crate::layer::redis::run_prefix();
    let mut servers = Vec::with_capacity(instances);
    let mut version = String::new();
    for _ in 0..instances {
        let layer = match spec.kind {
            BackendKind::Redis => ServerLayer::PubSub(Arc::new(
                RedisPubSubLayer::connect(RedisPubSubConfig::new(&url, &prefix, scenario.server.capacity))
                    .await
                    .map_err(|e| unreachable(&e))?,
            )),
            BackendKind::Amqp => {
                let layer = AmqpLayer::connect(AmqpConfig::new(&url, &prefix, scenario.server.capacity))
                    .await
                    .map_err(|e| unreachable(&e))?;
                if version.is_empty() {
                    version = format!(
                        "rabbitmq {}",
                        layer.broker_version().unwrap_or("(version not reported)")
                    );
                }
                ServerLayer::Amqp(Arc::new(layer))
            }
            _ => {
                let mut config = RedisListsConfig::new(&url, &prefix, scenario.server.capacity)
                    .with_cancel_shared_receive(scenario.server.faults.cancel_shared_receive);
                config.expiry = spec.expiry;
                config.group_expiry = spec.group_expiry;
                ServerLayer::Lists(Arc::new(
                    RedisListsLayer::connect(config).await.map_err(|e| unreachable(&e))?,
                ))
            }
        };
        servers.push(layer);
    }
    if spec.kind.is_redis() {
        let redis = crate::layer::redis::redis_version(&url)
            .await
            .map_err(|e| unreachable(&e))?;
        version = format!("redis {redis}");
    }
    Ok(Backend {
        layers: servers.iter().map(ServerLayer::as_layer).collect(),
        shared: false,
        version,
        endpoint: Some(endpoint),
        source,
        servers,
        private,
    })
}

impl Backend {
    /// A state source reading what the backend itself holds for the run, if it is a server.
    pub fn state_source(&self) -> Option<Box<dyn StateSource>> {
        self.servers.first().map(|layer| {
            Box::new(BackendState {
                layer: layer.clone(),
                endpoint: self.endpoint.clone().unwrap_or_default(),
            }) as Box<dyn StateSource>
        })
    }

    /// Stops the layers' tasks, removes what they hold in the backend, and stops a private server.
    pub async fn shutdown(mut self) {
        for layer in &self.servers {
            layer.shutdown().await;
        }
        self.layers.clear();
        self.servers.clear();
        if let Some(private) = self.private.take() {
            private.stop().await;
        }
    }
}

/// What the backend holds for the run, read for every sample: the run's keys, memberships,
/// subscriptions, queues and queued messages (judged: they must return to their start), and server
/// figures for reference.
struct BackendState {
    layer: ServerLayer,
    endpoint: String,
}

#[async_trait::async_trait]
impl StateSource for BackendState {
    async fn read(&self) -> Result<StateReading, String> {
        let what = match self.layer {
            ServerLayer::Amqp(_) => "RabbitMQ",
            _ => "Redis",
        };
        self.layer
            .probe()
            .await
            .map_err(|e| format!("{what} at {} went away: {e}", self.endpoint))
    }
}
