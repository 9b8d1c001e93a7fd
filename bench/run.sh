#!/usr/bin/env bash
# Throughput and memory benchmark of the runner on the memory layer: 1,000 connections in 10
# rooms, at several send rates. Prints deliveries per second, delivery latency, losses and the
# peak RSS of the whole leakrun process (server, clients and observers together), once for the
# normal build (the counting allocator, sampling allocation sites at the default one per 512 KiB),
# once for the same build with sampling off (`--set server.heap_sample=0`), and once for a build
# without the counting allocator (`--no-default-features`: jemalloc alone), in the same run, so
# the sampler's and the allocator's costs are read off side by side (target: sampled ≥ 0.95 ×
# unsampled).
# Usage: bench/run.sh [RATE ...]   (default: 2 3)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
cargo build --release --quiet --no-default-features --target-dir target/no-count-heap
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%-14s %-6s %14s %12s %10s %10s %8s %12s\n' build rate deliveries/s delivered p50 p99 lost peak_rss_MiB
for rate in ${@:-2 3}; do
  for build in sampled:target/release/leakrun:512KiB counting:target/release/leakrun:0 plain:target/no-count-heap/release/leakrun:0; do
    name=${build%%:*}
    rest=${build#*:}
    binary=${rest%%:*}
    sample=${rest#*:}
    sed "s/RATE/$rate/" bench/memory_1000.toml > "$out/bench.toml"
    /usr/bin/time -f '%M' -o "$out/rss" "$binary" run "$out/bench.toml" --set "server.heap_sample=\"$sample\"" --out "$out" --no-progress >/dev/null 2>&1 || true
    python3 - "$out/bench_memory_1000.json" "$(cat "$out/rss")" "$rate" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
it = r["iterations"][0]
t = it["totals"]
print(f'{sys.argv[4]:<14} {sys.argv[3]:<6} {it["deliveries_per_s"]:>14,.0f} {t["received"]:>12,} {it["delivery"]["p50_us"]/1000:>8.1f}ms {it["delivery"]["p99_us"]/1000:>8.1f}ms {t["gaps"]+t["tail_loss"]:>8} {int(sys.argv[2])/1024:>12.1f}')
PY
  done
done
