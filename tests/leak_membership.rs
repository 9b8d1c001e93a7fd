//! The membership-leak control against a figure measured independently: this test binary installs
//! leakrun's counting allocator itself, measures in-process what one kept membership costs the
//! memory layer (a channel, its buffer, its entries in the group and the channel map), then runs
//! the shipped control through the real binary and compares the two. The layer's share is a lower
//! bound: a real connection that ends with its channel kept leaves more behind than the layer's own
//! entries (here about twice as much), so the check is "at least the layer's share, and of the same
//! order". It is alone in its binary so no other test allocates while the share is measured.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use leakrun::heap::{self, CountingAllocator};
use leakrun::layer::{ChannelLayer, FaultyLayer, MemoryLayer};

/// As the `leakrun` binary counts: over jemalloc.
#[global_allocator]
static ALLOCATOR: CountingAllocator<tikv_jemallocator::Jemalloc> = CountingAllocator::new(tikv_jemallocator::Jemalloc);

/// Heap bytes one connection leaves behind when memberships are kept: the same calls, in the same
/// order, as the embedded server makes for a connection that opens and closes.
fn kept_membership_bytes(capacity: usize, connections: usize) -> f64 {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let layer: Arc<dyn ChannelLayer> = Arc::new(FaultyLayer::new(Arc::new(MemoryLayer::new(capacity)), None, true));
        let connect = |layer: Arc<dyn ChannelLayer>| async move {
            let channel = layer.new_channel().await.unwrap();
            layer.group_add("hello", &channel.name).await.unwrap();
            layer.group_discard("hello", &channel.name).await.unwrap();
            layer.close_channel(channel).await.unwrap();
        };
        for _ in 0..connections {
            connect(layer.clone()).await;
        }
        let before = heap::figures().expect("allocator installed").server_bytes;
        for _ in 0..connections {
            connect(layer.clone()).await;
        }
        let after = heap::figures().unwrap().server_bytes;
        (after - before) as f64 / connections as f64
    })
}

#[test]
fn the_membership_leak_is_found_with_the_right_order_of_bytes_per_connection() {
    let layer_share = kept_membership_bytes(100, 100);
    assert!(layer_share > 100.0, "a kept channel costs something: {layer_share}");

    let dir = scratch();
    let output = run_scenario(Path::new("scenarios/controls/membership_leak.toml"), dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(dir.path(), "membership_leak");
    let leak = &r["verdicts"]["leak"];
    assert_eq!(leak["outcome"], "leak", "{}", leak["summary"]);
    assert_eq!(leak["met"], true);

    let measured = leak["bytes_per_connection"].as_f64().unwrap();
    assert!(
        measured >= layer_share * 0.95 && measured < layer_share * 4.0,
        "measured {measured:.0} B per closed connection; the layer's own share is {layer_share:.0} B"
    );

    let memberships = leak["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "memberships")
        .unwrap();
    assert_eq!(memberships["class"], "leak");
    let after: Vec<u64> = memberships["after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as u64)
        .collect();
    assert_eq!(after, [20, 40, 60, 80, 100, 120]);

    // The sampled sites account for the bytes per closed connection (at least 80% of them), and
    // name where they are: the connection's task (src/server/upgrade.rs, the spawn of the
    // connection future) and the channel the kept membership holds (src/layer/memory.rs).
    let sites = leak["sites"].as_array().unwrap();
    let explained: f64 = sites.iter().filter_map(|s| s["bytes_per_connection"].as_f64()).sum();
    assert!(
        explained >= 0.8 * measured,
        "sites explain {explained:.0} of {measured:.0} B per closed connection: {sites:#?}"
    );
    let named = |file: &str| sites.iter().any(|s| s["site"].as_str().unwrap().starts_with(file));
    assert!(named("src/server/upgrade.rs:"), "{sites:#?}");
    assert!(named("src/layer/memory.rs:"), "{sites:#?}");
    assert_eq!(
        memberships["evidence"],
        "memberships: 0 → 20 → 40 → 60 → 80 → 100 → 120 after each iteration; 20 per iteration are never released"
    );
    assert!(leak["summary"].as_str().unwrap().contains("memberships: 0 → 20 → 40"));
}
