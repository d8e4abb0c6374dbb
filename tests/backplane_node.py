"""A server node joined to a Redis backplane, run as a separate process by the tests.

Usage: ``python backplane_node.py --redis URL[,URL...] [--prefix P] [--port N] [--workers N] [--recovery]``
(several URLs: a sharded backplane).
Prints ``READY <port>`` once serving; stops on SIGTERM/SIGINT or when its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from typing import Any

import webshocket
from webshocket import ClientConnection, WebSocketHandler, WebSocketServer, rpc_method
from webshocket.backplane import predicate_from_spec
from webshocket.handler import hub_of
from webshocket.redis_backplane import RedisBackplane
from webshocket.redis_shards import ShardedRedisBackplane
from webshocket.workers import serve_workers


class NodeHandler(WebSocketHandler[Any]):
    """RPCs the backplane tests drive nodes with."""

    async def _sync(self) -> None:
        await self.sync_subscriptions()

    @rpc_method()
    async def join(self, connection: ClientConnection[Any], channel: str, team: str = "") -> bool:
        if team:
            connection.team = team
        connection.subscribe(channel)
        await self._sync()  # subscribed in Redis too when the reply arrives
        return True

    @rpc_method()
    async def leave(self, connection: ClientConnection[Any], channel: str) -> bool:
        connection.unsubscribe(channel)
        await self._sync()
        return True

    @rpc_method()
    async def set_team(self, connection: ClientConnection[Any], team: str) -> None:
        connection.team = team

    @rpc_method()
    async def team(self, connection: ClientConnection[Any]) -> Any:
        return connection["team"] if "team" in connection else None

    @rpc_method()
    async def say(self, connection: ClientConnection[Any], channel: str, data: Any) -> None:
        self.publish(channel, data)

    @rpc_method()
    async def say_others(self, connection: ClientConnection[Any], channel: str, data: Any) -> None:
        self.publish(channel, data, exclude=[connection])

    @rpc_method()
    async def burst(self, connection: ClientConnection[Any], channel: str, count: int) -> None:
        for i in range(count):
            self.publish(channel, i)

    @rpc_method()
    async def spray(self, connection: ClientConnection[Any], channels: list[str], count: int) -> None:
        """Publish 0 .. count-1 to each of ``channels``, taking the channels in turn for each number."""
        for i in range(count):
            for channel in channels:
                self.publish(channel, i)

    @rpc_method()
    async def shout(self, connection: ClientConnection[Any], data: Any, spec: Any = None) -> None:
        self.broadcast(data, predicate=predicate_from_spec(spec))

    @rpc_method()
    async def pid(self, connection: ClientConnection[Any]) -> int:
        return os.getpid()

    @rpc_method()
    async def loop(self, connection: ClientConnection[Any]) -> str:
        loop = asyncio.get_running_loop()
        return f"{type(loop).__module__}.{type(loop).__name__}"

    @rpc_method()
    async def stats(self, connection: ClientConnection[Any]) -> dict[str, int]:
        bridge = hub_of(self).bridge
        backplane = bridge.backplane if bridge is not None else None
        return dict(backplane.stats) if isinstance(backplane, (RedisBackplane, ShardedRedisBackplane)) else {}


def redis_backplane(urls: str, prefix: str) -> RedisBackplane | ShardedRedisBackplane:
    """One Redis URL, or several separated by commas (sharded)."""
    if "," in urls:
        return ShardedRedisBackplane(urls.split(","), channel_prefix=prefix)
    return RedisBackplane(urls, channel_prefix=prefix)


def make_server(args: argparse.Namespace) -> WebSocketServer[NodeHandler]:
    backplane = redis_backplane(args.redis, args.prefix) if args.redis else None
    recovery = webshocket.Recovery(snapshot_interval=0.1) if args.recovery else None
    return WebSocketServer(
        "127.0.0.1",
        args.port,
        clientHandler=NodeHandler,
        backplane=backplane,
        max_subscribed_channels=None,
        recovery=recovery,
    )


def ready(port: int) -> None:
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()


def watch_stdin(on_eof: Any) -> None:
    """Call ``on_eof()`` (from a daemon thread) when stdin closes: the test process went away."""

    def watch() -> None:
        sys.stdin.read()
        on_eof()

    threading.Thread(target=watch, daemon=True).start()


async def single(args: argparse.Namespace) -> None:
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
    parser.add_argument("--redis", default="")
    parser.add_argument("--prefix", default="webshocket:")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--recovery", action="store_true", help="keep history and sessions in Redis")
    args = parser.parse_args()
    if not args.workers:
        webshocket.run(single(args))
        return 0

    def on_ready(port: int) -> None:
        ready(port)
        watch_stdin(lambda: os.kill(os.getpid(), signal.SIGTERM))

    try:
        return serve_workers(
            lambda: make_server(args), args.workers, host="127.0.0.1", port=args.port, on_ready=on_ready
        )
    except webshocket.WebSocketError as exc:
        sys.stderr.write(f"ERROR {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
