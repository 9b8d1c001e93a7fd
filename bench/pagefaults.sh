#!/usr/bin/env bash
# Where a running process's resident memory grows: `perf` traces every page fault the process
# takes for SECONDS, with its call stack, and this prints them grouped by the code that caused
# them. A fault on an anonymous page is the first touch of that page (a heap or an arena growing,
# a buffer first written, a page the allocator had given back taken again), so under a flat live
# heap the faults are where RSS rises. Each group is named by the first frame past the allocator,
# the standard library and tokio's scheduler; a second line gives the frames under it, and the
# mapping the pages lie in (`heap`: glibc's main arena; `arena`: a thread arena; `stack`;
# `anon`: another anonymous mapping, which is where jemalloc's pages lie in leakrun's default
# build; or the file).
#
# How the embedded server's hyper buffers were found (docs/benchmarks.md): attach to a soak's
# `leakrun run` after its first minutes, for twenty of them:
#   bench/soak.sh 40m memory &   # or any leakrun run; then, five minutes in:
#   bench/pagefaults.sh "$(pgrep -f 'leakrun run bench/soak.toml' | head -1)" 1200
#
# Usage: bench/pagefaults.sh PID [SECONDS]   (default 600; Ctrl-C ends the trace early)
# Needs perf (Debian: linux-perf) and the right to trace PID (root, or perf_event_paranoid <= 1).
# The process should carry debug info (leakrun's release profile does: debug = 1).
set -euo pipefail
pid=${1:-}
seconds=${2:-600}
[[ $pid =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ] || { echo "error: PID '${pid}': valid: the pid of a running process" >&2; exit 2; }
[[ $seconds =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || { echo "error: SECONDS '$seconds': valid: a whole number above 0" >&2; exit 2; }
command -v perf >/dev/null || { echo "error: perf not found: install linux-perf (Debian) or linux-tools" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "/proc/$pid/maps" "$work/maps.start"
echo "tracing page faults of pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-100)) for ${seconds}s"
# SIGINT ends the trace and perf writes what it has; our own Ctrl-C reaches perf the same way.
timeout --signal=INT "$seconds" perf record -q -e exceptions:page_fault_user --call-graph dwarf,32768 \
  -p "$pid" -o "$work/perf.data" >/dev/null 2>"$work/perf.err" || true
[ -s "$work/perf.data" ] || { echo "error: perf recorded nothing: $(tail -3 "$work/perf.err")" >&2; exit 1; }
[ -r "/proc/$pid/maps" ] && cp "/proc/$pid/maps" "$work/maps.end" || cp "$work/maps.start" "$work/maps.end"
perf script -i "$work/perf.data" -F tid,time,trace,ip,sym,dso 2>/dev/null >"$work/faults.txt"

python3 - "$work" "$seconds" <<'EOF'
import re, sys, collections
work, seconds = sys.argv[1], int(sys.argv[2])

def mappings(path):
    out = []
    for line in open(path):
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split('-'))
        name = parts[5] if len(parts) > 5 else ''
        if name == '[heap]':
            kind = 'heap'
        elif name.startswith('[stack'):
            kind = 'stack'
        elif name.startswith('/'):
            kind = name.rsplit('/', 1)[1]
        elif lo % (64 << 20) == 0 or any(lo >= a and lo < a + (64 << 20) and a % (64 << 20) == 0 for a, _, _ in out):
            kind = 'arena'  # glibc's thread heaps are 64 MiB-aligned reservations
        else:
            kind = 'anon'
        out.append((lo, hi, kind))
    return out

maps = mappings(f'{work}/maps.end') + mappings(f'{work}/maps.start')
def mapping_of(addr):
    for lo, hi, kind in maps:
        if lo <= addr < hi:
            return kind
    return 'unmapped'

# Frames that say nothing of who wanted the memory.
plumbing = re.compile(r'^(exc_page_fault|asm_exc_page_fault|_int_|sysmalloc|__GI_|__libc_|_mid_memalign|__posix_memalign|'
                      r'malloc|realloc|calloc|free|__mem|_rjem_|<tikv_jemallocator|tikv_jemallocator::|<std::alloc|std::alloc|<leakrun::heap::|leakrun::heap::|'
                      r'__rustc::|alloc::|<alloc::|core::|<core::|std::|<std::|hashbrown::|<hashbrown::|'
                      r'bytes::bytes_mut::BytesMut::reserve|tokio::runtime::|<tokio::runtime::|tokio::loom::|'
                      r'tokio::task::coop|start_thread|clone3|\[unknown\])')

faults = []
current = None
for line in open(f'{work}/faults.txt'):
    if line.strip() and not line.startswith('\t'):
        m = re.match(r'\s*(\d+)\s+([\d.]+):.*address=(0x[0-9a-f]+)', line)
        current = None
        if m:
            current = {'addr': int(m.group(3), 16), 'frames': []}
            faults.append(current)
    elif line.startswith('\t') and current is not None:
        parts = line.strip().split(' ', 1)
        if len(parts) > 1:
            current['frames'].append(parts[1].rsplit(' (', 1)[0])

if not faults:
    print('no page faults in the trace: nothing new became resident')
    sys.exit(0)

def short(frame):
    frame = re.sub(r'<[^<>]*>', '', frame)  # generic arguments
    frame = re.sub(r'<[^<>]*>', '', frame)
    return frame.replace('::{{closure}}', '').strip()

groups = collections.defaultdict(list)
for f in faults:
    named = [short(x) for x in f['frames'] if not plumbing.match(x)]
    key = named[0] if named else '(allocator or runtime only)'
    groups[key].append((f, named[1:4]))

pages = collections.Counter(f['addr'] >> 12 for f in faults)
print(f'{len(faults)} page faults on {len(pages)} distinct pages ({len(pages) * 4} KiB) in {seconds}s '
      f'({len(faults) * 4 / (seconds / 60):.1f} KiB a minute if each is a new page)')
print(f'{"faults":>7} {"share":>6}  where')
for key, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
    kinds = collections.Counter(mapping_of(f['addr']) for f, _ in items)
    under = collections.Counter(' < '.join(n) for _, n in items).most_common(1)[0][0]
    print(f'{len(items):>7} {len(items) / len(faults):>6.0%}  {key}')
    print(f'{"":>15}in {", ".join(f"{k} {v}" for k, v in kinds.most_common())}; under: {under or "-"}')
EOF
