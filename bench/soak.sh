#!/usr/bin/env bash
# Soak: churn (bench/soak.toml: steady receivers, graceful and abrupt churners in three rooms) on
# each named channel layer for DURATION, as iterations of ITERATION seconds of sending each. The
# layers run at the same time, one `leakrun run` process (the release build) each, so an hour
# covers all of them. redis-lists gets a private redis-server leakrun starts for the run:
# REDIS_URL and AMQP_URL are unset, and a .env that sets them is refused.
#
# Afterwards, per layer, from its result JSON: each loss kind (gaps and tail loss must be zero,
# "zero false gaps"; duplicates, reordered, misrouted too), unconfirmed deliveries and whether an
# abrupt close explains each (see below), delivery p99 per iteration, and leakrun's own RSS over
# the run (the timeline's samples: the embedded server and the clients are one process, so this is
# all of leakrun; a private redis-server is a separate process and not in it): the first minutes
# against the rest, and the least-squares slope after them, by half and by quarter (a high-water
# mark that settles slows quarter by quarter; a leak keeps its pace).
#
# Unconfirmed: leakrun counts a missing delivery as unconfirmed only when its sender's session
# ended abruptly (close_abrupt or send_timed_out) and the message was sent after the last of that
# sender's messages any receiver got (src/observe/analysis.rs). The check here does not take that
# on trust: every kept unconfirmed loss record's sender session is looked up in the result's
# event log and must have ended with close_abrupt or send_timed_out, and every iteration with
# unconfirmed deliveries must hold an abrupt close. Loss records are capped (the result keeps the
# earliest 1,000), so the per-iteration test covers the rest.
#
# Exits 1 when any iteration has a gap, tail loss, duplicate, reordered or misrouted delivery, or
# an unconfirmed delivery no abrupt close explains; 2 when a run left no result or the usage is
# wrong. leakrun's own verdicts and exit code are printed, not judged here.
#
# Usage: bench/soak.sh [DURATION] [BACKEND ...]   (default: 60m memory redis-lists)
#        bench/soak.sh --report DIR                (the figures again from an earlier soak's folder)
#   DURATION: 90s, 3m, 60m, 1h. Environment: ITERATION (sending time per iteration, default 60s
#   from 20m up, else 30s), OVERHEAD (seconds an iteration takes beyond sending: drain, settle,
#   analysis; default 2), OUT (results folder, default results/soak/<time>), BINARY (a leakrun
#   build to soak instead of building this tree's release: two soaks at once, one per build,
#   compare them side by side on the same machine and load).
#   BACKEND `split`: the memory layer with the embedded server in a process of its own (`leakrun
#   serve` as an external target), so leakrun's own process holds only its clients and observers:
#   the timeline's RSS is then the server's, and "leakrun RSS by kind" (read beside the run) is
#   leakrun's alone.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds() {
  local v=$1
  case $v in
    *h) echo $((${v%h} * 3600)) ;;
    *m) echo $((${v%m} * 60)) ;;
    *s) echo $((${v%s})) ;;
    *[0-9]) echo $((v)) ;;
    *) echo "error: duration $v: valid: a whole number with s, m or h (90s, 3m, 1h)" >&2; return 2 ;;
  esac
}

report_only=
if [ "${1:-}" = --report ]; then
  [ -d "${2:-}" ] || { echo "error: --report DIR: valid: a folder an earlier soak wrote (results/soak/<time>)" >&2; exit 2; }
  report_only=$2
  shift 2
  set -- 1s $(cd "$report_only" && for d in */; do echo "${d%/}"; done)
