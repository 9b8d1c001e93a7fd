#!/usr/bin/env bash
# The cost of `server.heap = "malloc"`: `leakrun-glibc serve` (release build, its own process)
# with and without leakrun's preloaded allocator, under `leakrun load`, side by side in one run.
# `leakrun-glibc` is the same command line on glibc's malloc: the `leakrun` binary allocates from
# a jemalloc of its own, under names a preloaded `malloc` never sees.
#
# Three servers stay up on free loopback ports: plain; preloaded with sampling off
# (LEAKRUN_MALLOC_SAMPLE=0: counting only); preloaded at the default sampling (one allocation per
# 512 KiB). Each round sends the same load to each in turn (plain, counting, sampled, plain, ...),
# so a neighbour on the shared cores slows all three alike. Two loads: GET / (the hello route) and
# PUT /cache/k of 1,000 random bytes (an allocation and a free of the value per request).
# Prints every run, then per load the median requests per second and p99 of each server and
# their rates against the plain one (target: sampled ≥ 0.90 × plain).
# Usage: bench/malloc.sh [ROUNDS] [DURATION]   (default: 5 rounds of 5s)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
duration=${2:-5s}
connections=64
cargo build --release --quiet --workspace
leakrun=target/release/leakrun-glibc
library=$PWD/target/release/libleakrun_malloc.so
out=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$out"' EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

declare -A ports
for server in plain counting sampled; do
  port=$(free_port)
  ports[$server]=$port
  mkdir -p "$out/$server"
  case $server in
    plain) "$leakrun" serve --port "$port" > "$out/$server.log" 2>&1 & ;;
    counting) LD_PRELOAD=$library LEAKRUN_MALLOC_DIR=$out/$server LEAKRUN_MALLOC_SAMPLE=0 \
      "$leakrun" serve --port "$port" > "$out/$server.log" 2>&1 & ;;
    sampled) LD_PRELOAD=$library LEAKRUN_MALLOC_DIR=$out/$server LEAKRUN_MALLOC_SAMPLE=524288 \
      "$leakrun" serve --port "$port" > "$out/$server.log" 2>&1 & ;;
  esac
  pids+=($!)
done
for server in plain counting sampled; do
  for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:${ports[$server]}/" > /dev/null && break
    sleep 0.1
  done
done
# The preloaded servers counted their heap (so the library was in them).
for server in counting sampled; do
  ls "$out/$server"/*.page > /dev/null || { echo "the $server server has no heap page: the library did not load" >&2; exit 1; }
done

echo "leakrun serve under leakrun load, $connections connections, $duration per run, $rounds interleaved rounds; $(nproc) cores"
printf '%-6s %-10s %-6s %14s %10s\n' load server round requests/s p99_ms
for round in $(seq "$rounds"); do
  for load in get put; do
    for server in plain counting sampled; do
      url="http://127.0.0.1:${ports[$server]}/"
      args=()
      [ "$load" = put ] && { url="${url}cache/k"; args=(--method PUT --body 1000); }
      "$leakrun" load "$url" -c $connections -d "$duration" "${args[@]}" --json > "$out/run.json"
      read -r rate p99 < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["requests_per_s"], d["latency"]["p99_us"]/1000)' "$out/run.json")
      printf '%-6s %-10s %-6s %14.0f %10.2f\n' "$load" "$server" "$round" "$rate" "$p99" | tee -a "$out/all.txt"
    done
  done
done
echo
python3 - "$out/all.txt" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    load, server, _, rate, p99 = line.split()
    runs.setdefault((load, server), []).append((float(rate), float(p99)))
for load in ("get", "put"):
    plain = statistics.median(r for r, _ in runs[(load, "plain")])
    for server in ("plain", "counting", "sampled"):
        rates = [r for r, _ in runs[(load, server)]]
        p99s = [p for _, p in runs[(load, server)]]
        rate = statistics.median(rates)
        print(f"{load:<4} {server:<9} median {rate:>10,.0f} req/s  p99 {statistics.median(p99s):6.2f} ms  {rate / plain:5.2f}x plain")
PY
