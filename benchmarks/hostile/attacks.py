"""The attacker: one attack against one server, in its own process.

Run by the runner: ``python -m benchmarks.hostile.attacks '<json spec>'`` (spec: ``attack``,
``port``, ``duration`` in seconds, ``config``: the limits in force in the server, from its
READY line, ``timeout``). It runs the attack for at least ``duration`` seconds (longer where
it waits for the server to cut it: up to the timeout that should do it, plus the sweep and
the 2 s abort grace), leaves, and prints one JSON line:

``t_start``, ``t_end``
    when the attack began and ended (``time.monotonic()``: CLOCK_MONOTONIC, as in the runner)
``cut``
    whether the server cut the attacker, as text for the report (``None``: it left by itself)
``cut_ok``
    False when the attack expected a cut (or expected none) and saw otherwise
``checks``
    what the attack expects of the server beyond that, name -> True/False
``detail``
    counts and figures (rounds, replies, close codes, times)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import msgpack
import uvloop

from webshocket import Packet, RPCErrorCode, WebSocketClient

from . import catalog
from .common import emit, set_nofile
from .rawclient import BINARY, CONTINUATION, CUSTOM_SOURCE, HOST, RawWebSocket, frame_bytes, rpc_frame

SWEEP_S = 0.25  # the server checks paused and backlogged connections this often
ABORT_GRACE_S = 2.0  # a closed connection that still does not read is aborted after this
POLL_S = 0.05


@dataclass
class Ctx:
    """What an attack knows: the server, how long to run, the limits in force."""

    port: int
    duration: float
    config: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    detail: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def running(self) -> bool:
        """True until ``duration`` seconds have passed since the attack began."""
        return self.elapsed() < self.duration

    def check(self, name: str, ok: bool) -> None:
        """Record an expectation (all of one name must hold)."""
        self.checks[name] = self.checks.get(name, True) and bool(ok)


Result = tuple[str | None, bool | None]  # (cut text, cut as expected)


def close_text(code: int | None) -> str:
    """A close code as the report says it."""
    if code is None:
        return "no close"
    return "a hang-up, no close frame" if code == 0 else str(code)


async def metrics(observer: WebSocketClient) -> dict[str, int]:
    """The server's counters and gauges (``metrics()``, asked by a well-behaved observer connection)."""
    response = await observer.send_rpc("metrics", wait_timeout=10)
    return dict(response.data) if response.error is None else {}


async def slow_consumer_cuts(observer: WebSocketClient) -> int:
    """The server's count of slow-consumer disconnects."""
    return int((await metrics(observer)).get("slow_consumer_disconnects", 0))


async def cut_after_wait(ctx: Ctx, ws: RawWebSocket, wait: float, before: int = 0) -> tuple[bool, str]:
    """Wait (at least to the end of ``duration``, at most ``wait`` s) for the server to cut ``ws``, a slow consumer.

    The cut is timed from the server's side: an observer connection asks ``metrics()`` every
    0.1 s until ``slow_consumer_disconnects`` passes ``before``. Then the attacker reads on to
    learn what it would have seen: the close code (4008), or only a hang-up (EOF or reset:
    closed connections that still do not read are aborted). A connection the server still
    serves after that is not cut.
    """
    deadline = max(ctx.duration, ctx.elapsed() + wait)
    cut_at: float | None = None
    async with WebSocketClient(ctx.uri) as observer:
        while ctx.elapsed() < deadline and (cut_at is None or ctx.running()):
            if cut_at is None and await slow_consumer_cuts(observer) > before:
                cut_at = ctx.elapsed()
            await asyncio.sleep(0.1)
    code = await ws.close_code(patience=3.0)
    ws.abort()
    if cut_at is None and code is None:
        return False, f"no: still served after {ctx.elapsed():.1f} s"
    when = f" after {cut_at:.1f} s" if cut_at is not None else ""
    return True, f"yes{when} (the client saw {close_text(code)})"


# --------------------------------------------------------------------------- the attacks


