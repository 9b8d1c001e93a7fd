#!/usr/bin/env python3
"""A small broadcast chat server for leakrun's external-target tests.

Rooms are URL paths: every connection to /ws/chat/lobby/ joins the room "/ws/chat/lobby/". Each
text frame a connection sends goes to every open connection of its room, the sender included (as
leakrun's embedded server does). Fault switches exist to prove leakrun's detectors from outside:

  --drop-one-in N          drop every Nth delivery (one frame to one member), counted as "dropped"
  --leak-per-connection B  keep B bytes (a bytearray) for every closed connection: a real leak
  --hold-per-connection B  hold B bytes (in 4 KiB blocks) while a connection is open, all freed
                           on close: resident memory stays up, the traced heap does not (retention)
  --workers N              fork N worker processes serving the same port (SO_REUSEPORT); rooms
                           are per worker
  --chat-json              behave like the Django Channels tutorial consumer: read
                           {"message": ...} and send {"message": ...} back, re-encoded
  --greet                  send a frame without any envelope to each new connection

GET /stats answers a JSON document of counters; the same document is printed on SIGTERM.
Only for tests: it binds loopback and trusts its clients.
"""

import argparse
import asyncio
import http
import json
import os
import signal
import sys

from websockets.asyncio.server import broadcast, serve
from websockets.exceptions import ConnectionClosed

ROOMS = {}
LEAKED = []
COUNTS = {
    "opened": 0,
    "closed": 0,
    "frames_in": 0,
    "frames_out": 0,
    "deliveries": 0,
    "dropped": 0,
}


def stats():
    live = sum(len(members) for members in ROOMS.values())
    return {
        "connections": live,
        "rooms": sum(1 for members in ROOMS.values() if members),
        "leaked_bytes": sum(len(b) for b in LEAKED),
        **COUNTS,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--drop-one-in", type=int, default=0)
    parser.add_argument("--leak-per-connection", type=int, default=0)
    parser.add_argument("--hold-per-connection", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--chat-json", action="store_true")
    parser.add_argument("--greet", action="store_true")
    parser.add_argument("--pid-file")
    args = parser.parse_args()
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write(f"{os.getpid()}\n")
    if args.workers:
        return supervise(args)
    asyncio.run(serve_until_stopped(args))


def supervise(args):
    """Forks the workers, passes SIGTERM and SIGINT on to them, and waits for them all."""
    workers = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            asyncio.run(serve_until_stopped(args))
            os._exit(0)
        workers.append(pid)

    def stop(signum, _frame):
        for pid in workers:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"supervising {len(workers)} workers on {args.host}:{args.port}", flush=True)
    for pid in workers:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break


async def serve_until_stopped(args):
    def process_request(connection, request):
        if request.path == "/stats":
            response = connection.respond(http.HTTPStatus.OK, json.dumps(stats()))
            response.headers["Content-Type"] = "application/json"
            return response
        return None

    async def handler(ws):
        room = ROOMS.setdefault(ws.request.path, set())
        room.add(ws)
        COUNTS["opened"] += 1
        held = [bytearray(4096) for _ in range(args.hold_per_connection // 4096)]
        try:
            if args.greet:
                await ws.send(json.dumps({"type": "welcome", "room": ws.request.path}))
            async for frame in ws:
                if not isinstance(frame, str):
                    continue
                COUNTS["frames_in"] += 1
                if args.chat_json:
                    try:
                        frame = json.dumps({"message": json.loads(frame)["message"]})
                    except (ValueError, KeyError, TypeError):
                        continue
                recipients = []
                for member in list(room):
                    COUNTS["deliveries"] += 1
                    if args.drop_one_in and COUNTS["deliveries"] % args.drop_one_in == 0:
                        COUNTS["dropped"] += 1
                        continue
                    recipients.append(member)
                COUNTS["frames_out"] += len(recipients)
                broadcast(recipients, frame)
        except ConnectionClosed:
            pass
        finally:
            room.discard(ws)
            COUNTS["closed"] += 1
            held.clear()
            if args.leak_per_connection:
                LEAKED.append(bytearray(args.leak_per_connection))

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        handler,
        args.host,
        args.port,
        process_request=process_request,
        max_size=2**20,
        reuse_port=bool(args.workers),
    ):
        print(f"listening on {args.host}:{args.port}", flush=True)
        await stop
    print("stats " + json.dumps(stats()), flush=True)


if __name__ == "__main__":
    sys.exit(main())
