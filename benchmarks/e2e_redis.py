"""End-to-end fan-out across worker processes through Redis, next to a single process.

Run: ``python benchmarks/e2e_redis.py [--subscribers 200] [--publishes 2000] [--inflight 8]``.

It starts its own ``redis-server`` on a free 127.0.0.1 port and, per scenario, a server
(this script with ``--serve``: :func:`webshocket.workers.serve_workers`). Subscribers are
spread evenly over the workers (each asks the worker's pid), one publisher client on
the first worker keeps ``--inflight`` ``say`` RPCs in flight, each publishing one
message to the channel every subscriber joined. The figure is deliveries per second
(publishes x subscribers / time until the last subscriber got the last message), and
every subscriber must receive every message exactly once. Subscribers are lean picows
listeners (decode, count). *load CPU* is the CPU time of the load-generating process
(all clients, one event loop) per wall-clock second: near 100% it, not the server,
sets the pace. Everything it started is killed at the end.
Scenarios:

* ``single``: one process, no backplane;
* ``1 worker + redis``: one process publishing through Redis (the backplane's cost alone);
* ``2 workers + redis``: two processes on one port, subscribers on both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from msgpack import packb, unpackb
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

import webshocket
from webshocket import ClientConnection, WebSocketClient, WebSocketHandler, WebSocketServer
from webshocket import rpc_method as rpc
from webshocket.redis_backplane import RedisBackplane
from webshocket.workers import serve_workers

CHANNEL = "bench"


# --------------------------------------------------------------------------- server side (--serve)


class BenchHandler(WebSocketHandler[Any]):
    @rpc()
    async def pid(self, connection: ClientConnection[Any]) -> int:
        return os.getpid()

    @rpc()
    async def join(self, connection: ClientConnection[Any], channel: str) -> bool:
        connection.subscribe(channel)
        bridge = self._bridge
        if bridge is not None and isinstance(bridge.backplane, RedisBackplane):
            await bridge.backplane.sync()  # subscribed in Redis before the reply
        return True

    @rpc()
    async def say(self, connection: ClientConnection[Any], channel: str, data: Any) -> None:
        self.publish(channel, data)


def serve(workers: int, redis_url: str) -> int:
    def make_server() -> WebSocketServer[BenchHandler]:
        backplane = RedisBackplane(redis_url, channel_prefix="bench:") if redis_url else None
        return WebSocketServer("127.0.0.1", 0, clientHandler=BenchHandler, backplane=backplane)

    def on_ready(port: int) -> None:
        sys.stdout.write(f"READY {port}\n")
        sys.stdout.flush()

    return serve_workers(make_server, workers, host="127.0.0.1", port=0, on_ready=on_ready)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server without persistence on a free port; returns once it answers PING."""
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([*args, "--dir", directory], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError("redis-server did not start")
        time.sleep(0.02)


def start_server(workers: int, redis_url: str) -> tuple[subprocess.Popen[bytes], int]:
    args = [sys.executable, os.path.abspath(__file__), "--serve", "--workers", str(workers), "--redis", redis_url]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], 15)
    line = process.stdout.readline() if readable else b""
    if not line.startswith(b"READY "):
        stop(process)
        raise RuntimeError(f"server did not start: {line!r}")
    return process, int(line.split()[1])


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --------------------------------------------------------------------------- load


@dataclass
class Result:
    scenario: str
    workers: int
    subscribers: int
    publishes: int
    deliveries: int
    seconds: float
    exactly_once: bool
    spread: str
    client_cpu: float  # CPU seconds of this (load) process per wall second

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds if self.seconds else 0.0


class Subscriber(WSListener):
    """A lean msgpack client: RPC replies resolve a future; channel packets are counted by value."""

    def __init__(self, publishes: int) -> None:
        self.counts = bytearray(publishes)
        self.remaining = publishes
        self.extra = 0
        self.finished: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.reply: asyncio.Future[Any] | None = None
        self.transport: WSTransport | None = None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.BINARY:
            return
        packet = unpackb(frame.get_payload_as_bytes())
        if packet["source"] == 2:
            self.counts[packet["data"]] += 1
            self.remaining -= 1
            if self.remaining == 0:
                self.finished.set_result(time.perf_counter())
            elif self.remaining < 0:
                self.extra += 1
        elif packet["source"] == 5 and self.reply is not None and not self.reply.done():
            self.reply.set_result(packet["rpc"]["response"])

    async def call(self, method: str, *args: Any) -> Any:
        assert self.transport is not None
        self.reply = asyncio.get_running_loop().create_future()
        request = {"type": "request", "method": method, "args": list(args), "kwargs": {}, "call_id": "c"}
        self.transport.send(WSMsgType.BINARY, packb({"source": 5, "rpc": request}))
        return await asyncio.wait_for(self.reply, 10)