async def same_call_id(ctx: Ctx) -> Result:
    """3 clients x 600 ``waiting_stream`` calls with one call_id, then gone without a close frame; repeat."""
    batch = b"".join(rpc_frame("waiting_stream", call_id="same") for _ in range(600))
    rounds = 0
    outcomes: Counter[str] = Counter()
    while ctx.running() or rounds == 0:
        clients = [await RawWebSocket.connect(ctx.port) for _ in range(3)]
        for ws in clients:
            ws.send_raw(batch)
        for ws in clients:
            chunks = errors = 0
            while chunks + errors < 600:
                rpc = await asyncio.wait_for(ws.read_rpc(), 10)
                if rpc.get("error") is None:
                    chunks += 1
                elif rpc["error"] == RPCErrorCode.INVALID_PARAMS and "already in flight" in str(rpc["response"]):
                    errors += 1
                else:
                    outcomes[f"unexpected reply: {rpc.get('error')}"] += 1
                    errors += 1
            outcomes[f"{chunks} ran, {errors} refused"] += 1
            ctx.check("each connection ran one stream and refused 599", (chunks, errors) == (1, 599))
        for ws in clients:
            ws.abort()
        rounds += 1
    ctx.detail.update(rounds=rounds, connections=3 * rounds, outcomes=dict(outcomes))
    return None, None


async def paused_leavers(ctx: Ctx) -> Result:
    """Rounds of 4 clients x 300 ``wait`` calls (reading pauses at max_inflight_rpcs), then FIN."""
    rounds = 0
    most = 0  # RPCs in flight (running or queued) seen at the end of a round, before it leaves
    async with WebSocketClient(ctx.uri) as observer:
        while ctx.running() or rounds == 0:
            clients = [await RawWebSocket.connect(ctx.port) for _ in range(4)]
            for i, ws in enumerate(clients):
                ws.send_raw(b"".join(rpc_frame("wait", call_id=f"r{rounds}-{i}-{n}") for n in range(300)))
            await asyncio.sleep(0.2)  # the server reads up to max_inflight_rpcs, then pauses
            seen = await metrics(observer)
            most = max(most, seen.get("rpc_running", 0) + seen.get("rpc_queued", 0))
            for ws in clients:
                ws.hang_up()  # FIN, no close frame: the server is not reading, only its sweep can see it
            rounds += 1
    ctx.detail.update(rounds=rounds, connections=4 * rounds, calls=1200 * rounds, most_rpcs_in_flight=most)
    return None, None


async def task_hog(ctx: Ctx) -> Result:
    """16 connections x 200 ``wait`` calls, staying for the whole attack."""
    clients = [await RawWebSocket.connect(ctx.port) for _ in range(16)]
    for i, ws in enumerate(clients):
        ws.send_raw(b"".join(rpc_frame("wait", call_id=f"h{i}-{n}") for n in range(200)))
    await asyncio.sleep(min(0.5, ctx.duration / 2))  # every request read
    async with WebSocketClient(ctx.uri) as observer:
        seen = await metrics(observer)
    running, queued = seen.get("rpc_running", 0), seen.get("rpc_queued", 0)
    budget = 16 * int(ctx.config["rpc_task_reserve"]) + int(ctx.config["rpc_task_limit"])
    ctx.check("RPC tasks within 16 x rpc_task_reserve + rpc_task_limit", running <= budget)
    while ctx.running():
        await asyncio.sleep(POLL_S)
    cut = sum(ws.gone() for ws in clients)
    for ws in clients:
        ws.abort()
    ctx.detail.update(connections=16, calls=3200, rpc_running=running, rpc_queued=queued, cut_by_server=cut)
    return (f"yes: {cut} of 16" if cut else "no (stays)"), None


def cut_wait(ctx: Ctx) -> float:
    """How long an attack waits for a slow-consumer cut: the timeout, the sweep, the abort grace, a margin."""
    return float(ctx.config["slow_consumer_timeout"]) + SWEEP_S + ABORT_GRACE_S + 1.0


async def no_read_replies(ctx: Ctx) -> Result:
    """A client that never reads asks for 3,000 x 64 KiB replies."""
    ws = await RawWebSocket.connect(ctx.port, rcvbuf=4096)
    ws.pause_reading()
    ws.send_raw(b"".join(rpc_frame("blob", catalog.BLOB, call_id=f"b{i}") for i in range(3000)))
    cut, text = await cut_after_wait(ctx, ws, cut_wait(ctx))
    ctx.detail.update(requests=3000, reply_size=catalog.BLOB)
    return text, cut


async def no_read_stream(ctx: Ctx) -> Result:
    """A client that never reads calls ``chunks(20000, 1024)``."""
    ws = await RawWebSocket.connect(ctx.port, rcvbuf=4096)
    ws.pause_reading()
    ws.send_raw(rpc_frame("chunks", 20000, catalog.CHUNK, call_id="s"))
    cut, text = await cut_after_wait(ctx, ws, cut_wait(ctx))
    ctx.detail.update(chunks=20000, chunk_size=catalog.CHUNK)
    return text, cut


