//! The leak verdict end to end: the real binary, its embedded server on loopback and real WebSocket
//! clients, judged from the counting allocator's exact heap series. Each detector has its positive
//! control (a known leak, kept memberships) and its negative one (the django tabs waves), and
//! retention must not pass for a leak.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn run_shipped(file: &str, out: &Path) -> Value {
    let output = run_scenario(Path::new(file), out);
    assert_eq!(output.status.code(), Some(0), "{file}: {}", describe(&output));
    let name = Path::new(file).file_stem().unwrap().to_str().unwrap();
    let r = result(out, name);
    assert_eq!(r["status"], "pass", "{file}");
    r
}

fn series<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["verdicts"]["leak"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no series {name}"))
}

#[test]
fn a_known_leak_of_256_bytes_per_connection_is_found_and_measured_within_10_percent() {
    let dir = scratch();
    let r = run_shipped("scenarios/controls/leak_256_per_connection.toml", dir.path());
    let leak = &r["verdicts"]["leak"];
    assert_eq!(leak["outcome"], "leak", "{}", leak["summary"]);
    let judged = leak["judged_iterations"].as_f64().unwrap();
    let closed = leak["connections_closed_per_iteration"].as_f64().unwrap() * judged;
    assert!(closed >= 1000.0, "over 1,000 closed connections: {closed}");
    let per_connection = leak["bytes_per_connection"].as_f64().unwrap();
    assert!(
        (per_connection - 256.0).abs() <= 25.6,
        "measured {per_connection} B per connection"
    );
    let heap = series(&r, "heap_bytes");
    assert_eq!(heap["class"], "leak");
    assert_eq!(heap["after"].as_array().unwrap().len(), 11);
    assert!(heap["evidence"].as_str().unwrap().contains("per closed connection"));
    // The state counters came back: only the bytes leak.
    assert_eq!(series(&r, "memberships")["class"], "clean");
    // The sampled allocations name the fault's own line as the first site, and the summary says so.
    let first = &leak["sites"][0];
    let site = first["site"].as_str().unwrap_or_default();
    assert!(
        site.starts_with("src/server/faults.rs:"),
        "first site {site}: {}",
        leak["sites"]
    );
    assert!(
        first["traceback"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("leakrun::server::faults::")),
        "{first}"
    );
    assert!(leak["summary"].as_str().unwrap().contains(site), "{}", leak["summary"]);
}

#[test]
fn a_server_that_only_inflates_rss_is_retention_not_leak() {
    let dir = scratch();
    let r = run_shipped("scenarios/controls/retention.toml", dir.path());
    let leak = &r["verdicts"]["leak"];
    assert_eq!(leak["outcome"], "retention", "{}", leak["summary"]);
    assert_eq!(series(&r, "heap_bytes")["class"], "clean");
    assert_eq!(series(&r, "rss_bytes")["class"], "retention");
    let rss = series(&r, "rss_bytes");
    let rise = rss["after"].as_array().unwrap().last().unwrap().as_f64().unwrap() - rss["before"].as_f64().unwrap();
    assert!(rise > 32.0 * 1024.0 * 1024.0, "RSS rose only {rise} bytes");
    assert!(leak["summary"].as_str().unwrap().starts_with("retention, not a leak"));
}

#[test]
fn the_django_tabs_waves_are_clean_in_three_runs_out_of_three() {
    let dirs: Vec<_> = (0..3).map(|_| scratch()).collect();
    let results: Vec<Value> = std::thread::scope(|scope| {
        let runs: Vec<_> = dirs
            .iter()
            .map(|dir| scope.spawn(|| run_shipped("scenarios/django_tabs.toml", dir.path())))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for r in &results {
        let leak = &r["verdicts"]["leak"];
        assert_eq!(leak["outcome"], "clean", "{}", leak["summary"]);
        assert_eq!(r["iterations"].as_array().unwrap().len(), 10);
        assert_eq!(leak["judged_iterations"], 9);
        assert_eq!(leak["connections_closed_per_iteration"], 20.0);
        for name in ["live_connections", "memberships", "channels", "groups", "buffered"] {
            let s = series(r, name);
            assert_eq!(s["class"], "clean", "{name}: {}", s["evidence"]);
            assert!(s["after"].as_array().unwrap().iter().all(|v| v == 0.0), "{name}");
        }
        // Every iteration settled: zero connections and a still heap before the after sample.
        assert!(r["iterations"].as_array().unwrap().iter().all(|i| i["settled"] == true));
    }
}

#[test]
fn the_timeline_and_samples_are_in_the_result() {
    let dir = scratch();
    let text = r#"
name = "sampled"
[[rooms]]
name = "hello"
  [[rooms.clients]]
  pattern = "tabs"
  count = 5
  rate = 2
[run]
duration = "1s"
iterations = 2
sample_interval = "50ms"
"#;
    let output = run_scenario(&scenario(dir.path(), "sampled", text), dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(dir.path(), "sampled");
    let samples = r["timeline"]["samples"].as_array().unwrap();
    // Two iterations of at least 1s each at 50ms: dozens of samples, each with every series.
    assert!(samples.len() >= 30, "{}", samples.len());
    let busy = samples
        .iter()
        .map(|s| s["state"]["live_connections"].as_u64().unwrap())
        .max();
    assert_eq!(busy, Some(5), "the sampler saw the tabs open");
    assert!(
        samples
            .iter()
            .all(|s| s["rss_bytes"].as_u64().unwrap() > 0 && s["heap_bytes"].as_i64().unwrap() > 0)
    );
    assert!(r["before"]["heap_bytes"].as_i64().unwrap() > 0);
    assert_eq!(r["iterations"][1]["after"]["state"]["live_connections"], 0);
    // Two iterations, one of them warm-up: too few to fit a slope, said in words.
    let heap = series(&r, "heap_bytes");
    assert_eq!(heap["class"], "not_judged");
    assert!(heap["evidence"].as_str().unwrap().contains("needs 3 iterations"));
}
