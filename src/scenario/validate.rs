//! One pass from the raw file to a [`Scenario`]: fills defaults, checks ranges and combinations,
//! and records every problem with the span of the value at fault.

use std::time::Duration;

use super::diagnostics::Collector;
use super::model::*;
use super::raw::*;
use super::units::parse_size;
use super::values::{choice, duration_value, flag, heap_sample, int, size_value};
use crate::naming::is_valid_name;

const NAME_RULE: &str = "1 to 99 letters, digits, `.`, `_` or `-`";
/// Default live-heap growth per iteration that counts as a leak.
pub const DEFAULT_HEAP_GROWTH: u64 = 1024;
/// Default growth per iteration that counts as a leak for a heap probe inside a server (a Python
/// heap): interpreter and library caches (interned strings, type caches, memo tables) move a clean
/// server's traced heap by some KiB per wave of connections, where the exact embedded heap holds
/// to the byte.
pub const DEFAULT_PROBE_HEAP_GROWTH: u64 = 32 * 1024;
/// Default resident-memory growth per iteration that counts as a leak where no heap series exists.
pub const DEFAULT_RSS_GROWTH: u64 = 1024 * 1024;
/// Largest frame sent to an external server.
const MAX_EXTERNAL_PAYLOAD: u64 = 16 * 1024 * 1024;
/// Default resident memory kept beyond the heap's growth that is reported as retention.
pub const DEFAULT_RETENTION: u64 = 16 * 1024 * 1024;

/// Checks a raw scenario; problems go to `c`, and the returned scenario is only meaningful when
/// `c` stays empty.
pub fn validate(raw: &RawScenario, c: &mut Collector<'_>) -> Scenario {
    let name = match &raw.name {
        Some(name) => {
            if !is_valid_name(name.get_ref()) {
                c.at(
                    name.span(),
                    "name",
                    format!(
                        "`{}` is not a valid name; use {NAME_RULE} (it names the result file)",
                        name.get_ref()
                    ),
                );
            }
            name.get_ref().clone()
        }
        None => {
            c.at(
                0..0,
                "name",
                format!("missing; every scenario needs `name = \"...\"` ({NAME_RULE})"),
            );
            String::new()
        }
    };
    let description = raw
        .description
        .as_ref()
        .map(|d| d.get_ref().clone())
        .unwrap_or_default();
    let (target, embedded) = server(raw.server.as_ref().map(|s| s.get_ref()), c);
    let backend = backend(raw.backend.as_ref().map(|b| b.get_ref()), c);
    if let Some(switch) = raw
        .server
        .as_ref()
        .and_then(|s| s.get_ref().faults.as_ref())
        .and_then(|f| f.get_ref().cancel_shared_receive.as_ref())
        && *switch.get_ref()
        && backend.kind != BackendKind::RedisLists
    {
        c.at(
            switch.span(),
            "server.faults.cancel_shared_receive",
            cancel_needs_lists(backend.kind),
        );
    }
    let run = run(raw.run.as_ref().map(|r| r.get_ref()), c);
    let http = super::http::workloads(&raw.http, c);
    let rooms = rooms(&raw.rooms, !http.is_empty(), target, &embedded, &run, c);
    let expect = raw.expect.as_ref().map(|e| e.get_ref());
    let expect = Expectation {
        gaps: flag(expect.and_then(|e| e.gaps.as_ref()), false),
        latency_breach: flag(expect.and_then(|e| e.latency_breach.as_ref()), false),
        leak: flag(expect.and_then(|e| e.leak.as_ref()), false),
        retention: flag(expect.and_then(|e| e.retention.as_ref()), false),
    };
    if expect.leak
        && expect.retention
        && let Some(retention) = raw.expect.as_ref().and_then(|e| e.get_ref().retention.as_ref())
    {
        c.at(
            retention.span(),
            "expect.retention",
            "contradicts expect.leak = true: the leak verdict is one of clean, retention or leak; expect either a leak or retention",
        );
    }
    let mut thresholds = thresholds(raw.thresholds.as_ref().map(|t| t.get_ref()), c);
    // An external target whose keys have problems keeps the embedded defaults: the scenario is
    // not used while `c` holds problems.
    let server = match super::external::validate(raw, target, rooms.len(), c) {
        Some(external) => ServerSpec::External(external),
        None => ServerSpec::Embedded(embedded),
    };
    let probe_heap = matches!(
        server.external().map(|e| &e.process),
        Some(ProcessSpec::Command(command)) if command.heap.probe != HeapProbe::None
    );
    let heap_growth_written = raw
        .thresholds
        .as_ref()
        .is_some_and(|t| t.get_ref().heap_growth.is_some());
    if probe_heap && !heap_growth_written {
        thresholds.leak.heap_growth = DEFAULT_PROBE_HEAP_GROWTH;
    }
    Scenario {
        name,
        description,
        server,
        backend,
        rooms,
        http,
        run,
        expect,
        thresholds,
    }
}

