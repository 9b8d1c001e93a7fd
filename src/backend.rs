//! Builds the channel layers a scenario names — one per embedded server instance — wrapped in their
//! fault switches when any are on, with what the run needs around them: the backend's version, a
//! private server when no URL was given, a state source that probes what the backend holds, and a
//! shutdown that leaves nothing behind.
//!
//! The memory layer is one object that every instance shares. A Redis or RabbitMQ layer is one
//! object per instance (each has its own receiver, as each server process has in Django Channels),
//! all on one run prefix, so instances deliver to one another through the backend.

use std::sync::Arc;

use crate::infra::{PrivateRabbitMq, PrivateRedis};
use crate::layer::amqp::{AmqpConfig, AmqpLayer};
use crate::layer::redis::{RedisListsConfig, RedisListsLayer, RedisPubSubConfig, RedisPubSubLayer};
use crate::layer::{ChannelLayer, FaultyLayer, MemoryLayer, ServerError, ServerLayer};
use crate::observe::sampler::{SourceError, StateReading, StateSource};
use crate::results::BackendInfo;
use crate::scenario::{BackendKind, BackendSpec, EmbeddedSpec};

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
    servers: Vec<Arc<dyn ServerLayer>>,
    private: Option<PrivateServer>,
}

/// Why a backend could not be built (an infrastructure problem, exit 3).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No URL was given and the private server would not start.
    #[error("no server for backend.kind = \"{kind}\": {source}")]
    NoPrivateServer {
        /// The backend kind.
        kind: &'static str,
        /// Why the private server would not start.
        source: PrivateServerError,
    },
    /// The server at the URL does not answer.
    #[error(
        "{what} at {endpoint} (from {origin}) is unreachable: {cause}; start it, or unset {variable} and remove backend.url to let leakrun start a private {program}"
    )]
    Unreachable {
        /// `Redis` or `RabbitMQ`.
        what: &'static str,
        /// The URL, credentials removed.
        endpoint: String,
        /// Where the URL came from.
        origin: String,
        /// What the client said.
        cause: ServerError,
        /// The environment variable that could name another URL.
        variable: &'static str,
        /// The private server leakrun would start instead.
        program: &'static str,
    },
}