async def subscriber(uri: str, publishes: int) -> Subscriber:
    headers = {"Sec-WebSocket-Protocol": "webshocket.v1"}
    transport, listener = await ws_connect(lambda: Subscriber(publishes), uri, extra_headers=headers)
    assert isinstance(listener, Subscriber)
    listener.transport = transport
    return listener


def close_all(clients: list[Subscriber]) -> None:
    for client in clients:
        if client.transport is not None:
            client.transport.disconnect()


async def connect_spread(uri: str, workers: int, subscribers: int, publishes: int) -> list[Subscriber]:
    """``subscribers`` clients spread evenly over the workers (asked for their pid)."""
    per_worker = subscribers // workers
    by_pid: dict[int, list[Subscriber]] = defaultdict(list)
    spare: list[Subscriber] = []
    for _ in range(subscribers * 20):
        client = await subscriber(uri, publishes)
        pid = await client.call("pid")
        (by_pid[pid] if len(by_pid[pid]) < per_worker else spare).append(client)
        if sum(len(v) for v in by_pid.values()) == per_worker * workers:
            break
    close_all(spare)
    subs = [c for clients in by_pid.values() for c in clients]
    if len(subs) != per_worker * workers or len(by_pid) != workers:
        close_all(subs)
        raise RuntimeError(f"could not spread clients over {workers} workers: {[len(v) for v in by_pid.values()]}")
    return subs


async def publisher_on(uri: str, pid: int) -> tuple[WebSocketClient, list[WebSocketClient]]:
    """A client connected to the worker ``pid`` (and the others it had to open to get there)."""
    others: list[WebSocketClient] = []
    for _ in range(200):
        client = await WebSocketClient(uri).connect()
        if (await client.send_rpc("pid")).data == pid:
            return client, others
        others.append(client)
    raise RuntimeError(f"no connection landed on worker {pid}")


async def fan_out(scenario: str, uri: str, workers: int, subscribers: int, publishes: int, inflight: int) -> Result:
    subs = await connect_spread(uri, workers, subscribers, publishes)
    publisher, others = await publisher_on(uri, await subs[0].call("pid"))
    try:
        for client in subs:
            assert await client.call("join", CHANNEL) is True
        numbers = iter(range(publishes))

        async def publish() -> None:
            for i in numbers:
                await publisher.send_rpc("say", CHANNEL, i)

        started = time.perf_counter()
        cpu = time.process_time()
        await asyncio.gather(*(publish() for _ in range(inflight)))
        finished = await asyncio.wait_for(asyncio.gather(*(c.finished for c in subs)), 60)
        seconds = max(finished) - started
        client_cpu = (time.process_time() - cpu) / (time.perf_counter() - started)
        await asyncio.sleep(0.3)  # anything more would be a duplicate
        once = all(c.extra == 0 and c.counts.count(1) == publishes for c in subs)
        spread = "/".join(str(subscribers // workers) for _ in range(workers))
        return Result(scenario, workers, len(subs), publishes, len(subs) * publishes, seconds, once, spread, client_cpu)
    finally:
        close_all(subs)
        await asyncio.gather(*(c.close() for c in [publisher, *others]))


def run_scenario(name: str, workers: int, redis_url: str, args: argparse.Namespace) -> Result:
    process, port = start_server(workers, redis_url)
    try:
        uri = f"ws://127.0.0.1:{port}"
        return webshocket.run(fan_out(name, uri, workers, args.subscribers, args.publishes, args.inflight))
    finally:
        stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--publishes", type=int, default=2000)
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--redis", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.workers, args.redis)
    if not shutil.which("redis-server"):
        sys.stderr.write("redis-server is not installed\n")
        return 1
    directory = tempfile.mkdtemp(prefix="webshocket-bench-")
    redis_process, redis_url = start_redis(directory)
    try:
        results = [
            run_scenario("single", 1, "", args),
            run_scenario("1 worker + redis", 1, redis_url, args),
            run_scenario("2 workers + redis", 2, redis_url, args),
        ]
    finally:
        redis_process.kill()
        redis_process.wait()
        shutil.rmtree(directory, ignore_errors=True)
    base = results[0].rate
    print(f"fan-out: {args.subscribers} subscribers, {args.publishes} publishes, {args.inflight} in flight")
    compiled = all(webshocket.SPEEDUPS.values())
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, compiled modules: {compiled}")
    print()
    columns = ["scenario", "subscribers per worker", "deliveries", "seconds", "deliveries/s", "vs single"]
    columns += ["exactly once", "load CPU"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in results:
        ratio = r.rate / base if base else 0.0
        print(
            f"| {r.scenario} | {r.spread} | {r.deliveries} | {r.seconds:.2f} | {r.rate:,.0f} | {ratio:.2f}x "
            f"| {'yes' if r.exactly_once else 'NO'} | {r.client_cpu:.0%} |"
        )
    return 0 if all(r.exactly_once for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
