//! Channel layers on a real Redis, with the `redis` crate: the backends a Redis-based chat server
//! actually runs on, so leakrun can reproduce the bugs that only show up there.
//!
//! - [`RedisPubSubLayer`]: PUBLISH/SUBSCRIBE, one shared subscriber connection per instance.
//! - [`RedisListsLayer`]: the channels_redis core layer (a sorted set per group, ONE inbox per
//!   instance holding one entry per `group_send` for all its target channels, one shared
//!   blocking receive per instance), with the issue-1683 fault switch.
//!
//! Every key and Redis channel carries the run's prefix (see [`crate::naming::run_prefix`]) so runs sharing a
//! Redis never see each other. `stats()` is a local, synchronous read of one instance (its open
//! channels, the memberships made through it, its counters), so the figures of several instances
//! add up; what Redis itself holds (memory, keys, membership sets, subscriptions) comes from the
//! async `probe()` on each layer, which is where a leak left in the backend shows.
//!
//! Each layer has an async `shutdown()` that stops its tasks, removes what the instance still
//! holds in Redis (the memberships made through it and, for the lists layer, its inbox) and
//! closes its connections; dropping a layer aborts its tasks too.

/// The one [`crate::layer::ServerLayer`] impl both Redis layers share: what the server holds for
/// the run comes from the layer's own probe, the version from its connection.
macro_rules! redis_server_layer {
    ($layer:ty) => {
        #[async_trait::async_trait]
        impl crate::layer::ServerLayer for $layer {
            fn server_name(&self) -> &'static str {
                "Redis"
            }

            async fn server_version(&self) -> Result<String, crate::layer::ServerError> {
                let mut conn = self.conn()?;
                Ok(format!("redis {}", super::version_on(&mut conn).await?))
            }

            async fn held(&self) -> Result<crate::observe::sampler::StateReading, crate::layer::ServerError> {
                Ok(self.probe().await?.reading())
            }

            async fn shutdown(&self) {
                <$layer>::shutdown(self).await;
            }
        }
    };
}

pub mod lists;
pub mod pubsub;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use crate::naming::run_prefix;
pub(crate) use crate::naming::{redact, unique_id};

use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};

pub use lists::{RedisListsConfig, RedisListsLayer};
pub use pubsub::{RedisPubSubConfig, RedisPubSubLayer};

use super::LayerError;

/// How long any single Redis operation may take before it fails.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Most SCAN steps one probe takes (each asks for 1,000 keys).
const MAX_SCAN_STEPS: usize = 10_000;

/// Why a Redis layer could not be built or probed.
#[derive(Debug, thiserror::Error)]
pub enum RedisLayerError {
    /// The URL does not parse.
    #[error("invalid Redis URL {url}: {source}")]
    Url {
        /// The URL, without credentials.
        url: String,
        /// What the client said.
        source: redis::RedisError,
    },
    /// Connecting failed.
    #[error("cannot connect to Redis at {url} ({purpose}): {source}")]
    Connect {
        /// The URL, without credentials.
        url: String,
        /// Which connection it was.
        purpose: &'static str,
        /// What the client said.
        source: redis::RedisError,
    },
    /// A command failed.
    #[error("Redis {op} failed: {source}")]
    Command {
        /// The operation.
        op: String,
        /// What the client said.
        source: redis::RedisError,
    },
    /// A command did not answer in time.
    #[error("Redis {op} timed out after {} s", OP_TIMEOUT.as_secs())]
    Timeout {
        /// The operation.
        op: String,
    },
    /// Redis answered something this code does not understand.
    #[error("unexpected Redis reply to {op}: {detail}")]
    Reply {
        /// The operation.
        op: String,
        /// What was wrong.
        detail: String,
    },
    /// The layer was shut down or its shared connection is gone.
    #[error("Redis layer is closed: {0}")]
    Closed(String),
}

impl From<RedisLayerError> for LayerError {
    fn from(error: RedisLayerError) -> Self {
        LayerError::Backend(error.to_string())
    }
}

/// What Redis holds for one run: the figures leakrun turns into leak series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RedisProbe {
    /// `used_memory` from INFO memory, bytes.
    pub used_memory: u64,
    /// Keys whose name starts with the run's prefix (counted with SCAN), less the run-wide
    /// sequence counter the lists layer keeps for itself.
    pub keys: u64,
    /// Group keys (membership sets) under the run's prefix.
    pub groups: u64,
    /// Memberships stored in Redis across those groups.
    pub memberships: u64,
    /// Subscriptions to the run's pub/sub channels (PUBSUB NUMSUB summed), all instances.
    pub subscribers: u64,
    /// Pattern subscriptions on the whole server (PUBSUB NUMPAT).
    pub pattern_subscribers: u64,
    /// Client connections on the whole server (INFO clients).
    pub connected_clients: u64,
    /// Clients blocked in a command such as BZPOPMIN (INFO clients).
    pub blocked_clients: u64,
}

