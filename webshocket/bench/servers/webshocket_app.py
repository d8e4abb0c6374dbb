"""Benchmark server on the webshocket API: ours (compiled or pure) and PyPI ``webshocket==0.5.2``.

Run as a script by whichever interpreter holds the implementation under test (ours: the
runner's python, with ``WEBSHOCKET_NO_EXTENSIONS=1`` for the pure-Python twins; 0.5.2: the
python of the suite's virtualenv). It must import nothing of this package but ``webshocket``
itself and ``common.py`` beside it (standard library only), so it runs unchanged in the 0.5.2
virtualenv.

Usage: ``python webshocket_app.py [--workers N] [--backplane redis://HOST:PORT/DB] [--recovery]
[--max-subscriptions N] PORT``.
Serves on 127.0.0.1:PORT on uvloop, prints ``READY PORT {json info}`` once accepting, and
exits when its stdin closes or on SIGTERM. The options are the scale-out kinds of the suite
(ours only): ``--backplane`` serves :class:`ScaleOutHandler` with that backplane, ``--workers``
above 1 forks that many worker processes sharing the port (:func:`webshocket.workers.serve_workers`,
``SO_REUSEPORT``); the parent prints ``READY`` once every worker accepts, with the workers' pids
in ``info["workers"]``, and stops (SIGTERM: the workers shut down and are reaped) when its stdin closes.
``--max-subscriptions N`` sets ``max_subscribed_channels`` (0: no limit; ours only): the patterns
scenario subscribes one connection to up to 100,000 patterns.

RPC methods (the wire names; the Python names differ so they do not shadow the handler's
own ``publish``/``subscribe``):

* ``add(a, b)`` -> ``a + b``
* ``subscribe(channel)`` -> ``True`` once subscribed
* ``publish(channel, payload)`` -> ``True`` after ``self.publish(channel, payload)``
* ``count()`` -> number of connected clients (of this worker)
* ``worker()`` -> pid of the process serving the connection (:class:`ScaleOutHandler` only)

With a backplane, ``subscribe`` replies once Redis carries the subscription
(``sync_subscriptions()``), so a publish made on another worker after the reply reaches it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import threading
from typing import Any

import uvloop

import webshocket
from webshocket import ClientConnection, WebSocketHandler, WebSocketServer, rpc_method

if __package__:  # imported as webshocket.bench.servers.<name>
    from .common import raise_nofile, until_stopped
else:  # run as a script, as the runner does (also by the 0.5.2 venv's python): common.py is beside it
    from common import raise_nofile, until_stopped  # type: ignore[import-not-found,no-redef]


class BenchHandler(WebSocketHandler):  # type: ignore[type-arg]
    """The application every webshocket flavour serves in the benchmark."""

    @rpc_method(alias_name="add")
    async def rpc_add(self, connection: ClientConnection, a: int, b: int) -> int:  # type: ignore[type-arg]
        return a + b

    @rpc_method(alias_name="subscribe")
    async def rpc_subscribe(self, connection: ClientConnection, channel: str) -> bool:  # type: ignore[type-arg]
        return connection.subscribe(channel) is not False

    @rpc_method(alias_name="publish")
    async def rpc_publish(self, connection: ClientConnection, channel: str, payload: Any) -> bool:  # type: ignore[type-arg]
        self.publish(channel, payload)
        return True

    @rpc_method(alias_name="count")
    async def rpc_count(self, connection: ClientConnection) -> int:  # type: ignore[type-arg]
        return len(self.clients)


class ScaleOutHandler(BenchHandler):
    """The same application behind a backplane: subscriptions confirmed by Redis, ``worker()``.

    A subclass, so that ``BenchHandler`` (what the single-process kinds serve) is unchanged.
    """

    @rpc_method(alias_name="subscribe")
    async def rpc_subscribe(self, connection: ClientConnection, channel: str) -> bool:  # type: ignore[type-arg]
        if connection.subscribe(channel) is False:
            return False
        return bool(await self.sync_subscriptions())

    @rpc_method(alias_name="worker")
    async def rpc_worker(self, connection: ClientConnection) -> int:  # type: ignore[type-arg]
        return os.getpid()


def base_info() -> dict[str, Any]:
    """What every flavour reports in its READY line (``uvloop`` is set by the caller)."""
    return {
        "impl": "webshocket",
        "version": webshocket.__version__,
        "file": webshocket.__file__,
        "speedups": dict(getattr(webshocket, "SPEEDUPS", {})),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "python": sys.version.split()[0],
        "pid": os.getpid(),
    }


async def main(
    port: int, backplane: str | None = None, recovery: bool = False, max_subscriptions: int | None = None
) -> None:
    """Serve in this process until stdin closes (through ``backplane`` when given; with channel
    history and sessions when ``recovery``; ``max_subscribed_channels=max_subscriptions`` when given)."""
    loop = asyncio.get_running_loop()
    extra: dict[str, Any] = {"recovery": True} if recovery else {}  # an option 0.5.2 does not have
    if max_subscriptions is not None:
        extra["max_subscribed_channels"] = max_subscriptions
    server: WebSocketServer[Any]
    if backplane:
        server = WebSocketServer("127.0.0.1", port, clientHandler=ScaleOutHandler, backplane=backplane, **extra)
    else:
        server = WebSocketServer("127.0.0.1", port, clientHandler=BenchHandler, **extra)
    await server.start()
    info = {**base_info(), "uvloop": isinstance(loop, uvloop.Loop), "recovery": recovery}
    if max_subscriptions is not None:
        info["max_subscriptions"] = max_subscriptions
    if backplane:
        info["backplane"] = backplane
        info["workers"] = [{"pid": os.getpid(), "uvloop": info["uvloop"]}]
    sys.stdout.write(f"READY {port} {json.dumps(info)}\n")
    sys.stdout.flush()
    await until_stopped(loop)


def serve_workers_until_stopped(port: int, workers: int, backplane: str | None) -> None:
    """``workers`` processes on ``port`` (``serve_workers``); READY once all accept; returns when stdin closes.

    Each worker reports its pid and loop through a pipe when it makes its server; the
    parent prints them in its READY line. When stdin closes the parent signals itself
    SIGTERM, as the runner does: ``serve_workers`` stops the workers (the load generator
    has disconnected by then, so that is quick) and reaps them before returning.
    """
    from webshocket.workers import serve_workers

    reports, report = os.pipe()

    def make_server() -> WebSocketServer:  # type: ignore[type-arg]
        loop = asyncio.get_running_loop()  # called in the worker, inside its event loop
        line = json.dumps({"pid": os.getpid(), "uvloop": isinstance(loop, uvloop.Loop)}) + "\n"
        os.write(report, line.encode())
        return WebSocketServer("127.0.0.1", port, clientHandler=ScaleOutHandler, backplane=backplane)

    def on_ready(bound: int) -> None:
        data = b""
        while data.count(b"\n") < workers:  # every worker wrote before it said it was serving
            data += os.read(reports, 65536)
        found = [json.loads(line) for line in data.decode().splitlines()[:workers]]
        info = {**base_info(), "uvloop": all(w["uvloop"] for w in found), "workers": found}
        if backplane:
            info["backplane"] = backplane
        sys.stdout.write(f"READY {bound} {json.dumps(info)}\n")
        sys.stdout.flush()

        def watch_stdin() -> None:
            sys.stdin.read()
            os.kill(os.getpid(), signal.SIGTERM)  # serve_workers' handler: stop the workers, reap them

        threading.Thread(target=watch_stdin, daemon=True).start()

    serve_workers(make_server, workers, host="127.0.0.1", port=port, on_ready=on_ready)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--backplane", default=None)
    parser.add_argument("--recovery", action="store_true")
    parser.add_argument("--max-subscriptions", type=int, default=None)
    options = parser.parse_args()
    raise_nofile()
    if options.workers > 1:
        serve_workers_until_stopped(options.port, options.workers, options.backplane)
    else:
        uvloop.run(main(options.port, options.backplane, options.recovery, options.max_subscriptions))
    sys.stdout.flush()
    os._exit(0)  # no graceful close of thousands of connections: the benchmark is over
