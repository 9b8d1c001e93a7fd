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
/// Largest stats document read; a larger answer stops the run (the source is not what it claims).
const MAX_BODY: usize = 1024 * 1024;
/// Most series a stats document may give, over the whole run: names first seen after these are
/// not kept, only counted (under [`NOT_KEPT`]).
pub const MAX_STATS_SERIES: usize = 500;
/// Longest dotted name of a series; a longer one is not kept, only counted.
pub const MAX_STATS_NAME: usize = 200;
/// The reference counter of numbers in the document that were not kept (past either bound).
pub const NOT_KEPT: &str = "leakrun.stats_not_kept";

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
    /// Every name kept so far this run: at most [`MAX_STATS_SERIES`].
    seen: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl StatsSource {
    /// A source reading `url`; names matching `counters` are running totals, recorded for
    /// reference, and every other number is a state series the leak verdict judges.
    pub fn new(url: &str, counters: &[String]) -> Result<Self, GetError> {
        Ok(Self {
            get: HttpGet::new(url)?,
            counters: counters.to_vec(),
            seen: Default::default(),
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
        let (flat, mut not_kept) = flatten_counted(&document);
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (name, value) in flat {
            if !seen.contains(&name) {
                if seen.len() >= MAX_STATS_SERIES {
                    not_kept += 1;
                    continue;
                }
                seen.insert(name.clone());
            }
            if self.is_counter(&name) {
                reading.info.insert(name, value);
            } else {
                reading.state.insert(name, value);
            }
        }
        if not_kept > 0 {
            reading.info.insert(NOT_KEPT.into(), not_kept);
        }
        Ok(reading)
    }
}

/// Every non-negative number in `document` by dotted path (`rooms.lobby.members`, `workers.0.rss`);
/// fractions are rounded. At most [`MAX_STATS_SERIES`] are kept, none with a name longer than
/// [`MAX_STATS_NAME`].
pub fn flatten(document: &serde_json::Value) -> BTreeMap<String, u64> {
    flatten_counted(document).0
}

/// [`flatten`], and how many numbers it left out.
fn flatten_counted(document: &serde_json::Value) -> (BTreeMap<String, u64>, u64) {
    struct Walk {
        out: BTreeMap<String, u64>,
        not_kept: u64,
    }
    fn walk(value: &serde_json::Value, path: &mut String, w: &mut Walk) {
        let descend = |key: &str, child: &serde_json::Value, path: &mut String, w: &mut Walk| {
            let len = path.len();
            if len + 1 + key.len() > MAX_STATS_NAME {
                w.not_kept += count_numbers(child);
                return;
            }
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            walk(child, path, w);
            path.truncate(len);
        };
        match value {
            serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| descend(k, v, path, w)),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, v)| descend(&i.to_string(), v, path, w)),
            serde_json::Value::Number(n) => {
                let value = n.as_u64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite() && *f >= 0.0)
                        .map(|f| f.round() as u64)
                });
                if let (Some(value), false) = (value, path.is_empty()) {
                    if w.out.len() >= MAX_STATS_SERIES {
                        w.not_kept += 1;
                    } else {
                        w.out.insert(path.clone(), value);
                    }
                }
            }
            _ => {}
        }
    }
    fn count_numbers(value: &serde_json::Value) -> u64 {
        match value {
            serde_json::Value::Object(map) => map.values().map(count_numbers).sum(),
            serde_json::Value::Array(items) => items.iter().map(count_numbers).sum(),
            serde_json::Value::Number(_) => 1,
            _ => 0,
        }
    }
    let mut w = Walk {
        out: BTreeMap::new(),
        not_kept: 0,
    };
    walk(document, &mut String::new(), &mut w);
    (w.out, w.not_kept)
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
    fn long_names_and_series_past_the_bound_are_counted_not_kept() {
        let long = "k".repeat(MAX_STATS_NAME);
        let mut wide = serde_json::Map::new();
        for i in 0..MAX_STATS_SERIES + 10 {
            wide.insert(format!("s{i:04}"), serde_json::json!(i));
        }
        let doc = serde_json::json!({ "ok": 1, long.clone(): {"a": 1, "b": [2, 3]}, "wide": wide });
        let (flat, not_kept) = flatten_counted(&doc);
        assert_eq!(flat.len(), MAX_STATS_SERIES);
        assert!(flat.keys().all(|k| k.len() <= MAX_STATS_NAME));
        assert_eq!(not_kept, 3 + 11, "three under the long name, eleven past the bound");
    }

    #[tokio::test]
    async fn the_series_bound_holds_over_the_run_not_per_document() {
        // A server whose every answer names new series: the run keeps MAX_STATS_SERIES in all.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 4096];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let body: serde_json::Map<String, serde_json::Value> =
                        (0..300).map(|i| (format!("x{n}_{i}"), serde_json::json!(1))).collect();
                    n += 1;
                    let body = serde_json::Value::Object(body).to_string();
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        break;
                    }
                }
            }
        });
        let source = StatsSource::new(&format!("http://127.0.0.1:{port}/stats"), &[]).unwrap();
        let mut kept = std::collections::BTreeSet::new();
        let mut not_kept = 0;
        for _ in 0..4 {
            let reading = source.read().await.unwrap();
            kept.extend(reading.state.keys().cloned());
            not_kept += reading.info.get(NOT_KEPT).copied().unwrap_or(0);
        }
        assert_eq!(kept.len(), MAX_STATS_SERIES);
        assert_eq!(not_kept, 4 * 300 - MAX_STATS_SERIES as u64);
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