impl RedisProbe {
    /// The probe as series: the run's keys, groups, memberships and subscriptions must return to
    /// their start; the server's memory and client counts are for reference.
    pub fn reading(&self) -> crate::observe::sampler::StateReading {
        use std::collections::BTreeMap;
        crate::observe::sampler::StateReading {
            state: BTreeMap::from([
                ("redis_keys".to_string(), self.keys),
                ("redis_groups".to_string(), self.groups),
                ("redis_memberships".to_string(), self.memberships),
                ("redis_subscribers".to_string(), self.subscribers),
            ]),
            info: BTreeMap::from([
                ("redis_used_memory_bytes".to_string(), self.used_memory),
                ("redis_connected_clients".to_string(), self.connected_clients),
                ("redis_blocked_clients".to_string(), self.blocked_clients),
            ]),
        }
    }
}

/// What a Redis that an external server uses holds, read from outside: nothing of leakrun's runs
/// on it, so it is counted whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceProbe {
    /// Keys in the database (DBSIZE).
    pub keys: u64,
    /// Sorted sets whose name holds `group` (channels_redis keeps a group as one).
    pub groups: u64,
    /// Members across those sets: every connection still in a group.
    pub group_members: u64,
    /// `used_memory` from INFO memory, bytes.
    pub used_memory: u64,
    /// Client connections (INFO clients).
    pub connected_clients: u64,
}

impl ServiceProbe {
    /// The probe as series: group members must return to their start when every client is gone;
    /// keys (messages for closed channels wait for their expiry), memory and clients are for
    /// reference.
    pub fn reading(&self) -> crate::observe::sampler::StateReading {
        use std::collections::BTreeMap;
        crate::observe::sampler::StateReading {
            state: BTreeMap::from([("redis_group_members".to_string(), self.group_members)]),
            info: BTreeMap::from([
                ("redis_keys".to_string(), self.keys),
                ("redis_groups".to_string(), self.groups),
                ("redis_used_memory_bytes".to_string(), self.used_memory),
                ("redis_connected_clients".to_string(), self.connected_clients),
            ]),
        }
    }
}

/// Probes the Redis at `url` as a service an external server uses (see [`ServiceProbe`]); the
/// scan is bounded in steps and time.
pub async fn probe_service(url: &str) -> Result<ServiceProbe, RedisLayerError> {
    let client = open_client(url)?;
    let mut conn = connect(&client, url, "probe", OP_TIMEOUT).await?;
    let memory: String = query(&mut conn, "INFO memory", redis::cmd("INFO").arg("memory")).await?;
    let clients: String = query(&mut conn, "INFO clients", redis::cmd("INFO").arg("clients")).await?;
    let number = |info: &str, field: &str| info_field(info, field).and_then(|v| v.parse::<u64>().ok());
    let mut probe = ServiceProbe {
        keys: query(&mut conn, "DBSIZE", &redis::cmd("DBSIZE")).await?,
        used_memory: number(&memory, "used_memory").unwrap_or_default(),
        connected_clients: number(&clients, "connected_clients").unwrap_or_default(),
        ..ServiceProbe::default()
    };
    let started = Instant::now();
    let mut cursor: u64 = 0;
    let mut group_keys: Vec<String> = Vec::new();
    for _ in 0..MAX_SCAN_STEPS {
        let (next, keys): (u64, Vec<String>) = query(
            &mut conn,
            "SCAN",
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("*group*")
                .arg("TYPE")
                .arg("zset")
                .arg("COUNT")
                .arg(1000),
        )
        .await?;
        group_keys.extend(keys);
        cursor = next;
        if cursor == 0 || started.elapsed() > OP_TIMEOUT {
            break;
        }
    }
    probe.groups = group_keys.len() as u64;
    for chunk in group_keys.chunks(500) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("ZCARD").arg(key);
        }
        let sizes: Vec<u64> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| command_error("ZCARD", e))?;
        probe.group_members += sizes.iter().sum::<u64>();
    }
    Ok(probe)
}

/// The server's version, from INFO server (`redis_version`).
pub async fn redis_version(url: &str) -> Result<String, RedisLayerError> {
    let client = open_client(url)?;
    let mut conn = connect(&client, url, "version", OP_TIMEOUT).await?;
    version_on(&mut conn).await
}

/// The server's version over an open connection.
pub(crate) async fn version_on(conn: &mut MultiplexedConnection) -> Result<String, RedisLayerError> {
    let info: String = query(conn, "INFO server", redis::cmd("INFO").arg("server")).await?;
    info_field(&info, "redis_version").ok_or_else(|| RedisLayerError::Reply {
        op: "INFO server".into(),
        detail: "no redis_version field".into(),
    })
}

