"""A server node with presence on a Redis backplane, run as a separate process by ``test_presence.py``.

Usage: ``python presence_node.py --redis URL [--prefix P] [--ttl S] [--refresh S]``. The handler is
``backplane_node.NodeHandler`` (``join(channel, team)``, ``leave``, ``say``, ...) plus ``who(channel)``;
presence lists each member's ``team`` and sends join/leave events. Prints ``READY <port>`` once
serving; stops on SIGTERM/SIGINT or when its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from backplane_node import NodeHandler, ready, watch_stdin

import webshocket
from webshocket import ClientConnection, Presence, WebSocketServer, rpc_method
from webshocket.redis_backplane import RedisBackplane


class PresenceNodeHandler(NodeHandler):
    @rpc_method()
    async def who(self, connection: ClientConnection[Any], channel: str) -> list[dict[str, Any]]:
        return await self.presence(channel)


def make_server(args: argparse.Namespace) -> WebSocketServer[PresenceNodeHandler]:
    options = Presence(fields=("team",), events=True, ttl=args.ttl, refresh=args.refresh)
    backplane = RedisBackplane(args.redis, channel_prefix=args.prefix)
    return WebSocketServer(
        "127.0.0.1",
        0,
        clientHandler=PresenceNodeHandler,
        backplane=backplane,
        max_subscribed_channels=None,
        presence=options,
    )


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = make_server(args)
    await server.start()
    ready(server.port)
    watch_stdin(lambda: loop.call_soon_threadsafe(stop.set))
    await stop.wait()
    await server.close(timeout=1.0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--prefix", default="webshocket:")
    parser.add_argument("--ttl", type=float, default=60.0)
    parser.add_argument("--refresh", type=float, default=None)
    webshocket.run(serve(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
