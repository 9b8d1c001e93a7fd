//! The plain HTTP routes of the embedded server, the two HTTP seed reports as endpoints:
//! `GET /` (the warp report's hello server) and the key/value cache of the Python report —
//! `GET /cache/{key}` (404 when absent), `PUT /cache/{key}` (the body is the value) and
//! `GET /info` (`{"items": N, "bytes": N}`).
//!
//! A request the cache cannot take is answered with a status and a line saying why: a key that is
//! empty or has characters outside [`KEY_RULE`] is 400, a body over the limit is 413 (refused from
//! its `content-length` before it is read, or as soon as a chunked body passes the limit).

use std::sync::Arc;

use bytes::Buf;
use futures_util::StreamExt;
use warp::Filter;
use warp::http::StatusCode;
use warp::path::Tail;
use warp::reply::{Reply, Response};

use super::AppState;

/// What a cache key may be, for messages.
pub const KEY_RULE: &str = "1 to 250 letters, digits, `.`, `_`, `-` or `~`";
/// Longest key.
const MAX_KEY: usize = 250;

/// `GET /`, `GET|PUT /cache/{key}` and `GET /info`.
pub fn routes(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let with_state = warp::any().map(move || state.clone());
    let hello = warp::path::end()
        .and(warp::get())
        .map(|| "Hello, World!".into_response());
    let get = warp::path("cache")
        .and(warp::path::tail())
        .and(warp::get())
        .and(with_state.clone())
        .map(|key: Tail, state: Arc<AppState>| get_value(key.as_str(), &state));
    let put = warp::path("cache")
        .and(warp::path::tail())
        .and(warp::put())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and(with_state.clone())
        .and_then(
            |key: Tail, length: Option<u64>, body, state: Arc<AppState>| async move {
                Ok::<_, warp::Rejection>(put_value(key.as_str(), length, body, &state).await)
            },
        );
    let info = warp::path!("info")
        .and(warp::get())
        .and(with_state)
        .map(|state: Arc<AppState>| warp::reply::json(&state.cache.info()).into_response());
    hello.or(get).unify().or(put).unify().or(info).unify()
}

/// Why a key is refused, or `None` for a good key.
pub fn key_problem(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some(format!("empty cache key: use /cache/{{key}} with {KEY_RULE}"));
    }
    let good = key.len() <= MAX_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~'));
    (!good).then(|| format!("invalid cache key `{key}`: use {KEY_RULE}"))
}

fn text(status: StatusCode, message: String) -> Response {
    warp::reply::with_status(message + "\n", status).into_response()
}

fn get_value(key: &str, state: &AppState) -> Response {
    if let Some(problem) = key_problem(key) {
        return text(StatusCode::BAD_REQUEST, problem);
    }
    match state.cache.get(key) {
        Some(value) => value.into_response(),
        None => text(StatusCode::NOT_FOUND, format!("no value for key `{key}`")),
    }
}

async fn put_value<S, B>(key: &str, length: Option<u64>, body: S, state: &AppState) -> Response
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if let Some(problem) = key_problem(key) {
        return text(StatusCode::BAD_REQUEST, problem);
    }
    let limit = state.cache.config().max_body;
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over the limit of {limit} bytes (server.cache.max_body)"),
        )
    };
    if length.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let mut value = Vec::with_capacity(length.unwrap_or(0) as usize);
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let Ok(mut chunk) = chunk else {
            return text(StatusCode::BAD_REQUEST, "the body could not be read".into());
        };
        if value.len() + chunk.remaining() > limit {
            return too_large();
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            value.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    state.cache.put(key, &value);
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert_eq!(key_problem("k-00_1.a~"), None);
        assert!(key_problem("").unwrap().starts_with("empty cache key"));
        assert!(key_problem("a/b").unwrap().contains("invalid cache key `a/b`"));
        assert!(key_problem("%20").is_some());
        assert!(key_problem(&"k".repeat(251)).is_some());
        assert_eq!(key_problem(&"k".repeat(250)), None);
    }
}
