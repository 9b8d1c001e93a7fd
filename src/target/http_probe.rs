//! What leakrun reads from a server over plain HTTP: whether it answers (readiness), and its own
//! counters (`stats_url`), flattened into state series.
//!
//! One keep-alive connection is reused while the server keeps it open, so sampling every
//! `sample_interval` does not open a connection per sample on the server being measured.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::observe::sampler::{SourceError, StateReading, StateSource};

/// Bound on one request, connect included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest stats document read.
const MAX_BODY: usize = 1024 * 1024;
/// Most series one stats document may add.
pub const MAX_STATS_SERIES: usize = 500;

/// Why a GET got no answer.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// The URL could not be used.
    #[error("`{url}` is not a URL leakrun can GET: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No answer within [`REQUEST_TIMEOUT`].
    #[error("no answer within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    /// The TCP connection failed.
    #[error("{0}")]
    Connect(#[source] std::io::Error),
    /// The HTTP exchange failed.
    #[error("{0}")]
    Http(#[source] hyper::Error),
    /// The request could not be built.
    #[error("{0}")]
    Request(#[source] hyper::http::Error),
    /// The body could not be read (or was larger than 1 MiB).
    #[error("reading the body: {0}")]
    Body(String),
}

/// GETs one URL, reusing its connection.
pub struct HttpGet {
    url: String,
    host: String,
    port: u16,
    authority: String,
    path: String,
    connection: tokio::sync::Mutex<Option<SendRequest<Empty<Bytes>>>>,
}

impl HttpGet {
    /// A getter for `url` (an `http://` URL the scenario validated).
    pub fn new(url: &str) -> Result<Self, GetError> {
        let bad = |reason: String| GetError::Url {
            url: url.to_string(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let host = parsed.host_str().ok_or_else(|| bad("it names no host".into()))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        let mut path = parsed.path().to_string();
        if let Some(query) = parsed.query() {
            path.push('?');
            path.push_str(query);
        }
        Ok(Self {
            url: url.to_string(),
            host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
            port,
            authority: format!("{host}:{port}"),
            path,
            connection: tokio::sync::Mutex::new(None),
        })
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// GETs the URL: status and body (at most 1 MiB).
    pub async fn get(&self) -> Result<(u16, Bytes), GetError> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.get_unbounded())
            .await
            .map_err(|_| GetError::Timeout)?
    }

    async fn get_unbounded(&self) -> Result<(u16, Bytes), GetError> {
        let mut slot = self.connection.lock().await;
        let reusable = slot.as_ref().is_some_and(|s| !s.is_closed());
        if !reusable {
            *slot = Some(self.connect().await?);
        }
        let Some(sender) = slot.as_mut() else {
            return Err(GetError::Connect(std::io::Error::other("no connection")));
        };
        if sender.ready().await.is_err() {
            *slot = Some(self.connect().await?);
        }
        let Some(sender) = slot.as_mut() else {
            return Err(GetError::Connect(std::io::Error::other("no connection")));
        };
        let request = hyper::Request::get(self.path.as_str())
            .header(hyper::header::HOST, self.authority.as_str())
            .body(Empty::new())
            .map_err(GetError::Request)?;
        let response = sender.send_request(request).await.map_err(|e| {
            *slot = None;
            GetError::Http(e)
        })?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| GetError::Body(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, GetError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(GetError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(GetError::Http)?;
        crate::heap::spawn_harness(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// The server's own counters from `stats_url`: every number in its JSON document, by dotted name.
pub struct StatsSource {
    get: HttpGet,
    counters: Vec<String>,
}

impl StatsSource {
    /// A source reading `url`; names matching `counters` are running totals, recorded for
    /// reference, and every other number is a state series the leak verdict judges.
    pub fn new(url: &str, counters: &[String]) -> Result<Self, GetError> {
        Ok(Self {
            get: HttpGet::new(url)?,
            counters: counters.to_vec(),
        })
    }

    fn is_counter(&self, name: &str) -> bool {
        self.counters.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        })
    }
}

#[async_trait::async_trait]
impl StateSource for StatsSource {
    async fn read(&self) -> Result<StateReading, SourceError> {
        let url = self.get.url();
        let failed = |reason: String| SourceError::Stats {
            url: url.to_string(),
            reason,
        };
        let (status, body) = self.get.get().await.map_err(|e| failed(e.to_string()))?;
        if !(200..300).contains(&status) {
            return Err(failed(format!("answered HTTP {status}")));
        }
        let document: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| failed(format!("did not answer JSON: {e}")))?;
        let mut reading = StateReading::default();
        for (name, value) in flatten(&document) {
            if self.is_counter(&name) {
                reading.info.insert(name, value);
            } else {
                reading.state.insert(name, value);
            }
        }
        Ok(reading)
    }
}

/// Every non-negative number in `document` by dotted path (`rooms.lobby.members`, `workers.0.rss`);
/// fractions are rounded. At most [`MAX_STATS_SERIES`] are kept.
pub fn flatten(document: &serde_json::Value) -> BTreeMap<String, u64> {
    fn walk(value: &serde_json::Value, path: &mut String, out: &mut BTreeMap<String, u64>) {
        if out.len() >= MAX_STATS_SERIES {
            return;
        }
        let mut descend = |key: &str, child: &serde_json::Value, path: &mut String| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            walk(child, path, out);
            path.truncate(len);
        };
        match value {
            serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| descend(k, v, path)),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, v)| descend(&i.to_string(), v, path)),
            serde_json::Value::Number(n) => {
                let value = n.as_u64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite() && *f >= 0.0)
                        .map(|f| f.round() as u64)
                });
                if let (Some(value), false) = (value, path.is_empty()) {
                    out.insert(path.clone(), value);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk(document, &mut String::new(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_flattened_by_dotted_name() {
        let doc = serde_json::json!({
            "connections": 3,
            "rooms": {"lobby": {"members": 2}, "names": ["a"]},
            "workers": [{"rss": 1.6}, {"rss": -1}],
            "up": true
        });
        let flat = flatten(&doc);
        assert_eq!(
            flat.into_iter().collect::<Vec<_>>(),
            [
                ("connections".to_string(), 3),
                ("rooms.lobby.members".to_string(), 2),
                ("workers.0.rss".to_string(), 2)
            ]
        );
    }

    #[test]
    fn counters_are_told_from_state_by_name_or_prefix() {
        let source = StatsSource::new("http://127.0.0.1:1/stats", &["frames_*".into(), "dropped".into()]).unwrap();
        assert!(source.is_counter("frames_in"));
        assert!(source.is_counter("dropped"));
        assert!(!source.is_counter("dropped_total"));
        assert!(!source.is_counter("connections"));
    }
}
