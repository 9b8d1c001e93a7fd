//! One WebSocket connection session: wait for its connect slot, connect, send on an intended
//! schedule (its phase offset within the first interval), read and track what arrives, close as
//! told. This is the per-message path: the send buffer is reused, receipt
//! borrows the frame, and latencies are batched, so nothing here allocates per message received.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use super::pacing::{send_offset_ns, wait_while_sending};
use super::{LoadContext, Phase};
use crate::envelope::Envelope;
use crate::observe::analysis::SessionReport;
use crate::observe::events::EventKind;
use crate::observe::latency::{DeliveryBatch, LatencyBook, SendLagBatch};
use crate::observe::tracker::{Arrival, SeqTracker};
use crate::scenario::{CloseMode, Reader, SendPhase};

/// How long a graceful close waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Read buffer per client socket: tungstenite allocates it whole for every connection, and a chat
/// frame is a few hundred bytes. Larger frames are still read whole (the buffer grows for them).
/// tungstenite zeroes the free part before every read attempt (two per frame received: the read
/// and the one that finds nothing more), so a smaller buffer is less work per delivery.
pub const CLIENT_READ_BUFFER: usize = 2 * 1024;

/// Bytes of frames gathered before a write reaches the socket; a client's frames are small and
/// each is flushed as it is sent, so this only bounds what one send can gather.
pub const CLIENT_WRITE_BUFFER: usize = 4 * 1024;

/// Bound on sending one frame: a server that stops reading ends the session (its report kept),
/// it does not hold it until the run gives up on it.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// What a session is asked to do.
pub struct SessionPlan<'a> {
    /// Client label.
    pub client: &'a str,
    /// Room index.
    pub room: usize,
    /// Server instance index.
    pub instance: usize,
    /// Messages per second (0: listen only).
    pub rate: f64,
    /// Frame size.
    pub payload: usize,
    /// Whether to read.
    pub reader: Reader,
    /// When the first message goes out.
    pub phase: SendPhase,
    /// When the session means to connect (its ramp slot); the run's connect pacer may move it
    /// later. Connect latency counts from the time it was then meant to start.
    pub connect_at: Instant,
    /// When to close on its own (tabs `hold`); otherwise at the disconnect phase.
    pub close_at: Option<Instant>,
    /// How long after its connect slot to close on its own (cycle `up`).
    pub up: Option<Duration>,
    /// How to close.
    pub close: CloseMode,
}

/// Runs one session to its end. `None` when the connection could not be made, or the send phase
/// ended before its connect slot came.
pub async fn run(
    ctx: &LoadContext,
    book: &LatencyBook,
    plan: SessionPlan<'_>,
    phase: &mut watch::Receiver<Phase>,
) -> Option<SessionReport> {
    let started = match &ctx.pacer {
        Some(pacer) => pacer.slot(plan.connect_at),
        None => plan.connect_at,
    };
    if !wait_while_sending(phase, started).await {
        return None;
    }
    let close_at = match (plan.close_at, plan.up) {
        (Some(at), Some(up)) => Some(at.min(started + up)),
        (at, up) => at.or(up.map(|up| started + up)),
    };
    let Some(mut socket) = connect(ctx, plan.instance, plan.room).await else {
        ctx.live
            .connect_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ctx.events
            .record(ctx.clock.now_ns(), EventKind::ConnectFailed, plan.client, 0);
        return None;
    };
    let id = ctx.new_session_id();
    let connected_ns = ctx.clock.now_ns();
    book.record_connect(connected_ns, started.elapsed().as_micros() as u64);
    ctx.live.connects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ctx.events.record(connected_ns, EventKind::Connect, plan.client, id);

    let room_name = ctx.rooms[plan.room].as_str();
    let mut tracker = SeqTracker::for_run(ctx.clock.nonce());
    let mut latencies = DeliveryBatch::for_room(plan.room);
    let mut send_lags = SendLagBatch::for_room(plan.room);
    let interval_ns = if plan.rate > 0.0 { (1e9 / plan.rate) as u64 } else { 0 };
    let ordinal = if interval_ns > 0 { ctx.new_sender_ordinal() } else { 0 };
    let send_start_ns = connected_ns + send_offset_ns(plan.phase, ctx.phase_seed, ordinal, interval_ns, connected_ns);
    let mut sent: u64 = 0;
    let mut buffer = String::with_capacity(plan.payload.max(64));
    let mut sending = *phase.borrow() == Phase::Send && interval_ns > 0;
    let mut ended_by_server = false;
    let mut send_stalled = false;
    let mut lived_through_drain = false;
    let reading = plan.reader == Reader::Normal;

    // The futures the loop waits on live across its turns: a receipt neither registers a new
    // phase waiter nor makes a new timer; the send timer is moved on after each send.
    let send_timer = sleep_until(Instant::from_std(ctx.clock.instant_at(send_start_ns)));
    tokio::pin!(send_timer);
    let closing = sleep_until_opt(close_at);
    tokio::pin!(closing);
    'session: loop {
        let changed = {
            let changed = phase.changed();
            tokio::pin!(changed);
            loop {
                tokio::select! {
                    biased;
                    changed = &mut changed => break changed,
                    _ = &mut closing => break 'session,
                    frame = socket.next(), if reading => match frame {
                        Some(Ok(Message::Text(text))) => {
                            observe(ctx, &mut tracker, &mut latencies, book, room_name, &text, plan.client, id);
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            ended_by_server = true;
                            break 'session;
                        }
                        Some(Ok(_)) => {}
                    },
                    _ = &mut send_timer, if sending => {
                        let intended_ns = send_start_ns + sent * interval_ns;
                        let envelope = Envelope {
                            nonce: ctx.clock.nonce(),
                            sender: id,
                            seq: sent,
                            room: room_name,
                            intended_us: intended_ns / 1000,
                        };
                        ctx.template.encode_into(&envelope, plan.payload, &mut buffer);
                        send_lags.push(ctx.clock.now_ns().saturating_sub(intended_ns) / 1000, book);
                        match timeout(SEND_TIMEOUT, socket.send(Message::text(buffer.as_str()))).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => {
                                ended_by_server = true;
                                break 'session;
                            }
                            Err(_) => {
                                send_stalled = true;
                                break 'session;
                            }
                        }
                        sent += 1;
                        ctx.live.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let next = ctx.clock.instant_at(send_start_ns + sent * interval_ns);
                        send_timer.as_mut().reset(Instant::from_std(next));
                    }
                }
            }
        };
        let now = if changed.is_ok() {
            *phase.borrow()
        } else {
            Phase::Disconnect
        };
        if now >= Phase::Quiesce {
            sending = false;
        }
        if now == Phase::Disconnect {
            lived_through_drain = true;
            break;
        }
    }

    let kind = if send_stalled {
        EventKind::SendTimedOut
    } else if ended_by_server {
        EventKind::ClosedByServer
    } else {
        match plan.close {
            CloseMode::Graceful => {
                // Keep reading until the server's close frame: what arrives meanwhile was delivered.
                let deadline = Instant::now() + CLOSE_WAIT;
                let _ = timeout(CLOSE_WAIT, socket.send(Message::Close(None))).await;
                while let Ok(Some(Ok(frame))) =
                    timeout(deadline.saturating_duration_since(Instant::now()), socket.next()).await
                {
                    if let Message::Text(text) = frame {
                        if reading {
                            observe(
                                ctx,
                                &mut tracker,
                                &mut latencies,
                                book,
                                room_name,
                                &text,
                                plan.client,
                                id,
                            );
                        }
                    }
                }
                EventKind::CloseGraceful
            }
            CloseMode::Abrupt => EventKind::CloseAbrupt,
        }
    };
    // Abrupt: the socket is dropped here without a close frame, as a killed process would.
    drop(socket);
    latencies.flush(book);
    send_lags.flush(book);
    let closed_ns = ctx.clock.now_ns();
    ctx.events.record(closed_ns, kind, plan.client, id);
    Some(SessionReport {
        id,
        client: plan.client.to_string(),
        room: plan.room,
        connected_ns,
        closed_ns,
        lived_through_drain,
        send_start_ns,
        interval_ns,
        sent,
        ended: kind,
        tracker,
    })
}

