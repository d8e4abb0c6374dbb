"""Chat rooms on channels, safe against hostile room names: ``python examples/chat.py``.

Each room is a channel named ``chat.<room>`` ("chat.lobby", "chat.games"). Members join
one room; a moderator (who knows the moderator key) subscribes to the pattern ``chat.*``
and sees every room. The nickname lives in the connection's session state, and ``say``
publishes with ``exclude=(sender,)`` so nobody gets an echo of their own line.

Room names come from clients, so they are checked (``ROOM``: lower-case letters, digits,
``-`` and ``_``) and subscribed with ``literal=True``: a client asking for the room ``*``
or ``[a-z]*`` gets an error, never every room's messages. ``who`` lists a room's members
(presence, with their nicknames).

The script starts a server on a free port, runs four clients against it, prints what
each one receives and exits.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
from typing import Any

import webshocket
from webshocket import ClientConnection, Has, Presence, ReceiveTimeoutError, RPCError, WebSocketHandler, rpc_method

Conn = ClientConnection[Any]

ROOM = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
"""A room name: no wildcard, no dot, at most 32 characters."""
MODERATOR_KEY = secrets.token_urlsafe(16)
"""What ``moderate`` asks for (a real server would authenticate its moderators properly)."""


def room_channel(room: object) -> str:
    """The channel of the room a client named; an RPCError (APPLICATION_ERROR reply) if it is no room name."""
    if not isinstance(room, str) or ROOM.fullmatch(room) is None:
        raise RPCError(f"invalid room name {room!r}")
    return f"chat.{room}"


class ChatHandler(WebSocketHandler[Any]):
    @rpc_method()
    async def join(self, connection: Conn, nick: str, room: str) -> str:
        channel = room_channel(room)
        if not isinstance(nick, str) or not nick.isidentifier() or len(nick) > 32:
            raise RPCError(f"invalid nickname {nick!r}")  # the caller gets an APPLICATION_ERROR reply
        if "room" in connection:  # one room at a time
            connection.unsubscribe(connection.room, literal=True)
        connection.nick = nick  # session state: lasts as long as this connection
        connection.room = channel
        connection.subscribe(channel, literal=True)  # a name from a client: never a pattern
        # everybody already in the room (and the moderators) hears about it, the newcomer does not
        self.publish(channel, {"from": "*", "text": f"{nick} joined"}, exclude=(connection,))
        return f"welcome to {room}, {nick}"

    @rpc_method()
    async def moderate(self, connection: Conn, nick: str, key: str) -> str:
        if not isinstance(key, str) or not hmac.compare_digest(key, MODERATOR_KEY):
            raise RPCError("wrong moderator key")
        connection.nick = nick
        connection.moderator = True
        connection.subscribe("chat.*")  # the server's own pattern: every room, present and future
        return "watching chat.*"

    @rpc_method()
    async def rooms(self, connection: Conn) -> dict[str, int]:
        # exact subscriptions only: the moderator's pattern is in self.patterns, not here
        return {name: len(members) for name, members in sorted(self.channels.items())}

    @rpc_method(requires=Has("room"))  # members only
    async def who(self, connection: Conn) -> list[str]:
        return sorted(entry["info"].get("nick", "?") for entry in await self.presence(connection.room))

    @rpc_method(requires=Has("nick"))  # only after join/moderate: anonymous callers get ACCESS_DENIED
    async def say(self, connection: Conn, text: str, room: str | None = None) -> None:
        if room is not None and not connection.session_state.get("moderator"):
            raise RPCError("only moderators speak in other rooms")
        if room is None and "room" not in connection:
            raise RPCError("join a room first")
        channel = room_channel(room) if room is not None else connection.room
        self.publish(channel, {"from": connection.nick, "text": str(text)[:500]}, exclude=(connection,))


def make_server(port: int = 0) -> webshocket.WebSocketServer[ChatHandler]:
    """The chat server: presence on the rooms, with each member's nickname."""
    return webshocket.WebSocketServer(
        "127.0.0.1", port, clientHandler=ChatHandler, presence=Presence(channels=("chat.*",), fields=("nick",))
    )


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
    async with make_server() as server:
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

            print("mod   ->", (await mod.send_rpc("moderate", "mod", MODERATOR_KEY)).data)
            print("alice ->", (await alice.send_rpc("join", "alice", "lobby")).data)
            await show("mod", mod)  # "alice joined", seen through the chat.* pattern
            print("bob   ->", (await bob.send_rpc("join", "bob", "lobby")).data)
            await show("alice", alice)  # "bob joined"
            await show("mod", mod)
            wildcard = await carol.send_rpc("join", "carol", "*")  # not a room name: refused
            print("carol joins '*' ->", wildcard.error.name if wildcard.error else "ok", "|", wildcard.response)
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
            print("who is in bob's room:", (await bob.send_rpc("who")).data)
    print("chat demo finished")


if __name__ == "__main__":
    asyncio.run(main())
