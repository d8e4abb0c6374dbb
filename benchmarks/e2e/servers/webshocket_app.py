"""Benchmark server on the webshocket API: ours (compiled or pure) and PyPI ``webshocket==0.5.2``.

Run as a script by whichever interpreter holds the implementation under test (ours: this
repository's python, with ``WEBSHOCKET_NO_EXTENSIONS=1`` for the pure-Python twins; 0.5.2:
the python of the suite's virtualenv). It must import nothing from this repository but
``webshocket`` itself, so it runs unchanged in the 0.5.2 virtualenv.

Usage: ``python webshocket_app.py PORT``. Serves on 127.0.0.1:PORT on uvloop, prints
``READY PORT {json info}`` once accepting, and exits when its stdin closes or on SIGTERM.

RPC methods (the wire names; the Python names differ so they do not shadow the handler's
own ``publish``/``subscribe``):

* ``add(a, b)`` -> ``a + b``
* ``subscribe(channel)`` -> ``True`` once subscribed
* ``publish(channel, payload)`` -> ``True`` after ``self.publish(channel, payload)``
* ``count()`` -> number of connected clients
"""

from __future__ import annotations

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


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def until_stopped(loop: asyncio.AbstractEventLoop) -> None:
    """Return on SIGTERM or when stdin closes (the runner died or is done with us)."""
    stop = loop.create_future()

    def done() -> None:
        if not stop.done():
            stop.set_result(None)

    def watch_stdin() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(done)

    loop.add_signal_handler(signal.SIGTERM, done)
    threading.Thread(target=watch_stdin, daemon=True).start()  # a daemon: never joined at exit
    await stop


async def main(port: int) -> None:
    """Serve until stdin closes."""
    loop = asyncio.get_running_loop()
    server = WebSocketServer("127.0.0.1", port, clientHandler=BenchHandler)
    await server.start()
    info = {
        "impl": "webshocket",
        "version": webshocket.__version__,
        "speedups": dict(getattr(webshocket, "SPEEDUPS", {})),
        "uvloop": isinstance(loop, uvloop.Loop),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "python": sys.version.split()[0],
        "pid": os.getpid(),
    }
    sys.stdout.write(f"READY {port} {json.dumps(info)}\n")
    sys.stdout.flush()
    await until_stopped(loop)


if __name__ == "__main__":
    raise_nofile()
    uvloop.run(main(int(sys.argv[1])))
    sys.stdout.flush()
    os._exit(0)  # no graceful close of thousands of connections: the benchmark is over
