//! The embedded server on loopback with real WebSocket clients: routing, the group-send contract,
//! and the inputs that must be counted rather than crash it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use leakrun::layer::{ChannelLayer, MemoryLayer};
use leakrun::server::{AppState, EmbeddedServer, ServerStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn start(max_frame: usize) -> EmbeddedServer {
    let layer: Arc<dyn ChannelLayer> = Arc::new(MemoryLayer::new(100));
    EmbeddedServer::start(AppState::new(layer, max_frame))
        .await
        .expect("server starts")
}

async fn http_get(server: &EmbeddedServer, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn stats(server: &EmbeddedServer) -> ServerStats {
    let (status, body) = http_get(server, "/stats").await;
    assert_eq!(status, 200);
    serde_json::from_str(&body).expect("stats JSON")
}

async fn wait_for(server: &EmbeddedServer, what: impl Fn(&ServerStats) -> bool) -> ServerStats {
    for _ in 0..200 {
        let s = stats(server).await;
        if what(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached: {:?}", stats(server).await);
}

async fn ws(
    server: &EmbeddedServer,
    room: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let url = format!("ws://{}/ws/chat/{room}", server.addr);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects")
        .0
}

#[tokio::test]
async fn hello_and_bad_room_names() {
    let server = start(1024).await;
    assert_eq!(http_get(&server, "/").await, (200, "Hello, World!".to_string()));
    let url = format!("ws://{}/ws/chat/bad%20room", server.addr);
    let refused = tokio_tungstenite::connect_async(url).await.unwrap_err();
    assert!(refused.to_string().contains("400"), "{refused}");
    assert_eq!(stats(&server).await.bad_room_requests, 1);
    assert_eq!(http_get(&server, "/nowhere").await.0, 404);
}

#[tokio::test]
async fn text_frames_reach_the_whole_room_including_the_sender_and_no_other_room() {
    let server = start(1024).await;
    let mut alice = ws(&server, "a").await;
    let mut bob = ws(&server, "a").await;
    let mut carol = ws(&server, "b").await;
    wait_for(&server, |s| s.layer.memberships == 3).await;
    alice.send(Message::text("hi")).await.unwrap();
    for socket in [&mut alice, &mut bob] {
        let got = tokio::time::timeout(Duration::from_secs(2), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, Message::text("hi"));
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), carol.next())
            .await
            .is_err(),
        "room b heard nothing"
    );
    let s = stats(&server).await;
    assert_eq!((s.frames_in, s.layer.delivered, s.layer.groups), (1, 2, 2));
}

#[tokio::test]
async fn binary_oversize_and_abrupt_endings_are_counted_not_fatal() {
    let server = start(128).await;
    let mut client = ws(&server, "room").await;
    client.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    client.send(Message::text("x".repeat(1000))).await.unwrap();
    client.send(Message::text("small")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(2), client.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::text("small"), "the connection survives both");
    let s = stats(&server).await;
    assert_eq!((s.binary_frames, s.oversize_frames, s.frames_in), (1, 1, 1));

    // Abrupt: drop the TCP connection without a close frame.
    drop(client);
    let s = wait_for(&server, |s| s.live_connections == 0).await;
    assert_eq!(s.abrupt_closes, 1);
    assert_eq!((s.layer.memberships, s.layer.channels), (0, 0), "nothing stays behind");

    // Graceful: a close frame.
    let mut polite = ws(&server, "room").await;
    polite
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await
        .unwrap();
    let s = wait_for(&server, |s| s.graceful_closes == 1 && s.live_connections == 0).await;
    assert_eq!(s.connections_opened, 2);

    // Garbage after the handshake: a protocol error, counted, and the server still serves.
    let mut raw = TcpStream::connect(server.addr).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let upgrade = format!(
        "GET /ws/chat/room HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    raw.write_all(upgrade.as_bytes()).await.unwrap();
    let mut buf = [0u8; 512];
    let n = raw.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("101"));
    raw.write_all(&[0xFF; 64]).await.unwrap();
    let s = wait_for(&server, |s| s.live_connections == 0 && s.connections_opened == 3).await;
    assert_eq!(s.protocol_errors + s.abrupt_closes, 2, "{s:?}");
    assert_eq!(http_get(&server, "/").await.0, 200);
}

#[tokio::test]
async fn frames_larger_than_the_small_read_buffers_arrive_whole_and_a_plain_get_is_refused() {
    // The server reads into a 4 KiB buffer; a 200 KiB frame still arrives whole, byte for byte,
    // at every member, and the small frames around it are untouched.
    let server = start(1024 * 1024).await;
    let mut alice = ws(&server, "big").await;
    let mut bob = ws(&server, "big").await;
    wait_for(&server, |s| s.layer.memberships == 2).await;
    let big: String = (0..200 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    for text in ["before", big.as_str(), "after"] {
        alice.send(Message::text(text)).await.unwrap();
    }
    for socket in [&mut alice, &mut bob] {
        for expected in ["before", big.as_str(), "after"] {
            let got = tokio::time::timeout(Duration::from_secs(5), socket.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(got.to_text().unwrap(), expected);
        }
    }
    // A GET without the upgrade headers is answered 400 with the reason, not served as a socket.
    let (status, body) = http_get(&server, "/ws/chat/big").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a WebSocket upgrade"), "{body}");
}

/// A herd of connects larger than tokio's default accept queue (1,024) all complete at once while
/// the server has not accepted any yet: the embedded server's listener asks for the deepest queue
/// the kernel allows. With a 1,024-deep queue the kernel drops the SYNs past it and those clients
/// retry only after a second, so they are still waiting when the time below runs out.
#[tokio::test]
async fn a_herd_of_connects_past_1024_waits_in_the_accept_queue_not_in_syn_retries() {
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("read net.core.somaxconn")
        .trim()
        .parse()
        .expect("net.core.somaxconn is a number");
    assert!(
        somaxconn > 1200,
        "net.core.somaxconn is {somaxconn}: this test needs more than 1,200 to tell the listener's queue from tokio's 1,024"
    );
    let herd = (somaxconn - 64).min(2000);
    let listener = leakrun::server::listener_on("127.0.0.1:0".parse().unwrap()).expect("listen");
    let addr = listener.local_addr().unwrap();
    let mut connects = tokio::task::JoinSet::new();
    for _ in 0..herd {
        connects.spawn(tokio::time::timeout(
            Duration::from_millis(700),
            TcpStream::connect(addr),
        ));
    }
    let mut made = Vec::with_capacity(herd);
    let mut waited = 0;
    while let Some(outcome) = connects.join_next().await {
        match outcome.expect("connect task") {
            Ok(Ok(stream)) => made.push(stream),
            Ok(Err(error)) => panic!("connect failed: {error}"),
            Err(_) => waited += 1,
        }
    }
    assert_eq!(
        waited, 0,
        "{waited} of {herd} connects still waiting after 700 ms (SYNs dropped at a full accept queue)"
    );
    assert_eq!(made.len(), herd);
    drop(listener);
}
