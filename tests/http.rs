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

// ---- Through the binary: workloads, verdicts, bad input, diff ----

use std::path::Path;

use common::*;
use serde_json::Value;

/// Runs a scenario that must pass; its result and what it printed.
fn run_passing(file: &Path, out: &Path, name: &str) -> (Value, String) {
    let output = run_scenario(file, out);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}: {}",
        file.display(),
        describe(&output)
    );
    let r = result(out, name);
    assert_eq!(r["status"], "pass", "{}", r["verdicts"]["leak"]["summary"]);
    (r, String::from_utf8_lossy(&output.stdout).into_owned())
}

fn run_ok(file: &Path, out: &Path, name: &str) -> Value {
    run_passing(file, out, name).0
}

fn series<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["verdicts"]["leak"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no series {name}"))
}

/// The route figures of a result's only workload, checked for what every run must hold: every
/// request answered, none failed, and as many answers as the scenario asked for per iteration.
fn only_route(r: &Value) -> &Value {
    let routes = r["http"].as_array().expect("http figures");
    assert_eq!(routes.len(), 1, "{routes:?}");
    let route = &routes[0];
    assert_eq!(route["failed"], 0, "{route}");
    assert_eq!(route["answered"], route["requests"], "{route}");
    assert!(route["latency"]["count"].as_u64().unwrap() > 0);
    assert!(route["requests_per_s"].as_f64().unwrap() > 0.0);
    route
}