fn server(raw: Option<&RawServer>, c: &mut Collector<'_>) -> (Target, EmbeddedSpec) {
    let default = RawServer::default();
    let raw = raw.unwrap_or(&default);
    let target = choice(
        c,
        raw.target.as_ref(),
        "server.target",
        &[("embedded", Target::Embedded), ("external", Target::External)],
        Target::Embedded,
    );
    let instances = int(c, raw.instances.as_ref(), "server.instances", 1, 1..=64) as usize;
    let (host, port) = super::http::host_port(raw, instances, c);
    let cache = super::http::cache(raw.cache.as_ref().map(|s| s.get_ref()), c);
    let capacity = int(c, raw.capacity.as_ref(), "server.capacity", 100, 1..=1_000_000) as usize;
    let max_frame = size_value(
        c,
        raw.max_frame.as_ref(),
        "server.max_frame",
        64 * 1024,
        64..=16 * 1024 * 1024,
    ) as usize;
    let faults = raw.faults.as_ref().map(|f| f.get_ref());
    let faults = Faults {
        drop_one_in: faults
            .and_then(|f| f.drop_one_in.as_ref())
            .map(|n| int(c, Some(n), "server.faults.drop_one_in", 0, 2..=1_000_000_000)),
        delay_group_send: faults
            .and_then(|f| f.delay_group_send.as_ref())
            .map(|d| duration_value(c, Some(d), "server.faults.delay_group_send", Duration::ZERO, true)),
        keep_membership_on_disconnect: flag(faults.and_then(|f| f.keep_membership_on_disconnect.as_ref()), false),
        leak_per_connection: size_value(
            c,
            faults.and_then(|f| f.leak_per_connection.as_ref()),
            "server.faults.leak_per_connection",
            0,
            0..=1024 * 1024,
        ) as usize,
        hold_per_connection: size_value(
            c,
            faults.and_then(|f| f.hold_per_connection.as_ref()),
            "server.faults.hold_per_connection",
            0,
            0..=64 * 1024 * 1024,
        ) as usize,
        cancel_shared_receive: flag(faults.and_then(|f| f.cancel_shared_receive.as_ref()), false),
    };
    // An external target's `heap_sample` is checked with its heap probe.
    let heap_sample = match target {
        Target::Embedded => heap_sample(c, raw.heap_sample.as_ref()),
        Target::External => super::model::DEFAULT_HEAP_SAMPLE,
    };
    let embedded = EmbeddedSpec {
        host,
        port,
        instances,
        capacity,
        max_frame,
        faults,
        cache,
        heap_sample,
    };
    (target, embedded)
}

fn backend(raw: Option<&RawBackend>, c: &mut Collector<'_>) -> BackendSpec {
    let default = RawBackend::default();
    let raw = raw.unwrap_or(&default);
    let kind = choice(
        c,
        raw.kind.as_ref(),
        "backend.kind",
        BackendKind::ALL,
        BackendKind::Memory,
    );
    let allow_remote = flag(raw.allow_remote.as_ref(), false);
    let url = raw.url.as_ref().map(|url| {
        if let Err(message) = check_backend_url(url.get_ref(), kind, allow_remote) {
            c.at(url.span(), "backend.url", message);
        }
        url.get_ref().clone()
    });
    for (value, key) in [(&raw.group_expiry, "group_expiry"), (&raw.expiry, "expiry")] {
        if let Some(v) = value
            && kind != BackendKind::RedisLists
        {
            c.at(
                v.span(),
                format!("backend.{key}"),
                format!(
                    "only applies to kind = \"redis-lists\"; this backend is \"{}\"",
                    kind.name()
                ),
            );
        }
    }
    let url_env = raw.url_env.as_ref().map(|name| {
        let text = name.get_ref();
        let valid = !text.is_empty()
            && !text.starts_with(|c: char| c.is_ascii_digit())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            c.at(
                name.span(),
                "backend.url_env",
                format!("`{text}` is not an environment variable name; valid: letters, digits and `_`, not starting with a digit, e.g. \"REDIS_URL\""),
            );
        }
        text.clone()
    });
    BackendSpec {
        kind,
        url,
        url_source: None,
        url_env,
        allow_remote,
        group_expiry: duration_value(
            c,
            raw.group_expiry.as_ref(),
            "backend.group_expiry",
            Duration::from_secs(86_400),
            true,
        ),
        expiry: duration_value(c, raw.expiry.as_ref(), "backend.expiry", Duration::from_secs(60), true),
    }
}

