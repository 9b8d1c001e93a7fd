//! The `[server]` keys of an external target: a server leakrun did not write, started by
//! `command` or watched through `pid` / `pid_file`, reached at `ws_url`.
//!
//! Kept apart from `validate` because the two targets take disjoint keys: each key of one target
//! written for the other is a problem naming the key, never silently ignored.

use std::path::PathBuf;
use std::time::Duration;

use super::diagnostics::Collector;
use super::model::*;
use super::raw::*;
use super::values::{choice, duration_value, flag, int};

/// The token `send_template` replaces with the envelope.
pub const ENVELOPE_PLACEHOLDER: &str = "{{envelope}}";
/// Where `ws_url` takes the room name.
pub const ROOM_PLACEHOLDER: &str = "{room}";
/// Highest process id Linux hands out (`pid_max` is at most 2^22).
const PID_MAX: u64 = 4_194_304;
/// Default bound on waiting for a started server to be ready.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Default time between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);

/// Checks the external-target keys of `raw` against `target`; the spec when the target is
/// external. `rooms` is the number of rooms (a `ws_url` without `{room}` serves only one).
pub fn validate(raw: &RawScenario, target: Target, rooms: usize, c: &mut Collector<'_>) -> Option<ExternalSpec> {
    let default = RawServer::default();
    let server = raw.server.as_ref().map_or(&default, |s| s.get_ref());
    let backend = raw.backend.as_ref().map(|b| b.get_ref());
    if let Some(url_env) = backend.and_then(|b| b.url_env.as_ref()) {
        let kind = backend
            .and_then(|b| b.kind.as_ref())
            .map_or("memory", |k| k.get_ref().as_str());
        if target == Target::Embedded || kind == "memory" {
            c.at(
                url_env.span(),
                "backend.url_env",
                "only applies to an external target whose backend.kind names a service (\"redis\" or \"amqp\"): the variable its command gets the service's URL in",
            );
        }
    }
    if target == Target::Embedded {
        for (key, span) in external_keys(server) {
            c.at(
                span,
                format!("server.{key}"),
                "only applies to server.target = \"external\"; this scenario runs the embedded server (the default)",
            );
        }
        return None;
    }
    embedded_only(raw, c);
    let allow_remote = flag(server.allow_remote.as_ref(), false);
    let has_http = !raw.http.is_empty();
    let mut ws_port = 80;
    let ws_url = match &server.ws_url {
        Some(url) => {
            let text = url.get_ref();
            let sample = text.replace(ROOM_PLACEHOLDER, "room");
            match check_url(&sample, &["ws"], "server", allow_remote) {
                Err(message) => c.at(url.span(), "server.ws_url", message),
                Ok(parsed) => ws_port = parsed.port_or_known_default().unwrap_or(80),
            }
            if rooms > 1 && !text.contains(ROOM_PLACEHOLDER) {
                c.at(
                    url.span(),
                    "server.ws_url",
                    format!(
                        "has no `{ROOM_PLACEHOLDER}`, so all {rooms} rooms would join one; write where the room name goes, e.g. \"ws://127.0.0.1:8000/ws/chat/{{room}}/\""
                    ),
                );
            }
            text.clone()
        }
        // An HTTP-only scenario (no rooms) needs no WebSocket URL.
        None if rooms == 0 && has_http => String::new(),
        None => {
            c.at(
                raw.server.as_ref().map_or(0..0, |s| s.span()),
                "server.ws_url",
                "missing; an external target needs the URL its clients connect to, e.g. `ws_url = \"ws://127.0.0.1:8000/ws/chat/{room}/\"`",
            );
            String::new()
        }
    };
    let http = |c: &mut Collector<'_>, value: &Option<S<String>>, key: &str| {
        value.as_ref().map(|url| {
            if let Err(message) = check_url(url.get_ref(), &["http"], "server", allow_remote) {
                c.at(url.span(), format!("server.{key}"), message);
            }
            url.get_ref().clone()
        })
    };
    let http_url = http(c, &server.http_url, "http_url");
    if has_http && http_url.is_none() && ws_url.is_empty() {
        c.at(
            raw.server.as_ref().map_or(0..0, |s| s.span()),
            "server.http_url",
            "missing; [[http]] workloads against an external server need its address, e.g. `http_url = \"http://127.0.0.1:5000/\"`",
        );
    }
    // Without a WebSocket URL, readiness defaults to the HTTP port accepting.
    if ws_url.is_empty()
        && let Some(port) = http_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.port_or_known_default())
    {
        ws_port = port;
    }
    let stats_url = http(c, &server.stats_url, "stats_url");
    let ready_url = http(c, &server.ready_url, "ready_url");
    let send_template = server.send_template.as_ref().map(|t| {
        let count = t.get_ref().matches(ENVELOPE_PLACEHOLDER).count();
        if count != 1 {
            c.at(
                t.span(),
                "server.send_template",
                format!(
                    "holds `{ENVELOPE_PLACEHOLDER}` {count} times; valid: text with it exactly once, where the envelope token goes, e.g. '{{\"message\": \"{ENVELOPE_PLACEHOLDER}\"}}'"
                ),
            );
        }
        t.get_ref().clone()
    });
    let stats_counters = match &server.stats_counters {
        Some(names) if stats_url.is_none() => {
            c.at(
                names.span(),
                "server.stats_counters",
                "only applies with `server.stats_url`; name the stats document's running totals there",
            );
            Vec::new()
        }
        Some(names) => names.get_ref().clone(),
        None => Vec::new(),
    };
    let process = process(raw, server, ready_url, ws_port, c);
    Some(ExternalSpec {
        process,
        ws_url,
        http_url,
        allow_remote,
        send_template,
        stats_url,
        stats_counters,
    })
}