#[test]
fn the_unbounded_cache_is_a_leak_of_about_the_value_size_per_request() {
    let dir = scratch();
    let r = run_ok(
        Path::new("scenarios/cache_unbounded.toml"),
        dir.path(),
        "cache_unbounded",
    );
    let leak = &r["verdicts"]["leak"];
    assert_eq!(leak["outcome"], "leak", "{}", leak["summary"]);
    let workload = &r["scenario"]["resolved"]["http"][0];
    let (body, per_iteration) = (
        workload["body"].as_f64().unwrap(),
        workload["requests"].as_u64().unwrap(),
    );
    let per_request = leak["bytes_per_request"].as_f64().unwrap();
    assert!(
        (per_request - body).abs() <= 0.25 * body,
        "{per_request} bytes per request for {body}-byte values"
    );
    assert!(
        leak["summary"].as_str().unwrap().contains("per request"),
        "{}",
        leak["summary"]
    );
    assert_eq!(series(&r, "heap_bytes")["class"], "leak");
    // The /info figures grow with every iteration, by one item per request (less repeated keys).
    let items = series(&r, "cache_items");
    assert_eq!(items["class"], "leak");
    let after: Vec<u64> = items["after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as u64)
        .collect();
    // Random keys from a billion: a key drawn twice in a run of 12,000 writes happens about one
    // run in fifteen (the birthday bound), so a step may fall short of one item per request by a
    // few, never exceed it.
    assert!(
        after
            .windows(2)
            .all(|w| (per_iteration - 5..=per_iteration).contains(&(w[1] - w[0]))),
        "{after:?}"
    );
    let route = only_route(&r);
    let iterations = r["iterations"].as_array().unwrap().len() as u64;
    assert_eq!(route["statuses"]["204"], per_iteration * iterations, "{route}");
    assert_eq!(leak["requests_per_iteration"], per_iteration as f64);
}

#[test]
fn the_bounded_cache_is_clean_once_full() {
    let dir = scratch();
    let r = run_ok(Path::new("scenarios/cache_bounded.toml"), dir.path(), "cache_bounded");
    let leak = &r["verdicts"]["leak"];
    assert_ne!(leak["outcome"], "leak", "{}", leak["summary"]);
    assert_eq!(series(&r, "heap_bytes")["class"], "clean", "{}", leak["summary"]);
    let max_items = r["scenario"]["resolved"]["server"]["cache"]["max_items"]
        .as_f64()
        .unwrap();
    for name in ["cache_items", "cache_bytes"] {
        let s = series(&r, name);
        assert_eq!(s["class"], "clean", "{}", s["evidence"]);
        let after = s["after"].as_array().unwrap();
        assert!(after.iter().all(|v| v == &after[0]), "{name} holds still: {after:?}");
    }
    assert_eq!(series(&r, "cache_items")["after"][0].as_f64(), Some(max_items));
    only_route(&r);
}

#[test]
fn the_hello_server_under_load_is_not_called_a_leak() {
    let dir = scratch();
    let text = std::fs::read_to_string("scenarios/warp_hello.toml")
        .unwrap()
        .replace("duration = \"3s\"", "duration = \"1s\"")
        // Four judged iterations: a single level step in three steps is not steady growth.
        .replace("iterations = 10", "iterations = 5");
    let (r, stdout) = run_passing(&scenario(dir.path(), "warp_hello", &text), dir.path(), "warp_hello");
    let leak = &r["verdicts"]["leak"];
    assert_ne!(leak["outcome"], "leak", "{}", leak["summary"]);
    assert_eq!(series(&r, "heap_bytes")["class"], "clean", "{}", leak["summary"]);
    // Whatever RSS did, it is named for what it is.
    let rss = series(&r, "rss_bytes");
    if rss["class"] == "retention" {
        assert!(leak["summary"].as_str().unwrap().starts_with("retention, not a leak"));
    }
    let route = only_route(&r);
    assert_eq!(route["route"], "GET /");
    assert_eq!(
        route["statuses"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["200"]
    );
    assert!(
        stdout.contains("http     GET /: "),
        "the route's line is printed: {stdout}"
    );
}

#[test]
fn the_open_model_sends_its_scheduled_requests_without_keep_alive() {
    let dir = scratch();
    let text = r#"
name = "open"
[[http]]
method = "PUT"
path = "/cache/{key}"
keys = 20
key_order = "sequential"
body = 100
rate = 200
connections = 4
requests = 40
keep_alive = false
[run]
duration = "30s"
iterations = 2
"#;
    let r = run_ok(&scenario(dir.path(), "open", text), dir.path(), "open");
    let route = only_route(&r);
    assert_eq!(route["statuses"]["204"], 80, "{route}");
    for iteration in r["iterations"].as_array().unwrap() {
        assert_eq!(iteration["http"][0]["answered"], 40);
        // Sequential keys over a space of 20: the cache holds every key once, 20 × (3 + 100) bytes.
        assert_eq!(iteration["after"]["state"]["cache_items"], 20);
        assert_eq!(iteration["after"]["state"]["cache_bytes"], 20 * 103);
    }
}

#[test]
fn bad_http_values_exit_2_naming_file_line_key_and_what_is_valid() {
    let dir = scratch();
    let good = "name = \"bad\"\n[[http]]\nmethod = \"GET\"\npath = \"/\"\nworkers = 4\n";
    let cases = [
        (
            "method = \"GET\"",
            "method = \"FETCH\"",
            "bad0.toml:3:10: `http[0].method`: `FETCH` is not one of the valid values: \"GET\", \"PUT\", \"POST\", \"DELETE\"",
        ),
        (
            "workers = 4",
            "workers = 0",
            "bad1.toml:5:11: `http[0].workers`: 0 is out of range; valid: 1 to 10000",
        ),
        (
            "workers = 4",
            "workers = 4\nrate = 100",
            "bad2.toml:6:8: `http[0].rate`: set either `workers` (closed model",
        ),
        (
            "path = \"/\"",
            "path = \"/cache/{id}\"",
            "bad3.toml:4:8: `http[0].path`: `/cache/{id}` has a placeholder other than `{key}`",
        ),
        (
            "workers = 4",
            "workers = 4\n[server]\nhost = \"192.168.1.10\"",
            "bad4.toml:7:8: `server.host`: `192.168.1.10` is not a loopback address",
        ),
        (
            "workers = 4",
            "workers = 4\nspeed = 1",
            "bad5.toml:6:1: `http[0].speed`: unknown key `speed` in [http]; valid keys: name, method, path",
        ),
    ];
    for (i, (from, to, expected)) in cases.iter().enumerate() {
        let path = scenario(dir.path(), &format!("bad{i}"), &good.replacen(from, to, 1));
        let (file, out) = (path.to_str().unwrap(), dir.path().to_str().unwrap());
        for args in [vec!["check", file], vec!["run", file, "--out", out]] {
            let command = args[0];
            let output = leakrun(&args);
            assert_eq!(output.status.code(), Some(2), "{command} {to}: {}", describe(&output));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains(expected),
                "{command} `{to}`: expected `{expected}` in\n{stderr}"
            );
        }
    }
}

#[test]
fn diff_reports_a_cache_that_started_leaking_and_http_figures_that_regressed() {
    let dir = scratch();
    let as_one_scenario = |file: &str| {
        std::fs::read_to_string(file)
            .unwrap()
            .replace("name = \"cache_unbounded\"", "name = \"cache\"")
            .replace("name = \"cache_bounded\"", "name = \"cache\"")
            .replace("[expect]\nleak = true", "")
    };
    let (base_out, head_out) = (dir.path().join("base"), dir.path().join("head"));
    let base_file = scenario(dir.path(), "bounded", &as_one_scenario("scenarios/cache_bounded.toml"));
    let head_file = scenario(
        dir.path(),
        "unbounded",
        &as_one_scenario("scenarios/cache_unbounded.toml"),
    );
    assert_eq!(run_scenario(&base_file, &base_out).status.code(), Some(0));
    assert_eq!(
        run_scenario(&head_file, &head_out).status.code(),
        Some(1),
        "a leak nobody expected"
    );
    let (base, head) = (base_out.join("cache.json"), head_out.join("cache.json"));

    let output = leakrun(&[
        "diff",
        base.to_str().unwrap(),
        head.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let leak = report["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["verdict"] == "leak")
        .unwrap();
    assert_eq!(leak["worse"], true);
    assert!(leak["detail"].as_str().unwrap().contains("per request"), "{leak}");
    let figures = report["figures"].as_array().unwrap();
    assert!(
        figures
            .iter()
            .any(|f| f["figure"] == "heap per HTTP request" && f["regression"] == true),
        "{figures:?}"
    );

    // The same result, its route made slower: requests per second and p99 regress.
    let mut slower: Value = serde_json::from_str(&std::fs::read_to_string(&head).unwrap()).unwrap();
    let route = &mut slower["http"][0];
    let rate = route["requests_per_s"].as_f64().unwrap();
    route["requests_per_s"] = (rate / 2.0).into();
    let p99 = route["latency"]["p99_us"].as_u64().unwrap();
    route["latency"]["p99_us"] = (p99 * 4 + 2000).into();
    let slower_path = dir.path().join("slower.json");
    std::fs::write(&slower_path, slower.to_string()).unwrap();
    let output = leakrun(&["diff", head.to_str().unwrap(), slower_path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for figure in ["http requests per second PUT /cache/{key}", "http p99 PUT /cache/{key}"] {
        let line = stdout
            .lines()
            .find(|l| l.contains(figure))
            .unwrap_or_else(|| panic!("{figure} in {stdout}"));
        assert!(line.starts_with("WORSE"), "{line}");
    }
}

#[test]
fn serve_and_load_talk_to_each_other_and_serve_stops_on_ctrl_c() {
    let port = free_port();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_leakrun"))
        .args(["serve", "--port", &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("leakrun serve");
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut first_line,
    )
    .unwrap();
    assert!(first_line.contains(&format!("http://127.0.0.1:{port}")), "{first_line}");
    let url = format!("http://127.0.0.1:{port}/cache/k1");
    let output = leakrun(&[
        "load", &url, "-m", "PUT", "--body", "300", "-c", "3", "-n", "30", "--json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let figures: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(figures["statuses"]["204"], 30, "{figures}");
    let get = leakrun(&["load", &url, "-c", "1", "-n", "1", "--json"]);
    let figures: Value = serde_json::from_slice(&get.stdout).unwrap();
    assert_eq!(figures["statuses"]["200"], 1, "the value written is there: {figures}");
    // SAFETY: signalling a child this test started, by its PID.
    unsafe { libc::kill(server.id() as i32, libc::SIGINT) };
    assert!(server.wait().unwrap().success());
    // A URL that is not loopback is refused before anything is sent.
    let remote = leakrun(&["load", "http://192.0.2.1:80/", "-n", "1"]);
    assert_eq!(remote.status.code(), Some(2), "{}", describe(&remote));
    assert!(String::from_utf8_lossy(&remote.stderr).contains("not a loopback address"));
}

/// Runs `leakrun load` against `port` and returns its JSON figures.
fn load_figures(port: u16, extra: &[&str]) -> Value {
    let url = format!("http://127.0.0.1:{port}/");
    let mut args = vec!["load", url.as_str(), "--json"];
    args.extend_from_slice(extra);
    let output = leakrun(&args);
    assert_eq!(
        output.status.code(),
        Some(3),
        "no answer at all is exit 3: {}",
        describe(&output)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn requests_without_an_answer_are_counted_by_kind() {
    // Nobody listening: connect.
    let closed = free_port();
    let f = load_figures(closed, &["-c", "1", "-n", "3"]);
    assert_eq!(f["failures"]["connect"], 3, "{f}");
    assert_eq!(f["answered"], 0);

    // A server that accepts and never answers: timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().take(2) {
            held.push(stream);
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    });
    let f = load_figures(port, &["-c", "1", "-n", "2", "--timeout", "300ms"]);
    assert_eq!(f["failures"]["timeout"], 2, "{f}");
    keep.join().unwrap();

    // A server that reads the request and closes the connection: reset.
    let rude = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = rude.local_addr().unwrap().port();
    let closer = std::thread::spawn(move || {
        for stream in rude.incoming().take(2) {
            let mut stream = stream.unwrap();
            let mut buffer = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut buffer);
        }
    });
    let f = load_figures(port, &["-c", "1", "-n", "2"]);
    assert_eq!(f["failures"]["reset"], 2, "{f}");
    closer.join().unwrap();
}

#[test]
fn a_fixed_port_is_used_for_the_first_instance_and_the_next_for_the_second() {
    let dir = scratch();
    // Two neighbouring free ports; the second is held, so the run must fail on it, naming it.
    let (first, held) = (0..100)
        .find_map(|_| {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = probe.local_addr().unwrap().port();
            let next = std::net::TcpListener::bind(("127.0.0.1", port.checked_add(1)?)).ok()?;
            Some((port, next))
        })
        .expect("two neighbouring free ports");
    let second = first + 1;
    let text = format!(
        "name = \"ports\"\n[server]\nport = {}\ninstances = 2\n[[http]]\npath = \"/\"\nworkers = 2\nrequests = 20\n[run]\nduration = \"5s\"\n",
        first
    );
    let output = run_scenario(&scenario(dir.path(), "ports", &text), dir.path());
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let r = result(dir.path(), "ports");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("would not start on 127.0.0.1:{second}")),
        "{error}"
    );
    drop(held);
    let output = run_scenario(&scenario(dir.path(), "ports", &text), dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(result(dir.path(), "ports")["http"][0]["statuses"]["200"], 20);
}