/// Switches a validated scenario to another backend kind (the `--backend` flag), rechecking what
/// depends on the kind. A URL written for another kind is dropped.
pub fn override_backend(scenario: &mut Scenario, kind: BackendKind) -> Result<(), String> {
    let Some(embedded) = scenario.server.embedded() else {
        return Err(format!(
            "--backend {}: the scenario's server.target is \"external\"; a channel layer applies to the embedded server only",
            kind.name()
        ));
    };
    if embedded.faults.cancel_shared_receive && kind != BackendKind::RedisLists {
        return Err(format!(
            "--backend {}: server.faults.cancel_shared_receive {}",
            kind.name(),
            cancel_needs_lists(kind)
        ));
    }
    if scenario.backend.kind != kind {
        scenario.backend.url = None;
        scenario.backend.url_source = None;
    }
    scenario.backend.kind = kind;
    Ok(())
}

/// Takes the backend URL from the environment (`REDIS_URL`, `AMQP_URL`) when the scenario names none,
/// checked like `backend.url`; `lookup` gives a variable's value and where it came from.
pub fn url_from_environment(
    scenario: &mut Scenario,
    lookup: impl Fn(&str) -> Option<(String, String)>,
) -> Result<(), String> {
    let spec = &mut scenario.backend;
    let Some(variable) = spec.kind.url_variable() else {
        return Ok(());
    };
    if spec.url.is_some() {
        return Ok(());
    }
    let Some((url, source)) = lookup(variable).filter(|(u, _)| !u.trim().is_empty()) else {
        return Ok(());
    };
    check_backend_url(&url, spec.kind, spec.allow_remote).map_err(|message| format!("{source}: {message}"))?;
    spec.url = Some(url);
    spec.url_source = Some(source);
    Ok(())
}

/// The message for `cancel_shared_receive` on a backend without a shared receive.
pub fn cancel_needs_lists(kind: BackendKind) -> String {
    format!(
        "only applies to backend.kind = \"redis-lists\" (the layer with a shared receive); this backend is \"{}\"",
        kind.name()
    )
}

/// Checks a backend URL: its scheme fits the kind, and its host is loopback unless remote hosts
/// are allowed. Also used for URLs from the environment.
pub fn check_backend_url(url: &str, kind: BackendKind, allow_remote: bool) -> Result<(), String> {
    let schemes: &[&str] = match kind {
        BackendKind::Memory => {
            return Err(
                "the \"memory\" backend takes no URL; remove it or choose \"redis\", \"redis-lists\" or \"amqp\""
                    .into(),
            );
        }
        BackendKind::Redis | BackendKind::RedisLists => &["redis"],
        BackendKind::Amqp => &["amqp"],
    };
    crate::address::check(url, schemes, allow_remote, "backend.allow_remote").map_err(|error| match error {
        crate::address::AddressError::Scheme { scheme, valid } => {
            format!(
                "scheme `{scheme}` does not fit kind = \"{}\"; valid: {valid}",
                kind.name()
            )
        }
        crate::address::AddressError::NotUrl { text, .. } => {
            format!("`{text}` is not a URL; write e.g. \"{}://127.0.0.1:6379/\"", schemes[0])
        }
        other => other.to_string(),
    })?;
    Ok(())
}

