//! Validation of what a scenario says about HTTP: the `[[http]]` workloads, the cache behind the
//! embedded server's `/cache/{key}` (`[server.cache]`), and where the server listens
//! (`server.host`, `server.port`). Same rules as the rest of `validate`: every problem pinned to
//! its value, with what would be valid.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::diagnostics::Collector;
use super::model::*;
use super::raw::*;
use super::values::{choice, duration_value, flag, int, size_value};

/// Largest request body a workload may send.
const MAX_BODY: u64 = 64 * 1024 * 1024;
/// Open model: connections sending the schedule when the scenario does not say.
const DEFAULT_CONNECTIONS: u64 = 32;
/// The one placeholder a path template may hold.
const KEY: &str = "{key}";

/// `server.host` and `server.port`: a loopback address (default 127.0.0.1) and a port (default 0,
/// a free one); with several instances on a fixed port, instance `i` takes `port + i`.
pub(super) fn host_port(raw: &RawServer, instances: usize, c: &mut Collector<'_>) -> (IpAddr, u16) {
    let default = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let host = match &raw.host {
        None => default,
        Some(text) => match parse_loopback(text.get_ref()) {
            Ok(ip) => ip,
            Err(message) => {
                c.at(text.span(), "server.host", message);
                default
            }
        },
    };
    let port = int(c, raw.port.as_ref(), "server.port", 0, 0..=65_535) as u16;
    if let Some(p) = &raw.port
        && port != 0
        && port as usize + instances - 1 > 65_535
    {
        c.at(
            p.span(),
            "server.port",
            format!(
                "{instances} instances need ports {port} to {}; valid: 1 to {}, or 0 for free ports",
                port as usize + instances - 1,
                65_536 - instances
            ),
        );
    }
    (host, port)
}

/// A loopback address from `text` (`localhost` is 127.0.0.1).
pub fn parse_loopback(text: &str) -> Result<IpAddr, String> {
    let ip = if text == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        text.parse::<IpAddr>().map_err(|_| {
            format!("`{text}` is not an IP address; valid: a loopback address such as \"127.0.0.1\" or \"::1\"")
        })?
    };
    if !ip.is_loopback() {
        return Err(format!(
            "`{text}` is not a loopback address; the embedded server listens on 127.0.0.0/8 or ::1 only"
        ));
    }
    Ok(ip)
}

/// `[server.cache]`.
pub(super) fn cache(raw: Option<&RawCache>, c: &mut Collector<'_>) -> CacheConfig {
    let default = RawCache::default();
    let raw = raw.unwrap_or(&default);
    let defaults = CacheConfig::default();
    let mode = choice(
        c,
        raw.mode.as_ref(),
        "server.cache.mode",
        &[("bounded", CacheMode::Bounded), ("unbounded", CacheMode::Unbounded)],
        defaults.mode,
    );
    if mode == CacheMode::Unbounded {
        let span = raw
            .max_items
            .as_ref()
            .map(|v| ("max_items", v.span()))
            .or(raw.ttl.as_ref().map(|v| ("ttl", v.span())));
        if let Some((key, span)) = span {
            c.at(
                span,
                format!("server.cache.{key}"),
                "only applies to mode = \"bounded\"; an unbounded cache keeps every key for ever",
            );
        }
    }
    CacheConfig {
        mode,
        max_items: int(
            c,
            raw.max_items.as_ref(),
            "server.cache.max_items",
            defaults.max_items as u64,
            1..=10_000_000,
        ) as usize,
        ttl: duration_value(c, raw.ttl.as_ref(), "server.cache.ttl", defaults.ttl, true),
        max_body: size_value(
            c,
            raw.max_body.as_ref(),
            "server.cache.max_body",
            defaults.max_body as u64,
            1..=MAX_BODY,
        ) as usize,
    }
}

/// Every `[[http]]` table.
pub(super) fn workloads(raw: &[S<RawHttp>], c: &mut Collector<'_>) -> Vec<HttpWorkload> {
    let mut out: Vec<HttpWorkload> = Vec::new();
    for (i, item) in raw.iter().enumerate() {
        let key = format!("http[{i}]");
        let workload = workload(item, &key, c);
        if out.iter().any(|w| w.name == workload.name) {
            let span = item.get_ref().name.as_ref().map_or(item.span(), |n| n.span());
            c.at(
                span,
                format!("{key}.name"),
                format!(
                    "route `{}` is named twice; give one of them a distinct `name`",
                    workload.name
                ),
            );
        }
        out.push(workload);
    }
    out
}

