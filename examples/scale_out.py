"""Two server nodes joined through Redis: a publish on one reaches subscribers on both.

Needs ``redis-server`` (Debian: ``apt-get install redis-server``) and ``pip install
'webshocket[redis]'``. This script starts a throwaway Redis on a free port, runs two
nodes on it (in one process, for brevity: in production each node is its own process or
machine, e.g. ``webshocket serve app:ChatHandler --port 8001 --backplane redis://...``),
and exits by itself.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import tempfile
from typing import Any

import webshocket
from webshocket import ClientConnection, IsEqual, RPCError, WebSocketHandler, rpc_method

ROOM = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def room_channel(room: object) -> str:
    """``rooms.<room>`` for a valid room name from a client (no wildcard, no dot)."""
    if not isinstance(room, str) or ROOM.fullmatch(room) is None:
        raise RPCError(f"invalid room name {room!r}")
    return f"rooms.{room}"


class ChatHandler(WebSocketHandler[Any]):
    @rpc_method()
    async def join(self, connection: ClientConnection[Any], room: str, nick: str) -> None:
        connection.nick = nick
        connection.subscribe(room_channel(room), literal=True)  # client input: a name, never a pattern
        await self.sync_subscriptions()  # answer once Redis carries the subscription

    @rpc_method()
    async def watch_all(self, connection: ClientConnection[Any], nick: str) -> None:
        connection.nick = nick
        connection.subscribe("rooms.*")  # the server's own pattern (a real app checks who may)
        await self.sync_subscriptions()

    @rpc_method()
    async def say(self, connection: ClientConnection[Any], room: str, text: str) -> None:
        self.publish(room_channel(room), {"from": connection.nick, "text": text})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def main() -> None:
    redis_port = free_port()
    redis = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", tempfile.mkdtemp()],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.sleep(0.3)
        url = f"redis://127.0.0.1:{redis_port}/0"
        node_a = webshocket.WebSocketServer("127.0.0.1", 0, clientHandler=ChatHandler, backplane=url)
        node_b = webshocket.WebSocketServer("127.0.0.1", 0, clientHandler=ChatHandler, backplane=url)
        async with node_a, node_b:
            alice = await webshocket.WebSocketClient(f"ws://127.0.0.1:{node_a.port}").connect()
            bob = await webshocket.WebSocketClient(f"ws://127.0.0.1:{node_b.port}").connect()
            await alice.send_rpc("join", "lobby", "alice")
            await bob.send_rpc("watch_all", "bob")  # pattern subscription on the other node

            await alice.send_rpc("say", "lobby", "hello from node A")
            print("alice (node A) got:", (await alice.recv(timeout=3)).data)
            print("bob   (node B) got:", (await bob.recv(timeout=3)).data)

            node_b.broadcast("maintenance at noon", predicate=IsEqual("nick", "alice"))
            print("alice got a broadcast from node B:", (await alice.recv(timeout=3)).data)
            await alice.close()
            await bob.close()
    finally:
        redis.terminate()
        redis.wait()
    print("scale-out demo finished")


if __name__ == "__main__":
    asyncio.run(main())