/// How leakrun gets hold of the process: exactly one of `command`, `pid`, `pid_file`.
fn process(
    raw: &RawScenario,
    server: &RawServer,
    ready_url: Option<String>,
    ws_port: u16,
    c: &mut Collector<'_>,
) -> ProcessSpec {
    let present: Vec<(&str, std::ops::Range<usize>)> = [
        ("command", server.command.as_ref().map(|v| v.span())),
        ("pid", server.pid.as_ref().map(|v| v.span())),
        ("pid_file", server.pid_file.as_ref().map(|v| v.span())),
    ]
    .into_iter()
    .filter_map(|(key, span)| span.map(|s| (key, s)))
    .collect();
    const ONE_OF: &str = "valid: exactly one of `command` (leakrun starts the server and stops it after), `pid` or `pid_file` (leakrun watches a server you started)";
    if present.is_empty() {
        let span = server
            .target
            .as_ref()
            .map(|t| t.span())
            .or_else(|| raw.server.as_ref().map(|s| s.span()))
            .unwrap_or(0..0);
        c.at(
            span,
            "server.target",
            format!("\"external\" needs to know its server's process; {ONE_OF}"),
        );
    }
    for (key, span) in present.iter().skip(1) {
        c.at(
            span.clone(),
            format!("server.{key}"),
            format!("`{}` and `{key}` are both set; {ONE_OF}", present[0].0),
        );
    }
    let started = server.command.is_some();
    let command_only: [(&str, Option<std::ops::Range<usize>>); 6] = [
        ("cwd", server.cwd.as_ref().map(|v| v.span())),
        ("env", server.env.as_ref().map(|v| v.span())),
        ("ready_url", server.ready_url.as_ref().map(|v| v.span())),
        ("ready_port", server.ready_port.as_ref().map(|v| v.span())),
        ("ready_timeout", server.ready_timeout.as_ref().map(|v| v.span())),
        ("stop_grace", server.stop_grace.as_ref().map(|v| v.span())),
    ];
    if !started {
        for (key, span) in command_only {
            if let Some(span) = span {
                c.at(
                    span,
                    format!("server.{key}"),
                    "only applies with `server.command` (a server leakrun starts); a watched `pid` is neither started nor stopped",
                );
            }
        }
    }
    let heap = heap(server, started, c);
    if let (Some(_), Some(port)) = (&server.ready_url, &server.ready_port) {
        c.at(
            port.span(),
            "server.ready_port",
            "`ready_url` and `ready_port` are both set; valid: one of them (default: the ws_url's port accepts)",
        );
    }
    if let Some(command) = &server.command {
        let line = match command.get_ref() {
            RawCommand::Line(line) => {
                if line.trim().is_empty() {
                    c.at(command.span(), "server.command", EMPTY_COMMAND);
                }
                CommandLine::Shell(line.clone())
            }
            RawCommand::Argv(argv) => {
                if argv.first().is_none_or(|p| p.trim().is_empty()) {
                    c.at(command.span(), "server.command", EMPTY_COMMAND);
                }
                CommandLine::Argv(argv.clone())
            }
        };
        let ready = match (ready_url, &server.ready_port) {
            (Some(url), _) => Readiness::Url(url),
            (None, Some(port)) => Readiness::Port(int(c, Some(port), "server.ready_port", 1, 1..=65535) as u16),
            (None, None) => Readiness::Port(ws_port),
        };
        return ProcessSpec::Command(CommandSpec {
            line,
            cwd: server.cwd.as_ref().map(|d| PathBuf::from(d.get_ref())),
            env: server.env.as_ref().map(|e| e.get_ref().clone()).unwrap_or_default(),
            ready,
            ready_timeout: duration_value(
                c,
                server.ready_timeout.as_ref(),
                "server.ready_timeout",
                DEFAULT_READY_TIMEOUT,
                true,
            ),
            stop_grace: duration_value(
                c,
                server.stop_grace.as_ref(),
                "server.stop_grace",
                DEFAULT_STOP_GRACE,
                false,
            ),
            heap,
        });
    }
    if let Some(pid) = &server.pid {
        return ProcessSpec::Pid {
            pid: int(c, Some(pid), "server.pid", 1, 1..=PID_MAX) as u32,
        };
    }
    if let Some(path) = &server.pid_file {
        if path.get_ref().trim().is_empty() {
            c.at(
                path.span(),
                "server.pid_file",
                "is empty; valid: the path of a file holding the server's process id",
            );
        }
        return ProcessSpec::PidFile {
            path: PathBuf::from(path.get_ref()),
        };
    }
    ProcessSpec::Pid { pid: 1 }
}