fn workload(item: &S<RawHttp>, key: &str, c: &mut Collector<'_>) -> HttpWorkload {
    let w = item.get_ref();
    let method = match &w.method {
        Some(m) => choice(c, Some(m), &format!("{key}.method"), HttpMethod::ALL, HttpMethod::Get),
        None => HttpMethod::Get,
    };
    let path = match &w.path {
        Some(p) => {
            if let Err(message) = check_path(p.get_ref()) {
                c.at(p.span(), format!("{key}.path"), message);
            }
            p.get_ref().clone()
        }
        None => {
            c.at(
                item.span(),
                format!("{key}.path"),
                "missing; every workload needs a `path`, e.g. \"/\" or \"/cache/{key}\"",
            );
            "/".into()
        }
    };
    let has_key = path.contains(KEY);
    for (value, field) in [
        (w.keys.as_ref().map(|v| v.span()), "keys"),
        (w.key_order.as_ref().map(|v| v.span()), "key_order"),
    ] {
        if let Some(span) = value
            && !has_key
        {
            c.at(
                span,
                format!("{key}.{field}"),
                format!("only applies to a path with `{KEY}`; this path is \"{path}\""),
            );
        }
    }
    let keys = has_key.then(|| KeySpace {
        count: int(c, w.keys.as_ref(), &format!("{key}.keys"), 1000, 1..=1_000_000_000_000),
        order: choice(
            c,
            w.key_order.as_ref(),
            &format!("{key}.key_order"),
            &[("random", KeyOrder::Random), ("sequential", KeyOrder::Sequential)],
            KeyOrder::Random,
        ),
    });
    let body = size_value(c, w.body.as_ref(), &format!("{key}.body"), 0, 0..=MAX_BODY) as usize;
    if let Some(b) = &w.body
        && !method.has_body()
        && body > 0
    {
        c.at(
            b.span(),
            format!("{key}.body"),
            format!(
                "only applies to method = \"PUT\" or \"POST\"; this workload is \"{}\"",
                method.name()
            ),
        );
    }
    let model = model(w, key, c);
    let requests = w
        .requests
        .as_ref()
        .map(|r| int(c, Some(r), &format!("{key}.requests"), 1, 1..=1_000_000_000));
    let name = match &w.name {
        Some(n) if (1..=99).contains(&n.get_ref().chars().count()) => n.get_ref().clone(),
        Some(n) => {
            c.at(n.span(), format!("{key}.name"), "valid: 1 to 99 characters");
            n.get_ref().clone()
        }
        None => format!("{} {path}", method.name()),
    };
    HttpWorkload {
        name,
        method,
        path,
        keys,
        body,
        model,
        requests,
        keep_alive: flag(w.keep_alive.as_ref(), true),
        timeout: duration_value(
            c,
            w.timeout.as_ref(),
            &format!("{key}.timeout"),
            Duration::from_secs(10),
            true,
        ),
    }
}

fn model(w: &RawHttp, key: &str, c: &mut Collector<'_>) -> LoadModel {
    if let (Some(_), Some(rate)) = (&w.workers, &w.rate) {
        c.at(
            rate.span(),
            format!("{key}.rate"),
            "set either `workers` (closed model: each worker sends its next request when the last is answered) or `rate` (open model: requests per second on a schedule), not both",
        );
    }
    if let Some(connections) = &w.connections
        && w.rate.is_none()
    {
        c.at(
            connections.span(),
            format!("{key}.connections"),
            "only applies to the open model (`rate`); in the closed model each of the `workers` has its own connection",
        );
    }
    match &w.rate {
        Some(rate) if w.workers.is_none() => {
            let value = *rate.get_ref();
            let rate = if value.is_finite() && (super::values::MIN_RATE..=1_000_000.0).contains(&value) {
                value
            } else {
                c.at(
                    rate.span(),
                    format!("{key}.rate"),
                    format!(
                        "{value:?} is out of range; valid: {} to 1000000 requests per second",
                        super::values::MIN_RATE
                    ),
                );
                1.0
            };
            let connections = int(
                c,
                w.connections.as_ref(),
                &format!("{key}.connections"),
                DEFAULT_CONNECTIONS,
                1..=10_000,
            ) as usize;
            LoadModel::Open { rate, connections }
        }
        _ => LoadModel::Closed {
            workers: int(c, w.workers.as_ref(), &format!("{key}.workers"), 1, 1..=10_000) as usize,
        },
    }
}

