#!/usr/bin/env bash
# How small a per-connection leak the leak verdict finds, and how often it cries wolf.
# Each run: 200 browser-tab connections per wave on the embedded server, 11 waves (the first is
# warm-up), so 2,000 connections closed in the judged waves. The server keeps LEAK bytes per closed
# connection (0: a clean server). Prints, per size, how many runs were called `leak` and the
# bytes per closed connection measured (min..max over the runs).
# Usage: bench/leak_sensitivity.sh [RUNS] [SIZE ...]   (default: 20 runs of 0 4 8 16 64)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
shift || true
sizes=("${@:-0 4 8 16 64}")
if [[ -z "${LEAKRUN:-}" ]]; then
  cargo build --release --quiet
  LEAKRUN=target/release/leakrun
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%-10s %6s %14s %26s\n' leak_B runs called_leak measured_B_per_conn
for size in ${sizes[@]}; do
  for run in $(seq "$runs"); do
    cat > "$out/s.toml" <<TOML
name = "sensitivity"
[server.faults]
leak_per_connection = $size
[[rooms]]
name = "hello"
  [[rooms.clients]]
  pattern = "tabs"
  count = 200
  ramp = "300ms"
  rate = 1
[run]
duration = "700ms"
iterations = 11
TOML
    "$LEAKRUN" run "$out/s.toml" --out "$out" --no-progress >/dev/null 2>&1 || true
    python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))["verdicts"]["leak"]
print(v["outcome"], v["bytes_per_connection"], int(v["connections_closed_per_iteration"] * v["judged_iterations"]))
' "$out/sensitivity.json" >> "$out/size_$size"
  done
  python3 - "$out/size_$size" "$size" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
leaks = sum(r[0] == "leak" for r in rows)
per = [float(r[1]) for r in rows if r[1] != "None"]
closed = sorted({r[2] for r in rows})
rng = f"{min(per):.2f}..{max(per):.2f}" if per else "-"
print(f"{sys.argv[2]:<10} {len(rows):>6} {leaks:>14} {rng:>26}   (closed per run: {','.join(closed)})")
PY
done
