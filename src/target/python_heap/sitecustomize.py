"""leakrun's heap probe inside a Python server: tracemalloc, answered over a Unix socket.

leakrun puts this file's folder first on PYTHONPATH of a server it starts with
`heap = "python"`, so every Python process of the server imports it at start-up (as `site` does
for any `sitecustomize`), without a change to the app. It
* runs the app's own `sitecustomize`, if there is one further along the path;
* starts tracemalloc with LEAKRUN_HEAP_FRAMES frames per allocation;
* answers leakrun on `<LEAKRUN_HEAP_DIR>/<pid>.sock`, one JSON line per request, from a daemon
  thread: `sample` (traced bytes now: cheap) and `sites N` (a full garbage collection, then a
  snapshot compared with the previous one: the N sites whose live bytes grew most; leakrun asks
  only after an iteration has settled, never under load, since a snapshot holds the interpreter
  for as long as it takes);
* does the same again in every process forked from it (a worker gets a socket of its own).
A failure to start is written to `<pid>.error` for leakrun to quote; the app runs on regardless.
"""

import os
import sys


def _chain_app_sitecustomize():
    """Runs the `sitecustomize` this one shadows, if the path holds another."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None or spec.origin is None:
        return
    if os.path.dirname(os.path.abspath(spec.origin)) == here:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


def _start():
    import collections
    import gc
    import json
    import operator
    import socket
    import threading
    import time
    import tracemalloc

    folder = os.environ["LEAKRUN_HEAP_DIR"]
    frames = max(1, min(64, int(os.environ.get("LEAKRUN_HEAP_FRAMES", "1"))))
    this_file = os.path.abspath(__file__)
    # `previous`: the last report's table of sites. `own`: the traced bytes that table holds,
    # which are not the app's: every figure sent leaves them out.
    state = {"previous": None, "own": 0}
    # Traces whose newest frame is in one of these files are leakrun's own or tracemalloc's.
    ignored = {tracemalloc.__file__, this_file, "<unknown>"}

    def by_site():
        """Live bytes and blocks per call stack (newest frame first), leakrun's own left out;
        kept between reports instead of a snapshot, which would count in the traced heap itself
        for as long as it was kept.

        Summed from tracemalloc's raw traces without an object per trace: while tracing, every
        allocation costs a traceback capture, so `Snapshot.filter_traces` and
        `Snapshot.statistics` took about 13 s over a daphne's 330,000 blocks, where this takes
        about 1.5 s. Nor does it build a buffer per site: lists of sizes grew the server's RSS
        in steps from one report to the next. `_get_traces` is what `take_snapshot` itself calls
        (CPython 3.4 and later)."""
        raw = tracemalloc._get_traces()  # (domain, size, frames newest first[, total frames])
        blocks_of = collections.Counter(map(operator.itemgetter(2), raw))
        bytes_of = dict.fromkeys(blocks_of, 0)
        for trace in raw:
            bytes_of[trace[2]] += trace[1]
        del raw
        return {
            frames: (size, blocks_of[frames])
            for frames, size in bytes_of.items()
            if not frames or frames[0][0] not in ignored
        }

    def app_traced():
        """Traced bytes of the app: all of them but the table the probe keeps between reports."""
        return tracemalloc.get_traced_memory()[0] - state["own"]

    def sites(top):
        started = time.monotonic()
        # Garbage in reference cycles waits for the cyclic collector: what survives a full
        # collection is what the app keeps.
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        current = by_site()
        blocks = sum(count for _, count in current.values())
        previous, state["previous"] = state["previous"], current
        grown = []
        if previous is not None:
            for frames_of_site, (size, count) in current.items():
                was_size, was_count = previous.get(frames_of_site, (0, 0))
                if size > was_size:
                    grown.append((size - was_size, count - was_count, frames_of_site))
            grown.sort(key=lambda g: g[0], reverse=True)
            del grown[top:]
        del previous
        # The app stands still while the probe holds the interpreter, so what the traced total
        # moved by is the probe's table taking the place of the last one. A daphne's table holds
        # 5.8 MiB and steps up when its dictionary resizes: counted as the app's, one such step
        # read as a leak of 184 KiB per wave over six waves of tabs.
        state["own"] += tracemalloc.get_traced_memory()[0] - before
        return {
            "pid": os.getpid(),
            "traced": app_traced(),
            "blocks": blocks,
            "sites": [
                {
                    "site": f"{where[0][0]}:{where[0][1]}" if where else "<unknown>:0",
                    "traceback": [f"{f}:{n}" for f, n in where] if frames > 1 else [],
                    "bytes": size,
                    "blocks": count,
                }
                for size, count, where in grown
            ],
            "took_s": time.monotonic() - started,
        }

    def answer(request):
        words = request.split()
        if words[:1] == ["sample"]:
            return {"pid": os.getpid(), "traced": app_traced()}
        if words[:1] == ["sites"] and len(words) == 2 and words[1].isdigit():
            return sites(min(1000, int(words[1])))
        return {"pid": os.getpid(), "error": f"unknown request {request[:40]!r}"}

    def serve(listener):
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.settimeout(30)
                    request = conn.makefile("r", encoding="utf-8").readline(256)
                    reply = json.dumps(answer(request.strip())) + "\n"
                    conn.sendall(reply.encode())
                except Exception:  # a bad request or a leakrun gone away ends this answer only
                    pass

    def listen():
        path = os.path.join(folder, f"{os.getpid()}.sock")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(8)
        threading.Thread(target=serve, args=(listener,), name="leakrun-heap", daemon=True).start()
        return listener

    if not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    holder = {"listener": listen()}

    def after_fork():
        # The parent's listener belongs to the parent; the thread serving it did not survive.
        try:
            holder["listener"].close()
        except OSError:
            pass
        state["previous"] = None
        state["own"] = 0
        holder["listener"] = listen()

    os.register_at_fork(after_in_child=after_fork)


def _report(error):
    try:
        folder = os.environ["LEAKRUN_HEAP_DIR"]
        with open(os.path.join(folder, f"{os.getpid()}.error"), "w", encoding="utf-8") as f:
            f.write(f"{type(error).__name__}: {error}\n")
    except Exception:
        pass


if os.environ.get("LEAKRUN_HEAP_DIR"):
    try:
        _start()
    except Exception as error:  # never stop the app: leakrun reports it and stops the run
        _report(error)

try:
    _chain_app_sitecustomize()
finally:
    del _chain_app_sitecustomize, _start, _report
