"""The load generator: picows clients on uvloop, pre-encoded requests, every reply verified.

Run by the runner in its own process (pinned to the other core) for one scenario against
one server: ``python -m webshocket.bench.loadgen '<json spec>'``. It prints one JSON line
with the measurement on stdout. Scenarios:

``rpc``
    ``connections`` clients each keep ``inflight`` ``add(a, b)`` calls in flight. Requests
    are one pre-encoded msgpack template per connection with two fixed-width holes patched
    per call: ``a`` (a uint32, so the result differs per call) and the ``call_id`` (8 hex
    digits, unique in the run). A reply counts when its ``call_id`` is pending on that very
    connection and its ``response`` equals ``a + b``; anything else (unknown or duplicate
    ``call_id``, wrong value, RPC error, undecodable packet, a call still unanswered after
    the drain) is an error and the run fails. Latency is send to verified reply
    (``perf_counter_ns``), every call completed in the window is kept. The template is a
    whole client frame (zero masking key), and the requests made while handling one read
    go out in one write.
``fanout``
    ``subscribers`` clients call ``subscribe(channel)``; one publisher calls
    ``publish(channel, payload)``. ``payload`` is ``size`` bytes: an 8-byte big-endian
    sequence number, then fixed filler. The publisher keeps ``inflight`` publishes in
    flight: a publish is in flight until it is acknowledged *and* (counted over all
    subscribers) delivered, so a server that acknowledges faster than it delivers cannot
    queue without bound. Each subscriber keeps a bitmap of the sequence numbers it got;
    after the window, publishing stops, the acknowledgements and deliveries drain, and
    every subscriber must hold exactly one copy of every acknowledged publish.
    With ``worker_pids`` (the scale-out kinds: worker processes sharing the port, joined by
    Redis), each subscriber also asks ``worker()`` (the pid serving it) before the window;
    a subscriber on a process not listed, or a listed worker without subscribers, fails
    the run, and the result gives the subscribers per worker.
    With ``channels`` above 1 the subscribers are spread evenly over the channels
    ``bench.0`` ... (subscriber ``i`` on channel ``i % channels``) and the publisher
    publishes round-robin over them; each channel numbers its own publishes and its
    payloads carry the channel's index after the sequence number, so a subscriber catches
    a delivery on another channel or of another channel's publish, and must hold exactly
    one copy of every acknowledged publish of its own channel.
``patterns``
    ``fanout`` (one channel by default) plus ``patterns`` glob patterns that match none of
    the published channels (:func:`non_matching_patterns`), subscribed by one more
    connection, 1,000 per ``subscribe([...])`` call, before the window (the server must
    allow that many subscriptions per connection: ours with ``--max-subscriptions 0``).
    Any delivery to that connection fails the run. Reports the same as ``fanout``: the
    server's CPU per publish is the cost the patterns add.
``churn``
    ``parallel`` workers, each in a closed loop: open a connection (handshake), call
    ``add(a, b)`` once and check the reply, send a close frame and wait until the server
    answers it and the connection is gone (a server that does not close within 10 s is an
    error). Reports completed cycles (handshakes) per second and their duration.
``rpc-open``
    Open loop: ``add`` calls go out at a fixed ``rate`` per second (spread round-robin over
    ``connections``), on schedule whatever the replies (:class:`Pacer`); latency runs from
    each call's *scheduled* send time, so a server (or a load generator) falling behind
    shows in it instead of slowing the load down (no coordinated omission). Replies are
    checked as in ``rpc``; every call sent must be answered. Reports the offered rate, the
    achieved one (replies in the window per second), the calls not sent because more than
    ``max_backlog_s`` seconds of calls were unanswered (``skipped``), and how late the load
    generator itself sent (``send_lag_us``).
``fanout-open``
    Open loop on ``fanout`` (one channel): publishes go out at ``rate`` per second on
    schedule; latency is from a publish's scheduled time to its arrival, at every
    ``subscribers // 100``-th subscriber. Exactly-once is checked as in ``fanout``;
    offered and achieved rates are deliveries per second.
``memory``
    VmRSS of the server with one probe connection open, then with ``idle`` more idle
    connections (opened in batches of ``batch``; the probe's ``count()`` must see them
    all), after a settle delay. The figure is the difference per connection.

Verification is exact but cheap: the first reply (or delivery) is decoded and checked field
by field, and its bytes become a shape with holes (call_id and result, or sequence number);
a later message identical to the shape outside the holes is the same packet with other
values, so only the holes are read. Anything else is decoded and checked in full.

Every connection count is checked against RLIMIT_NOFILE first (raised to the hard limit at
start): too few file descriptors fails the run with a message saying so. Every scenario
reports the load generator's own CPU use over the window (CPU seconds per
wall second, from ``time.process_time``) and the server's (from ``/proc/PID/stat``: the sum
over ``cpu_pids`` when given, i.e. the parent and every worker process, else ``server_pid``)
and, with ``redis_pid``, the redis-server's (``redis_cpu``); above ``SATURATED`` of a core
the load generator, not the server, may be setting the pace.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import resource
import signal
import struct
import sys
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgpack
import uvloop
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from .servers.common import raise_nofile

SUBPROTOCOL = "webshocket.v1"
HEADERS = {"Sec-WebSocket-Protocol": SUBPROTOCOL}
CHANNEL = "bench"
SATURATED = 0.9  # load generator CPU share of one core above which its figures are suspect
CONNECT_BATCH = 100  # handshakes in flight while opening many connections
DRAIN_STALL_S = 10.0  # give up draining when nothing arrived for this long
FD_MARGIN = 16  # file descriptors kept free besides the connections (stdio, the loop, ...)

_BINARY = WSMsgType.BINARY
_CONTROL = (WSMsgType.PING, WSMsgType.PONG, WSMsgType.CLOSE)
_unpackb = msgpack.unpackb
_perf_ns = time.perf_counter_ns
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_unpack_seq = struct.Struct(">Q").unpack_from


# --------------------------------------------------------------------------- helpers


def proc_cpu_split(pid: int) -> tuple[float, float] | None:
    """``(utime, stime)`` of process ``pid`` in seconds: user space, kernel (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of process ``pid`` in seconds (None when it is gone)."""
    split = proc_cpu_split(pid)
    return None if split is None else split[0] + split[1]


def proc_rss_kib(pid: int) -> int | None:
    """VmRSS of process ``pid`` in KiB (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def client_frame(payload: bytes) -> bytes:
    """``payload`` as one masked client-to-server binary frame (RFC 6455 5.2).

    The masking key is zero, so the payload goes out as is: a valid frame every server
    unmasks to the same bytes, and a request can be pre-encoded once, frame and all.
    """
    size = len(payload)
    if size < 126:
        header = bytes((0x82, 0x80 | size))
    elif size < 1 << 16:
        header = bytes((0x82, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x82, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


class Template:
    """A pre-encoded request frame with two fixed-width holes, filled by concatenation.

    ``holes`` are two byte strings that occur exactly once each, in this order, in the
    msgpack encoding of ``message``; :meth:`fill` replaces them by values of the same
    length. The result is a complete client frame (:func:`client_frame`).
    """

    __slots__ = ("head", "middle", "tail", "widths")

    def __init__(self, message: Any, holes: tuple[bytes, bytes]) -> None:
        encoded = client_frame(msgpack.packb(message))
        parts: list[bytes] = []
        for hole in holes:
            if encoded.count(hole) != 1:
                raise ValueError(f"hole {hole!r} must occur exactly once in the template")
            head, encoded = encoded.split(hole)
            parts.append(head)
        self.head, self.middle = parts
        self.tail = encoded
        self.widths = (len(holes[0]), len(holes[1]))

    def fill(self, first: bytes, second: bytes) -> bytes:
        """The frame with the holes replaced by ``first`` and ``second`` (same widths, unchecked)."""
        return b"".join((self.head, first, self.middle, second, self.tail))


def request(method: str, args: list[Any], call_id: str) -> dict[str, Any]:
    """An RPC request packet (docs/protocol.md: all five ``rpc`` keys, in order)."""
    return {"source": 5, "rpc": {"type": "request", "method": method, "args": args, "kwargs": {}, "call_id": call_id}}


CALL_ID_HOLE = "@@@@@@@@"  # 8 characters: call ids are 8 lowercase hex digits
A_HOLE = 0x7EADBEEF  # encodes as uint32: 0xce + these 4 bytes
A_BASE = 0x10000000  # a = A_BASE + (n mod 2**28) stays a uint32 with a minimal encoding
SEQ_HOLE = b"\xff" * 8


def percentiles(samples_ns: array[int], points: Sequence[float] = (50, 90, 99, 99.9)) -> dict[str, float]:
    """Nearest-rank percentiles, mean and max of ``samples_ns``, in microseconds."""
    if not samples_ns:
        return {}
    ordered = sorted(samples_ns)
    n = len(ordered)
    out = {f"p{p:g}": ordered[min(n - 1, max(0, math.ceil(p / 100 * n) - 1))] / 1000 for p in points}
    out["mean"] = sum(ordered) / n / 1000
    out["max"] = ordered[-1] / 1000
    return out


def pids_cpu_split(pids: Sequence[int]) -> tuple[float, float] | None:
    """Summed ``(utime, stime)`` of ``pids`` in seconds: user space, and the kernel (system calls,
    and over loopback the TCP receive work they trigger); None when there are none or one is gone."""
    user = kernel = 0.0
    for pid in pids:
        split = proc_cpu_split(pid)
        if split is None:
            return None
        user += split[0]
        kernel += split[1]
    return (user, kernel) if pids else None


def pids_cpu_seconds(pids: Sequence[int]) -> float | None:
    """Summed utime + stime of ``pids`` in seconds (None when there are none or one is gone)."""
    split = pids_cpu_split(pids)
    return None if split is None else split[0] + split[1]


def server_pids(spec: dict[str, Any]) -> list[int]:
    """The processes whose CPU is the server's: ``cpu_pids`` (parent and workers), else ``server_pid``."""
    pids = spec.get("cpu_pids") or ([spec["server_pid"]] if spec.get("server_pid") else [])
    return [int(pid) for pid in pids]


class Window:
    """Wall time, own CPU, server CPU (summed over ``pids``) and Redis CPU between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: Sequence[int], redis_pid: int | None = None) -> None:
        self.pids = list(pids)
        self.redis_pid = redis_pid
        self.wall = self.cpu = 0.0
        self.server_cpu: float | None = None
        self.redis_cpu: float | None = None
        self._t = self._c = 0.0
        self._s: float | None = None
        self._k: float | None = None  # the server's kernel time at start
        self.server_kernel: float | None = None
        self._r: float | None = None
        self._each: dict[int, tuple[float | None, float | None]] = {}  # pid -> CPU seconds at start, at stop

    def start(self) -> None:
        self._each = {pid: (proc_cpu_seconds(pid), None) for pid in self.pids}
        began = pids_cpu_split(self.pids)
        self._s, self._k = (None, None) if began is None else (began[0] + began[1], began[1])
        self._r = proc_cpu_seconds(self.redis_pid) if self.redis_pid else None
        self._c = time.process_time()
        self._t = time.perf_counter()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._t
        self.cpu = time.process_time() - self._c
        ended = pids_cpu_split(self.pids)
        end, kernel = (None, None) if ended is None else (ended[0] + ended[1], ended[1])
        self._each = {pid: (began, proc_cpu_seconds(pid)) for pid, (began, _) in self._each.items()}
        if self._s is not None and end is not None:
            self.server_cpu = end - self._s
        if self._k is not None and kernel is not None:
            self.server_kernel = kernel - self._k
        redis_end = proc_cpu_seconds(self.redis_pid) if self.redis_pid else None
        if self._r is not None and redis_end is not None:
            self.redis_cpu = redis_end - self._r

    def share_of(self, pid: int) -> float | None:
        """CPU share of one core of process ``pid`` (one of ``pids``) over the window."""
        began, ended = self._each.get(pid, (None, None))
        return (ended - began) / self.wall if began is not None and ended is not None and self.wall else None

    def report(self) -> dict[str, Any]:
        """Shares of one core over the window."""
        loadgen = self.cpu / self.wall if self.wall else 0.0
        server = self.server_cpu / self.wall if self.wall and self.server_cpu is not None else None
        out = {"seconds": self.wall, "loadgen_cpu": loadgen, "server_cpu": server, "saturated": loadgen > SATURATED}
        if self.server_cpu and self.server_kernel is not None:
            out["server_kernel_share"] = self.server_kernel / self.server_cpu  # of the server's CPU
        if self.redis_pid:
            out["redis_cpu"] = self.redis_cpu / self.wall if self.wall and self.redis_cpu is not None else None
        return out


def check_nofile(more: int) -> None:
    """Raise RuntimeError when ``more`` connections would not fit under RLIMIT_NOFILE."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_now = 0
    if open_now + more + FD_MARGIN > limit:
        raise RuntimeError(
            f"RLIMIT_NOFILE is {limit} (raised to the hard limit): too few file descriptors for "
            f"{more:,} more connections ({open_now} open)"
        )


async def open_many(
    url: str, count: int, factory: Callable[[int], WSListener], batch: int = CONNECT_BATCH, **kwargs: Any
) -> list[WSListener]:
    """``count`` connections, ``batch`` handshakes at a time; raises if any fails (or if they
    would not fit under RLIMIT_NOFILE)."""
    check_nofile(count)
    listeners: list[WSListener] = []
    for start in range(0, count, batch):
        coros: list[Awaitable[tuple[WSTransport, WSListener]]] = [
            ws_connect(lambda i=i: factory(i), url, extra_headers=HEADERS, websocket_handshake_timeout=30, **kwargs)
            for i in range(start, min(count, start + batch))
        ]
        listeners.extend(listener for _, listener in await asyncio.gather(*coros))
    return listeners


async def wait_until(predicate: Callable[[], bool], progress: Callable[[], int], stall: float = DRAIN_STALL_S) -> bool:
    """Poll until ``predicate()``; False once ``progress()`` has not moved for ``stall`` seconds."""
    last, since = progress(), time.monotonic()
    while not predicate():
        await asyncio.sleep(0.01)
        now = progress()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > stall:
            return False
    return True


SPIN_NS = 1_500_000  # the pacer sleeps until this close to the next slot, then polls the loop


class Pacer:
    """An open-loop schedule: slot ``n`` is due at ``t0 + n / rate``, whatever the replies.

    :meth:`run` calls ``send(at)`` for every slot that is due (``at``: its scheduled time, in
    ``perf_counter_ns``), then ``flush()``; ``send`` returns False when it skipped the slot
    (too much unanswered). While ``measuring``, slots are counted (``scheduled``,
    ``skipped``) and ``lag`` gets how late each was written (flush time - scheduled time):
    the load generator's own lateness, part of every latency measured from ``at``.
    Between slots it sleeps (the loop's timers have a 1 ms resolution), then polls the loop
    for the last :data:`SPIN_NS`: the load generator's CPU share of an open-loop run includes
    that polling, so whether it kept up is ``lag``, not its CPU.
    """

    def __init__(self, rate: float, send: Callable[[int], bool], flush: Callable[[], None]) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.interval = 1e9 / rate
        self.send = send
        self.flush = flush
        self.running = True
        self.measuring = False
        self.scheduled = 0
        self.skipped = 0
        self.lag = array("q")

    async def run(self) -> None:
        """Send on schedule until ``running`` is False."""
        interval = self.interval
        t0 = _perf_ns()
        n = 0
        sent: list[int] = []
        while self.running:
            due = int((_perf_ns() - t0) / interval) + 1
            while n < due:
                at = t0 + int(n * interval)
                if self.send(at):
                    sent.append(at)
                elif self.measuring:
                    self.skipped += 1
                n += 1
                if self.measuring:
                    self.scheduled += 1
            self.flush()
            if sent:
                if self.measuring:
                    now = _perf_ns()
                    self.lag.extend(now - at for at in sent)
                sent.clear()
            wait = t0 + n * interval - _perf_ns()
            await asyncio.sleep((wait - SPIN_NS) / 1e9 if wait > 2 * SPIN_NS else 0)


# --------------------------------------------------------------------------- RPC


class ReplyShape:
    """The byte layout of a verified ``add`` reply, with two holes: the call_id and the result.

    Learned from the first reply that decoded and verified; a later reply whose bytes
    equal it everywhere but in the holes is the same packet with another call_id and
    result, so it is verified by comparing bytes, without decoding. A reply of any other
    shape is decoded and verified field by field.
    """

    __slots__ = ("head", "key_at", "key_end", "middle", "result_at", "result_end", "size", "tail")

    def __init__(self, payload: bytes, key_at: int, result_at: int) -> None:
        self.size = len(payload)
        self.key_at, self.key_end = key_at, key_at + 8
        self.result_at, self.result_end = result_at, result_at + 4
        self.head = payload[:key_at]
        self.middle = payload[self.key_end : result_at]
        self.tail = payload[self.result_end :]

    @classmethod
    def learn(cls, payload: bytes, key: bytes, result: int) -> ReplyShape | None:
        """The shape of ``payload`` (call_id ``key``, result ``result``), if it has a usable one."""
        if not A_BASE <= result < 1 << 32:
            return None
        key_at = payload.find(b"\xa8" + key) + 1  # a fixstr of 8 characters
        result_at = payload.find(b"\xce" + result.to_bytes(4, "big")) + 1  # a uint32
        if key_at <= 0 or result_at < key_at + 8 or payload.count(key) != 1:
            return None
        return cls(payload, key_at, result_at)


class RpcLoad:
    """Shared state of an RPC run: pending calls, counters, latency samples."""

    def __init__(self) -> None:
        self.pending: dict[bytes, tuple[int, int, RpcClient]] = {}
        self.shape: ReplyShape | None = None  # learned from the first verified reply
        self.errors: Counter[str] = Counter()
        self.next_id = 0
        self.sending = True
        self.measuring = False
        self.completed = 0  # verified replies in the window
        self.total = 0  # verified replies in the run
        self.latencies = array("q")


class RpcClient(WSListener):
    """One connection keeping ``inflight`` ``add`` calls in flight.

    The requests made while handling one read (one ``data_received`` of picows) go out
    in one write, when its last frame has been handled (``frame.last_in_buffer``): the
    window stays full and the load generator spends one syscall per read, not per call.
    """

    __slots__ = ("b", "inflight", "load", "outbox", "template", "transport", "write")

    def __init__(self, load: RpcLoad, index: int, inflight: int) -> None:
        super().__init__()
        self.load = load
        self.inflight = inflight
        self.b = index % 100 + 1
        self.template = Template(request("add", [A_HOLE, self.b], CALL_ID_HOLE), (A_HOLE.to_bytes(4, "big"), b"@" * 8))
        self.transport: WSTransport | None = None
        self.write: Callable[[bytes], None] | None = None
        self.outbox: list[bytes] = []

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.write = transport.underlying_transport.write

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.load.sending:
            self.load.errors["disconnected"] += 1

    def queue_one(self, at: int = 0) -> None:
        """Queue the next call (sent by :meth:`flush`); its latency counts from ``at`` (default: now)."""
        load = self.load
        n = load.next_id
        load.next_id = n + 1
        a = A_BASE + (n & 0x0FFFFFFF)
        key = b"%08x" % n
        self.outbox.append(self.template.fill(a.to_bytes(4, "big"), key))
        load.pending[key] = (at or _perf_ns(), a + self.b, self)

    def flush(self) -> None:
        """Write the queued calls at once."""
        if self.outbox:
            self.write(b"".join(self.outbox))  # type: ignore[misc]
            self.outbox.clear()

    def start(self) -> None:
        """Fill the window."""
        for _ in range(self.inflight):
            self.queue_one()
        self.flush()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = _perf_ns()
        load = self.load
        if frame.msg_type is not _BINARY:
            if frame.msg_type not in _CONTROL:
                load.errors["non-binary message"] += 1
            if frame.last_in_buffer:
                self.flush()
            return
        payload = frame.get_payload_as_bytes()
        shape = load.shape
        if (
            shape is not None
            and len(payload) == shape.size
            and payload.startswith(shape.head)
            and payload.endswith(shape.tail)
            and payload[shape.key_end : shape.result_at] == shape.middle
        ):  # byte-identical to a verified reply but for call_id and result: no decoding needed
            entry = load.pending.pop(payload[shape.key_at : shape.key_end], None)
            result: Any = int.from_bytes(payload[shape.result_at : shape.result_end], "big")
            if entry is None:
                load.errors["unknown or duplicate call_id"] += 1
            elif entry[2] is not self:
                load.errors["reply on another connection"] += 1
            elif result != entry[1]:
                load.errors["wrong reply"] += 1
            else:
                load.total += 1
                if load.measuring:
                    load.completed += 1
                    load.latencies.append(now - entry[0])
        else:
            entry = self.verify_decoded(payload)
        if entry is not None and load.sending:
            entry[2].queue_one()
        if frame.last_in_buffer:
            self.flush()

    def verify_decoded(self, payload: bytes) -> tuple[int, int, RpcClient] | None:
        """Verify a reply by decoding it (and learn its shape); the pending entry it answered."""
        load = self.load
        try:
            packet = _unpackb(payload)
            rpc = packet["rpc"]
            call_id = rpc["call_id"]
            key = call_id.encode() if type(call_id) is str else b""
        except Exception:
            load.errors["undecodable reply"] += 1
            return None
        entry = load.pending.pop(key, None)
        if entry is None:
            load.errors["unknown or duplicate call_id"] += 1
            return None
        sent, expected, client = entry
        result = rpc.get("response")
        if client is not self:
            load.errors["reply on another connection"] += 1
        elif (
            packet.get("source") != 5
            or rpc.get("type") != "response"
            or rpc.get("error") is not None
            or type(result) is not int
            or result != expected
            or rpc.get("is_stream")
        ):
            load.errors["wrong reply"] += 1
        else:
            load.total += 1
            if load.measuring:
                load.completed += 1
                load.latencies.append(_perf_ns() - sent)
            if load.shape is None:
                load.shape = ReplyShape.learn(payload, key, result)
        return entry


async def run_rpc(spec: dict[str, Any]) -> dict[str, Any]:
    """RPC throughput and latency (see module docstring)."""
    url = f"ws://127.0.0.1:{spec['port']}/"
    load = RpcLoad()
    setup = time.perf_counter()
    clients = await open_many(url, spec["connections"], lambda i: RpcClient(load, i, spec["inflight"]))
    setup_s = time.perf_counter() - setup
    gc.collect()
    gc.freeze()
    window = Window(server_pids(spec))
    for client in clients:
        client.start()  # type: ignore[attr-defined]
    await asyncio.sleep(spec["warmup"])
    load.measuring = True
    window.start()
    await asyncio.sleep(spec["duration"])
    load.measuring = False
    window.stop()
    load.sending = False
    drained = await wait_until(lambda: not load.pending, lambda: load.total + sum(load.errors.values()))
    if not drained:
        load.errors["missing reply"] += len(load.pending)
    for client in clients:
        client.transport.disconnect()  # type: ignore[attr-defined]
    w = window.report()
    return {
        "ok": not load.errors and load.completed > 0,
        "errors": dict(load.errors) or ({} if load.completed else {"no call completed in the window": 1}),
        "calls": load.completed,
        "calls_per_s": load.completed / w["seconds"],
        "latency_us": percentiles(load.latencies),
        "setup_s": setup_s,
        **w,
    }


def open_loop_report(offered: float, achieved: float, pacer: Pacer) -> dict[str, Any]:
    """Offered and achieved rates of an open-loop run, what was skipped, the load generator's lateness."""
    return {
        "offered_per_s": offered,
        "achieved_per_s": achieved,
        "achieved_ratio": achieved / offered if offered else 0.0,
        "sustained": achieved >= SUSTAINED * offered and not pacer.skipped,
        "scheduled": pacer.scheduled,
        "skipped": pacer.skipped,
        "send_lag_us": percentiles(pacer.lag),
    }


SUSTAINED = 0.95  # an open-loop run whose achieved rate is below this share of the offered one did not keep up


async def run_rpc_open(spec: dict[str, Any]) -> dict[str, Any]:
    """RPC latency under an open-loop load of ``rate`` calls/s (see module docstring)."""
    url = f"ws://127.0.0.1:{spec['port']}/"
    rate = float(spec["rate"])
    load = RpcLoad()
    load.sending = False  # replies do not trigger calls: the pacer sends
    setup = time.perf_counter()
    clients: list[RpcClient] = await open_many(url, spec["connections"], lambda i: RpcClient(load, i, 0))  # type: ignore[assignment]
    setup_s = time.perf_counter() - setup
    max_pending = max(64, int(rate * spec.get("max_backlog_s", 1.0)))
    turn = 0

    def send(at: int) -> bool:
        nonlocal turn
        if len(load.pending) >= max_pending:
            return False
        clients[turn].queue_one(at)
        turn = (turn + 1) % len(clients)
        return True

    def flush() -> None:
        for client in clients:
            client.flush()

    gc.collect()
    gc.freeze()
    window = Window(server_pids(spec))
    pacer = Pacer(rate, send, flush)
    pacing = asyncio.ensure_future(pacer.run())
    await asyncio.sleep(spec["warmup"])
    load.measuring = pacer.measuring = True  # latency: every reply from now on, the drain's too
    t0 = load.total
    window.start()
    await asyncio.sleep(spec["duration"])
    replied = load.total - t0
    window.stop()
    pacer.measuring = False
    pacer.running = False
    await pacing
    drained = await wait_until(lambda: not load.pending, lambda: load.total + sum(load.errors.values()))
    if not drained:
        load.errors["missing reply"] += len(load.pending)
    for client in clients:
        client.transport.disconnect()  # type: ignore[union-attr]
    w = window.report()
    return {
        "ok": not load.errors and replied > 0,
        "errors": dict(load.errors) or ({} if replied else {"no call completed in the window": 1}),
        "rate": rate,
        "calls": replied,
        "calls_per_s": replied / w["seconds"],
        "latency_us": percentiles(load.latencies),
        **open_loop_report(rate, replied / w["seconds"], pacer),
        "setup_s": setup_s,
        **w,
    }


# --------------------------------------------------------------------------- fan-out


class PacketShape:
    """The byte layout of a verified channel packet, with holes: the sequence number and,
    on a server with recovery, the channel offset.

    Learned from a delivery that decoded and verified; a later packet equal to it everywhere
    but in the 8 bytes of the sequence number (and the bytes of the offset's value, of the
    same width) is the same publish with other numbers, so it is verified by comparing
    bytes. Any other packet (for instance one whose offset grew a byte) is decoded.
    """

    __slots__ = ("head", "mid", "offset_at", "seq_at", "size", "tail")

    def __init__(self, payload: bytes, seq_at: int, offset: tuple[int, int] | None) -> None:
        self.size = len(payload)
        self.seq_at = seq_at
        seq_end = seq_at + 8
        offset_at, offset_end = offset if offset is not None else (seq_end, seq_end)
        self.head = payload[:seq_at]
        self.mid = payload[seq_end:offset_at]
        self.offset_at = offset_at
        self.tail = payload[offset_end:]

    @classmethod
    def learn(cls, payload: bytes, data: bytes) -> PacketShape | None:
        """The shape of ``payload``, whose ``data`` field is ``data``."""
        at = payload.find(data)
        if at < 0 or payload.count(data[:8]) != 1:
            return None
        return cls(payload, at, _offset_hole(payload, at + len(data)))


_OFFSET_KEY = msgpack.packb("offset")
_INT_WIDTH = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}  # msgpack uint 8/16/32/64: bytes after the type byte


def _offset_hole(payload: bytes, after: int) -> tuple[int, int] | None:
    """Where the value of the ``offset`` key (after the data) lies in ``payload``, if any."""
    key = payload.find(_OFFSET_KEY, after)
    if key < 0:
        return None
    at = key + len(_OFFSET_KEY)
    kind = payload[at]
    if kind < 0x80:  # positive fixint: the byte is the value
        return at, at + 1
    width = _INT_WIDTH.get(kind)
    return None if width is None else (at + 1, at + 1 + width)


class FanoutLoad:
    """Shared state of a fan-out run.

    Publish ``p`` goes to channel ``p % channels`` with the channel's own sequence number
    ``p // channels`` (the first 8 bytes of its payload; the rest is the channel's filler,
    which starts with the channel's index when there are several).
    """

    def __init__(self, subscribers: int, inflight: int, size: int, channels: int = 1) -> None:
        if channels < 1 or subscribers % channels:
            raise ValueError(f"{subscribers} subscribers cannot be spread evenly over {channels} channels")
        if size - 8 < len(f"{channels - 1}:"):
            raise ValueError(f"payloads of {size} bytes are too small to tell {channels} channels apart")
        self.subscribers = subscribers
        self.inflight = inflight
        self.size = size
        self.channels = channels
        self.per_channel = subscribers // channels  # deliveries of each publish
        base = bytes(b"abcdefghijklmnopqrstuvwxyz"[i % 26] for i in range(size - 8))
        if channels == 1:
            self.names, self.fillers = [CHANNEL], [base]
        else:
            self.names = [f"{CHANNEL}.{c}" for c in range(channels)]
            self.fillers = [(f"{c}:".encode() + base)[: size - 8] for c in range(channels)]
        self.errors: Counter[str] = Counter()
        self.sending = False
        self.sent = 0  # publishes sent; the next sequence number
        self.acked = 0
        self.failed = 0
        self.ack_mask = bytearray()  # 1 at the sequence numbers acknowledged
        self.delivered = 0  # valid first copies received, over all subscribers
        self.decoded = 0  # channel packets that missed the learned shape and were decoded
        self.wake_at = 0  # pump the publisher when delivered reaches this
        self.publisher: Publisher | None = None
        self.subscribed = 0
        self.answered = 0  # worker() replies
        self.measuring = False  # open loop: record latencies
        self.scheduled = array("q")  # open loop: the scheduled send time of each publish
        self.latencies = array("q")

    def sent_on(self, channel: int) -> int:
        """Publishes sent to ``channel`` so far (its next sequence number)."""
        return (self.sent - channel + self.channels - 1) // self.channels

    def pump(self) -> None:
        """Send publishes while fewer than ``inflight`` are unacknowledged or undelivered."""
        publisher = self.publisher
        n = self.per_channel
        k = self.inflight
        while self.sending and self.sent - self.acked - self.failed < k and (self.sent - k) * n < self.delivered:
            publisher.publish(self.sent)  # type: ignore[union-attr]
            self.sent += 1
        self.wake_at = (self.sent - k) * n + 1 if self.sending else 1 << 62


class Subscriber(WSListener):
    """Keeps a bitmap of the sequence numbers it received; checks channel and payload.

    The hot path (a packet of the learned :class:`PacketShape`, a sequence number not seen
    yet) is a few byte comparisons and a bitmap update; everything else goes through
    :meth:`slow_path`, which decodes and classifies.
    """

    __slots__ = (
        "channel",
        "filler",
        "head",
        "index",
        "load",
        "mid",
        "name",
        "seen",
        "seq_at",
        "seq_end",
        "size",
        "subscribed",
        "tail",
        "transport",
        "worker",
    )

    def __init__(self, load: FanoutLoad, index: int) -> None:
        super().__init__()
        self.load = load
        self.index = index
        self.channel = index % load.channels
        self.name = load.names[self.channel]
        self.filler = load.fillers[self.channel]
        self.seen = bytearray(4096)  # 1 at the sequence numbers (of its channel) received
        self.subscribed = False
        self.worker: int | None = None  # the pid serving this connection, when asked
        self.transport: WSTransport | None = None
        self.size = -1  # the learned shape, copied here for the hot path
        self.head = self.mid = self.tail = b""
        self.seq_at = self.seq_end = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.load.sending or self.load.publisher is not None:
            self.load.errors["subscriber disconnected"] += 1

    def subscribe(self) -> None:
        """Send ``subscribe(<its channel>)``."""
        message = msgpack.packb(request("subscribe", [self.name], f"s{self.index}"))
        self.transport.send(_BINARY, message)  # type: ignore[union-attr]

    def ask_worker(self) -> None:
        """Send ``worker()``: which process serves this connection."""
        message = msgpack.packb(request("worker", [], f"w{self.index}"))
        self.transport.send(_BINARY, message)  # type: ignore[union-attr]

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        payload = frame.get_payload_as_bytes()
        if (
            len(payload) == self.size
            and frame.msg_type is _BINARY
            and payload.startswith(self.head)
            and payload.endswith(self.tail)
            and payload.startswith(self.mid, self.seq_end)
        ):  # byte-identical to a verified channel packet but for the sequence number (and offset)
            seq = _unpack_seq(payload, self.seq_at)[0]
            seen = self.seen
            if seq < len(seen) and not seen[seq]:
                seen[seq] = 1
                load = self.load
                load.delivered += 1
                if load.delivered >= load.wake_at:
                    load.pump()
                return
            self.accept(seq)
            return
        self.slow_path(frame, payload)

    def accept(self, seq: int) -> None:
        """Count delivery ``seq`` unless it is a duplicate or was never published."""
        load = self.load
        if seq >= load.sent_on(self.channel):
            load.errors["delivery of a publish never sent"] += 1
            return
        seen = self.seen
        if seq >= len(seen):
            seen.extend(bytes(max(seq + 1, 2 * len(seen)) - len(seen)))
        if seen[seq]:
            load.errors["duplicate delivery"] += 1
            return
        seen[seq] = 1
        load.delivered += 1
        if load.delivered >= load.wake_at:
            load.pump()

    def slow_path(self, frame: WSFrame, payload: bytes) -> None:
        """Anything but the hot path: control frames, first deliveries, replies, errors."""
        load = self.load
        if frame.msg_type is not _BINARY:
            if frame.msg_type not in _CONTROL:
                load.errors["non-binary message"] += 1
            return
        try:
            packet = _unpackb(payload)
            source = packet["source"]
        except Exception:
            load.errors["undecodable packet"] += 1
            return
        if source == 2:
            data = packet.get("data")
            if packet.get("channel") != self.name:
                load.errors["delivery on another channel"] += 1
                return
            if type(data) is not bytes or len(data) != load.size:
                load.errors["wrong channel packet"] += 1
                return
            if not data.endswith(self.filler):
                other = load.channels > 1 and any(data.endswith(filler) for filler in load.fillers)
                load.errors["delivery of another channel's publish" if other else "wrong channel packet"] += 1
                return
            load.decoded += 1
            shape = PacketShape.learn(payload, data)  # again after a change (an offset one byte wider)
            if shape is not None:
                self.size, self.head, self.mid, self.tail = shape.size, shape.head, shape.mid, shape.tail
                self.seq_at, self.seq_end = shape.seq_at, shape.seq_at + 8
            self.accept(int.from_bytes(data[:8], "big"))
        elif source == 5:
            rpc = packet.get("rpc") or {}
            if rpc.get("call_id") == f"w{self.index}" and self.worker is None:
                pid = rpc.get("response")
                if rpc.get("error") is None and type(pid) is int and pid > 0:
                    self.worker = pid
                    load.answered += 1
                else:
                    load.errors["wrong worker() reply"] += 1
            elif (
                not self.subscribed
                and rpc.get("call_id") == f"s{self.index}"
                and rpc.get("error") is None
                and rpc.get("response") is True
            ):
                self.subscribed = True
                load.subscribed += 1
            else:
                load.errors["wrong subscribe reply"] += 1
        else:
            load.errors["unexpected packet"] += 1


class Publisher(WSListener):
    """Calls ``publish(channel, payload)``, round-robin over the channels; verifies each acknowledgement."""

    def __init__(self, load: FanoutLoad) -> None:
        super().__init__()
        self.load = load
        self.templates = [
            Template(request("publish", [name, SEQ_HOLE + filler], CALL_ID_HOLE), (SEQ_HOLE, b"@" * 8))
            for name, filler in zip(load.names, load.fillers, strict=True)
        ]
        self.pending: dict[str, int] = {}
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.load.sending or self.pending:
            self.load.errors["publisher disconnected"] += 1

    def publish(self, seq: int) -> None:
        """Send publish number ``seq`` (to channel ``seq % channels``, as its number ``seq // channels``)."""
        key = f"{seq:08x}"
        self.pending[key] = seq
        number, channel = divmod(seq, self.load.channels)
        frame = self.templates[channel].fill(number.to_bytes(8, "big"), key.encode())
        self.transport.underlying_transport.write(frame)  # type: ignore[union-attr]

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        load = self.load
        if frame.msg_type is not _BINARY:
            if frame.msg_type not in _CONTROL:
                load.errors["non-binary message"] += 1
            return
        try:
            packet = _unpackb(frame.get_payload_as_bytes())
            rpc = packet["rpc"]
            seq = self.pending.pop(rpc["call_id"], None)
        except Exception:
            load.errors["undecodable publish reply"] += 1
            return
        if seq is None:
            load.errors["unknown or duplicate call_id"] += 1
            return
        if packet.get("source") != 5 or rpc.get("error") is not None or rpc.get("response") is not True:
            load.errors["publish not acknowledged"] += 1
            load.failed += 1
        else:
            load.acked += 1
            mask = load.ack_mask
            if seq >= len(mask):
                mask.extend(bytes(seq + 1024 - len(mask)))
            mask[seq] = 1
        load.pump()


async def spread_over_workers(load: FanoutLoad, subs: list[Subscriber], workers: list[int]) -> dict[int, int]:
    """Ask every subscriber's ``worker()``; subscribers per worker pid (errors in ``load.errors``)."""
    for sub in subs:
        sub.ask_worker()
    if not await wait_until(lambda: load.answered + sum(load.errors.values()) >= len(subs), lambda: load.answered):
        load.errors["worker() unanswered"] += len(subs) - load.answered
    per_worker = Counter(sub.worker for sub in subs if sub.worker is not None)
    strangers = sum(n for pid, n in per_worker.items() if pid not in workers)
    if strangers:
        load.errors["subscriber on a process that is not a worker"] += strangers
    idle = sum(1 for pid in workers if not per_worker.get(pid))
    if idle:
        load.errors["worker without subscribers"] += idle
    return dict(per_worker)


PATTERN_BATCH = 1000  # patterns per subscribe([...]) call
PATTERN_FAMILIES = ("user.{i}.*", "*.alerts.{i}", "room.{i}.[ab]?", "feed.*.{i}.*", CHANNEL + ".{i}.*")


def non_matching_patterns(count: int) -> list[str]:
    """``count`` distinct glob patterns that match none of the published channels (``bench``,
    ``bench.<c>``): the families of ``benchmarks/bench_channels.py``, and near misses sharing
    the channels' prefix (``bench.<i>.*`` needs a dot after ``bench.<i>``)."""
    return [PATTERN_FAMILIES[i % len(PATTERN_FAMILIES)].format(i=i) for i in range(count)]


class PatternHolder(WSListener):
    """The connection holding the non-matching patterns: a channel packet on it is an error."""

    def __init__(self, errors: Counter[str]) -> None:
        super().__init__()
        self.errors = errors
        self.transport: WSTransport | None = None
        self.reply: asyncio.Future[dict[str, Any]] | None = None
        self.calls = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not _BINARY:
            if frame.msg_type not in _CONTROL:
                self.errors["non-binary message"] += 1
            return
        try:
            packet = _unpackb(frame.get_payload_as_bytes())
            source = packet["source"]
        except Exception:
            self.errors["undecodable packet"] += 1
            return
        if source == 2:
            self.errors["delivery to a non-matching pattern"] += 1
            return
        rpc = packet.get("rpc") or {}
        reply = self.reply
        if source == 5 and reply is not None and not reply.done() and rpc.get("call_id") == f"h{self.calls}":
            reply.set_result(rpc)
        else:
            self.errors["unexpected packet"] += 1

    async def subscribe(self, names: list[str]) -> None:
        """``subscribe(names)``; raises RuntimeError unless the server answers True."""
        self.calls += 1
        self.reply = asyncio.get_running_loop().create_future()
        self.transport.send(_BINARY, msgpack.packb(request("subscribe", [names], f"h{self.calls}")))  # type: ignore[union-attr]
        rpc = await asyncio.wait_for(self.reply, 30)
        if rpc.get("error") is not None or rpc.get("response") is not True:
            raise RuntimeError(f"subscribe to {len(names)} patterns refused: {rpc.get('response')!r}"[:300])


async def hold_patterns(url: str, count: int, errors: Counter[str]) -> PatternHolder:
    """One connection subscribed to ``count`` non-matching patterns, :data:`PATTERN_BATCH` per call."""
    check_nofile(1)
    _, holder = await ws_connect(lambda: PatternHolder(errors), url, extra_headers=HEADERS)
    assert isinstance(holder, PatternHolder)
    patterns = non_matching_patterns(count)
    for start in range(0, count, PATTERN_BATCH):
        await holder.subscribe(patterns[start : start + PATTERN_BATCH])
    return holder


@dataclass
class Rig:
    """The connections of a fan-out run, subscribed and ready."""

    subs: list[Subscriber]
    publisher: Publisher
    workers: list[int]
    per_worker: dict[int, int]
    holder: PatternHolder | None
    setup_s: float

    def failed(self, load: FanoutLoad) -> dict[str, Any]:
        """The result of a run whose setup went wrong."""
        out: dict[str, Any] = {"ok": False, "errors": dict(load.errors), "setup_s": self.setup_s}
        if self.workers:
            out["subscribers_per_worker"] = [self.per_worker.get(pid, 0) for pid in self.workers]
        return out


async def fanout_rig(spec: dict[str, Any], load: FanoutLoad, factory: Callable[[int], Subscriber]) -> Rig:
    """Subscribers (made by ``factory``) subscribed, spread over the workers checked, the patterns
    held (``spec["patterns"]``), the publisher connected; problems in ``load.errors``."""
    url = f"ws://127.0.0.1:{spec['port']}/"
    count = spec["subscribers"]
    setup = time.perf_counter()
    subs: list[Subscriber] = await open_many(url, count, factory)  # type: ignore[assignment]
    for sub in subs:
        sub.subscribe()
    if not await wait_until(lambda: load.subscribed + sum(load.errors.values()) >= count, lambda: load.subscribed):
        load.errors["subscribe unanswered"] += count - load.subscribed
    workers: list[int] = [int(pid) for pid in spec.get("worker_pids") or []]
    per_worker: dict[int, int] = {}
    if workers and not load.errors:
        per_worker = await spread_over_workers(load, subs, workers)
    holder = None
    if spec.get("patterns") and not load.errors:
        holder = await hold_patterns(url, int(spec["patterns"]), load.errors)
    check_nofile(1)
    _, publisher = await ws_connect(lambda: Publisher(load), url, extra_headers=HEADERS)
    assert isinstance(publisher, Publisher)
    return Rig(subs, publisher, workers, per_worker, holder, time.perf_counter() - setup)


async def drain_and_verify(load: FanoutLoad, rig: Rig) -> None:
    """Stop publishing, drain, check that every subscriber holds exactly one copy of every
    acknowledged publish of its channel (errors in ``load.errors``); disconnect."""
    publisher = rig.publisher
    load.sending = False
    load.wake_at = 1 << 62
    if not await wait_until(lambda: not publisher.pending, lambda: load.acked + load.failed):
        load.errors["publish unanswered"] += len(publisher.pending)
    expected = load.acked * load.per_channel
    if not await wait_until(lambda: load.delivered >= expected, lambda: load.delivered):
        pass  # counted per subscriber below
    await asyncio.sleep(0.2)  # anything arriving now would be a duplicate or a stray
    mask = bytes(load.ack_mask[: load.sent]).ljust(load.sent, b"\0")
    masks: dict[int, bytes] = {}  # channel -> its publishes acknowledged, by its sequence numbers
    missing = unacked = 0
    for sub in rig.subs:
        want = masks.get(sub.channel)
        if want is None:
            want = masks[sub.channel] = mask[sub.channel :: load.channels]
        size = len(want)
        if any(sub.seen[size:]):
            load.errors["delivery of a publish never sent"] += 1
        got = bytes(sub.seen[:size]).ljust(size, b"\0")
        if got != want:
            for wanted, have in zip(want, got, strict=True):
                if wanted and not have:
                    missing += 1
                elif have and not wanted:
                    unacked += 1
    if missing:
        load.errors["missing delivery"] += missing
    if unacked:
        load.errors["delivery of an unacknowledged publish"] += unacked
    load.publisher = None
    for sub in rig.subs:
        sub.transport.disconnect()  # type: ignore[union-attr]
    publisher.transport.disconnect()  # type: ignore[union-attr]
    if rig.holder is not None:
        rig.holder.transport.disconnect()  # type: ignore[union-attr]


async def run_fanout(spec: dict[str, Any]) -> dict[str, Any]:
    """Fan-out deliveries per second, exactly-once checked (see module docstring)."""
    count = spec["subscribers"]
    load = FanoutLoad(count, spec["inflight"], spec["size"], spec.get("channels", 1))
    rig = await fanout_rig(spec, load, lambda i: Subscriber(load, i))
    if load.errors:
        return rig.failed(load)
    gc.collect()
    gc.freeze()
    load.publisher = rig.publisher
    window = Window(server_pids(spec), spec.get("redis_pid"))
    load.sending = True
    load.pump()
    await asyncio.sleep(spec["warmup"])
    d0, a0 = load.delivered, load.acked
    window.start()
    await asyncio.sleep(spec["duration"])
    d1, a1 = load.delivered, load.acked
    window.stop()
    await drain_and_verify(load, rig)
    w = window.report()
    if rig.workers:
        w["subscribers_per_worker"] = [rig.per_worker.get(pid, 0) for pid in rig.workers]
        w["worker_cpu"] = [window.share_of(pid) for pid in rig.workers]
    return {
        "ok": not load.errors and d1 > d0,
        "errors": dict(load.errors) or ({} if d1 > d0 else {"no delivery in the window": 1}),
        "deliveries": d1 - d0,
        "deliveries_per_s": (d1 - d0) / w["seconds"],
        "publishes_per_s": (a1 - a0) / w["seconds"],
        "publishes_total": load.acked,
        "channels": load.channels,
        "patterns": int(spec.get("patterns") or 0),
        "decoded": load.decoded,
        "setup_s": rig.setup_s,
        **w,
    }


LATENCY_SUBSCRIBERS = 100  # open-loop fan-out: subscribers (evenly spaced) that record latencies


class TimedSubscriber(Subscriber):
    """A :class:`Subscriber` that also records, while ``load.measuring``, each new delivery's
    latency from the scheduled send time of its publish (open loop, one channel)."""

    __slots__ = ()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = _perf_ns()
        load = self.load
        before = load.delivered
        Subscriber.on_ws_frame(self, transport, frame)
        if load.delivered != before and load.measuring:  # a new, valid delivery
            payload = frame.get_payload_as_bytes()
            if len(payload) == self.size:  # the shape it was just checked by (or learned from)
                seq = _unpack_seq(payload, self.seq_at)[0]
            else:
                seq = int.from_bytes(_unpackb(payload)["data"][:8], "big")
            load.latencies.append(now - load.scheduled[seq])


async def run_fanout_open(spec: dict[str, Any]) -> dict[str, Any]:
    """Publish-to-delivery latency under an open-loop load of ``rate`` publishes/s (see module docstring)."""
    count = spec["subscribers"]
    rate = float(spec["rate"])
    load = FanoutLoad(count, 1, spec["size"])
    stride = max(1, count // LATENCY_SUBSCRIBERS)
    rig = await fanout_rig(spec, load, lambda i: TimedSubscriber(load, i) if i % stride == 0 else Subscriber(load, i))
    if load.errors:
        return rig.failed(load)
    gc.collect()
    gc.freeze()
    publisher = rig.publisher
    load.publisher = publisher
    load.wake_at = 1 << 62  # the pump never sends (load.sending stays False): the pacer does
    backlog = max(8, int(rate * spec.get("max_backlog_s", 1.0)))  # publishes unacknowledged or undelivered

    def send(at: int) -> bool:
        if load.sent - load.acked - load.failed >= backlog or load.sent * count - load.delivered >= backlog * count:
            return False
        load.scheduled.append(at)
        publisher.publish(load.sent)
        load.sent += 1
        return True

    window = Window(server_pids(spec), spec.get("redis_pid"))
    pacer = Pacer(rate, send, lambda: None)
    pacing = asyncio.ensure_future(pacer.run())
    await asyncio.sleep(spec["warmup"])
    load.measuring = pacer.measuring = True  # latency: every delivery from now on, the drain's too
    d0, a0 = load.delivered, load.acked
    window.start()
    await asyncio.sleep(spec["duration"])
    d1, a1 = load.delivered, load.acked
    window.stop()
    pacer.measuring = False
    pacer.running = False
    await pacing
    await drain_and_verify(load, rig)
    load.measuring = False
    w = window.report()
    deliveries_per_s = (d1 - d0) / w["seconds"]
    return {
        "ok": not load.errors and d1 > d0,
        "errors": dict(load.errors) or ({} if d1 > d0 else {"no delivery in the window": 1}),
        "rate": rate,
        "deliveries": d1 - d0,
        "deliveries_per_s": deliveries_per_s,
        "publishes_per_s": (a1 - a0) / w["seconds"],
        "publishes_total": load.acked,
        "latency_us": percentiles(load.latencies),
        "timed_subscribers": len(range(0, count, stride)),
        **open_loop_report(rate * count, deliveries_per_s, pacer),
        "decoded": load.decoded,
        "setup_s": rig.setup_s,
        **w,
    }


# --------------------------------------------------------------------------- connection churn


CHURN_TIMEOUT_S = 10.0  # a cycle (handshake, call, close) longer than this is an error


class ChurnLoad:
    """Shared state of a churn run."""

    def __init__(self) -> None:
        self.errors: Counter[str] = Counter()
        self.sending = True
        self.measuring = False
        self.total = 0  # completed cycles in the run
        self.completed = 0  # completed cycles in the window
        self.latencies = array("q")


class ChurnClient(WSListener):
    """One short-lived connection: ``add(a, b)`` once, check the reply, close."""

    def __init__(self, load: ChurnLoad, n: int) -> None:
        super().__init__()
        self.load = load
        self.a = A_BASE + (n & 0x0FFFFFFF)
        self.b = n % 100 + 1
        self.call_id = f"{n:08x}"
        self.replied = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        transport.send(_BINARY, msgpack.packb(request("add", [self.a, self.b], self.call_id)))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:  # the server's answer to ours: the cycle is over
            transport.disconnect()
            return
        if frame.msg_type is not _BINARY:
            if frame.msg_type not in _CONTROL:
                self.load.errors["non-binary message"] += 1
            return
        try:
            rpc = _unpackb(frame.get_payload_as_bytes())["rpc"]
        except Exception:
            self.load.errors["undecodable reply"] += 1
            transport.disconnect()
            return
        if self.replied or rpc.get("call_id") != self.call_id:
            self.load.errors["unknown or duplicate call_id"] += 1
        elif rpc.get("error") is not None or rpc.get("response") != self.a + self.b:
            self.load.errors["wrong reply"] += 1
        else:
            self.replied = True
            transport.send_close(WSCloseCode.OK)  # the server answers and closes
            return
        transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def churn_worker(load: ChurnLoad, url: str, first: int, step: int) -> None:
    """Cycles (connect, one call, close) one after the other until ``load.sending`` is False."""
    n = first
    while load.sending:
        started = _perf_ns()
        try:
            _, listener = await ws_connect(
                partial(ChurnClient, load, n), url, extra_headers=HEADERS, websocket_handshake_timeout=CHURN_TIMEOUT_S
            )
        except Exception as exc:
            load.errors[f"handshake failed: {type(exc).__name__}"] += 1
            await asyncio.sleep(0.01)
            n += step
            continue
        assert isinstance(listener, ChurnClient)
        try:
            await asyncio.wait_for(asyncio.shield(listener.closed), CHURN_TIMEOUT_S)
        except asyncio.TimeoutError:
            load.errors["no close from the server" if listener.replied else "no reply"] += 1
        if listener.replied and listener.closed.done():
            load.total += 1
            if load.measuring:
                load.completed += 1
                load.latencies.append(_perf_ns() - started)
        elif listener.closed.done() and not load.errors:
            load.errors["disconnected before the reply"] += 1
        n += step


async def run_churn(spec: dict[str, Any]) -> dict[str, Any]:
    """Completed handshakes (connect, one call, close) per second (see module docstring)."""
    url = f"ws://127.0.0.1:{spec['port']}/"
    parallel = int(spec["parallel"])
    check_nofile(parallel)
    load = ChurnLoad()
    gc.collect()
    window = Window(server_pids(spec))
    workers = [asyncio.ensure_future(churn_worker(load, url, i, parallel)) for i in range(parallel)]
    await asyncio.sleep(spec["warmup"])
    load.measuring = True
    window.start()
    await asyncio.sleep(spec["duration"])
    done = load.completed
    window.stop()
    load.measuring = False
    load.sending = False
    _, late = await asyncio.wait(workers, timeout=2 * CHURN_TIMEOUT_S + 5)
    if late:
        load.errors["cycle never ended"] += len(late)
    w = window.report()
    return {
        "ok": not load.errors and done > 0,
        "errors": dict(load.errors) or ({} if done else {"no handshake completed in the window": 1}),
        "parallel": parallel,
        "handshakes": done,
        "handshakes_per_s": done / w["seconds"],
        "handshakes_total": load.total,
        "latency_us": percentiles(load.latencies),
        **w,
    }


# --------------------------------------------------------------------------- memory


class Idle(WSListener):
    """An idle connection: anything but control frames is an error."""

    def __init__(self, errors: Counter[str]) -> None:
        super().__init__()
        self.errors = errors
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type not in _CONTROL:
            self.errors["message on an idle connection"] += 1


class Probe(WSListener):
    """One connection asking ``count()``."""

    def __init__(self) -> None:
        super().__init__()
        self.reply: asyncio.Future[Any] | None = None
        self.transport: WSTransport | None = None
        self.calls = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is _BINARY and self.reply is not None and not self.reply.done():
            rpc = _unpackb(frame.get_payload_as_bytes()).get("rpc") or {}
            if rpc.get("call_id") == f"p{self.calls}" and rpc.get("error") is None:
                self.reply.set_result(rpc.get("response"))
            else:
                self.reply.set_exception(RuntimeError(f"bad count() reply: {rpc!r}"))

    async def count(self) -> int:
        """The server's number of connected clients."""
        self.calls += 1
        self.reply = asyncio.get_running_loop().create_future()
        self.transport.send(_BINARY, msgpack.packb(request("count", [], f"p{self.calls}")))  # type: ignore[union-attr]
        result = await asyncio.wait_for(self.reply, 10)
        if type(result) is not int:
            raise RuntimeError(f"count() returned {result!r}")
        return result


async def run_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """Server RSS per idle connection (see module docstring)."""
    url = f"ws://127.0.0.1:{spec['port']}/"
    pid = spec["server_pid"]
    idle = spec["idle"]
    errors: Counter[str] = Counter()
    _, probe = await ws_connect(Probe, url, extra_headers=HEADERS)
    assert isinstance(probe, Probe)
    if await probe.count() != 1:
        errors["count() before connecting"] += 1
    await asyncio.sleep(spec["settle"])
    before = proc_rss_kib(pid)
    started = time.perf_counter()
    conns = await open_many(url, idle, lambda i: Idle(errors), read_buffer_init_size=1024)
    connect_s = time.perf_counter() - started
    deadline = time.monotonic() + 60
    seen = await probe.count()
    while seen != idle + 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        seen = await probe.count()
    if seen != idle + 1:
        errors["server does not count every connection"] += 1
    await asyncio.sleep(spec["settle"])
    after = proc_rss_kib(pid)
    if before is None or after is None:
        errors["server gone"] += 1
        before = after = 0
    for conn in conns:
        conn.transport.disconnect()  # type: ignore[attr-defined]
    probe.transport.disconnect()  # type: ignore[union-attr]
    return {
        "ok": not errors,
        "errors": dict(errors),
        "idle": idle,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_per_connection": (after - before) * 1024 / idle,
        "connect_s": connect_s,
        "connections_per_s": idle / connect_s if connect_s else 0.0,
    }


# --------------------------------------------------------------------------- entry point

SCENARIOS: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]] = {
    "rpc": run_rpc,
    "fanout": run_fanout,
    "patterns": run_fanout,  # fan-out with spec["patterns"] non-matching patterns held
    "memory": run_memory,
    "churn": run_churn,
    "rpc-open": run_rpc_open,
    "fanout-open": run_fanout_open,
}


def main(argv: list[str] | None = None) -> int:
    """Run the scenario described by the JSON spec in ``argv[0]``; print one JSON line."""
    args = sys.argv[1:] if argv is None else argv
    spec: dict[str, Any] = json.loads(args[0])
    signal.alarm(int(spec.get("timeout", 300)))  # stop by ourselves whatever happens
    nofile = raise_nofile()
    result: dict[str, Any]
    try:
        result = uvloop.run(SCENARIOS[spec["scenario"]](spec))
    except Exception as exc:  # reported, not raised: the runner records a failed run
        result = {"ok": False, "errors": {f"{type(exc).__name__}: {exc}": 1}}
    result["loadgen_pid"] = os.getpid()
    result["loadgen_nofile"] = nofile
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip closing thousands of transports one by one


if __name__ == "__main__":
    sys.exit(main())