/// `server.heap`, `heap_frames`, `heap_sites`: a probe needs a server leakrun starts, and its
/// settings need the probe.
fn heap(server: &RawServer, started: bool, c: &mut Collector<'_>) -> HeapSpec {
    let probe = choice(
        c,
        server.heap.as_ref(),
        "server.heap",
        &[
            ("none", HeapProbe::None),
            ("python", HeapProbe::Python),
            ("malloc", HeapProbe::Malloc),
        ],
        HeapProbe::None,
    );
    if let Some(value) = &server.heap
        && probe != HeapProbe::None
        && !started
    {
        c.at(
            value.span(),
            "server.heap",
            format!(
                "\"{}\" needs a server leakrun starts (`server.command`): leakrun cannot add its heap probe to a process it did not start; valid with `pid` / `pid_file`: \"none\"",
                value.get_ref()
            ),
        );
    }
    for (key, value) in [("heap_frames", &server.heap_frames), ("heap_sites", &server.heap_sites)] {
        if let Some(value) = value
            && probe == HeapProbe::None
        {
            c.at(
                value.span(),
                format!("server.{key}"),
                "only applies with a heap probe, e.g. `heap = \"python\"`",
            );
        }
    }
    if let Some(value) = &server.heap_frames
        && probe == HeapProbe::Malloc
    {
        c.at(
            value.span(),
            "server.heap_frames",
            "only applies with `heap = \"python\"`; with \"malloc\" every sampled stack keeps up to 40 return addresses",
        );
    }
    if let Some(value) = &server.heap_sample
        && probe != HeapProbe::Malloc
    {
        c.at(
            value.span(),
            "server.heap_sample",
            "applies to the embedded server, or an external one with `heap = \"malloc\"`",
        );
    }
    let default = HeapSpec::default();
    HeapSpec {
        sample_bytes: super::values::heap_sample(c, server.heap_sample.as_ref()),
        probe,
        frames: int(
            c,
            server.heap_frames.as_ref(),
            "server.heap_frames",
            default.frames.into(),
            1..=64,
        ) as u32,
        sites: int(
            c,
            server.heap_sites.as_ref(),
            "server.heap_sites",
            default.sites as u64,
            1..=1000,
        ) as usize,
    }
}

const EMPTY_COMMAND: &str =
    "is empty; valid: a string run by `sh -c`, or an array of program and arguments, e.g. [\"python3\", \"server.py\"]";

