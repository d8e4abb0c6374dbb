"""Chat rooms on wildcard channels: ``python examples/chat.py``.

Each room is a channel named ``chat.<room>`` ("chat.lobby", "chat.games"). Members join
one room; a moderator subscribes to the pattern ``chat.*`` and sees every room. The
nickname lives in the connection's session state, and ``say`` publishes with
``exclude=(sender,)`` so nobody gets an echo of their own line.

The script starts a server on a free port, runs four clients against it, prints what
each one receives and exits.
"""

from __future__ import annotations

import asyncio
from typing import Any

import webshocket
from webshocket import ClientConnection, Has, ReceiveTimeoutError, RPCError, WebSocketHandler, rpc_method

Conn = ClientConnection[Any]


class ChatHandler(WebSocketHandler[Any]):
    @rpc_method()
    async def join(self, connection: Conn, nick: str, room: str) -> str:
        if not nick.isidentifier():
            raise RPCError(f"invalid nickname {nick!r}")  # the caller gets an APPLICATION_ERROR reply
        connection.nick = nick  # session state: lasts as long as this connection
        connection.room = f"chat.{room}"
        connection.subscribe(connection.room)
        # everybody already in the room (and the moderators) hears about it, the newcomer does not
        self.publish(connection.room, {"from": "*", "text": f"{nick} joined"}, exclude=(connection,))
        return f"welcome to {room}, {nick}"

    @rpc_method()
    async def moderate(self, connection: Conn, nick: str) -> str:
        connection.nick = nick
        connection.subscribe("chat.*")  # a glob pattern: every room, present and future
        return "watching chat.*"

    @rpc_method()
    async def rooms(self, connection: Conn) -> dict[str, int]:
        # exact subscriptions only: the moderator's pattern is in self.patterns, not here
        return {name: len(members) for name, members in sorted(self.channels.items())}

    @rpc_method(requires=Has("nick"))  # only after join/moderate: anonymous callers get ACCESS_DENIED
    async def say(self, connection: Conn, text: str, room: str | None = None) -> None:
        channel = f"chat.{room}" if room else connection.room
        self.publish(channel, {"from": connection.nick, "text": text}, exclude=(connection,))


async def show(name: str, client: webshocket.WebSocketClient) -> None:
    """Print the next pushed message of ``client``."""
    packet = await client.recv(timeout=2)
    print(f"{name:<6}<- [{packet.channel}] {packet.data['from']}: {packet.data['text']}")


async def nothing_else(name: str, client: webshocket.WebSocketClient) -> str | None:
    """``name`` if ``client`` receives nothing more within 0.3 s, else None."""
    try:
        extra = await client.recv(timeout=0.3)
    except ReceiveTimeoutError:
        return name
    print(f"{name}: unexpected message {extra.data}")
    return None


async def main() -> None:
    async with webshocket.WebSocketServer("127.0.0.1", 0, clientHandler=ChatHandler) as server:
        uri = f"ws://127.0.0.1:{server.port}"
        print(f"chat server on {uri}")
        async with (
            webshocket.WebSocketClient(uri) as mod,
            webshocket.WebSocketClient(uri) as alice,
            webshocket.WebSocketClient(uri) as bob,
            webshocket.WebSocketClient(uri) as carol,
        ):
            denied = await alice.send_rpc("say", "hello?")  # no nickname yet
            print("alice says before joining ->", denied.error.name if denied.error else "ok")

            print("mod   ->", (await mod.send_rpc("moderate", "mod")).data)
            print("alice ->", (await alice.send_rpc("join", "alice", "lobby")).data)
            await show("mod", mod)  # "alice joined", seen through the chat.* pattern
            print("bob   ->", (await bob.send_rpc("join", "bob", "lobby")).data)
            await show("alice", alice)  # "bob joined"
            await show("mod", mod)
            print("carol ->", (await carol.send_rpc("join", "carol", "games")).data)
            await show("mod", mod)  # only the moderator watches chat.games

            await alice.send_rpc("say", "hi bob!")
            await show("bob", bob)
            await show("mod", mod)
            await carol.send_rpc("say", "anyone for chess?")
            await show("mod", mod)
            await mod.send_rpc("say", "keep it friendly", room="games")  # the moderator talks in any room
            await show("carol", carol)

            clients = {"alice": alice, "bob": bob, "carol": carol, "mod": mod}
            leftovers = await asyncio.gather(*(nothing_else(name, c) for name, c in clients.items()))
            print("nothing else for:", ", ".join(name for name in leftovers if name))
            print("rooms and members:", (await bob.send_rpc("rooms")).data)
    print("chat demo finished")


if __name__ == "__main__":
    asyncio.run(main())