#[allow(clippy::too_many_arguments)]
#[inline]
fn observe(
    ctx: &LoadContext,
    tracker: &mut SeqTracker,
    latencies: &mut DeliveryBatch,
    book: &LatencyBook,
    room: &str,
    text: &str,
    client: &str,
    id: u64,
) {
    let mut previous = None;
    for envelope in Envelope::find_all(text) {
        // A server that quotes a message twice in one frame delivered it once.
        if previous.replace((envelope.sender, envelope.seq)) == Some((envelope.sender, envelope.seq)) {
            continue;
        }
        let now_ns = ctx.clock.now_ns();
        let subscribed = tracker.first_receipt_ns.is_some();
        let issued = ctx.next_session.load(std::sync::atomic::Ordering::Relaxed);
        let arrival = tracker.observe(&envelope, room, now_ns, issued);
        if !subscribed && tracker.first_receipt_ns.is_some() {
            ctx.events.record(now_ns, EventKind::Subscribed, client, id);
        }
        match arrival {
            Arrival::Jump(missing) => {
                ctx.live
                    .suspected_gaps
                    .fetch_add(missing, std::sync::atomic::Ordering::Relaxed);
            }
            Arrival::Misrouted | Arrival::Duplicate | Arrival::Forged | Arrival::Foreign => continue,
            Arrival::InOrder | Arrival::Reordered => {}
        }
        ctx.live.received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        latencies.push(now_ns, (now_ns / 1000).saturating_sub(envelope.intended_us), book);
    }
    if previous.is_none() {
        tracker.without_envelope += 1;
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn connect(ctx: &LoadContext, instance: usize, room: usize) -> Option<WebSocketStream<TcpStream>> {
    let endpoint = &ctx.targets[instance % ctx.targets.len()];
    let addr = endpoint.addr;
    let url = endpoint.room_urls[room].as_str();
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        let _ = tcp.set_nodelay(true);
        // tungstenite reads into a 128 KiB buffer by default; ten thousand clients do not need
        // 1.25 GiB of it. Frames larger than the buffer are still read whole.
        let config = WebSocketConfig::default()
            .read_buffer_size(CLIENT_READ_BUFFER)
            .write_buffer_size(CLIENT_WRITE_BUFFER);
        client_async_with_config(url, tcp, Some(config))
            .await
            .ok()
            .map(|(socket, _)| socket)
    };
    timeout(ctx.connect_timeout, attempt).await.ok().flatten()
}