/// The external-only keys present in `[server]`, with their spans.
fn external_keys(server: &RawServer) -> Vec<(&'static str, std::ops::Range<usize>)> {
    let spans = [
        ("command", server.command.as_ref().map(|v| v.span())),
        ("cwd", server.cwd.as_ref().map(|v| v.span())),
        ("env", server.env.as_ref().map(|v| v.span())),
        ("ready_url", server.ready_url.as_ref().map(|v| v.span())),
        ("ready_port", server.ready_port.as_ref().map(|v| v.span())),
        ("ready_timeout", server.ready_timeout.as_ref().map(|v| v.span())),
        ("stop_grace", server.stop_grace.as_ref().map(|v| v.span())),
        ("pid", server.pid.as_ref().map(|v| v.span())),
        ("pid_file", server.pid_file.as_ref().map(|v| v.span())),
        ("ws_url", server.ws_url.as_ref().map(|v| v.span())),
        ("http_url", server.http_url.as_ref().map(|v| v.span())),
        ("allow_remote", server.allow_remote.as_ref().map(|v| v.span())),
        ("send_template", server.send_template.as_ref().map(|v| v.span())),
        ("stats_url", server.stats_url.as_ref().map(|v| v.span())),
        ("stats_counters", server.stats_counters.as_ref().map(|v| v.span())),
        ("heap", server.heap.as_ref().map(|v| v.span())),
        ("heap_frames", server.heap_frames.as_ref().map(|v| v.span())),
        ("heap_sites", server.heap_sites.as_ref().map(|v| v.span())),
    ];
    spans
        .into_iter()
        .filter_map(|(key, span)| span.map(|s| (key, s)))
        .collect()
}

/// Keys that configure the embedded server, its channel layer or its exact heap: each one set
/// with an external target is a problem.
fn embedded_only(raw: &RawScenario, c: &mut Collector<'_>) {
    const WHY: &str = "applies to the embedded server only; this scenario's server.target is \"external\"";
    let mut spans: Vec<(String, std::ops::Range<usize>)> = Vec::new();
    if let Some(server) = &raw.server {
        let s = server.get_ref();
        spans.extend(
            [
                // One instance and the in-process layer are what an external target has anyway.
                (
                    "server.instances",
                    s.instances.as_ref().filter(|v| *v.get_ref() != 1).map(|v| v.span()),
                ),
                ("server.capacity", s.capacity.as_ref().map(|v| v.span())),
                ("server.max_frame", s.max_frame.as_ref().map(|v| v.span())),
                ("server.faults", s.faults.as_ref().map(|v| v.span())),
                ("server.host", s.host.as_ref().map(|v| v.span())),
                ("server.port", s.port.as_ref().map(|v| v.span())),
                ("server.cache", s.cache.as_ref().map(|v| v.span())),
            ]
            .into_iter()
            .filter_map(|(key, span)| span.map(|s| (key.to_string(), s))),
        );
    }
    if let Some(backend) = &raw.backend {
        let b = backend.get_ref();
        // A service the external server needs (`redis`, `amqp`) is the target's; leakrun's own
        // layer designs and their settings are not.
        if let Some(kind) = b.kind.as_ref().filter(|v| v.get_ref() == "redis-lists") {
            c.at(
                kind.span(),
                "backend.kind",
                "names the service an external server needs, and \"redis-lists\" is a design of leakrun's own layer; valid with an external target: \"redis\" or \"amqp\" (the server's own layer decides how it uses it), or \"memory\" (no service)",
            );
        }
        spans.extend(
            [
                ("backend.group_expiry", b.group_expiry.as_ref().map(|v| v.span())),
                ("backend.expiry", b.expiry.as_ref().map(|v| v.span())),
            ]
            .into_iter()
            .filter_map(|(key, span)| span.map(|s| (key.to_string(), s))),
        );
    }
    for (key, span) in spans {
        let detail = match key.as_str() {
            k if k.starts_with("backend.") => {
                " (the external server has its own channel layer; `backend.kind` names the service it needs)"
            }
            "server.instances" => " (start several workers from `command` instead)",
            "server.host" | "server.port" => " (the external server's address is in ws_url / http_url)",
            _ => "",
        };
        c.at(span, key, format!("{WHY}{detail}"));
    }
    let probe = raw
        .server
        .as_ref()
        .and_then(|s| s.get_ref().heap.as_ref())
        .is_some_and(|h| h.get_ref() != "none");
    if let Some(thresholds) = raw.thresholds.as_ref().filter(|_| !probe) {
        let t = thresholds.get_ref();
        for (key, span) in [
            ("thresholds.heap_growth", t.heap_growth.as_ref().map(|v| v.span())),
            ("thresholds.retention", t.retention.as_ref().map(|v| v.span())),
        ] {
            if let Some(span) = span {
                c.at(
                    span,
                    key,
                    "needs a heap series: the embedded server's, or a heap probe in the external one (`server.heap = \"python\"`); without one an external server is judged by its resident memory: use `thresholds.rss_growth`",
                );
            }
        }
    }
}