async def inbox_flood(ctx: Ctx) -> Result:
    """300 non-RPC packets of 16 KiB to an ``on_receive`` that never returns; the client stays."""
    ws = await RawWebSocket.connect(ctx.port)
    packet = msgpack.packb({"source": CUSTOM_SOURCE, "data": b"x" * catalog.INBOX_SIZE}, use_bin_type=True)
    ws.send_raw(b"".join(frame_bytes(BINARY, packet) for _ in range(catalog.INBOX_PACKETS)))
    while ctx.running():
        await asyncio.sleep(POLL_S)
    gone = ws.gone()
    ws.abort()
    ctx.detail.update(packets=catalog.INBOX_PACKETS, size=catalog.INBOX_SIZE)
    return ("yes: dropped" if gone else "no (stays)"), None


async def fragments(ctx: Ctx) -> Result:
    """One message of 200,000 empty continuation frames per connection; repeat."""
    body = frame_bytes(BINARY, b"", fin=False) + frame_bytes(CONTINUATION, b"", fin=False) * 200_000
    codes: Counter[str] = Counter()
    rounds = 0
    while ctx.running() or rounds == 0:
        ws = await RawWebSocket.connect(ctx.port)
        ws.send_raw(body)
        code = await ws.close_code(patience=5.0)
        codes[close_text(code)] += 1
        ws.abort()
        rounds += 1
    ctx.detail.update(rounds=rounds, close_codes=dict(codes))
    closed = codes.get("1009", 0)
    return f"yes: 1009, {closed} of {rounds}", closed == rounds


async def busy_stream(ctx: Ctx) -> Result:
    """``numbers(100000)`` (a stream that never awaits), read to its end; repeat."""
    streams = complete = 0
    async with WebSocketClient(ctx.uri) as client:
        while ctx.running() or streams == 0:
            count = 0
            async for item in client.stream_rpc("numbers", 100_000):
                if item.error is not None:
                    break
                count += 1
            streams += 1
            complete += count == 100_000
        cut = not client.is_connected
    ctx.check("every stream delivered 100,000 items", complete == streams)
    ctx.detail.update(streams=streams, complete=complete)
    return ("yes" if cut else "no (stays)"), not cut


async def deep_reply(ctx: Ctx) -> Result:
    """``deep(100000)`` one call after the other; each must be an INTERNAL_SERVER_ERROR reply."""
    calls = refused = 0
    async with WebSocketClient(ctx.uri) as client:
        while ctx.running() or calls == 0:
            response = await client.send_rpc("deep", catalog.DEEP, wait_timeout=60)
            calls += 1
            refused += response.error == RPCErrorCode.INTERNAL_SERVER_ERROR and "unserializable" in str(
                response.response
            )
        cut = not client.is_connected
    ctx.check("every call got an 'unserializable' error reply", refused == calls)
    ctx.detail.update(calls=calls, error_replies=refused)
    return ("yes" if cut else "no (stays)"), not cut


async def slow_subscriber(ctx: Ctx) -> Result:
    """A 48 MiB burst published to a reading subscriber and to one that never reads."""
    got: list[int] = []
    all_in = asyncio.Event()

    async def on_receive(packet: Packet[Any]) -> None:
        got.append(packet.data[0])
        if len(got) == catalog.BURST:
            all_in.set()

    async with WebSocketClient(ctx.uri, on_receive=on_receive) as reader, WebSocketClient(ctx.uri) as publisher:
        assert (await reader.send_rpc("sub", "burst")).data is True
        stalled = await RawWebSocket.connect(ctx.port, rcvbuf=4096)
        stalled.send_raw(rpc_frame("sub", "burst", call_id="sub"))
        reply = await asyncio.wait_for(stalled.read_rpc(), 10)
        assert reply.get("response") is True, reply
        stalled.pause_reading()
        began = time.monotonic()
        published = await publisher.send_rpc("pub", "burst", catalog.BURST, catalog.BURST_SIZE, wait_timeout=120)
        publish_s = time.monotonic() - began
        patience = time.monotonic() + 30
        while not all_in.is_set() and reader.is_connected and time.monotonic() < patience:
            await asyncio.sleep(POLL_S)
        receive_s = time.monotonic() - began
        cut, text = await cut_after_wait(ctx, stalled, cut_wait(ctx))
        reader_cut = not reader.is_connected
        reader_code = reader.close_code
    in_order = got == list(range(len(got)))
    ctx.check("the reading subscriber got all 3,000", len(got) == catalog.BURST)
    ctx.check("the reading subscriber was not cut", not reader_cut)
    ctx.detail.update(
        published=published.data,
        reader_got=len(got),
        reader_in_order=in_order,
        reader_close_code=None if reader_code is None else int(cast(int, reader_code)),
        publish_s=round(publish_s, 3),
        reader_done_s=round(receive_s, 3),
    )
    reader_text = f"{len(got):,}/{catalog.BURST:,}" + (f", then was cut ({reader_code})" if reader_cut else "")
    return f"stalled one {text}; the reader got {reader_text}", cut


