#!/usr/bin/env bash
# Deliveries per second on each channel layer, side by side in one run: 200 connections in 4 rooms
# of 50 over 2 embedded server instances, 128-byte frames, 10s per rate. The Redis layers run on a
# private redis-server that leakrun starts (REDIS_URL is ignored here, so every layer is measured
# on the same kind of server; likewise AMQP_URL for amqp). Prints deliveries per second, delivery latency and losses.
# Usage: bench/layers.sh [RATE ...]   (default: 5 10 20)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%-12s %-6s %14s %12s %10s %10s %8s\n' layer rate deliveries/s delivered p50 p99 lost
for rate in ${@:-5 10 20}; do
  for kind in memory redis redis-lists amqp; do
    sed "s/RATE/$rate/; s/KIND/$kind/" bench/layers_200.toml > "$out/bench.toml"
    env -u REDIS_URL -u AMQP_URL target/release/leakrun run "$out/bench.toml" --out "$out" --no-progress >/dev/null 2>&1 || true
    python3 - "$out/bench_layers_200.json" "$rate" "$kind" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if not r["iterations"]:
    print(f'{sys.argv[3]:<12} {sys.argv[2]:<6} error: {r.get("error")}')
    sys.exit()
it = r["iterations"][0]
t = it["totals"]
print(f'{sys.argv[3]:<12} {sys.argv[2]:<6} {it["deliveries_per_s"]:>14,.0f} {t["received"]:>12,} {it["delivery"]["p50_us"]/1000:>8.1f}ms {it["delivery"]["p99_us"]/1000:>8.1f}ms {t["gaps"]+t["tail_loss"]:>8}')
PY
  done
done