fi
duration=${1:-60m}
[ $# -gt 0 ] && shift
backends=("$@")
[ ${#backends[@]} -eq 0 ] && backends=(memory redis-lists)
for b in "${backends[@]}"; do
  case $b in
    memory | redis | redis-lists | amqp | split) ;;
    *) echo "error: backend $b: valid: memory, redis, redis-lists, amqp, split" >&2; exit 2 ;;
  esac
done
total=$(seconds "$duration") || exit 2
if [ -n "${ITERATION:-}" ]; then
  iteration=$(seconds "$ITERATION") || exit 2
elif [ "$total" -ge 1200 ]; then
  iteration=60
else
  iteration=30
fi
overhead=${OVERHEAD:-2}
# The most iterations a run may have (src/scenario/values.rs); a larger count is exit 2 there.
max_iterations=$(sed -n 's/^pub const MAX_ITERATIONS: u64 = \([0-9_]*\);.*/\1/p' src/scenario/values.rs | tr -d _)
max_iterations=${max_iterations:-1000}
iterations=$((total / (iteration + overhead)))
[ "$iterations" -lt 2 ] && iterations=2 # one warmup, one judged
[ "$iterations" -gt "$max_iterations" ] && iterations=$max_iterations

# Only loopback and only servers leakrun starts: no machine Redis or RabbitMQ.
unset REDIS_URL AMQP_URL
if [ -f .env ] && grep -Eq '^[[:space:]]*(export[[:space:]]+)?(REDIS_URL|AMQP_URL)[[:space:]]*=' .env; then
  echo "error: .env sets REDIS_URL or AMQP_URL; the soak runs on private servers only (move .env aside)" >&2
  exit 2
fi

out=${OUT:-results/soak/$(date +%Y%m%d-%H%M%S)}
codes=()
if [ -n "$report_only" ]; then
  out=$report_only
  for b in "${backends[@]}"; do codes+=(-1); done
else
mkdir -p "$out"
if [ -n "${BINARY:-}" ]; then
  binary=$BINARY
  [ -x "$binary" ] || { echo "error: BINARY=$binary: valid: an executable leakrun build" >&2; exit 2; }
else
  cargo build --release --quiet
  binary=target/release/leakrun
fi

echo "soak: ${duration} (${total}s) on ${backends[*]}: $iterations iterations of ${iteration}s sending (1 warmup), results in $out"
echo "started $(date -u +%FT%TZ)"
pids=()
stop() {
  # Ctrl-C or TERM: interrupt our own runs (by pid) so each writes its interrupted result.
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
}
trap stop INT TERM
# Bound on each run: twice the planned time plus ten minutes, then SIGINT (an interrupted result).
bound=$((iterations * (iteration + overhead) * 2 + 600))
for b in "${backends[@]}"; do
  mkdir -p "$out/$b"
  scenario=(bench/soak.toml --backend "$b")
  if [ "$b" = split ]; then
    # The same rooms against `leakrun serve` on a free loopback port, started and stopped by the run.
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    python3 - "$binary" "$port" "$out/soak_split.toml" <<'TOML'
import sys
binary, port, path = sys.argv[1:]
text = open("bench/soak.toml").read()
server = "[server]\ncapacity = 1000\n"
assert server in text, "bench/soak.toml's [server] table changed: update bench/soak.sh"
text = text.replace(server, f"""[server]
target = "external"
command = ["{binary}", "serve", "--port", "{port}"]
ws_url = "ws://127.0.0.1:{port}/ws/chat/{{room}}"
ready_timeout = "10s"
""")
open(path, "w").write(text)
TOML
    scenario=("$out/soak_split.toml")
  fi
  timeout --signal=INT --kill-after=60 "$bound" \
    "$binary" run "${scenario[@]}" \
    --set "name=\"soak_$b\"" --set "run.duration=\"${iteration}s\"" --set "run.iterations=$iterations" \
    --out "$out/$b" --no-progress >"$out/$b.log" 2>&1 &
  pids+=($!)
done
# Beside the timeline's RSS: every 10 s, each run's resident memory by kind from
# /proc/<pid>/status (anonymous: heap, stacks, leakrun's statics; file: the executable's pages,
# which come in as code paths first run and are bounded by its size), until the run ends.
rss_by_kind() {
  local parent=$1 file=$2 child="" start=$SECONDS
  for _ in $(seq 50); do
    child=$(pgrep -P "$parent" | head -1) && [ -n "$child" ] && break
    sleep 0.1
  done
  [ -n "$child" ] || return 0
  while [ -r "/proc/$child/status" ] && [ $((SECONDS - start)) -le "$bound" ]; do
    awk -v t=$((SECONDS - start)) '/^RssAnon:/ {a=$2} /^RssFile:/ {f=$2} /^RssShmem:/ {s=$2}
      END {if (a != "") print t, a, f, s}' "/proc/$child/status" >>"$file" 2>/dev/null || break
    sleep 10
  done
}
for i in "${!backends[@]}"; do
  rss_by_kind "${pids[$i]}" "$out/${backends[$i]}.rss_kib.txt" &
done
for pid in "${pids[@]}"; do
  code=0
  wait "$pid" || code=$?
  codes+=("$code")
done
wait
trap - INT TERM
echo "finished $(date -u +%FT%TZ)"
fi

args=()
for i in "${!backends[@]}"; do
  b=${backends[$i]}
  args+=("$b" "${codes[$i]}" "$out/$b/soak_$b.json" "$out/$b.log" "$out/$b.rss_kib.txt")
done
python3 - "${args[@]}" <<'PY'
import json, os, sys

argv = sys.argv[1:]
worst = 0
for i in range(0, len(argv), 5):
    backend, code, path, log, rss_kinds = argv[i], int(argv[i + 1]), argv[i + 2], argv[i + 3], argv[i + 4]
    print(f"\n== {backend}: leakrun exit {code if code >= 0 else 'not known (--report)'}, log {log}")
    if not os.path.exists(path):
        print(f"   no result at {path}")
        worst = max(worst, 2)
        continue
    r = json.load(open(path))
    its = r["iterations"]
    be = r["backend"]
    print(f"   result {path}: status {r['status']}, {len(its)} iterations, elapsed {r['elapsed_s']:.0f}s, "
          f"backend {be['kind']} {be.get('version', '')} ({be.get('source', '')} {be.get('endpoint') or ''})")
    if r.get("error"):
        print(f"   error: {r['error']}")
    if r.get("incomplete"):
        print(f"   incomplete: {len(r['incomplete'])} lost client sessions or workers: {r['incomplete'][:3]}")
        worst = max(worst, 1)
    for w in r.get("warnings", []):
        print(f"   warning: {w}")

    events = r["events"]["events"]
    not_kept = r["events"]["not_kept"]
    ended = {}  # session -> how it ended
    abrupt_at = []
    for e in events:
        if e["kind"] in ("close_abrupt", "send_timed_out", "close_graceful", "closed_by_server"):
            ended[e["session"]] = e["kind"]
        if e["kind"] in ("close_abrupt", "send_timed_out"):
            abrupt_at.append(e["at_s"])
    kinds = {}
    for e in events:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    print(f"   churn events kept {len(events)}, not kept {not_kept}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))

    bad = []
    print(f"   {'it':>3} {'w':1} {'sent':>8} {'delivered':>10} {'gaps':>5} {'tail':>5} {'dup':>4} {'reord':>5} "
          f"{'misr':>4} {'unconf':>6} {'abrupt':>6} {'p99_ms':>7} {'rss_MiB':>8}")
    sums = {}
    p99s = []
    for it in its:
        t = it["totals"]
        for k, v in t.items():
            sums[k] = sums.get(k, 0) + v
        start = it["started_s"]
        end = start + it["send_s"] + it["drain_s"] + it["settle_s"]
        abrupt = sum(1 for a in abrupt_at if start <= a <= end)
        p99 = it["delivery"]["p99_us"] / 1000
        p99s.append(p99)
        rss = (it["after"].get("rss_bytes") or 0) / 2**20
        print(f"   {it['index']:>3} {'w' if it['warmup'] else ' '} {t['sent']:>8} {t['received']:>10} {t['gaps']:>5} "
              f"{t['tail_loss']:>5} {t['duplicates']:>4} {t['reordered']:>5} {t['misrouted']:>4} {t['unconfirmed']:>6} "
              f"{abrupt:>6} {p99:>7.1f} {rss:>8.1f}" + ("  interrupted" if it.get("interrupted") else ""))
        for k in ("gaps", "tail_loss", "duplicates", "reordered", "misrouted"):
            if t[k]:
                bad.append(f"iteration {it['index']}: {t[k]} {k}")
        if t["unconfirmed"] and abrupt == 0 and not_kept == 0:
            bad.append(f"iteration {it['index']}: {t['unconfirmed']} unconfirmed and no abrupt close in it")
    print(f"   all: sent {sums.get('sent', 0):,}, delivered {sums.get('received', 0):,}, gaps {sums.get('gaps', 0)}, "
          f"tail loss {sums.get('tail_loss', 0)}, duplicates {sums.get('duplicates', 0)}, reordered {sums.get('reordered', 0)}, "
          f"misrouted {sums.get('misrouted', 0)}, forged {sums.get('forged', 0)}, foreign {sums.get('foreign', 0)}, "
          f"without envelope {sums.get('frames_without_envelope', 0)}, unconfirmed {sums.get('unconfirmed', 0)}")
    if p99s:
        print(f"   delivery p99 per iteration: {min(p99s):.1f} to {max(p99s):.1f} ms "
              f"(median {sorted(p99s)[len(p99s) // 2]:.1f} ms)")

    # Unconfirmed, record by record: its sender must have ended abruptly.
    records = [x for x in r["losses"]["records"] if x["kind"] == "unconfirmed"]
    explained = [x for x in records if ended.get(x["sender"]) in ("close_abrupt", "send_timed_out")]
    unknown = [x for x in records if x["sender"] not in ended]
    senders = {x["sender"] for x in records}
    print(f"   unconfirmed records kept {len(records)} ({sum(x['count'] for x in records)} deliveries) of "
          f"{r['losses']['total_records']} loss records in all{' (truncated)' if r['losses']['truncated'] else ''}: "
          f"{len(explained)} from a sender that closed abruptly, {len(senders)} distinct senders, "
          f"{len(unknown)} whose sender's close is not in the event log")
    for x in records:
        if x not in explained and x["sender"] in ended:
            bad.append(f"unconfirmed from {x['sender_client']} (session {x['sender']}) which ended {ended[x['sender']]}")
    v = r.get("verdicts") or {}
    g = v.get("gaps") or {}
    if g:
        print(f"   gaps verdict: {g.get('summary', '')}; distinct unconfirmed messages (judged iterations) "
              f"{g.get('distinct_unconfirmed')}, abrupt closes in the run {len(abrupt_at)}")
    for name, verdict in v.items():
        if isinstance(verdict, dict) and "summary" in verdict and name != "gaps":
            print(f"   {name} verdict: {verdict['summary']}")

    # leakrun's own RSS over the run (with `split`, the timeline's is the server's).
    who = "server" if backend == "split" else "leakrun"
    samples = [(s["at_s"], s["rss_bytes"]) for s in r["timeline"]["samples"] if s.get("rss_bytes")]
    if len(samples) >= 4:
        last_t = samples[-1][0]
        warm = 300.0 if last_t >= 900 else last_t / 3  # the first minutes: 5 of an hour
        mib = lambda b: b / 2**20
        def slope_of(points):  # least squares, bytes per minute
            n = len(points)
            mt = sum(t for t, _ in points) / n
            mb = sum(b for _, b in points) / n
            var = sum((t - mt) ** 2 for t, _ in points)
            return sum((t - mt) * (b - mb) for t, b in points) / var * 60 if var else 0.0
        def settling(what, source, samples):
            """The series after the first minutes: overall, by half, and by quarter, whether the
            growth slows (a high-water mark that settles) or keeps its pace (a leak): each
            quarter's slope, and how far its highest sample rose above the highest before it."""
            last_t = samples[-1][0]
            head = [b for t, b in samples if t < warm]
            tail = [(t, b) for t, b in samples if t >= warm]
            if not head or len(tail) < 2:
                return
            at_warm = tail[0][1]
            slope = slope_of(tail)
            half = (warm + last_t) / 2
            early, late = [p for p in tail if p[0] < half], [p for p in tail if p[0] >= half]
            print(f"   {what} ({source}, {len(samples)} samples): start {mib(samples[0][1]):.1f} MiB, "
                  f"max in the first {warm / 60:.1f} min {mib(max(head)):.1f} MiB, at {warm / 60:.1f} min {mib(at_warm):.1f} MiB, "
                  f"end {mib(samples[-1][1]):.1f} MiB; after {warm / 60:.1f} min min {mib(min(b for _, b in tail)):.1f} "
                  f"max {mib(max(b for _, b in tail)):.1f} MiB, slope {slope / 1024:+.1f} KiB/min "
                  f"({slope * (last_t - warm) / 60 / 2**20:+.2f} MiB over the {(last_t - warm) / 60:.1f} min)")
            if len(early) >= 2 and len(late) >= 2:
                print(f"   {what} slope {warm / 60:.1f}-{half / 60:.1f} min {slope_of(early) / 1024:+.1f} KiB/min, "
                      f"{half / 60:.1f}-{last_t / 60:.1f} min {slope_of(late) / 1024:+.1f} KiB/min")
            step = (last_t - warm) / 4
            quarters = [[p for p in tail if warm + q * step <= p[0] < warm + (q + 1) * step] for q in range(4)]
            quarters[3] += [p for p in tail if p[0] >= warm + 4 * step]
            if all(len(q) >= 2 for q in quarters):
                parts, high = [], at_warm
                for q in quarters:
                    top = max(b for _, b in q)
                    parts.append(f"{q[0][0] / 60:.1f}-{q[-1][0] / 60:.1f} min {slope_of(q) / 1024:+.1f} KiB/min, "
                                 f"high {mib(max(top, high)) - mib(high):+.2f} MiB")
                    high = max(high, top)
                print(f"   {what} by quarter after the first minutes: " + "; ".join(parts))
        settling(f"{who} RSS", f"the timeline's, stride {r['timeline']['stride']}", samples)
        # What of it is live heap: the embedded server's and leakrun's own clients' and observers'.
        for key, what in (("heap_bytes", "server heap"), ("harness_heap_bytes", "clients' and observers' heap")):
            hs = [(s["at_s"], s[key]) for s in r["timeline"]["samples"] if s.get(key) is not None]
            late = [(t, b) for t, b in hs if t >= warm]
            if hs and late:
                print(f"   {what}: start {mib(hs[0][1]):.2f} MiB, at {warm / 60:.1f} min {mib(late[0][1]):.2f} MiB, "
                      f"end {mib(hs[-1][1]):.2f} MiB")
        # RSS by kind, from the samples taken beside the run (absent in folders from before).
        if os.path.exists(rss_kinds):
            rows = [tuple(int(x) for x in line.split()) for line in open(rss_kinds) if len(line.split()) == 4]
            after = [row for row in rows if row[0] >= warm]
            if who != "leakrun":
                # leakrun's own process, read beside the run: the figure a split soak is for.
                settling("leakrun RSS", "its own process, /proc status every 10 s",
                         [(t, (a + f + m) * 1024) for t, a, f, m in rows])
            if len(after) >= 2:
                # /proc/<pid>/status gives KiB; as bytes, the figures go through `mib` like the rest.
                first, last = [[row[0]] + [k * 1024 for k in row[1:]] for row in (after[0], after[-1])]
                print(f"   leakrun RSS by kind (/proc status, every 10 s) at {first[0] / 60:.1f} min -> end: "
                      f"anonymous {mib(first[1]):.2f} -> {mib(last[1]):.2f} MiB ({mib(last[1] - first[1]):+.2f}, "
                      f"slope {slope_of([(t, a * 1024) for t, a, _, _ in after]) / 1024:+.1f} KiB/min), "
                      f"file {mib(first[2]):.2f} -> {mib(last[2]):.2f} MiB ({mib(last[2] - first[2]):+.2f}), "
                      f"shared {mib(first[3]):.2f} -> {mib(last[3]):.2f} MiB")
        cpu = [s["leakrun_cpu"] for s in r["timeline"]["samples"] if s.get("leakrun_cpu") is not None]
        if cpu:
            print(f"   leakrun CPU: mean {sum(cpu) / len(cpu):.3f} cores, max sample {max(cpu):.3f}")
    else:
        print("   leakrun RSS: too few samples")
    if bad:
        worst = max(worst, 1)
        print("   FAIL: " + "; ".join(bad[:20]) + (f" (+{len(bad) - 20} more)" if len(bad) > 20 else ""))
    else:
        print("   ok: zero false gaps, zero tail loss, duplicates, reordered, misrouted; every unconfirmed from an abrupt close")
sys.exit(worst)
PY