fn run(raw: Option<&RawRun>, c: &mut Collector<'_>) -> RunSpec {
    let default = RawRun::default();
    let raw = raw.unwrap_or(&default);
    let duration = duration_value(c, raw.duration.as_ref(), "run.duration", Duration::from_secs(10), true);
    let iterations = int(
        c,
        raw.iterations.as_ref(),
        "run.iterations",
        1,
        1..=super::values::MAX_ITERATIONS,
    ) as u32;
    let default_warmup = if iterations > 1 { 1 } else { 0 };
    let warmup = int(
        c,
        raw.warmup.as_ref(),
        "run.warmup",
        default_warmup,
        0..=super::values::MAX_ITERATIONS - 1,
    ) as u32;
    if let Some(w) = &raw.warmup
        && warmup >= iterations
        && iterations > 0
    {
        c.at(
            w.span(),
            "run.warmup",
            format!(
                "{warmup} warm-up iterations leave none of the {iterations} to judge; valid: 0 to {}",
                iterations - 1
            ),
        );
    }
    RunSpec {
        duration,
        iterations,
        warmup,
        drain: duration_value(c, raw.drain.as_ref(), "run.drain", Duration::from_secs(5), false),
        settle: duration_value(c, raw.settle.as_ref(), "run.settle", Duration::from_secs(10), false),
        connect_timeout: duration_value(
            c,
            raw.connect_timeout.as_ref(),
            "run.connect_timeout",
            Duration::from_secs(5),
            true,
        ),
        connect_rate: connect_rate(c, raw.connect_rate.as_ref()),
        sample_interval: sample_interval(c, raw.sample_interval.as_ref()),
    }
}

/// Largest `run.connect_rate`: a million connects a second is past anything one machine does.
const MAX_CONNECT_RATE: f64 = 1_000_000.0;

fn connect_rate(c: &mut Collector<'_>, raw: Option<&S<f64>>) -> Option<f64> {
    let raw = raw?;
    let rate = *raw.get_ref();
    if rate.is_finite() && rate > 0.0 && rate <= MAX_CONNECT_RATE {
        return Some(rate);
    }
    c.at(
        raw.span(),
        "run.connect_rate",
        format!("{rate} is out of range; valid: more than 0 and at most {MAX_CONNECT_RATE} connects per second (leave it out for no limit)"),
    );
    None
}

