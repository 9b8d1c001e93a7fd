//! The embedded server (`leakrun serve`, its own process) under malformed WebSocket traffic over
//! raw TCP on 127.0.0.1 — bad opcodes, unmasked frames, huge declared lengths, fragmented and
//! oversized control frames, invalid UTF-8, reserved bits, random bytes, slow writers — and under
//! 10,000 idle connections: it keeps serving, `/stats` stays right, its memory stays bounded.
//!
//! Seeded like `tests/fuzz.rs` (`FUZZ_SEED`); `FUZZ_CASES` sets the malformed connections (default
//! 400), `FUZZ_IDLE` the idle ones (default 10,000). Every read has a bound, so nothing hangs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use leakrun::server::ServerStats;

const SEED: u64 = 0x1ea4_2026_0019;
const READ_BOUND: Duration = Duration::from_secs(10);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// `leakrun serve` on a free loopback port; stopped when dropped.
struct Served {
    child: Child,
    addr: SocketAddr,
}

impl Served {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_leakrun"))
            .args(["serve", "--port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("leakrun serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Self { child, addr }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn stats(&self) -> ServerStats {
        let mut tcp = TcpStream::connect(self.addr).unwrap();
        tcp.set_read_timeout(Some(READ_BOUND)).unwrap();
        write!(
            tcp,
            "GET /stats HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).unwrap();
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
    }

    /// Polls `/stats` until `what` holds (bounded).
    fn wait_for(&self, what: impl Fn(&ServerStats) -> bool) -> ServerStats {
        for _ in 0..500 {
            let s = self.stats();
            if what(&s) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("condition not reached: {:?}", self.stats());
    }

    /// A real client still joins, sends and hears itself.
    fn still_serves(&self) {
        let (mut socket, _) = tokio_tungstenite::tungstenite::connect(format!("ws://{}/ws/chat/check", self.addr))
            .expect("a real client connects");
        socket.send("still here".into()).unwrap();
        let echo = socket.read().unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), "still here");
        socket.close(None).unwrap();
        while socket.read().is_ok() {}
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw TCP connection that has completed the WebSocket handshake, or `None` if refused.
fn handshake(addr: SocketAddr, room: &str) -> Option<TcpStream> {
    let mut tcp = TcpStream::connect(addr).ok()?;
    tcp.set_read_timeout(Some(READ_BOUND)).unwrap();
    write!(
        tcp,
        "GET /ws/chat/{room} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .ok()?;
    // Read the response head byte by byte, so no frame after it is swallowed.
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).ok()? == 0 || head.len() > 4096 {
            return None;
        }
        head.push(byte[0]);
    }
    head.starts_with(b"HTTP/1.1 101").then_some(tcp)
}

/// One frame: `fin`, reserved bits `rsv`, `opcode`, masked or not, a declared length that may lie.
fn frame(fin: bool, rsv: u8, opcode: u8, masked: bool, declared: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 0x0f)];
    let mask_bit = if masked { 0x80 } else { 0 };
    match declared {
        0..=125 => out.push(mask_bit | declared as u8),
        126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend((declared as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend(declared.to_be_bytes());
        }
    }
    let key = [0x12, 0x34, 0x56, 0x78];
    if masked {
        out.extend(key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend(payload);
    }
    out
}

fn text(payload: &[u8]) -> Vec<u8> {
    frame(true, 0, 1, true, payload.len() as u64, payload)
}

/// The malformed traffic of case `n`: bytes to send, and whether to send them slowly.
fn malformed(rng: &mut fastrand::Rng) -> (Vec<u8>, bool) {
    let body: Vec<u8> = (0..rng.usize(0..200)).map(|_| rng.u8(..)).collect();
    let bytes = match rng.u8(0..14) {
        0 => frame(
            true,
            0,
            [3, 4, 5, 6, 7, 11, 12, 13, 14, 15][rng.usize(0..10)],
            true,
            body.len() as u64,
            &body,
        ),
        1 => frame(true, 0, 1, false, 5, b"hello"),
        2 => frame(true, 0, 1, true, u64::MAX >> 1, &body),
        3 => frame(true, 0, 2, true, rng.u64(1 << 20..1 << 40), &body),
        4 => frame(false, 0, 9, true, 3, b"abc"),
        5 => frame(true, 0, 9, true, 200, &[b'p'; 200]),
        6 => text(&[0xff, 0xfe, 0xc3, 0x28, b'x']),
        7 => frame(true, rng.u8(1..8), 1, true, 2, b"hi"),
        8 => frame(true, 0, 0, true, 4, b"cont"),
        9 => [frame(false, 0, 1, true, 3, b"one"), frame(true, 0, 1, true, 3, b"two")].concat(),
        10 => frame(true, 0, 8, true, 1, b"x"),
        11 => text(&vec![b'y'; rng.usize(60_000..200_000)]),
        12 => body,
        _ => [text(b"fine"), frame(true, 0, 1, true, 10, b"short")].concat(),
    };
    let slow = rng.u8(0..20) == 0;
    (bytes, slow)
}

#[test]
fn malformed_websocket_traffic_is_survived_and_counted() {
    let served = Served::start();
    let before_kib = served.rss_kib();
    let cases = env_or("FUZZ_CASES", 400);
    let seed = env_or("FUZZ_SEED", SEED);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut opened = 0u64;
    // Four writers at a time, each case bounded by the read bound.
    let plans: Vec<_> = (0..cases).map(|_| malformed(&mut rng)).collect();
    let chunks: Vec<Vec<(Vec<u8>, bool)>> = plans
        .chunks(cases.div_ceil(4).max(1) as usize)
        .map(<[_]>::to_vec)
        .collect();
    let addr = served.addr;
    let threads: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            std::thread::spawn(move || {
                let mut opened = 0u64;
                for (bytes, slow) in chunk {
                    let Some(mut tcp) = handshake(addr, "fuzz") else {
                        continue;
                    };
                    opened += 1;
                    let sent = if slow {
                        // A slow writer: a byte at a time, bounded to the first 64.
                        bytes.iter().take(64).try_for_each(|b| {
                            std::thread::sleep(Duration::from_millis(2));
                            tcp.write_all(&[*b])
                        })
                    } else {
                        tcp.write_all(&bytes)
                    };
                    let _ = sent;
                    let _ = tcp.shutdown(std::net::Shutdown::Write);
                    // The server ends the connection: read (bounded) to its end.
                    let mut sink = [0u8; 4096];
                    while matches!(tcp.read(&mut sink), Ok(n) if n > 0) {}
                }
                opened
            })
        })
        .collect();
    for thread in threads {
        opened += thread.join().unwrap();
    }
    let stats = served.wait_for(|s| s.live_connections == 0);
    assert_eq!(stats.connections_opened, opened, "{stats:?}");
    assert_eq!(stats.layer.memberships, 0, "{stats:?}");
    served.still_serves();
    let stats = served.wait_for(|s| s.live_connections == 0);
    assert_eq!(stats.connections_opened, opened + 1);
    let after_kib = served.rss_kib();
    eprintln!(
        "{cases} malformed connections (seed {seed:#x}), {opened} handshakes: RSS {before_kib} KiB -> {after_kib} KiB; {stats:?}"
    );
    assert!(
        after_kib < before_kib + 64 * 1024,
        "RSS grew from {before_kib} to {after_kib} KiB"
    );
}

#[test]
fn ten_thousand_idle_connections_are_held_and_counted() {
    let served = Served::start();
    let count = env_or("FUZZ_IDLE", 10_000);
    let before_kib = served.rss_kib();
    let mut held = Vec::with_capacity(count as usize);
    for i in 0..count {
        let room = format!("idle{}", i % 100);
        held.push(handshake(served.addr, &room).unwrap_or_else(|| panic!("connection {i} refused")));
    }
    let stats = served.wait_for(|s| s.live_connections == count);
    assert_eq!(stats.connections_opened, count);
    served.still_serves();
    let held_kib = served.rss_kib();
    let per_connection = (held_kib.saturating_sub(before_kib) * 1024) / count.max(1);
    eprintln!("{count} idle connections: server RSS {before_kib} KiB -> {held_kib} KiB, {per_connection} bytes each");
    // Measured: about 136 KiB each, most likely tungstenite's default 128 KiB read buffer per
    // socket (warp offers no setting for it). Bounded per connection, not growing with traffic.
    assert!(
        per_connection < 256 * 1024,
        "{per_connection} bytes per idle connection"
    );
    drop(held);
    let stats = served.wait_for(|s| s.live_connections == 0);
    assert_eq!(stats.layer.memberships, 0, "{stats:?}");
    assert_eq!(stats.connections_opened, count + 1);
}