/// Why a private backend server would not start.
#[derive(Debug, thiserror::Error)]
pub enum PrivateServerError {
    /// redis-server.
    #[error(transparent)]
    Redis(#[from] crate::infra::RedisServerError),
    /// rabbitmq-server.
    #[error(transparent)]
    RabbitMq(#[from] crate::infra::RabbitMqServerError),
}

/// A server leakrun started for this run.
enum PrivateServer {
    Redis(Box<PrivateRedis>),
    RabbitMq(Box<PrivateRabbitMq>),
}

impl PrivateServer {
    async fn start(kind: BackendKind) -> Result<Self, PrivateServerError> {
        Ok(match kind {
            BackendKind::Amqp => PrivateServer::RabbitMq(Box::new(PrivateRabbitMq::start().await?)),
            _ => PrivateServer::Redis(Box::new(PrivateRedis::start().await?)),
        })
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

/// Builds the layers for the embedded server instances of `server` on `spec`.
pub async fn build(spec: &BackendSpec, server: &EmbeddedSpec) -> Result<Backend, BackendError> {
    let instances = server.instances.max(1);
    let capacity = server.capacity;
    let mut backend = match spec.kind {
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
            build_on_server(spec, server, instances).await?
        }
    };
    let faults = &server.faults;
    if faults.drop_one_in.is_some() || faults.keep_membership_on_disconnect || faults.delay_group_send.is_some() {
        let wrap = |layer: Arc<dyn ChannelLayer>| -> Arc<dyn ChannelLayer> {
            Arc::new(
                FaultyLayer::new(layer, faults.drop_one_in, faults.keep_membership_on_disconnect)
                    .with_send_delay(faults.delay_group_send),
            )
        };
        backend.layers = if backend.shared {
            vec![wrap(backend.layers[0].clone()); instances]
        } else {
            backend.layers.drain(..).map(wrap).collect()
        };
    }
    Ok(backend)
}

/// The server a Redis or RabbitMQ kind runs on: the one its URL names, or a private one leakrun
/// starts; with where it came from.
async fn obtain(spec: &BackendSpec) -> Result<(String, String, Option<PrivateServer>), BackendError> {
    Ok(match &spec.url {
        Some(url) => (
            url.clone(),
            spec.url_source.clone().unwrap_or_else(|| FROM_SCENARIO.into()),
            None,
        ),
        None => {
            let private = PrivateServer::start(spec.kind)
                .await
                .map_err(|source| BackendError::NoPrivateServer {
                    kind: spec.kind.name(),
                    source,
                })?;
            (private.url(), private.describe(), Some(private))
        }
    })
}

/// The error for a server at `endpoint` (from `origin`) that does not answer.
fn unreachable(spec: &BackendSpec, endpoint: &str, origin: &str, cause: ServerError) -> BackendError {
    BackendError::Unreachable {
        what: spec.kind.server_name(),
        endpoint: endpoint.to_string(),
        origin: origin.to_string(),
        cause,
        variable: spec.kind.url_variable().unwrap_or_default(),
        program: spec.kind.private_server().unwrap_or_default(),
    }
}

/// Redis or RabbitMQ: the server from the URL, or a private one; a layer per instance on it.
async fn build_on_server(spec: &BackendSpec, server: &EmbeddedSpec, instances: usize) -> Result<Backend, BackendError> {
    let (url, source, private) = obtain(spec).await?;
    let endpoint = crate::naming::redact(&url);
    let unreachable = |cause: ServerError| unreachable(spec, &endpoint, &source, cause);
    let prefix = crate::naming::run_prefix();
    let mut servers = Vec::with_capacity(instances);
    for _ in 0..instances {
        servers.push(connect(spec, server, &url, &prefix).await.map_err(unreachable)?);
    }
    let version = match servers.first() {
        Some(layer) => layer.server_version().await.map_err(unreachable)?,
        None => String::new(),
    };
    Ok(Backend {
        layers: servers
            .iter()
            .map(|layer| layer.clone() as Arc<dyn ChannelLayer>)
            .collect(),
        shared: false,
        version,
        endpoint: Some(endpoint),
        source,
        servers,
        private,
    })
}

/// One layer object on the server at `url`, for one server instance: the one place that knows
/// which layer each server-backed kind is.
async fn connect(
    spec: &BackendSpec,
    server: &EmbeddedSpec,
    url: &str,
    prefix: &str,
) -> Result<Arc<dyn ServerLayer>, ServerError> {
    let capacity = server.capacity;
    Ok(match spec.kind {
        BackendKind::Redis => Arc::new(RedisPubSubLayer::connect(RedisPubSubConfig::new(url, prefix, capacity)).await?),
        BackendKind::Amqp => Arc::new(AmqpLayer::connect(AmqpConfig::new(url, prefix, capacity)).await?),
        BackendKind::Memory => return Err("the in-process layer has no server to connect to".into()),
        BackendKind::RedisLists => {
            let mut config = RedisListsConfig::new(url, prefix, capacity)
                .with_cancel_shared_receive(server.faults.cancel_shared_receive);
            config.expiry = spec.expiry;
            config.group_expiry = spec.group_expiry;
            Arc::new(RedisListsLayer::connect(config).await?)
        }
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
    layer: Arc<dyn ServerLayer>,
    endpoint: String,
}

#[async_trait::async_trait]
impl StateSource for BackendState {
    async fn read(&self) -> Result<StateReading, SourceError> {
        self.layer.held().await.map_err(|cause| SourceError::Backend {
            what: self.layer.server_name(),
            endpoint: self.endpoint.clone(),
            cause: Arc::from(cause),
        })
    }
}

/// A service an external server needs (`[backend] kind = "redis"` or `"amqp"` with an external
/// target): the server its URL names, or a private one leakrun starts and stops; its URL goes to
/// the server's command, and what it holds is probed as state series.
pub struct Service {
    kind: BackendKind,
    url: String,
    endpoint: String,
    source: String,
    version: String,
    variable: String,
    private: Option<PrivateServer>,
}

impl Service {
    /// The service `spec` names, answering; `None` for the in-process kind (no service).
    pub async fn obtain(spec: &BackendSpec) -> Result<Option<Self>, BackendError> {
        if spec.kind == BackendKind::Memory {
            return Ok(None);
        }
        let (url, source, private) = obtain(spec).await?;
        let endpoint = crate::naming::redact(&url);
        let version = match spec.kind {
            BackendKind::Amqp => {
                let version = crate::layer::amqp::broker_version_of(&url)
                    .await
                    .ok_or_else(|| unreachable(spec, &endpoint, &source, "no AMQP handshake".into()))?;
                format!("rabbitmq {version}")
            }
            _ => {
                let version = crate::layer::redis::redis_version(&url)
                    .await
                    .map_err(|e| unreachable(spec, &endpoint, &source, e.into()))?;
                format!("redis {version}")
            }
        };
        let variable = spec
            .url_env
            .clone()
            .unwrap_or_else(|| spec.kind.url_variable().unwrap_or_default().to_string());
        Ok(Some(Self {
            kind: spec.kind,
            url,
            endpoint,
            source,
            version,
            variable,
            private,
        }))
    }

    /// The variable the server's command gets, and the URL in it.
    pub fn environment(&self) -> (&str, &str) {
        (&self.variable, &self.url)
    }

    /// What the result says of the service.
    pub fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: self.kind.name().into(),
            version: self.version.clone(),
            endpoint: Some(self.endpoint.clone()),
            source: format!("{}, passed to the server as {}", self.source, self.variable),
        }
    }

    /// What the service holds, read for every sample; none for RabbitMQ (its queues are listed
    /// only by the management API, which a private broker does not run).
    pub fn state_source(&self) -> Option<Box<dyn StateSource>> {
        matches!(self.kind, BackendKind::Redis | BackendKind::RedisLists).then(|| {
            Box::new(ServiceState {
                url: self.url.clone(),
                endpoint: self.endpoint.clone(),
            }) as Box<dyn StateSource>
        })
    }

    /// Stops a private server; a service the URL named is left as it is.
    pub async fn shutdown(self) {
        if let Some(private) = self.private {
            private.stop().await;
        }
    }
}

/// A Redis an external server uses, read from outside: its group members (channels_redis keeps a
/// group as a sorted set whose name holds `group`), judged — they must return to their start when
/// every client is gone — and its keys, memory and clients for reference.
struct ServiceState {
    url: String,
    endpoint: String,
}

#[async_trait::async_trait]
impl StateSource for ServiceState {
    async fn read(&self) -> Result<StateReading, SourceError> {
        crate::layer::redis::probe_service(&self.url)
            .await
            .map(|probe| probe.reading())
            .map_err(|e| SourceError::Backend {
                what: "Redis",
                endpoint: self.endpoint.clone(),
                cause: Arc::new(e),
            })
    }
}
