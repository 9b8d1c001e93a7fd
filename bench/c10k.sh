#!/usr/bin/env bash
# C10k: ten thousand WebSocket connections in one leakrun process (server and clients), on the
# memory layer: 10 rooms, each of listen-only clients and one sender, the senders' rate set so the
# room delivers 100,000 messages a second in all (each message reaches every member of its room).
# Prints, for the build of BEFORE (default: main, built from `git archive` into a target folder
# of its own) and for this tree, side by side in one run: memory per
# connection (peak RSS of the process over connections: server and clients together), connect
# p99, deliveries per second (over send and drain time, and steady_del/s: the median 100 ms window
# once every sender sends), delivery p99 over all deliveries and in the
# worst room (room_p99, what the latency verdict judges; a second line places its tail: its
# senders' send lag and its 100 ms windows over 100 ms), messages sent, lost, and the
# CPU seconds the process used, and those CPU seconds per delivery received (cpu_us/del: where
# both cores are saturated, this is what bounds the rate).
#
# Each connection is two sockets in this one process (the client's and the server's), so the
# open-file limit caps the connections: with `ulimit -n` at 20,000 that is 9,900, and the script
# says so when it caps. Runs in release; CPU heavy (two runs of DURATION plus connects and drain).
# A row `split` holds all CONNECTIONS where the limit caps the rows in one process: this tree's
# clients in `leakrun run` and the server in a `leakrun serve` process of its own (an external
# target by `pid`: one socket per connection in each process, so 10,000 fit under 20,000). Its
# KiB/conn and peak are the client process's alone, leakrun's own memory per connection; a second
# line gives the server process's peak and both processes' CPU (cpu_s in the row is the sum).
# A third row per run, `paced`, is this tree on the same scenario with its connects paced by
# `run.connect_rate` (PACED per second): all connects at once are the issue's scenario and what
# BEFORE can run (it has no `connect_rate`), but their burst shares the first half second of
# sending with the fan-outs; paced is how a user holds ten thousand connections without that.
# Usage: bench/c10k.sh [CONNECTIONS]   (default 10000)
# Environment: BEFORE=<git ref> (default main), DURATION (default 20s), ROOMS (default 10),
#              SENDERS per room (default 1), DELIVERIES per second offered (default 100000),
#              RUNS: rounds of runs, before, after, paced and split each time (default 1; latency on a
#              saturated 2-core machine moves by tens of ms from run to run), PACED: connects
#              per second for the paced row (default 5000; 0 leaves the row out), SPLIT=0 leaves
#              the split row out.
set -euo pipefail
cd "$(dirname "$0")/.."
want=${1:-10000}
rooms=${ROOMS:-10}
senders=${SENDERS:-1}
duration=${DURATION:-20s}
deliveries=${DELIVERIES:-100000}
before=${BEFORE:-main}
runs=${RUNS:-1}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "error: RUNS=$runs: valid: a whole number from 1" >&2; exit 2; }
paced=${PACED:-5000}
[[ $paced =~ ^[0-9]+$ ]] || { echo "error: PACED=$paced: valid: a whole number of connects per second (0: no paced row)" >&2; exit 2; }
split=${SPLIT:-1}
[[ $split =~ ^[01]$ ]] || { echo "error: SPLIT=$split: valid: 1 (the split row) or 0 (none)" >&2; exit 2; }
builds=(before after)
(( paced > 0 )) && builds+=(paced)
(( split )) && builds+=(split)

# Room for the process's other descriptors (listeners, files, the backend's and the sampler's).
limit=$(ulimit -n)
spare=200
connections=$want
if (( 2 * want + spare > limit )); then
  connections=$(( (limit - spare) / 2 ))
  echo "note: the open-file limit ($limit) caps the run at $connections connections (2 sockets each, $spare spare), not $want" >&2
fi
# The split row: one socket per connection in each of its two processes.
split_connections=$want
if (( split && want + spare > limit )); then
  split_connections=$(( limit - spare ))
  echo "note: the open-file limit ($limit) caps the split row at $split_connections connections, not $want" >&2
fi

work=$(mktemp -d)
server_pid=
# The split row's server is this script's child: stopped on any exit, never left running.
trap '[[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT

