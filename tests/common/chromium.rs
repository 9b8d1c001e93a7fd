//! A headless Chromium (Debian's `chromium`, installed by `scripts/install-services`) driven over
//! the DevTools protocol with the WebSocket client leakrun already has: pages are opened, their
//! console errors and exceptions collected, scripts evaluated and screenshots taken.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Bound on one DevTools call: a guard against a hung browser, not a measurement.
const CALL_BOUND: Duration = Duration::from_secs(60);

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A running headless Chromium in a process group of its own, stopped on drop.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    socket: Socket,
    next_id: u64,
    events: Vec<Value>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium's helpers (zygote, renderers) are in its group.
        // SAFETY: kill(2) on the group this test started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The binary, or a panic naming the script that installs it.
fn chromium() -> &'static str {
    for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(path).exists() {
            return path;
        }
    }
    panic!("chromium is not installed: run scripts/install-services (it installs Debian's chromium)");
}

impl Browser {
    /// Starts Chromium headless with a fresh profile and connects to its DevTools endpoint.
    pub async fn start() -> Self {
        let profile = tempfile::tempdir().expect("a profile folder");
        let mut child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1040,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(at) = line.find("ws://") {
                    let _ = tx.send(line[at..].trim().to_string());
                    sent = true;
                }
            }
        });
        let url = rx
            .recv_timeout(CALL_BOUND)
            .expect("chromium printed its DevTools address");
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("connect to DevTools");
        Self {
            child,
            _profile: profile,
            socket,
            next_id: 1,
            events: Vec::new(),
        }
    }

    /// Calls `method`, in `session` (a page) or on the browser, and returns its result.
    pub async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send to DevTools");
        loop {
            let value = self.receive().await;
            if value["id"] == id {
                assert!(value.get("error").is_none(), "{method}: {}", value["error"]);
                return value["result"].clone();
            }
            self.events.push(value);
        }
    }

    async fn receive(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(CALL_BOUND, self.socket.next())
                .await
                .expect("DevTools answered")
                .expect("DevTools still connected")
                .expect("a DevTools message");
            if let Message::Text(text) = next {
                return serde_json::from_str(&text).expect("DevTools JSON");
            }
        }
    }

    /// Opens a page on `url` with its console and log reported, and waits for its load event.
    pub async fn open(&mut self, url: &str) -> String {
        let target = self
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        let session = attached["sessionId"].as_str().expect("a session").to_string();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            self.call(Some(&session), domain, json!({})).await;
        }
        self.call(Some(&session), "Page.navigate", json!({"url": url})).await;
        self.wait_for_event(&session, "Page.loadEventFired").await;
        session
    }

    async fn wait_for_event(&mut self, session: &str, method: &str) {
        let seen = |e: &Value| e["method"] == method && e["sessionId"] == session;
        while !self.events.iter().any(seen) {
            let value = self.receive().await;
            self.events.push(value);
        }
    }

    /// Console errors, failed assertions, uncaught exceptions and error log entries of `session`.
    pub fn errors(&self, session: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["sessionId"] == session)
            .filter(|e| match e["method"].as_str() {
                Some("Runtime.consoleAPICalled") => matches!(e["params"]["type"].as_str(), Some("error" | "assert")),
                Some("Runtime.exceptionThrown") => true,
                Some("Log.entryAdded") => e["params"]["entry"]["level"] == "error",
                _ => false,
            })
            .map(|e| e["params"].to_string())
            .collect()
    }

    /// Evaluates `expression` in the page and returns its value.
    pub async fn eval(&mut self, session: &str, expression: &str) -> Value {
        let result = self
            .call(
                Some(session),
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is true, at most `tries` times, 100 ms apart.
    pub async fn until(&mut self, session: &str, expression: &str, tries: u32) -> bool {
        for _ in 0..tries {
            if self.eval(session, expression).await == json!(true) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// A PNG screenshot of the whole page.
    pub async fn screenshot(&mut self, session: &str) -> Vec<u8> {
        use base64::Engine as _;
        let shot = self
            .call(
                Some(session),
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64")
    }
}

/// The share of pixels unlike the top-left one, and the number of distinct colours, of a PNG.
pub fn ink(png_bytes: &[u8]) -> (f64, usize) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    let background = pixels[0];
    let different = pixels.iter().filter(|p| **p != background).count();
    let colours: std::collections::BTreeSet<&[u8]> = pixels.iter().copied().collect();
    (different as f64 / pixels.len() as f64, colours.len())
}
