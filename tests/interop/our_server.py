"""Run with the test's own python: OUR server in a separate process (so a test can SIGKILL it).

Usage: ``python our_server.py PORT`` (0 for a free port). Prints ``READY <port>`` once
serving and runs until killed or until its stdin closes.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import webshocket
from webshocket import ClientConnection, WebSocketHandler, WebSocketServer, rpc_method


class Handler(WebSocketHandler[Any]):
    @rpc_method()
    async def add(self, connection: ClientConnection[Any], a: int, b: int) -> int:
        return a + b

    @rpc_method()
    async def slow(self, connection: ClientConnection[Any], seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @rpc_method()
    async def ticks(self, connection: ClientConnection[Any]) -> AsyncIterator[int]:
        i = 0
        while True:
            yield i
            i += 1
            await asyncio.sleep(0.05)

    @rpc_method()
    async def pid(self, connection: ClientConnection[Any]) -> int:
        import os

        return os.getpid()


async def main(port: int) -> None:
    server = WebSocketServer("127.0.0.1", port, clientHandler=Handler)
    await server.start()
    sys.stdout.write(f"READY {server.port}\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close(timeout=1.0)


if __name__ == "__main__":
    webshocket.run(main(int(sys.argv[1])))
