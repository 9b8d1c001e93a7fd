//! The embedded warp server: the chat room of the seed reports, served on loopback.
//!
//! As in mini-redis, the caller owns the listener and the shutdown signal: [`serve`] takes a bound
//! listener and a future, which makes tests trivial (bind `127.0.0.1:0`, spawn, connect).
//! [`EmbeddedServer`] wraps that for the runner.
//!
//! Routes: `GET /ws/chat/{room}` (WebSocket: join the group, group-send each text frame, write
//! each group message out), `GET /stats` (counters as JSON), and the plain HTTP routes of
//! [`http_routes`]: `GET /` (hello), `GET|PUT /cache/{key}` and `GET /info` (the [`cache`]), and
//! `GET /chat/{room}/`, the chat page a person opens in a browser ([`chat_page`]).

pub mod cache;
pub mod chat_page;
pub mod connection;
pub mod faults;
pub mod http_routes;
pub mod stats;
pub mod upgrade;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::Reply;

use crate::layer::ChannelLayer;
use crate::naming::is_valid_name;
pub use cache::{Cache, CacheConfig, CacheInfo, CacheMode, CacheSource};
pub use faults::ServerFaults;
pub use stats::{ServerCounters, ServerStats};

/// Hard ceiling on one WebSocket message; past it the connection ends with a protocol error.
/// Frames above the scenario's `max_frame` but under this are counted and ignored instead.
const HARD_MESSAGE_LIMIT: usize = 32 * 1024 * 1024;

/// What one server instance shares between its connections.
pub struct AppState {
    /// The channel layer, possibly shared with other instances.
    pub layer: Arc<dyn ChannelLayer>,
    /// This instance's counters.
    pub counters: ServerCounters,
    /// Largest text frame forwarded.
    pub max_frame: usize,
    /// Fault switches of the server itself (off by default).
    pub faults: ServerFaults,
    /// The key/value cache behind `/cache/{key}` and `/info`.
    pub cache: Arc<Cache>,
}

impl AppState {
    /// State for one instance over `layer`.
    pub fn new(layer: Arc<dyn ChannelLayer>, max_frame: usize) -> Arc<Self> {
        Self::with_faults(layer, max_frame, ServerFaults::off())
    }

    /// State for one instance over `layer`, with the server's own fault switches.
    pub fn with_faults(layer: Arc<dyn ChannelLayer>, max_frame: usize, faults: ServerFaults) -> Arc<Self> {
        Self::with_cache(layer, max_frame, faults, CacheConfig::default())
    }

    /// State for one instance over `layer`, with fault switches and a cache of `cache`'s kind.
    pub fn with_cache(
        layer: Arc<dyn ChannelLayer>,
        max_frame: usize,
        faults: ServerFaults,
        cache: CacheConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            layer,
            counters: ServerCounters::default(),
            max_frame,
            faults,
            cache: Arc::new(Cache::new(cache)),
        })
    }

    /// Counters and layer state now.
    pub fn stats(&self) -> ServerStats {
        self.counters.snapshot(self.layer.stats())
    }
}

/// Serves the routes on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: impl Future<Output = ()> + Send + 'static) {
    warp::serve(routes(state))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

/// The server's routes.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let with_state = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let chat = warp::path!("ws" / "chat" / String)
        .and(warp::get())
        .and(upgrade::upgrade())
        .and(with_state.clone())
        .map(
            |room: String, ws: Result<upgrade::Upgrade, upgrade::NotUpgrade>, state: Arc<AppState>| {
                if !is_valid_name(&room) {
                    ServerCounters::bump(&state.counters.bad_room_requests);
                    let body = format!("invalid room name `{room}`: use 1 to 99 letters, digits, `.`, `_` or `-`\n");
                    return warp::reply::with_status(body, StatusCode::BAD_REQUEST).into_response();
                }
                let ws = match ws {
                    Ok(ws) => ws,
                    Err(not) => return not.respond(),
                };
                ws.respond(upgrade::socket_config(HARD_MESSAGE_LIMIT), move |socket| {
                    connection::serve_socket(socket, room, state)
                })
            },
        );
    let stats = warp::path!("stats")
        .and(warp::get())
        .and(with_state)
        .map(|state: Arc<AppState>| warp::reply::json(&state.stats()).into_response());
    chat.or(stats)
        .unify()
        .or(chat_page::route())
        .unify()
        .or(http_routes::routes(state))
        .unify()
}

/// A listener on `127.0.0.1` and a free port, with TCP_NODELAY set so the sockets it accepts
/// inherit it (Linux does; warp gives no other hook). Without it, Nagle's algorithm holds small
/// frames back until the client's delayed ACK, and delivery latency reads as the send interval.
pub fn loopback_listener() -> std::io::Result<TcpListener> {
    listener_on((Ipv4Addr::LOCALHOST, 0).into())
}

/// The accept queue asked for: Linux caps it at `net.core.somaxconn` (4,096 on current kernels),
/// so this asks for the most the machine allows. tokio's own default, 1,024, overflows when ten
/// thousand clients connect at once: the kernel drops the SYNs past it, and each dropped client
/// waits a second (then two, then four) for its retry, which reads as connect latency of the
/// server's making.
pub const LISTEN_BACKLOG: u32 = i32::MAX as u32;

/// A listener on `addr` (port 0: a free one), with TCP_NODELAY as for [`loopback_listener`] and
/// the deepest accept queue the kernel allows ([`LISTEN_BACKLOG`]).
pub fn listener_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr.ip() {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_nodelay(true)?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A running embedded server instance.
pub struct EmbeddedServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its shared state, read directly by the in-process sampler.
    pub state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl EmbeddedServer {
    /// Binds `127.0.0.1` on a free port and starts serving.
    pub async fn start(state: Arc<AppState>) -> std::io::Result<Self> {
        Self::start_on(state, (Ipv4Addr::LOCALHOST, 0).into()).await
    }

    /// Binds `addr` (port 0: a free one) and starts serving.
    pub async fn start_on(state: Arc<AppState>, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = listener_on(addr)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, state.clone(), async {
            let _ = rx.await;
        }));
        Ok(Self {
            addr,
            state,
            shutdown: Some(tx),
            task,
        })
    }

    /// Stops accepting and waits (briefly) for the server task to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}