# The builds: BEFORE from its tree into a target folder of its own (seeded with this tree's
# compiled dependencies, so only leakrun compiles; both trees give leakrun the same artifact
# names, so one folder cannot hold both), kept there under its commit id so a second run of the
# same BEFORE does not build it again; then this tree.
before_target=target/c10k-before
before_rev=$(git rev-parse --verify "$before^{commit}")
before_bin=$before_target/leakrun-$before_rev
if [[ ! -x $before_bin ]]; then
  if [[ ! -d $before_target/release ]]; then
    mkdir -p "$before_target"
    cargo build --release --quiet
    cp -a target/release "$before_target/"
  fi
  # -m: the extracted sources are newer than any artifact, so leakrun is rebuilt from them.
  git archive "$before_rev" | tar -x -m -C "$work" --one-top-level=src-before
  cargo build --release --quiet --manifest-path "$work/src-before/Cargo.toml" --target-dir "$PWD/$before_target"
  cp "$before_target/release/leakrun" "$before_bin"
fi
cp "$before_bin" "$work/leakrun-before"
cargo build --release --quiet
cp target/release/leakrun "$work/leakrun-after"

# scenario FILE CONNECTIONS [SERVER-KEYS]: the c10k scenario for that many connections, its
# [server] table's keys given (default: the embedded server with capacity 1000); sets per_room,
# listeners and rate for the headline.
scenario() {
  local file=$1 count=$2 server=${3:-capacity = 1000}
  per_room=$(( count / rooms ))
  listeners=$(( per_room - senders ))
  rate=$(python3 -c "print(round($deliveries / ($rooms * $senders * $per_room), 4))")
  {
    printf 'name = "c10k"\ndescription = "%s connections: %s rooms of %s listeners and %s senders at %s/s"\n' \
      "$(( per_room * rooms ))" "$rooms" "$listeners" "$senders" "$rate"
    printf '[server]\n%s\n[run]\nduration = "%s"\ndrain = "10s"\nsettle = "20s"\nconnect_timeout = "30s"\n' "$server" "$duration"
    printf '[thresholds]\ndelivery_p99 = "30s"\nconnect_p99 = "30s"\n'
    for ((r = 0; r < rooms; r++)); do
      printf '[[rooms]]\nname = "room%s"\n' "$r"
      printf '[[rooms.clients]]\npattern = "steady"\ncount = %s\nrate = 0\n' "$listeners"
      printf '[[rooms.clients]]\npattern = "steady"\ncount = %s\nrate = %s\npayload = 128\n' "$senders" "$rate"
    done
  } >"$file"
}
if (( split )); then
  # The server's pid and port are filled in when each split run has started it.
  scenario "$work/c10k-split.in" "$split_connections" $'target = "external"\npid = @PID@\nws_url = "ws://127.0.0.1:@PORT@/ws/chat/{room}"'
  split_connections=$(( per_room * rooms ))
  split_headline="$split_connections connections, $rooms rooms x ($listeners listeners + $senders senders at $rate/s)"
fi
scenario "$work/c10k.toml" "$connections"
connections=$(( per_room * rooms ))

