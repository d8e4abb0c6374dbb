"""The well-behaved clients: ``webshocket.WebSocketClient`` calling ``ping`` on a fixed schedule.

Run by the runner in its own process: ``python -m benchmarks.hostile.good '<json spec>'``
(spec: ``port``, ``clients``, ``interval`` in seconds, ``drain`` in seconds, ``timeout``).
Each client sends one ``ping`` every ``interval`` seconds whether or not the previous ones
were answered (open loop: a stalled server makes calls pile up, it does not slow the
clients down), and records for every call the time it was sent (``time.monotonic()``:
CLOCK_MONOTONIC, the same clock in every process of the machine) and its latency, from
just before the request is written to the reply. A reply other than ``"pong"`` or a call
that fails is an error, not an answer.

The process prints ``READY`` once every client is connected and answered, then calls until
its stdin closes; it then stops sending, waits up to ``drain`` seconds for the calls still
out (those left are unanswered), asks the server for ``metrics()`` and prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from typing import Any

import uvloop

from webshocket import WebSocketClient

from .common import emit, set_nofile


class Caller:
    """One well-behaved client and the record of its calls: ``[sent_at, latency or None, ok]``."""

    def __init__(self, client: WebSocketClient) -> None:
        self.client = client
        self.calls: list[list[Any]] = []
        self.out: set[asyncio.Task[None]] = set()
        self.errors: Counter[str] = Counter()
        self.late = 0.0  # worst lateness of this process's own schedule (its CPU, not the server)

    async def one(self) -> None:
        """One ``ping``; its record is filled in when the reply comes."""
        record: list[Any] = [0.0, None, False]
        self.calls.append(record)
        sent = time.monotonic()
        record[0] = sent
        try:
            response = await self.client.send_rpc("ping", wait_timeout=None)
        except Exception as exc:
            self.errors[f"{type(exc).__name__}: {exc}"] += 1
            return
        record[1] = time.monotonic() - sent
        if response.error is None and response.data == "pong":
            record[2] = True
        else:
            self.errors[f"wrong reply: {response.error} {str(response.data)[:80]}"] += 1

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        """Start one call every ``interval`` seconds until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not stop.is_set():
            task = asyncio.ensure_future(self.one())
            self.out.add(task)
            task.add_done_callback(self.out.discard)
            due += interval
            delay = due - loop.time()
            if delay < 0:  # this process fell behind its own schedule: start again from now, no burst
                self.late = max(self.late, -delay)
                due = loop.time()
                delay = 0
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except (asyncio.TimeoutError, TimeoutError):
                pass


def stdin_closed(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set ``stop`` (in ``loop``) once stdin closes."""

    def watch() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch, daemon=True).start()


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    """Connect, say READY, call until stdin closes, drain; the record."""
    uri = f"ws://127.0.0.1:{spec['port']}"
    callers = [Caller(WebSocketClient(uri)) for _ in range(int(spec.get("clients", 3)))]
    for caller in callers:
        await caller.client.connect()
        assert (await caller.client.send_rpc("ping", wait_timeout=10)).data == "pong"
    stop = asyncio.Event()
    stdin_closed(asyncio.get_running_loop(), stop)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    interval = float(spec.get("interval", 0.005))
    await asyncio.gather(*(caller.run(interval, stop) for caller in callers))
    out = [task for caller in callers for task in caller.out]
    if out:
        _done, pending = await asyncio.wait(out, timeout=float(spec.get("drain", 5.0)))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
    metrics: dict[str, Any] = {}
    errors: Counter[str] = Counter()
    try:
        response = await callers[0].client.send_rpc("metrics", wait_timeout=5)
        metrics = dict(response.data) if response.error is None else {}
    except Exception as exc:
        errors[f"metrics(): {type(exc).__name__}: {exc}"] += 1
    for caller in callers:
        errors.update(caller.errors)
        try:
            await asyncio.wait_for(caller.client.close(), 5)
        except Exception as exc:
            errors[f"close: {type(exc).__name__}"] += 1
    return {
        "ok": True,
        "calls": [
            [round(sent, 6), None if latency is None else round(latency, 7), ok]
            for caller in callers
            for sent, latency, ok in caller.calls
        ],
        "errors": dict(errors),
        "metrics": metrics,
        "late_s": max(caller.late for caller in callers),
    }


def entry(argv: list[str] | None = None) -> int:
    """Run with the JSON spec in ``argv[0]``; print one JSON line."""
    spec: dict[str, Any] = json.loads((sys.argv[1:] if argv is None else argv)[0])
    signal.alarm(int(spec.get("timeout", 600)))  # stop by ourselves whatever happens
    set_nofile()
    try:
        result = uvloop.run(main(spec))
    except Exception as exc:  # reported, not raised: the runner records a failed run
        result = {"ok": False, "errors": {f"{type(exc).__name__}: {exc}": 1}}
    emit(json.dumps(result))
    os._exit(0)


if __name__ == "__main__":
    sys.exit(entry())
