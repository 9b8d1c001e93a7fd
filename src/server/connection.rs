//! One WebSocket connection on the embedded server: join the room's group, forward each text
//! frame to the group, write each group message out, and leave the group when the socket ends —
//! however it ends. Nothing a client sends can panic this task; everything unusual is counted.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::AppState;
use super::stats::ServerCounters;
use super::upgrade::ServerSocket;

/// Most group messages written before one flush, so a busy room is written in batches.
const WRITE_BATCH: usize = 64;

/// Frames up to this size are copied out of the read buffer before they go to the group: a
/// frame cut from the buffer shares its allocation, so a 64-byte message waiting in a channel
/// would keep the whole buffer alive. Larger frames have an allocation of their own already.
const COPY_OUT_BELOW: usize = 16 * 1024;

/// How the connection ended.
enum Ending {
    Graceful,
    Abrupt,
    ProtocolError,
    ServerSide,
}

/// Serves one upgraded socket in `room` until it closes.
pub async fn serve_socket(socket: ServerSocket, room: String, state: Arc<AppState>) {
    let counters = &state.counters;
    ServerCounters::bump(&counters.connections_opened);
    ServerCounters::bump(&counters.live_connections);
    let held = state.faults.hold();

    let ending = match state.layer.new_channel().await {
        Ok(mut channel) => {
            let ending = match state.layer.group_add(&room, &channel.name).await {
                Ok(()) => pump(socket, &room, &mut channel, &state).await,
                Err(_) => {
                    ServerCounters::bump(&counters.layer_errors);
                    Ending::ServerSide
                }
            };
            if state.layer.group_discard(&room, &channel.name).await.is_err()
                || state.layer.close_channel(channel).await.is_err()
            {
                ServerCounters::bump(&counters.layer_errors);
            }
            ending
        }
        Err(_) => {
            ServerCounters::bump(&counters.layer_errors);
            Ending::ServerSide
        }
    };
    match ending {
        Ending::Graceful => ServerCounters::bump(&counters.graceful_closes),
        Ending::Abrupt => ServerCounters::bump(&counters.abrupt_closes),
        Ending::ProtocolError => ServerCounters::bump(&counters.protocol_errors),
        Ending::ServerSide => {}
    }
    drop(held);
    state.faults.on_connection_closed();
    counters
        .live_connections
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

async fn pump(
    mut socket: ServerSocket,
    room: &str,
    channel: &mut crate::layer::ChannelReceiver,
    state: &AppState,
) -> Ending {
    let counters = &state.counters;
    // One task reads and writes the socket unsplit: `select!` drops the read future before a
    // branch runs, so the write needs no lock shared with the read (`next` is cancel-safe: a
    // frame read in part stays in the socket's buffer).
    loop {
        tokio::select! {
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if text.len() > state.max_frame {
                        ServerCounters::bump(&counters.oversize_frames);
                        continue;
                    }
                    ServerCounters::bump(&counters.frames_in);
                    let bytes = if text.len() < COPY_OUT_BELOW {
                        Bytes::copy_from_slice(text.as_bytes())
                    } else {
                        Bytes::from(text)
                    };
                    if state.layer.group_send(room, bytes).await.is_err() {
                        ServerCounters::bump(&counters.layer_errors);
                    }
                }
                Some(Ok(Message::Binary(_))) => ServerCounters::bump(&counters.binary_frames),
                Some(Ok(Message::Close(_))) => {
                    let _ = socket.close(None).await;
                    return Ending::Graceful;
                }
                // Ping and pong are answered by the protocol layer.
                Some(Ok(_)) => {}
                Some(Err(error)) => return classify(&error),
                None => return Ending::Abrupt,
            },
            outgoing = channel.recv() => {
                let Some(first) = outgoing else { return Ending::ServerSide };
                let mut batch = 0;
                let mut next = Some(first);
                while let Some(bytes) = next {
                    if socket.feed(text_message(bytes)).await.is_err() {
                        return Ending::Abrupt;
                    }
                    batch += 1;
                    next = if batch < WRITE_BATCH { channel.try_recv() } else { None };
                }
                if socket.flush().await.is_err() {
                    return Ending::Abrupt;
                }
                counters.frames_out.fetch_add(batch as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// The frame for one group message, sharing its bytes (no copy per receiver). Everything a layer
/// carries came in as a text frame; bytes a backend mangled out of UTF-8 go out as lossy text, as
/// a server that forwards what it got would.
fn text_message(bytes: Bytes) -> Message {
    match Utf8Bytes::try_from(bytes.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::text(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

fn classify(error: &tokio_tungstenite::tungstenite::Error) -> Ending {
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match error {
        WsError::Io(_) | WsError::ConnectionClosed | WsError::AlreadyClosed => Ending::Abrupt,
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Ending::Abrupt,
        _ => Ending::ProtocolError,
    }
}