fn rooms(
    raw: &[S<RawRoom>],
    has_http: bool,
    target: Target,
    server: &EmbeddedSpec,
    run: &RunSpec,
    c: &mut Collector<'_>,
) -> Vec<RoomSpec> {
    if raw.is_empty() && !has_http {
        c.at(
            0..0,
            "rooms",
            "no load; add at least one `[[rooms]]` table with a `name` and `[[rooms.clients]]`, or an `[[http]]` workload",
        );
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut rooms = Vec::new();
    for (i, room) in raw.iter().enumerate() {
        let key = format!("rooms[{i}]");
        let name = match &room.get_ref().name {
            Some(name) => {
                let text = name.get_ref().as_str();
                if !is_valid_name(text) {
                    c.at(
                        name.span(),
                        format!("{key}.name"),
                        format!("`{text}` is not a valid room name; use {NAME_RULE}"),
                    );
                } else if seen.contains(&text) {
                    c.at(
                        name.span(),
                        format!("{key}.name"),
                        format!("room `{text}` is named twice; room names are unique"),
                    );
                }
                seen.push(text);
                text.to_string()
            }
            None => {
                c.at(
                    room.span(),
                    format!("{key}.name"),
                    format!("missing; every room needs `name = \"...\"` ({NAME_RULE})"),
                );
                String::new()
            }
        };
        if room.get_ref().clients.is_empty() {
            c.at(
                room.span(),
                format!("{key}.clients"),
                "room has no clients; add a `[[rooms.clients]]` table with a `pattern` and `count`",
            );
        }
        let clients = room
            .get_ref()
            .clients
            .iter()
            .enumerate()
            .map(|(j, group)| client_group(group, &format!("{key}.clients[{j}]"), target, server, run, c))
            .collect();
        rooms.push(RoomSpec { name, clients });
    }
    rooms
}

fn client_group(
    raw: &S<RawClients>,
    key: &str,
    target: Target,
    server: &EmbeddedSpec,
    run: &RunSpec,
    c: &mut Collector<'_>,
) -> ClientGroup {
    let g = raw.get_ref();
    let pattern_name = choice(
        c,
        g.pattern.as_ref(),
        &format!("{key}.pattern"),
        &[("steady", "steady"), ("cycle", "cycle"), ("tabs", "tabs")],
        "steady",
    );
    let close_choices = [("graceful", CloseMode::Graceful), ("abrupt", CloseMode::Abrupt)];
    let only_for = |c: &mut Collector<'_>, value: Option<&S<String>>, field: &str, patterns: &[&str]| {
        if let Some(v) = value
            && !patterns.contains(&pattern_name)
        {
            let list = patterns
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(" or ");
            c.at(
                v.span(),
                format!("{key}.{field}"),
                format!("only applies to pattern = {list}; this group is \"{pattern_name}\""),
            );
        }
    };
    only_for(c, g.up.as_ref(), "up", &["cycle"]);
    only_for(c, g.down.as_ref(), "down", &["cycle"]);
    only_for(c, g.hold.as_ref(), "hold", &["tabs"]);
    only_for(c, g.close.as_ref(), "close", &["cycle", "tabs"]);
    let close = choice(
        c,
        g.close.as_ref(),
        &format!("{key}.close"),
        &close_choices,
        CloseMode::Graceful,
    );
    let ramp = duration_value(c, g.ramp.as_ref(), &format!("{key}.ramp"), Duration::ZERO, false);
    if let Some(raw_ramp) = &g.ramp
        && pattern_name != "tabs"
        && ramp >= run.duration
    {
        c.at(
            raw_ramp.span(),
            format!("{key}.ramp"),
            format!(
                "{} is not shorter than run.duration = {}; valid: 0 up to the duration, so every client connects within the iteration",
                humantime::format_duration(ramp),
                humantime::format_duration(run.duration)
            ),
        );
    }
    let pattern =
        match pattern_name {
            "cycle" => Pattern::Cycle {
                up: duration_value(c, g.up.as_ref(), &format!("{key}.up"), Duration::from_secs(1), true),
                down: duration_value(
                    c,
                    g.down.as_ref(),
                    &format!("{key}.down"),
                    Duration::from_millis(100),
                    false,
                ),
                close,
                ramp,
            },
            "tabs" => {
                let hold = g
                    .hold
                    .as_ref()
                    .map(|h| duration_value(c, Some(h), &format!("{key}.hold"), Duration::ZERO, false));
                if let (Some(hold), Some(raw_hold)) = (hold, &g.hold)
                    && ramp + hold > run.duration
                {
                    c.at(raw_hold.span(), format!("{key}.hold"), format!(
                    "ramp + hold = {} is longer than run.duration = {}; the wave must close within the iteration",
                    humantime::format_duration(ramp + hold),
                    humantime::format_duration(run.duration)
                ));
                }
                Pattern::Tabs { ramp, hold, close }
            }
            _ => Pattern::Steady { ramp },
        };
    let count = int(c, g.count.as_ref(), &format!("{key}.count"), 1, 1..=10_000) as usize;
    let default_rate = if pattern_name == "tabs" { 0.0 } else { 1.0 };
    let rate = match &g.rate {
        Some(r)
            if r.get_ref().is_finite()
                && (*r.get_ref() == 0.0 || (super::values::MIN_RATE..=10_000.0).contains(r.get_ref())) =>
        {
            *r.get_ref()
        }
        Some(r) => {
            c.at(
                r.span(),
                format!("{key}.rate"),
                format!(
                    "{:?} is out of range; valid: 0 (listen only), or {} to 10000 messages per second per client",
                    r.get_ref(),
                    super::values::MIN_RATE
                ),
            );
            default_rate
        }
        None => default_rate,
    };
    let payload = match &g.payload {
        Some(size) => {
            match parse_size(size.get_ref()) {
                Ok(bytes) if bytes as usize <= server.max_frame => bytes as usize,
                // An external server's own limit is unknown here; the embedded one's bound holds.
                Ok(bytes) if target == Target::External && bytes <= MAX_EXTERNAL_PAYLOAD => bytes as usize,
                Ok(bytes) if target == Target::External => {
                    c.at(
                        size.span(),
                        format!("{key}.payload"),
                        format!("{bytes} bytes is out of range; valid: 0 to 16 MiB"),
                    );
                    64
                }
                Ok(bytes) => {
                    c.at(size.span(), format!("{key}.payload"), format!("{bytes} bytes is larger than server.max_frame ({} bytes); the server would ignore every frame", server.max_frame));
                    64
                }
                Err(msg) => {
                    c.at(size.span(), format!("{key}.payload"), msg);
                    64
                }
            }
        }
        None => 64,
    };
    let reader = choice(
        c,
        g.reader.as_ref(),
        &format!("{key}.reader"),
        &[("normal", Reader::Normal), ("paused", Reader::Paused)],
        Reader::Normal,
    );
    let phase = choice(
        c,
        g.phase.as_ref(),
        &format!("{key}.phase"),
        &[("spread", SendPhase::Spread), ("aligned", SendPhase::Aligned)],
        SendPhase::Spread,
    );
    ClientGroup {
        pattern,
        count,
        rate,
        payload,
        reader,
        phase,
    }
}

