//! The WebSocket upgrade of the chat route, done here rather than by `warp::ws()` so the socket's
//! buffers can be sized: warp builds tungstenite with its defaults, a 128 KiB read buffer
//! allocated up front for every connection, which at 10,000 connections is 1.25 GiB for frames of
//! a few hundred bytes. The handshake is the same one warp does (RFC 6455: `Connection: upgrade`,
//! `Upgrade: websocket`, version 13, the accept key); the upgraded socket gets [`socket_config`].

use std::future::Future;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use warp::Filter;
use warp::http::{HeaderMap, StatusCode, header};

/// The upgraded socket a connection task serves.
pub type ServerSocket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Read buffer per server socket. tungstenite allocates it whole per connection and grows it
/// only for a frame that does not fit, so a small one costs nothing for large frames but time.
/// It also zeroes the free part before every read attempt, and the connection task tries a read
/// each time it wakes to write group messages out (most server sockets only ever write), so
/// its size is paid on every delivery: 1 KiB holds a few chat frames.
pub const SERVER_READ_BUFFER: usize = 1024;

/// Bytes of outgoing frames gathered before they are written to the socket. The connection
/// flushes after each batch anyway; this bounds what a batch gathers before a write.
pub const SERVER_WRITE_BUFFER: usize = 8 * 1024;

/// The tungstenite settings of every server socket: small buffers, and `limit` on one message
/// and one frame.
pub fn socket_config(limit: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(SERVER_READ_BUFFER)
        .write_buffer_size(SERVER_WRITE_BUFFER)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
}

/// Why a request to a WebSocket route is not an upgrade (answered 400, as warp's own filter does).
#[derive(Debug, thiserror::Error)]
#[error("not a WebSocket upgrade: {0}")]
pub struct NotUpgrade(&'static str);

/// What the filter extracts: the request's key and hyper's upgrade handle.
pub struct Upgrade {
    accept: String,
    on_upgrade: OnUpgrade,
}

/// Reads a request as a WebSocket upgrade: the upgrade, or why it is not one.
pub fn upgrade() -> impl Filter<Extract = (Result<Upgrade, NotUpgrade>,), Error = std::convert::Infallible> + Clone {
    warp::header::headers_cloned()
        .and(warp::ext::optional::<OnUpgrade>())
        .map(|headers: HeaderMap, on_upgrade: Option<OnUpgrade>| {
            check(&headers).and_then(|accept| {
                on_upgrade
                    .map(|on_upgrade| Upgrade { accept, on_upgrade })
                    .ok_or(NotUpgrade("the connection cannot be upgraded"))
            })
        })
}

impl NotUpgrade {
    /// The 400 answer.
    pub fn respond(&self) -> warp::reply::Response {
        use warp::Reply;
        warp::reply::with_status(format!("{self}\n"), StatusCode::BAD_REQUEST).into_response()
    }
}

fn check(headers: &HeaderMap) -> Result<String, NotUpgrade> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has(header::CONNECTION, "upgrade") {
        return Err(NotUpgrade("the Connection header does not include `upgrade`"));
    }
    if !has(header::UPGRADE, "websocket") {
        return Err(NotUpgrade("the Upgrade header is not `websocket`"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(NotUpgrade("Sec-WebSocket-Version is not 13"));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(NotUpgrade("no Sec-WebSocket-Key"))?;
    Ok(derive_accept_key(key.as_bytes()))
}

impl Upgrade {
    /// The 101 response; once it is written, `serve` gets the socket (configured with `config`)
    /// on a task of its own.
    pub fn respond<F, U>(self, config: WebSocketConfig, serve: F) -> warp::reply::Response
    where
        F: FnOnce(ServerSocket) -> U + Send + 'static,
        U: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
                serve(socket).await;
            }
        });
        let mut response = warp::reply::Response::default();
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, header::HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, header::HeaderValue::from_static("websocket"));
        if let Ok(accept) = header::HeaderValue::from_str(&self.accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }
}
