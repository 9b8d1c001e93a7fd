#!/usr/bin/env bash
# leakrun's HTTP driver beside wrk, hey and oha, against one embedded hello server.
#
# `leakrun serve` keeps the embedded warp server up on a fixed free loopback port (its own
# process, release build); each tool then sends GET / over 64 keep-alive connections for
# DURATION, in interleaved rounds (leakrun wrk hey oha, leakrun wrk hey oha, ...), so a
# neighbour's build on the shared cores slows every tool alike. Prints each run, then the median
# requests per second and p99 per tool and leakrun's rate against each of the others.
#
# Tools: `leakrun load` (the driver of [[http]] workloads), wrk and hey (Debian: apt-get install
# wrk hey), oha (cargo install oha; skipped when not on PATH or in $OHA).
# Usage: bench/http.sh [ROUNDS] [DURATION]   (default: 5 rounds of 5s)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
duration=${2:-5s}
connections=64
cargo build --release --quiet
leakrun=target/release/leakrun
oha=${OHA:-$(command -v oha || true)}

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port/"
out=$(mktemp -d)
"$leakrun" serve --port "$port" > "$out/serve.log" 2>&1 &
server=$!
trap 'kill -INT $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 50); do
  curl -sf "$url" > /dev/null && break
  sleep 0.1
done

tools=(leakrun)
for tool in wrk hey; do
  if command -v "$tool" > /dev/null; then tools+=("$tool"); else echo "($tool not installed: skipped)"; fi
done
if [ -n "$oha" ]; then tools+=(oha); else echo "(oha not installed: skipped; cargo install oha)"; fi

# One run of one tool: prints "tool requests_per_s p99_ms".
run() {
  case $1 in
    leakrun)
      "$leakrun" load "$url" -c $connections -d "$duration" --json > "$out/run.json"
      python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("leakrun", d["requests_per_s"], d["latency"]["p99_us"]/1000)' "$out/run.json" ;;
    wrk)
      wrk -t2 -c$connections -d"$duration" --latency "$url" > "$out/run.txt"
      python3 - "$out/run.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()
print("wrk", rate, float(value) * {"us": 1e-3, "ms": 1, "s": 1e3}[unit])
PY
      ;;
    hey)
      hey -c $connections -z "$duration" "$url" > "$out/run.txt"
      python3 - "$out/run.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p99 = float(re.search(r"99% in ([\d.]+) secs", text).group(1))
print("hey", rate, p99 * 1000)
PY
      ;;
    oha)
      "$oha" -c $connections -z "$duration" --no-tui --output-format json "$url" > "$out/run.json"
      python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("oha", d["summary"]["requestsPerSec"], d["latencyPercentiles"]["p99"]*1000)' "$out/run.json" ;;
  esac
}

echo "GET $url, $connections connections, $duration per run, $rounds interleaved rounds; $(nproc) cores"
printf '%-8s %-6s %14s %10s\n' tool round requests/s p99_ms
for round in $(seq "$rounds"); do
  for tool in "${tools[@]}"; do
    read -r name rate p99 < <(run "$tool")
    printf '%-8s %-6s %14.0f %10.2f\n' "$name" "$round" "$rate" "$p99" | tee -a "$out/all.txt"
  done
done
echo
python3 - "$out/all.txt" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    tool, _, rate, p99 = line.split()
    runs.setdefault(tool, []).append((float(rate), float(p99)))
median = {t: (statistics.median(r for r, _ in v), statistics.median(p for _, p in v)) for t, v in runs.items()}
print(f"{'median':<8} {'requests/s':>14} {'p99_ms':>10}  {'leakrun/tool':>12}  {'per round (median, range)':>26}")
for tool, (rate, p99) in median.items():
    if tool == "leakrun":
        print(f"{tool:<8} {rate:>14,.0f} {p99:>10.2f}")
        continue
    rounds = [l / t for (l, _), (t, _) in zip(runs["leakrun"], runs[tool])]
    print(f"{tool:<8} {rate:>14,.0f} {p99:>10.2f}  {median['leakrun'][0] / rate:>11.2f}x  "
          f"{statistics.median(rounds):>9.2f}x ({min(rounds):.2f}..{max(rounds):.2f})")
PY