fn thresholds(raw: Option<&RawThresholds>, c: &mut Collector<'_>) -> Thresholds {
    let default = RawThresholds::default();
    let t = raw.unwrap_or(&default);
    let limit = |c: &mut Collector<'_>, v: Option<&S<String>>, key: &str, default: Option<Duration>| {
        v.map(|v| duration_value(c, Some(v), key, Duration::ZERO, true))
            .or(default)
    };
    Thresholds {
        gaps: int(c, t.gaps.as_ref(), "thresholds.gaps", 0, 0..=i64::MAX as u64),
        duplicates: int(
            c,
            t.duplicates.as_ref(),
            "thresholds.duplicates",
            0,
            0..=i64::MAX as u64,
        ),
        reordered: int(c, t.reordered.as_ref(), "thresholds.reordered", 0, 0..=i64::MAX as u64),
        misrouted: int(c, t.misrouted.as_ref(), "thresholds.misrouted", 0, 0..=i64::MAX as u64),
        unconfirmed: t
            .unconfirmed
            .as_ref()
            .map(|n| int(c, Some(n), "thresholds.unconfirmed", 0, 0..=i64::MAX as u64)),
        delivery: LatencyLimits {
            p50: limit(c, t.delivery_p50.as_ref(), "thresholds.delivery_p50", None),
            p99: limit(
                c,
                t.delivery_p99.as_ref(),
                "thresholds.delivery_p99",
                Some(Duration::from_millis(500)),
            ),
            p999: limit(c, t.delivery_p999.as_ref(), "thresholds.delivery_p999", None),
            max: limit(c, t.delivery_max.as_ref(), "thresholds.delivery_max", None),
        },
        connect_p99: limit(
            c,
            t.connect_p99.as_ref(),
            "thresholds.connect_p99",
            Some(Duration::from_secs(1)),
        ),
        http_p99: limit(c, t.http_p99.as_ref(), "thresholds.http_p99", None),
        http_errors: int(
            c,
            t.http_errors.as_ref(),
            "thresholds.http_errors",
            0,
            0..=i64::MAX as u64,
        ),
        leak: LeakLimits {
            heap_growth: size_value(
                c,
                t.heap_growth.as_ref(),
                "thresholds.heap_growth",
                DEFAULT_HEAP_GROWTH,
                0..=1 << 40,
            ),
            rss_growth: size_value(
                c,
                t.rss_growth.as_ref(),
                "thresholds.rss_growth",
                DEFAULT_RSS_GROWTH,
                0..=1 << 40,
            ),
            retention: size_value(
                c,
                t.retention.as_ref(),
                "thresholds.retention",
                DEFAULT_RETENTION,
                0..=1 << 40,
            ),
            state_growth: int(
                c,
                t.state_growth.as_ref(),
                "thresholds.state_growth",
                0,
                0..=i64::MAX as u64,
            ),
        },
    }
}

fn sample_interval(c: &mut Collector<'_>, raw: Option<&S<String>>) -> Duration {
    let interval = duration_value(c, raw, "run.sample_interval", Duration::from_millis(100), true);
    if let Some(v) = raw
        && !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&interval)
    {
        c.at(
            v.span(),
            "run.sample_interval",
            "is out of range; valid: \"10ms\" to \"60s\"",
        );
        return Duration::from_millis(100);
    }
    interval
}
