"""What one Redis costs per publish: the Redis inputs of the capacity model (docs/scaling.md).

Run::

    python benchmarks/redis_capacity.py                 # ~1 min; writes benchmarks/results/redis_capacity.json
    python benchmarks/redis_capacity.py --nodes 1,2,4,8,16 --duration 3

A throwaway ``redis-server`` (no persistence) runs pinned to core 0; this process, pinned to
core 1, plays the nodes of a cluster: ``k`` connections subscribed to one channel (each one
stands for a node with subscribers of that channel, as the Redis backplane keeps one
subscriber connection per node) and one publishing connection that pipelines what the
backplane sends for each publish:

* ``publish``: ``PUBLISH`` of a 160-byte envelope (a 64-byte payload in its packet and envelope);
* ``recovery``: ``EVALSHA`` of the recovery publish script (webshocket.redis_recovery:
  INCR, HINCRBY, XADD with MAXLEN, XTRIM, PEXPIRE and the PUBLISH), with history_size 100.

The publisher keeps a bounded number of commands unanswered (a window), so Redis is kept busy
without queueing without end. Redis's CPU time (``/proc``, user + system) over the measured
window divided by the publishes it acknowledged in that window is its cost per publish; a
least-squares line over ``k`` splits it into a per-publish part (parsing the command, running
the script) and a per-subscribed-node part (writing the message to each node). The model
reads the most publishes/s one Redis core can carry for a given number of nodes from them.
Every subscriber must receive every acknowledged publish (by byte count), or the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from webshocket.bench import procs  # noqa: E402
from webshocket.bench.loadgen import pids_cpu_seconds  # noqa: E402
from webshocket.redis_recovery import PUBLISH_SCRIPT  # noqa: E402

CHANNEL = b"webshocket:c:bench"
ENVELOPE = b"e" * 160
WINDOW = 4096  # commands sent and not yet answered
BATCH = 256  # commands per write


def command(*args: bytes) -> bytes:
    """One RESP command."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def message_size(channel: bytes, payload: bytes) -> int:
    """Bytes of one pub/sub ``message`` push as a subscriber reads it."""
    return len(command(b"message", channel, payload))


class Counter(asyncio.Protocol):
    """Counts bytes (subscribers) or replies, one ``\\r\\n`` each (the publisher: integer replies)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.replies = 0
        self.errors = 0
        self.transport: asyncio.Transport | None = None
        self.readable = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.bytes += len(data)
        self.replies += data.count(b"\r\n")
        self.errors += data.count(b"-ERR") + data.count(b"-NOSCRIPT")
        self.readable.set()


async def connect(port: int) -> Counter:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(Counter, "127.0.0.1", port)
    return protocol


async def measure(port: int, redis_pid: int, nodes: int, mode: str, duration: float, warmup: float) -> dict[str, Any]:
    """One point: ``nodes`` subscribed connections, ``mode`` publishes as fast as the window allows."""
    subscribers = [await connect(port) for _ in range(nodes)]
    for sub in subscribers:
        assert sub.transport is not None
        sub.transport.write(command(b"SUBSCRIBE", CHANNEL))
    while any(sub.bytes == 0 for sub in subscribers):
        await asyncio.sleep(0.01)
    confirmations = [sub.bytes for sub in subscribers]
    publisher = await connect(port)
    assert publisher.transport is not None
    if mode == "publish":
        one = command(b"PUBLISH", CHANNEL, ENVELOPE)
    else:
        publisher.transport.write(command(b"SCRIPT", b"LOAD", PUBLISH_SCRIPT))
        while publisher.replies < 2:  # a bulk string: two CRLFs
            await publisher.readable.wait()
            publisher.readable.clear()
        publisher.replies = 0
        sha = PUBLISH_SCRIPT_SHA
        packet_head = b"\x85\xa6source\x02\xa4data\xc4\x40" + b"x" * 64 + b"\xa7channel\xa5bench\xa6offset"
        one = command(
            b"EVALSHA", sha, b"3", b"webshocket:m:bench", b"webshocket:h:bench", b"webshocket:seq",
            CHANNEL, b"e" * 40, packet_head, b"\xa5epoch", b"a1b2c3d4", b"100", b"300000",
        )  # fmt: skip
    batch = one * BATCH
    sent = 0
    stop_at = time.perf_counter() + warmup + duration
    window_start = time.perf_counter() + warmup
    cpu0 = acked0 = None
    t0 = 0.0
    while True:
        now = time.perf_counter()
        if cpu0 is None and now >= window_start:
            cpu0, acked0, t0 = pids_cpu_seconds([redis_pid]), publisher.replies, now
        if now >= stop_at:
            break
        if sent - publisher.replies < WINDOW:
            publisher.transport.write(batch)
            sent += BATCH
        else:
            publisher.readable.clear()
            await publisher.readable.wait()
    cpu1, acked1, t1 = pids_cpu_seconds([redis_pid]), publisher.replies, time.perf_counter()
    while publisher.replies < sent:  # drain
        publisher.readable.clear()
        await asyncio.wait_for(publisher.readable.wait(), 10)
    await asyncio.sleep(0.2)
    size = len(command(b"message", CHANNEL, ENVELOPE)) if mode == "publish" else None
    complete = True
    for sub, confirmed in zip(subscribers, confirmations, strict=True):
        got = sub.bytes - confirmed
        if size is not None and got != size * sent:
            complete = False
        if size is None and got < sent * 200:  # recovery messages vary in length: at least the packet each
            complete = False
        assert sub.transport is not None
        sub.transport.close()
    publisher.transport.close()
    assert cpu0 is not None and cpu1 is not None and acked0 is not None
    acked = acked1 - acked0
    return {
        "mode": mode,
        "nodes": nodes,
        "publishes_per_s": acked / (t1 - t0),
        "redis_cpu_share": (cpu1 - cpu0) / (t1 - t0),
        "redis_us_per_publish": (cpu1 - cpu0) / acked * 1e6,
        "ok": complete and publisher.errors == 0,
    }


PUBLISH_SCRIPT_SHA = __import__("hashlib").sha1(PUBLISH_SCRIPT).hexdigest().encode()


def fit(points: list[dict[str, Any]]) -> tuple[float, float]:
    """Least squares ``us_per_publish = a + b * nodes``: (a, b) in microseconds."""
    xs = [float(p["nodes"]) for p in points]
    ys = [float(p["redis_us_per_publish"]) for p in points]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my - b * mx, b


async def run(args: argparse.Namespace) -> dict[str, Any]:
    redis = procs.start_redis(cpu=args.redis_cpu)
    try:
        points = []
        for mode in args.modes.split(","):
            for nodes in [int(n) for n in args.nodes.split(",")]:
                point = await measure(redis.port, redis.pid, nodes, mode, args.duration, args.warmup)
                print(json.dumps(point), flush=True)
                points.append(point)
        fits = {}
        for mode in args.modes.split(","):
            a, b = fit([p for p in points if p["mode"] == mode])
            fits[mode] = {"per_publish_us": round(a, 3), "per_node_us": round(b, 3)}
        return {"redis_version": redis.version, "points": points, "fit": fits, "ok": all(p["ok"] for p in points)}
    finally:
        redis.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="1,2,4,8,16", help="subscribed connections per point")
    parser.add_argument("--modes", default="publish,recovery")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--redis-cpu", default="0")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "redis_capacity.json")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(0, {1})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for mode, f in result["fit"].items():
        print(f"{mode}: {f['per_publish_us']} us per publish + {f['per_node_us']} us per subscribed node")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