/// A path template: starts with `/`, URL path characters only, and `{key}` as its only
/// placeholder.
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` must start with `/`, e.g. \"/cache/{KEY}\""));
    }
    let plain = path.replace(KEY, "k");
    if plain.contains(['{', '}']) {
        return Err(format!(
            "`{path}` has a placeholder other than `{KEY}`; `{KEY}` is the only one"
        ));
    }
    let good = plain
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@%?".contains(&b));
    if !good || plain.parse::<hyper::Uri>().is_err() {
        return Err(format!(
            "`{path}` has characters a URL path cannot hold; valid: letters, digits and -._~/!$&'()*+,;=:@%?"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::scenario::{Problem, parse};

    use super::*;

    fn problems(text: &str) -> Vec<Problem> {
        parse(Path::new("t.toml"), text).unwrap_err().problems
    }

    const HELLO: &str = r#"name = "hello"
[[http]]
path = "/"
workers = 100
"#;

    #[test]
    fn an_http_workload_stands_without_rooms_and_takes_defaults() {
        let s = parse(Path::new("t.toml"), HELLO).unwrap();
        assert!(s.rooms.is_empty());
        let w = &s.http[0];
        assert_eq!(w.name, "GET /");
        assert_eq!(w.model, LoadModel::Closed { workers: 100 });
        assert!(w.keep_alive);
        assert_eq!(w.keys, None);
        assert_eq!(s.server.embedded().unwrap().host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(s.server.embedded().unwrap().port, 0);
        assert_eq!(s.server.embedded().unwrap().cache, CacheConfig::default());
    }

    #[test]
    fn a_cache_workload_has_a_key_space_and_a_body() {
        let text = r#"name = "cache"
[server]
port = 3030
instances = 2
[server.cache]
mode = "unbounded"
[[http]]
method = "PUT"
path = "/cache/{key}"
keys = 1000000
key_order = "sequential"
body = "10KiB"
rate = 500
requests = 2000
"#;
        let s = parse(Path::new("t.toml"), text).unwrap();
        let w = &s.http[0];
        assert_eq!(w.method, HttpMethod::Put);
        assert_eq!(
            w.keys,
            Some(KeySpace {
                count: 1_000_000,
                order: KeyOrder::Sequential
            })
        );
        assert_eq!(w.body, 10 * 1024);
        assert_eq!(
            w.model,
            LoadModel::Open {
                rate: 500.0,
                connections: 32
            }
        );
        assert_eq!(w.requests, Some(2000));
        assert_eq!(s.server.embedded().unwrap().cache.mode, CacheMode::Unbounded);
        assert_eq!(s.server.embedded().unwrap().port, 3030);
    }

    #[test]
    fn bad_http_values_are_each_named_with_what_is_valid() {
        let text = r#"name = "bad"
[server]
host = "10.0.0.1"
[server.cache]
mode = "unbounded"
ttl = "60s"
[[http]]
method = "FETCH"
path = "/cache/{id}"
workers = 0
[[http]]
path = "/"
workers = 2
rate = 10
body = 5
keys = 3
"#;
        let found = problems(text);
        let got: Vec<(usize, &str)> = found.iter().map(|p| (p.line, p.key.as_str())).collect();
        assert_eq!(
            got,
            [
                (3, "server.host"),
                (6, "server.cache.ttl"),
                (8, "http[0].method"),
                (9, "http[0].path"),
                (10, "http[0].workers"),
                (14, "http[1].rate"),
                (15, "http[1].body"),
                (16, "http[1].keys"),
            ],
            "{found:#?}"
        );
        assert!(found[0].message.contains("not a loopback address"));
        assert!(
            found[2]
                .message
                .contains("`FETCH` is not one of the valid values: \"GET\", \"PUT\", \"POST\", \"DELETE\"")
        );
        assert!(found[4].message.contains("0 is out of range; valid: 1 to 10000"));
        assert!(found[5].message.contains("not both"));
    }

    #[test]
    fn no_rooms_and_no_http_is_no_load() {
        let found = problems("name = \"empty\"\n");
        assert_eq!(found[0].key, "rooms");
        assert!(found[0].message.contains("[[http]]"), "{}", found[0].message);
    }

    #[test]
    fn paths_are_checked() {
        assert!(check_path("/cache/{key}").is_ok());
        assert!(check_path("/info").is_ok());
        assert!(check_path("cache").unwrap_err().contains("must start with `/`"));
        assert!(check_path("/a b").is_err());
        assert!(check_path("/{keys}").unwrap_err().contains("only one"));
    }
}