/// Checks a URL of an external server: its scheme is one of `schemes`, and its host is loopback
/// unless `{table}.allow_remote` is true.
pub fn check_url(text: &str, schemes: &[&str], table: &str, allow_remote: bool) -> Result<url::Url, String> {
    crate::address::check(text, schemes, allow_remote, &format!("{table}.allow_remote")).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::scenario::{Problem, parse};

    const ROOMS: &str = "\n[[rooms]]\nname = \"a\"\n  [[rooms.clients]]\n  count = 2\n[[rooms]]\nname = \"b\"\n  [[rooms.clients]]\n  count = 2\n";

    fn server(lines: &str) -> String {
        format!("name = \"x\"\n[server]\ntarget = \"external\"\n{lines}\n{ROOMS}")
    }

    fn problems(text: &str) -> Vec<Problem> {
        parse(Path::new("t.toml"), text).unwrap_err().problems
    }

    #[test]
    fn a_started_server_parses_with_defaults() {
        let text = server(
            "command = [\"python3\", \"app.py\"]\nws_url = \"ws://localhost:8000/ws/chat/{room}/\"\nsend_template = '{\"message\": \"{{envelope}}\"}'",
        );
        let s = parse(Path::new("t.toml"), &text).unwrap();
        let external = s.server.external().cloned().unwrap();
        let ProcessSpec::Command(command) = external.process else {
            panic!("a command: {:?}", external.process)
        };
        assert_eq!(command.line.argv(), ["python3", "app.py"]);
        assert_eq!(command.ready, Readiness::Port(8000));
        assert_eq!(command.ready_timeout, DEFAULT_READY_TIMEOUT);
        assert_eq!(command.stop_grace, DEFAULT_STOP_GRACE);
        assert_eq!(
            external.send_template.as_deref(),
            Some("{\"message\": \"{{envelope}}\"}")
        );
    }

    #[test]
    fn frames_for_an_external_server_are_not_bound_by_the_embedded_max_frame() {
        let big = server("pid = 7\nws_url = \"ws://127.0.0.1:1/{room}/\"")
            .replace("count = 2\n", "count = 2\n  payload = \"1MiB\"\n");
        let s = parse(Path::new("t.toml"), &big).unwrap();
        assert_eq!(s.rooms[0].clients[0].payload, 1 << 20);
        let found = problems(&big.replace("1MiB", "32MiB"));
        assert_eq!(found[0].key, "rooms[0].clients[0].payload", "{found:?}");
        assert!(found[0].message.contains("valid: 0 to 16 MiB"), "{}", found[0].message);
    }

    #[test]
    fn a_remote_host_needs_allow_remote() {
        let text = server("pid = 7\nws_url = \"ws://10.1.2.3:8000/ws/{room}/\"");
        let found = problems(&text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "server.ws_url");
        assert_eq!((found[0].line, found[0].column), (5, 10));
        assert!(
            found[0].message.contains("`server.allow_remote = true`"),
            "{}",
            found[0].message
        );
        let allowed = text.replace("pid = 7", "pid = 7\nallow_remote = true");
        assert!(parse(Path::new("t.toml"), &allowed).is_ok());
    }

    #[test]
    fn exactly_one_way_to_the_process() {
        let both = problems(&server(
            "command = \"./run\"\npid = 42\nws_url = \"ws://127.0.0.1:1/{room}\"",
        ));
        assert_eq!(both.len(), 1, "{both:?}");
        assert_eq!(both[0].key, "server.pid");
        assert!(
            both[0].message.contains("`command` and `pid` are both set"),
            "{}",
            both[0].message
        );
        let none = problems(&server("ws_url = \"ws://127.0.0.1:1/{room}\""));
        assert_eq!(none[0].key, "server.target", "{none:?}");
        let watched = problems(&server(
            "pid = 42\nready_port = 1\nws_url = \"ws://127.0.0.1:1/{room}\"",
        ));
        assert_eq!(watched[0].key, "server.ready_port", "{watched:?}");
    }

    #[test]
    fn a_heap_probe_needs_a_started_server_and_brings_its_heap_thresholds() {
        let probed = server(
            "command = \"python3 app.py\"\nws_url = \"ws://127.0.0.1:1/{room}\"\nheap = \"python\"\nheap_frames = 4\n[thresholds]\nheap_growth = \"64KiB\"\nretention = \"8MiB\"",
        );
        let s = parse(Path::new("t.toml"), &probed).expect("valid");
        let Some(ProcessSpec::Command(command)) = s.server.external().map(|e| &e.process) else {
            panic!("a command");
        };
        assert_eq!(command.heap.probe, HeapProbe::Python);
        assert_eq!((command.heap.frames, command.heap.sites), (4, 10));
        assert_eq!(s.thresholds.leak.heap_growth, 64 * 1024);
        let default = server("command = \"python3 app.py\"\nws_url = \"ws://127.0.0.1:1/{room}\"\nheap = \"python\"");
        let s = parse(Path::new("t.toml"), &default).expect("valid");
        assert_eq!(
            s.thresholds.leak.heap_growth,
            super::super::validate::DEFAULT_PROBE_HEAP_GROWTH
        );
        let keys = |text: &str| problems(text).into_iter().map(|p| p.key).collect::<Vec<_>>();
        assert_eq!(
            keys(&server(
                "pid = 42\nws_url = \"ws://127.0.0.1:1/{room}\"\nheap = \"python\""
            )),
            ["server.heap"]
        );
        assert_eq!(
            keys(&server(
                "command = \"x\"\nws_url = \"ws://127.0.0.1:1/{room}\"\nheap_sites = 5"
            )),
            ["server.heap_sites"]
        );
        assert_eq!(
            keys(&server(
                "command = \"x\"\nws_url = \"ws://127.0.0.1:1/{room}\"\nheap = \"ruby\""
            )),
            ["server.heap"]
        );
        assert_eq!(
            keys(&format!("name = \"x\"\n[server]\nheap = \"python\"\n{ROOMS}")),
            ["server.heap"]
        );
    }

    #[test]
    fn embedded_keys_are_refused_for_an_external_target_and_the_other_way_round() {
        let text = server(
            "pid = 42\nws_url = \"ws://127.0.0.1:1/{room}\"\ninstances = 2\n[server.faults]\ndrop_one_in = 5\n[backend]\nkind = \"redis-lists\"\nexpiry = \"5s\"\n[thresholds]\nheap_growth = 10",
        );
        let keys: Vec<String> = problems(&text).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "server.instances",
                "server.faults",
                "backend.kind",
                "backend.expiry",
                "thresholds.heap_growth"
            ]
        );
        // A service the external server needs is its own: `redis` and `amqp` are accepted, with
        // the variable its command gets the URL in.
        let service = server(
            "command = \"app\"\nws_url = \"ws://127.0.0.1:1/{room}\"\n[backend]\nkind = \"redis\"\nurl_env = \"CHANNELS_REDIS\"",
        );
        let s = parse(Path::new("t.toml"), &service).expect("a service for an external server");
        assert_eq!(s.backend.url_env.as_deref(), Some("CHANNELS_REDIS"));
        let bad_env = server(
            "command = \"app\"\nws_url = \"ws://127.0.0.1:1/{room}\"\n[backend]\nkind = \"amqp\"\nurl_env = \"1X\"",
        );
        assert_eq!(problems(&bad_env)[0].key, "backend.url_env");
        let embedded_env = format!("name = \"x\"\n[backend]\nkind = \"redis\"\nurl_env = \"X\"\n{ROOMS}");
        assert_eq!(problems(&embedded_env)[0].key, "backend.url_env");
        let defaults =
            server("pid = 42\nws_url = \"ws://127.0.0.1:1/{room}\"\ninstances = 1\n[backend]\nkind = \"memory\"");
        assert!(
            parse(Path::new("t.toml"), &defaults).is_ok(),
            "the defaults written out are fine"
        );
        let embedded = format!("name = \"x\"\n[server]\nws_url = \"ws://127.0.0.1:1/\"\n{ROOMS}");
        let found = problems(&embedded);
        assert_eq!(found[0].key, "server.ws_url");
        assert!(
            found[0].message.contains("target = \"external\""),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn urls_and_templates_are_checked() {
        let text = server(
            "pid = 42\nws_url = \"wss://127.0.0.1:1/chat/{room}\"\nstats_url = \"ftp://127.0.0.1/\"\nsend_template = \"{}\"\nstats_counters = [\"x\"]",
        );
        let found = problems(&text);
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["server.ws_url", "server.stats_url", "server.send_template"],
            "{found:?}"
        );
        assert!(found[0].message.contains("valid: ws://"), "{}", found[0].message);
        assert!(found[2].message.contains("{{envelope}}"), "{}", found[2].message);
        let no_room = problems(&server("pid = 42\nws_url = \"ws://127.0.0.1:1/chat/\""));
        assert!(no_room[0].message.contains("`{room}`"), "{no_room:?}");
    }
}
