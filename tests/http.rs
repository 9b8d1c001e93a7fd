//! HTTP on the embedded server: the hello and cache routes with a real HTTP client on loopback
//! (hyper), and — through the real `leakrun` binary — the `[[http]]` workloads and their verdicts:
//! the unbounded cache is a leak measured per request (positive control), the bounded one is
//! clean once full (negative control), and the hello server under load is not called a leak.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use leakrun::layer::{ChannelLayer, MemoryLayer};
use leakrun::server::{AppState, CacheConfig, CacheMode, EmbeddedServer, ServerFaults};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(cache: CacheConfig) -> EmbeddedServer {
    let layer: Arc<dyn ChannelLayer> = Arc::new(MemoryLayer::new(100));
    EmbeddedServer::start(AppState::with_cache(layer, 64 * 1024, ServerFaults::off(), cache))
        .await
        .expect("server starts")
}

/// One request on a fresh connection with hyper's client; status and body.
async fn request(server: &EmbeddedServer, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", server.addr.to_string())
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn info(server: &EmbeddedServer) -> serde_json::Value {
    let (status, body) = request(server, "GET", "/info", b"").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("info JSON")
}

#[tokio::test]
async fn hello_answers() {
    let server = start(CacheConfig::default()).await;
    assert_eq!(request(&server, "GET", "/", b"").await, (200, "Hello, World!".into()));
    server.stop().await;
}

#[tokio::test]
async fn the_cache_stores_returns_and_counts_values() {
    let server = start(CacheConfig::default()).await;
    let (status, body) = request(&server, "GET", "/cache/k1", b"").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no value for key `k1`"), "{body}");
    assert_eq!(request(&server, "PUT", "/cache/k1", b"hello").await.0, 204);
    assert_eq!(request(&server, "PUT", "/cache/k22", b"world!").await.0, 204);
    assert_eq!(request(&server, "GET", "/cache/k1", b"").await, (200, "hello".into()));
    assert_eq!(
        info(&server).await,
        serde_json::json!({"items": 2, "bytes": 2 + 5 + 3 + 6})
    );
    // Replacing a value replaces its bytes.
    assert_eq!(request(&server, "PUT", "/cache/k1", b"").await.0, 204);
    assert_eq!(info(&server).await, serde_json::json!({"items": 2, "bytes": 2 + 3 + 6}));
    server.stop().await;
}

#[tokio::test]
async fn bad_keys_are_400_with_the_rule() {
    let server = start(CacheConfig::default()).await;
    for path in ["/cache/a%20b", "/cache/", "/cache/a/b"] {
        for method in ["GET", "PUT"] {
            let (status, body) = request(&server, method, path, b"v").await;
            assert_eq!(status, 400, "{method} {path}: {body}");
            assert!(body.contains("letters, digits"), "{method} {path}: {body}");
        }
    }
    let long = format!("/cache/{}", "k".repeat(251));
    assert_eq!(request(&server, "PUT", &long, b"v").await.0, 400);
    assert_eq!(info(&server).await["items"], 0);
    server.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_whether_its_length_is_declared_or_chunked() {
    let server = start(CacheConfig {
        max_body: 1000,
        ..CacheConfig::default()
    })
    .await;
    assert_eq!(request(&server, "PUT", "/cache/fits", &[b'x'; 1000]).await.0, 204);
    let (status, body) = request(&server, "PUT", "/cache/big", &[b'x'; 1001]).await;
    assert_eq!(status, 413);
    assert!(body.contains("over the limit of 1000 bytes"), "{body}");

    // Chunked, no content-length: refused once the chunks pass the limit.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let chunk = "x".repeat(600);
    let raw = format!(
        "PUT /cache/chunked HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n",
        server.addr
    );
    tcp.write_all(raw.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert_eq!(info(&server).await["items"], 1);
    server.stop().await;
}

#[tokio::test]
async fn a_bounded_cache_holds_at_most_max_items_and_an_unbounded_one_holds_all() {
    for (mode, expected) in [(CacheMode::Bounded, 10), (CacheMode::Unbounded, 25)] {
        let server = start(CacheConfig {
            mode,
            max_items: 10,
            ..CacheConfig::default()
        })
        .await;
        for i in 0..25 {
            assert_eq!(
                request(&server, "PUT", &format!("/cache/k{i:02}"), b"0123456789")
                    .await
                    .0,
                204
            );
        }
        let figures = info(&server).await;
        assert_eq!(figures["items"], expected, "{mode:?}");
        assert_eq!(figures["bytes"], expected * (3 + 10), "{mode:?}");
        // The oldest writes went first.
        let first = request(&server, "GET", "/cache/k00", b"").await.0;
        assert_eq!(first, if mode == CacheMode::Bounded { 404 } else { 200 });
        assert_eq!(request(&server, "GET", "/cache/k24", b"").await.0, 200);
        server.stop().await;
    }
}
