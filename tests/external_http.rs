//! `[[http]]` workloads against an external server: `leakrun serve` started as a separate process
//! by `command`, reached at `http_url`, judged from outside by the RSS of its process. Its cache
//! switch is the fault: unbounded keeps every value (a leak from RSS), bounded holds 1,000 items
//! (flat once full).

mod common;

use common::*;

fn run(name: &str, cache: &str, expect_leak: bool) -> serde_json::Value {
    let dir = scratch();
    let path = scenario(
        dir.path(),
        name,
        &serve_cache_scenario(env!("CARGO_BIN_EXE_leakrun"), name, cache, expect_leak, ""),
    );
    let out = dir.path().join("results");
    let output = run_scenario(&path, &out);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    result(&out, name)
}

#[test]
fn an_external_unbounded_cache_is_a_leak_from_its_rss() {
    let r = run("external_unbounded", "unbounded", true);
    assert_eq!(
        r["verdicts"]["leak"]["outcome"], "leak",
        "{}",
        r["verdicts"]["leak"]["summary"]
    );
    assert_eq!(r["target"]["kind"], "external");
    let route = &r["http"][0];
    assert_eq!(
        route["statuses"]["204"], route["requests"],
        "every PUT answered 204: {route}"
    );
    // 1,500 values of 10,000 bytes per iteration: RSS must grow by at least most of that.
    let summary = r["verdicts"]["leak"]["summary"].as_str().unwrap().to_string();
    assert!(summary.contains("external"), "{summary}");
    let bytes = r["verdicts"]["leak"]["bytes_per_request"]
        .as_f64()
        .unwrap_or_else(|| panic!("no bytes per request: {summary}"));
    assert!(bytes > 7_500.0, "RSS per PUT {bytes} for 10,000-byte values: {summary}");
}

#[test]
fn an_external_bounded_cache_is_not_a_leak() {
    let r = run("external_bounded", "bounded", false);
    assert_ne!(
        r["verdicts"]["leak"]["outcome"], "leak",
        "{}",
        r["verdicts"]["leak"]["summary"]
    );
    assert!(r["http"][0]["requests"].as_u64().unwrap() >= 7_500, "{}", r["http"][0]);
}