pub(crate) fn open_client(url: &str) -> Result<redis::Client, RedisLayerError> {
    redis::Client::open(url).map_err(|source| RedisLayerError::Url {
        url: redact(url),
        source,
    })
}

/// A multiplexed connection whose every request fails after `response_timeout`.
pub(crate) async fn connect(
    client: &redis::Client,
    url: &str,
    purpose: &'static str,
    response_timeout: Duration,
) -> Result<MultiplexedConnection, RedisLayerError> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(OP_TIMEOUT))
        .set_response_timeout(Some(response_timeout));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|source| RedisLayerError::Connect {
            url: redact(url),
            purpose,
            source,
        })
}

/// Runs `cmd`, naming `op` in any error.
pub(crate) async fn query<T: redis::FromRedisValue>(
    conn: &mut MultiplexedConnection,
    op: &str,
    cmd: &redis::Cmd,
) -> Result<T, RedisLayerError> {
    cmd.query_async(conn).await.map_err(|source| command_error(op, source))
}

pub(crate) fn command_error(op: &str, source: redis::RedisError) -> RedisLayerError {
    if source.is_timeout() {
        RedisLayerError::Timeout { op: op.to_string() }
    } else {
        RedisLayerError::Command {
            op: op.to_string(),
            source,
        }
    }
}

/// Seconds since the Unix epoch, as channels_redis scores memberships.
pub(crate) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (key, value) = line.trim().split_once(':')?;
        (key == name).then(|| value.trim().to_string())
    })
}

/// `text` with the glob characters SCAN MATCH and PUBSUB CHANNELS understand escaped.
pub(crate) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The server-wide part of a probe and the prefix's key count; `group_prefix` names the keys
/// that are groups, whose sizes `group_size` ("SCARD" or "ZCARD") reads.
pub(crate) async fn probe_common(
    conn: &mut MultiplexedConnection,
    prefix: &str,
    group_prefix: &str,
    group_size: &str,
) -> Result<RedisProbe, RedisLayerError> {
    let memory: String = query(conn, "INFO memory", redis::cmd("INFO").arg("memory")).await?;
    let clients: String = query(conn, "INFO clients", redis::cmd("INFO").arg("clients")).await?;
    let numpat: u64 = query(conn, "PUBSUB NUMPAT", redis::cmd("PUBSUB").arg("NUMPAT")).await?;
    let number = |info: &str, field: &str| info_field(info, field).and_then(|v| v.parse::<u64>().ok());
    let mut probe = RedisProbe {
        used_memory: number(&memory, "used_memory").ok_or_else(|| RedisLayerError::Reply {
            op: "INFO memory".into(),
            detail: "no used_memory field".into(),
        })?,
        connected_clients: number(&clients, "connected_clients").unwrap_or_default(),
        blocked_clients: number(&clients, "blocked_clients").unwrap_or_default(),
        pattern_subscribers: numpat,
        ..RedisProbe::default()
    };

    // SCAN, never KEYS: bounded in steps and time so a huge keyspace cannot stall a run.
    let pattern = format!("{}*", glob_escape(prefix));
    let sequence_key = format!("{prefix}seq");
    let started = Instant::now();
    let mut cursor: u64 = 0;
    let mut group_keys = Vec::new();
    for _ in 0..MAX_SCAN_STEPS {
        let (next, keys): (u64, Vec<String>) = query(
            conn,
            "SCAN",
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000),
        )
        .await?;
        // The run-wide sequence counter is the layer's own bookkeeping, created once and kept
        // for the run: not state that a connection or a group leaves behind.
        probe.keys += keys.iter().filter(|k| **k != sequence_key).count() as u64;
        group_keys.extend(keys.into_iter().filter(|k| k.starts_with(group_prefix)));
        cursor = next;
        if cursor == 0 || started.elapsed() > OP_TIMEOUT {
            break;
        }
    }
    probe.groups = group_keys.len() as u64;
    for chunk in group_keys.chunks(500) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd(group_size).arg(key);
        }
        let sizes: Vec<u64> = pipe.query_async(conn).await.map_err(|e| command_error(group_size, e))?;
        probe.memberships += sizes.iter().sum::<u64>();
    }

    // Subscriptions to the run's pub/sub channels, every instance's.
    let channels: Vec<String> = query(
        conn,
        "PUBSUB CHANNELS",
        redis::cmd("PUBSUB").arg("CHANNELS").arg(&pattern),
    )
    .await?;
    for chunk in channels.chunks(500) {
        let counts: Vec<(String, u64)> =
            query(conn, "PUBSUB NUMSUB", redis::cmd("PUBSUB").arg("NUMSUB").arg(chunk)).await?;
        probe.subscribers += counts.iter().map(|(_, n)| n).sum::<u64>();
    }
    Ok(probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_globs() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn reads_info_fields() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(info_field(info, "redis_version").as_deref(), Some("7.0.15"));
        assert_eq!(info_field(info, "missing"), None);
    }
}
