//! A server that stops reading: the client's sends fill the socket, the send bound inside the
//! session ends it (`send_timed_out`), and its report is kept — the run is complete, the session
//! counted, the frames it could not confirm are unconfirmed, not lost. The server is this test's
//! own WebSocket listener on loopback, watched by pid as an external target.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::*;

#[test]
fn a_server_that_stops_reading_ends_the_session_not_the_run() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    static DONE: AtomicBool = AtomicBool::new(false);
    // Accepts, completes the handshake, then never reads again: holds each socket until the end.
    let server = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        while !DONE.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    held.push(tokio_tungstenite::tungstenite::accept(stream).ok());
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    });
    let dir = scratch();
    let path = scenario(
        dir.path(),
        "stalled",
        &format!(
            "name = \"stalled\"\n[server]\ntarget = \"external\"\npid = {}\nws_url = \"ws://127.0.0.1:{port}/ws/{{room}}\"\n[[rooms]]\nname = \"a\"\n  [[rooms.clients]]\n  count = 1\n  rate = 500\n  payload = \"64KiB\"\n  reader = \"paused\"\n[run]\nduration = \"12s\"\ndrain = \"1s\"\nsettle = \"1s\"\n[expect]\ngaps = true\n",
            std::process::id()
        ),
    );
    let output = run_scenario(&path, dir.path());
    DONE.store(true, Ordering::Relaxed);
    server.join().unwrap();
    assert!(dir.path().join("stalled.json").exists(), "{}", describe(&output));
    let r = result(dir.path(), "stalled");
    assert_ne!(r["status"], "error", "{}", describe(&output));
    assert!(r.get("incomplete").is_none(), "{}", r["incomplete"]);
    let iteration = &r["iterations"][0];
    assert_eq!(iteration["sessions"], 1, "the stalled session's report is kept");
    let kinds: Vec<&str> = r["events"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"send_timed_out"), "{kinds:?}");
    assert!(
        iteration["totals"]["sent"].as_u64().unwrap() > 0,
        "{}",
        iteration["totals"]
    );
}
