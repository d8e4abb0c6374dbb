"""Run with a webshocket 0.5.x venv's python: THEIR server for OUR client.

Usage: ``python their_server.py PORT``. Serves on 127.0.0.1:PORT, prints ``READY`` once
accepting, and runs until its stdin closes (or it is terminated).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import webshocket
from webshocket import (
    ClientConnection,
    Packet,
    RPCError,
    WebSocketClient,
    WebSocketHandler,
    WebSocketServer,
    rpc_method,
)

#: 0.5.0 has no streaming RPC (its rpc_method rejects async generators).
STREAMS = hasattr(WebSocketClient, "stream_rpc")


class Handler(WebSocketHandler):
    async def on_receive(self, connection: ClientConnection, packet: Packet) -> None:
        connection.send({"echo": packet.data, "source": int(packet.source)})

    @rpc_method()
    async def add(self, connection: ClientConnection, a: int, b: int) -> int:
        return a + b

    if STREAMS:

        @rpc_method()
        async def count(self, connection: ClientConnection, n: int) -> AsyncIterator[int]:
            for i in range(n):
                yield i

        @rpc_method()
        async def broken_stream(self, connection: ClientConnection) -> AsyncIterator[int]:
            yield 1
            raise ValueError("boom")

    @rpc_method()
    async def fail(self, connection: ClientConnection) -> None:
        raise RPCError("nope")

    @rpc_method()
    async def join(self, connection: ClientConnection, channel: str) -> str:
        connection.subscribe(channel)
        self.publish(channel, {"joined": channel})
        return "joined"

    @rpc_method()
    async def announce(self, connection: ClientConnection, message: Any) -> str:
        self.broadcast(message)
        return "sent"

    @rpc_method()
    async def echo(self, connection: ClientConnection, value: Any) -> Any:
        return value


async def main(port: int) -> None:
    server = WebSocketServer("127.0.0.1", port, clientHandler=Handler)
    await server.start()
    sys.stdout.write(f"READY {webshocket.__version__}\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the test closes our stdin
    await asyncio.wait_for(server.close(), 5)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
