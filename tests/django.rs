//! The seeds against the real stack: a Django Channels chat (examples/django_chat) under daphne,
//! with the Redis leakrun starts for it, as the examples in examples/ run it.
//!
//! - `django_tabs.toml` (the django-channels-leak report, with the Python heap probe): no leak,
//!   the traced heap and its sites read.
//!
//! Afterwards neither the daphne nor the redis-server started for the run is alive. Needs the
//! virtual environment scripts/install-services makes (target/django-current). The #1683 churn
//! is in tests/django_1683.rs.

mod common;

use common::django::run_example;

#[test]
fn waves_of_tabs_keep_no_memory_of_the_apps_and_the_heap_has_sites() {
    // Six waves instead of the example's eleven, to keep CI in bounds.
    let r = run_example("examples/django_tabs.toml", &["run.iterations=6"]);
    let leak = &r["verdicts"]["leak"];
    assert_ne!(leak["outcome"], "leak", "{}", leak["summary"]);
    let heap = leak["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "heap_bytes")
        .expect("the traced heap of daphne");
    assert_eq!(heap["class"], "clean", "{}", heap["evidence"]);
    assert!(heap["evidence"].as_str().unwrap().starts_with("traced Python heap"));
    assert!(
        r["iterations"][1]["heap_probe"]["blocks"].as_i64().unwrap() > 10_000,
        "a real app's heap was snapshotted"
    );
}