echo "before: $before ($before_rev); load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "c10k: $connections connections, $rooms rooms x ($listeners listeners + $senders senders at $rate/s), $duration, offered $(( rooms * senders * per_room ))x$rate deliveries/s"
(( paced > 0 )) && echo "paced: this tree with run.connect_rate = $paced (connects per second)"
(( split )) && echo "split: this tree, $split_headline, the server a \`leakrun serve\` process of its own"
printf '%-8s %12s %10s %14s %14s %14s %12s %10s %10s %8s %8s %8s %10s\n' build KiB/conn peak_MiB connect_p99 deliveries/s steady_del/s delivery_p99 room_p99 sent lost dropped cpu_s cpu_us/del
for ((run = 0; run < runs; run++)); do
for build in "${builds[@]}"; do
  rm -f "$work/c10k.json"
  binary=$work/leakrun-$build
  file=$work/c10k.toml
  count=$connections
  extra=()
  server=""
  if [[ $build == paced ]]; then
    binary=$work/leakrun-after
    extra=(--set "run.connect_rate=$paced")
  elif [[ $build == split ]]; then
    binary=$work/leakrun-after
    file=$work/c10k-split.toml
    count=$split_connections
    "$binary" serve --port 0 >"$work/serve.log" 2>&1 &
    server_pid=$!
    port=
    for _ in $(seq 100); do
      port=$(sed -n 's|^serving on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/serve.log")
      [[ -n $port ]] && break
      sleep 0.1
    done
    [[ -n $port ]] || { echo "error: leakrun serve did not say its port: $(cat "$work/serve.log")" >&2; exit 1; }
    sed "s|@PID@|$server_pid|; s|@PORT@|$port|" "$work/c10k-split.in" >"$file"
  fi
  /usr/bin/time -f '%M %U %S' -o "$work/time" "$binary" run "$file" "${extra[@]}" --out "$work" --no-progress \
    >"$work/$build.log" 2>&1 || true
  if [[ $build == split ]]; then
    # The server's peak resident memory and CPU seconds, read before it is stopped.
    server="$(awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status") $(awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$server_pid/stat")"
    kill -INT "$server_pid"
    wait "$server_pid" || true
    server_pid=
  fi
  python3 - "$work/c10k.json" "$(tail -1 "$work/time")" "$build" "$count" "$server" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rss_kib, user, system = sys.argv[2].split()
rss_kib, cpu = int(rss_kib), float(user) + float(system)
server = sys.argv[5].split()  # the split row's server process: peak RSS KiB, CPU seconds
if server:
    server_kib, server_cpu = int(server[0]), float(server[1])
    client_cpu, cpu = cpu, cpu + server_cpu
it = r["iterations"][0]
t = it["totals"]
connect = r["verdicts"]["latency"]["connect"]["p99_us"] / 1000 if r.get("verdicts") else float("nan")
dropped = (it.get("server_after") or {}).get("layer", {}).get("dropped_full", 0)
rooms = (r.get("verdicts") or {}).get("latency", {}).get("delivery") or []
# The delivered rate once every sender sends: the median 100 ms window of receipt between the
# last first send (plus a second) and the end of the send phase (a build that does not report its
# first sends: from a second after the send phase began).
start = it["started_s"] + (it.get("first_sends") or {}).get("span_ms", 0) / 1000 + 1
end = it["started_s"] + it["send_s"]
rates = sorted(w["count"] / w["width_s"] for w in r.get("delivery_timeline", []) if start <= w["at_s"] and w["at_s"] + w["width_s"] <= end)
steady = rates[len(rates) // 2] if rates else float("nan")
worst_room = max((room["delivery"]["p99_us"] for room in rooms), default=float("nan")) / 1000
print(f'{sys.argv[3]:<8} {rss_kib / int(sys.argv[4]):>12.1f} {rss_kib / 1024:>10.0f} {connect:>12.1f}ms '
      f'{it["deliveries_per_s"]:>14,.0f} {steady:>14,.0f} {it["delivery"]["p99_us"] / 1000:>10.1f}ms {worst_room:>10.1f}ms {t["sent"]:>8,} '
      f'{t["gaps"] + t["tail_loss"]:>8,} {dropped:>8,} {cpu:>8.1f} {cpu * 1e6 / max(t["received"], 1):>10.1f}')
if server:
    print(f'         clients (leakrun run) {rss_kib / 1024:.0f} MiB peak, {rss_kib / int(sys.argv[4]):.1f} KiB/conn, {client_cpu:.1f} cpu_s; '
          f'server (leakrun serve) {server_kib / 1024:.0f} MiB peak, {server_kib / int(sys.argv[4]):.1f} KiB/conn, {server_cpu:.1f} cpu_s')
# Where the worst room's tail is (builds that record send lag and windows per room): its senders'
# own lateness (intended send time to the write), and its 100 ms windows whose p99 passed 100 ms.
worst = max(rooms, key=lambda room: room["delivery"]["p99_us"], default=None)
if worst is not None and "send_lag" in worst:
    lag = worst["send_lag"]
    windows = {t["room"]: t["windows"] for t in r.get("delivery_timeline_per_room", [])}.get(worst["room"], [])
    slow = [w for w in windows if w["p99_us"] > 100_000]
    where = f' (first at {slow[0]["at_s"]:.1f}s, slowest {max(w["max_us"] for w in slow) / 1000:.0f}ms)' if slow else ''
    # Windows that began before the last connect landed: the herd's burst, not steady sending.
    connects = r.get("connect_timeline", [])
    connecting_until = max((w["at_s"] + w["width_s"] for w in connects), default=0)
    during = sum(1 for w in slow if w["at_s"] < connecting_until)
    if slow:
        where += f', {during} of them while clients still connected (until {connecting_until:.1f}s)'
    print(f'         worst room {worst["room"]}: p99 {worst["delivery"]["p99_us"] / 1000:.1f}ms, its senders\' send lag '
          f'p99 {lag["p99_us"] / 1000:.1f}ms max {lag["max_us"] / 1000:.1f}ms; {len(slow)} of {len(windows)} windows '
          f'over 100ms{where}; send lag p99 over all rooms up to {max(room["send_lag"]["p99_us"] for room in rooms) / 1000:.1f}ms')
PY
done
done
