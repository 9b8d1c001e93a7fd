#!/usr/bin/env bash
# What `server.heap = "python"` costs the server it probes: the Python chat server of the tests
# (tests/support/ws_chat_server.py) under one churn load, with the probe off and on, in
# interleaved rounds (off on off on ...) so the shared cores slow both alike. Prints each run's
# deliveries per second and delivery p99, the time each after-iteration snapshot held the server,
# then the medians and the slowdown.
#
# The load: 2 rooms of 8 steady clients at 100 messages/s each (12,800 deliveries/s offered,
# more than the one-process server keeps up with here), plus churners. Release build; the
# Python from scripts/install-services (target/pyenv).
# Usage: bench/python_heap.sh [ROUNDS] [DURATION]   (default: 3 rounds of 10s)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
duration=${2:-10s}
scripts/install-services > /dev/null
cargo build --release --quiet
leakrun=$PWD/target/release/leakrun
python=$PWD/target/pyenv/bin/python
server=$PWD/tests/support/ws_chat_server.py
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

scenario() { # name heap port
  cat > "$out/$1.toml" <<TOML
name = "$1"
[server]
target = "external"
command = ["$python", "$server", "--port", "$3"]
ws_url = "ws://127.0.0.1:$3/ws/chat/{room}/"
heap = "$2"
[[rooms]]
name = "a"
clients = [
  { pattern = "steady", count = 8, rate = 100 },
  { pattern = "cycle", count = 2, rate = 20, up = "500ms", down = "100ms" },
]
[[rooms]]
name = "b"
clients = [
  { pattern = "steady", count = 8, rate = 100 },
  { pattern = "cycle", count = 2, rate = 20, up = "500ms", down = "100ms" },
]
[run]
duration = "$duration"
iterations = 2
warmup = 1
[thresholds]
delivery_p99 = "1h"
TOML
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

printf '%-6s %-6s %14s %14s %12s\n' round heap deliveries/s delivery_p99 snapshot_s
for round in $(seq "$rounds"); do
  for heap in none python; do
    name="py_${heap}_$round"
    scenario "$name" "$heap" "$(free_port)"
    "$leakrun" run "$out/$name.toml" --out "$out" --no-progress > /dev/null 2>&1 || true
    python3 - "$out/$name.json" "$round" "$heap" <<'PY' | tee -a "$out/rows"
import json, sys
r = json.load(open(sys.argv[1]))
if r["status"] not in ("pass", "fail"):
    sys.exit(f"{sys.argv[1]}: {r['status']}: {r.get('error')}")
last = r["iterations"][-1]
took = last.get("heap_probe", {}).get("took_s")
print(f"{sys.argv[2]:<6} {sys.argv[3]:<6} {last['deliveries_per_s']:14.0f} "
      f"{last['delivery']['p99_us'] / 1000:12.1f}ms {'' if took is None else f'{took:12.2f}'}")
PY
  done
done
python3 - "$out/rows" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
rate = {h: statistics.median(float(r[2]) for r in rows if r[1] == h) for h in ("none", "python")}
print(f"\nmedian deliveries/s: heap = \"none\" {rate['none']:.0f}, heap = \"python\" {rate['python']:.0f}: "
      f"the probe costs {100 * (1 - rate['python'] / rate['none']):.0f}% of the server's throughput")
PY