async def silent_tcp(ctx: Ctx) -> Result:
    """200 TCP connections that never send a byte: each must be dropped after handshake_timeout."""
    timeout = ctx.config.get("handshake_timeout")
    opened = time.monotonic()
    pairs = [await asyncio.open_connection(HOST, ctx.port) for _ in range(200)]
    dropped: list[float] = []

    async def watch(reader: asyncio.StreamReader) -> None:
        try:
            await reader.read()  # nothing ever comes: returns at EOF
        except ConnectionError:
            pass
        dropped.append(time.monotonic() - opened)

    patience = (float(timeout) if timeout is not None else ctx.duration) + 2.0
    watchers = [asyncio.ensure_future(watch(reader)) for reader, _writer in pairs]
    await asyncio.wait(watchers, timeout=max(patience, ctx.duration - ctx.elapsed()))
    while ctx.running():
        await asyncio.sleep(POLL_S)
    for task in watchers:
        task.cancel()
    for _reader, writer in pairs:
        writer.transport.abort()
    ctx.detail.update(connections=200, dropped=len(dropped), handshake_timeout=timeout)
    if dropped:
        ctx.detail.update(first_drop_s=round(min(dropped), 2), last_drop_s=round(max(dropped), 2))
        early = timeout is not None and min(dropped) < float(timeout) - 0.1
        ctx.check("none dropped before handshake_timeout", not early)
        text = f"yes: {len(dropped)}/200, after {min(dropped):.2f}-{max(dropped):.2f} s"
    else:
        text = "no: 0/200 dropped"
    return text, len(dropped) == 200


ATTACKS: dict[str, Callable[[Ctx], Awaitable[Result]]] = {
    "same-call-id": same_call_id,
    "paused-leavers": paused_leavers,
    "task-hog": task_hog,
    "no-read-replies": no_read_replies,
    "no-read-stream": no_read_stream,
    "inbox-flood": inbox_flood,
    "fragments": fragments,
    "busy-stream": busy_stream,
    "deep-reply": deep_reply,
    "slow-subscriber": slow_subscriber,
    "silent-tcp": silent_tcp,
}
assert set(ATTACKS) == set(catalog.ATTACKS), "every attack of the catalog is implemented"


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the attack of ``spec``; its record."""
    ctx = Ctx(int(spec["port"]), float(spec["duration"]), dict(spec["config"]))
    try:
        cut, cut_ok = await ATTACKS[spec["attack"]](ctx)
        ok, errors = True, {}
    except Exception as exc:  # Closed (a CLOSE frame where a reply was due) too
        cut, cut_ok = f"attack failed: {type(exc).__name__}", None
        ok, errors = False, {f"{type(exc).__name__}: {exc}": 1}
    return {
        "ok": ok,
        "errors": errors,
        "t_start": ctx.started,
        "t_end": time.monotonic(),
        "cut": cut,
        "cut_ok": cut_ok,
        "checks": ctx.checks,
        "detail": ctx.detail,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the attack described by the JSON spec in ``argv[0]``; print one JSON line."""
    spec: dict[str, Any] = json.loads((sys.argv[1:] if argv is None else argv)[0])
    signal.alarm(int(spec.get("timeout", 300)))  # stop by ourselves whatever happens
    set_nofile()
    try:
        result = uvloop.run(run(spec))
    except Exception as exc:
        result = {"ok": False, "errors": {f"{type(exc).__name__}: {exc}": 1}}
    result["pid"] = os.getpid()
    emit(json.dumps(result))
    os._exit(0)  # no graceful close of what the attack left open


if __name__ == "__main__":
    sys.exit(main())
