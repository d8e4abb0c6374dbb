"""The server under attack: webshocket on uvloop, in its own process, with the server's defaults.

Run by the runner as ``python -m benchmarks.hostile.server [--handler H] [--options JSON] PORT``
(``WEBSHOCKET_NO_EXTENSIONS=1`` in the environment for the pure-Python twins). It serves
127.0.0.1:PORT, prints ``READY PORT {json info}`` once accepting (the info carries the
server's whole configuration, so the runner computes RSS bounds from the limits actually
in force), and exits when its stdin closes or on SIGTERM.

``--options`` is a JSON object of ``WebSocketServer`` options; the runner passes one only
where an attack needs a limit lowered to be practical within seconds (and the report says
so). ``--handler``: ``app`` (:class:`HostileApp`, the default) or ``blocking-receive``
(:class:`BlockingReceive`: the same methods, and an ``on_receive`` that never returns).

RPC methods of :class:`HostileApp`:

* ``ping()`` -> ``"pong"``, after ``await asyncio.sleep(0)`` (a real task, not run inline)
* ``wait()`` awaits forever; ``waiting_stream()`` yields ``0`` then awaits forever
* ``blob(n)`` -> ``n`` bytes; ``chunks(count, size)`` streams ``count`` chunks of ``size`` bytes
* ``numbers(count)`` streams ``0 .. count - 1`` and never awaits
* ``deep(depth)`` -> a list nested ``depth`` deep (cannot be encoded past msgpack's limit)
* ``sub(channel)`` -> ``True`` once subscribed
* ``pub(channel, n, size)`` publishes ``[i, size bytes]`` for ``i < n``, giving the loop a turn
  every 64 publishes, and returns ``n``
* ``metrics()`` -> ``server.metrics()`` (counters and gauges)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import sys
from collections.abc import AsyncIterator
from typing import Any

import uvloop

import webshocket
from benchmarks.e2e.servers.common import until_stopped
from benchmarks.hostile.common import set_nofile
from webshocket import ClientConnection, Packet, WebSocketHandler, WebSocketServer, rpc_method

Conn = ClientConnection[Any]
PUB_YIELD_EVERY = 64

#: the server of this process (set by :func:`main`), for ``metrics()``
SERVER: WebSocketServer[Any] | None = None


class HostileApp(WebSocketHandler[Any]):
    """The methods the well-behaved clients and the attackers call."""

    def __init__(self) -> None:
        super().__init__()
        self.forever = asyncio.Event()  # never set

    @rpc_method()
    async def ping(self, connection: Conn) -> str:
        await asyncio.sleep(0)  # a real task, not run inline
        return "pong"

    @rpc_method()
    async def wait(self, connection: Conn) -> None:
        await self.forever.wait()

    @rpc_method()
    async def waiting_stream(self, connection: Conn) -> AsyncIterator[int]:
        yield 0
        await self.forever.wait()

    @rpc_method()
    async def blob(self, connection: Conn, n: int) -> bytes:
        return b"r" * n

    @rpc_method()
    async def chunks(self, connection: Conn, count: int, size: int) -> AsyncIterator[bytes]:
        chunk = b"c" * size
        for _ in range(count):
            yield chunk

    @rpc_method()
    async def numbers(self, connection: Conn, count: int) -> AsyncIterator[int]:
        for i in range(count):  # never awaits
            yield i

    @rpc_method()
    async def deep(self, connection: Conn, depth: int) -> Any:
        value: Any = 0
        for _ in range(depth):
            value = [value]
        return value

    @rpc_method()
    async def sub(self, connection: Conn, channel: str) -> bool:
        connection.subscribe(channel)
        return True

    @rpc_method()
    async def pub(self, connection: Conn, channel: str, n: int, size: int) -> int:
        blob = b"b" * size
        for i in range(n):
            self.publish(channel, [i, blob])
            if i % PUB_YIELD_EVERY == PUB_YIELD_EVERY - 1:
                await asyncio.sleep(0)
        return n

    @rpc_method()
    async def metrics(self, connection: Conn) -> dict[str, int]:
        return SERVER.metrics() if SERVER is not None else {}


class BlockingReceive(HostileApp):
    """The same methods; ``on_receive`` (non-RPC packets) never returns."""

    async def on_receive(self, connection: Conn, packet: Packet[Any]) -> None:
        await self.forever.wait()


HANDLERS: dict[str, type[HostileApp]] = {"app": HostileApp, "blocking-receive": BlockingReceive}


def info(server: WebSocketServer[Any], handler: str) -> dict[str, Any]:
    """What the READY line reports: implementation, loop, limits in force."""
    return {
        "impl": "webshocket",
        "version": webshocket.__version__,
        "file": webshocket.__file__,
        "speedups": dict(getattr(webshocket, "SPEEDUPS", {})),
        "uvloop": isinstance(asyncio.get_running_loop(), uvloop.Loop),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "python": sys.version.split()[0],
        "pid": os.getpid(),
        "handler": handler,
        "config": dataclasses.asdict(server.config),
    }


async def main(port: int, handler: str, options: dict[str, Any]) -> None:
    """Serve until stdin closes."""
    global SERVER
    server = WebSocketServer("127.0.0.1", port, clientHandler=HANDLERS[handler], **options)
    SERVER = server
    await server.start()
    sys.stdout.write(f"READY {port} {json.dumps(info(server, handler))}\n")
    sys.stdout.flush()
    await until_stopped(asyncio.get_running_loop())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--handler", choices=sorted(HANDLERS), default="app")
    parser.add_argument("--options", default="{}", help="JSON object of WebSocketServer options")
    args = parser.parse_args()
    set_nofile()
    uvloop.run(main(args.port, args.handler, json.loads(args.options)))
    sys.stdout.flush()
    os._exit(0)  # no graceful close: the run is over
