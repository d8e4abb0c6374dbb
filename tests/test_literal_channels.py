"""Literal channel names (``subscribe(name, literal=True)``, ``channels.escape``) over real sockets,
across two nodes joined by a real Redis, and the chat example against a client choosing hostile room names."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import HOST, connected_client, running_server, uri_of
from redis_server import RedisServer, redis_available

import webshocket
from webshocket import ClientConnection, RPCErrorCode, WebSocketClient, WebSocketHandler, WebSocketServer, rpc_method
from webshocket.channels import escape, is_pattern, literal_name
from webshocket.redis_backplane import RedisBackplane

Conn = ClientConnection[Any]
QUIET = 0.3
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class LiteralHandler(WebSocketHandler[Any]):
    @rpc_method()
    async def sub(self, connection: Conn, channels: list[str], literal: bool = False) -> list[str]:
        connection.subscribe(channels, literal=literal)
        await self.sync_subscriptions()
        return sorted(connection.subscribed_channel)

    @rpc_method()
    async def unsub(self, connection: Conn, channels: list[str], literal: bool = False) -> list[str]:
        connection.unsubscribe(channels, literal=literal)
        await self.sync_subscriptions()
        return sorted(connection.subscribed_channel)

    @rpc_method()
    async def server_sub(self, connection: Conn, channel: str) -> None:
        self.subscribe(connection, channel, literal=True)  # the handler's own call, not limited

    @rpc_method()
    async def server_unsub(self, connection: Conn, channel: str) -> None:
        self.unsubscribe(connection, channel, literal=True)

    @rpc_method()
    async def say(self, connection: Conn, channel: str, data: Any) -> None:
        self.publish(channel, data)


async def drain(client: WebSocketClient, quiet: float = QUIET) -> list[tuple[str | None, Any]]:
    """(channel, data) of every push that arrives until nothing comes for ``quiet`` seconds."""
    packets: list[tuple[str | None, Any]] = []
    while True:
        try:
            packet = await client.recv(timeout=quiet)
        except webshocket.ReceiveTimeoutError:
            return packets
        packets.append((packet.channel, packet.data))


async def sub(client: WebSocketClient, *channels: str, literal: bool = False) -> list[str]:
    reply = await client.send_rpc("sub", list(channels), literal=literal)
    assert reply.error is None, reply.response
    return list(reply.data)


# ---------------------------------------------------------------------------- the helpers


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("room[1]", "room[[]1]"),
        ("*", "[*]"),
        ("what?", "what[?]"),
        ("a*b?c[d]e", "a[*]b[?]c[[]d]e"),
        ("plain.name", "plain.name"),
        ("x]!-\\y", "x]!-\\y"),  # "]", "!", "-" and "\\" are literal outside a bracket already
        ("", ""),
    ],
)
def test_escape_makes_a_pattern_matching_only_the_name(name: str, escaped: str) -> None:
    assert escape(name) == escaped
    assert is_pattern(escape(name)) == is_pattern(name)
    assert literal_name(escape(name)) == name


def test_literal_name_is_the_one_name_a_subscription_receives() -> None:
    assert literal_name("room[1]") == "room1"  # a 0.5.x pattern with a one-character set
    assert literal_name("a[[]") == "a["
    assert literal_name("[]") == "[]" and literal_name("[!]") == "[!]"  # no closing bracket: literal
    assert literal_name("chat.lobby") == "chat.lobby"
    for pattern in ("chat.*", "room?", "log.[abc]", "log.[!a]", "a[z-a]"):
        assert literal_name(pattern) is None, pattern
    with pytest.raises(TypeError):
        escape(b"bytes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- one node


async def test_literal_subscription_receives_that_name_only_and_patterns_keep_0_5_meaning() -> None:
    async with running_server(LiteralHandler) as server, AsyncExitStack() as stack:
        literal = await stack.enter_async_context(connected_client(server))
        pattern = await stack.enter_async_context(connected_client(server))
        star = await stack.enter_async_context(connected_client(server))
        assert await sub(literal, "room[1]", "a*", "who?", literal=True) == ["a[*]", "room[[]1]", "who[?]"]
        assert await sub(pattern, "room[1]", "a*") == ["a*", "room[1]"]  # 0.5.x: globs
        assert await sub(star, "room*") == ["room*"]
        for channel in ("room[1]", "room1", "a*", "ab", "who?", "whom", "room[[]1]"):
            server.publish(channel, channel)
        assert await drain(literal) == [("room[1]", "room[1]"), ("a*", "a*"), ("who?", "who?")]
        assert await drain(pattern) == [("room1", "room1"), ("a*", "a*"), ("ab", "ab")]
        assert await drain(star) == [("room[1]", "room[1]"), ("room1", "room1"), ("room[[]1]", "room[[]1]")]

        # a literal and a pattern subscription to the same text are two subscriptions
        assert await sub(literal, "room[1]") == ["a[*]", "room[1]", "room[[]1]", "who[?]"]
        server.publish("room1", 1)
        server.publish("room[1]", 2)
        assert await drain(literal) == [("room1", 1), ("room[1]", 2)]

        reply = await literal.send_rpc("unsub", ["room[1]"], literal=True)
        assert reply.data == ["a[*]", "room[1]", "who[?]"]
        server.publish("room[1]", "gone")
        server.publish("room1", "still")
        assert await drain(literal) == [("room1", "still")]
        assert "room[[]1]" not in server.handler.patterns and "room[1]" in server.handler.patterns


async def test_handler_subscribe_literal_and_limit_counts_literal_names() -> None:
    async with running_server(LiteralHandler, max_subscribed_channels=2) as server, connected_client(server) as client:
        assert (await client.send_rpc("server_sub", "[x]")).error is None
        server.publish("x", "pattern meaning")
        server.publish("[x]", "literal")
        assert await drain(client) == [("[x]", "literal")]
        assert (await client.send_rpc("server_unsub", "[x]")).error is None
        server.publish("[x]", "after")
        assert await drain(client) == []

        assert await sub(client, "a*", "b?", literal=True) == ["a[*]", "b[?]"]
        over = await client.send_rpc("sub", ["c["], literal=True)
        assert over.error == RPCErrorCode.APPLICATION_ERROR and "Subscription limit" in over.response
        assert await sub(client, "a*", literal=True) == ["a[*]", "b[?]"]  # the same one again: no new one


async def test_literal_subscriptions_with_non_ascii_names() -> None:
    async with running_server(LiteralHandler) as server, connected_client(server) as client:
        await sub(client, "é[*]", "日本*", literal=True)
        for channel in ("é[*]", "é*", "日本*", "日本語"):
            server.publish(channel, channel)
        assert await drain(client) == [("é[*]", "é[*]"), ("日本*", "日本*")]


# ---------------------------------------------------------------------------- two nodes, real Redis


@pytest.fixture(scope="module")
def redis_server() -> Any:
    if not redis_available():
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        yield server


@asynccontextmanager
async def redis_nodes(url: str, prefix: str) -> AsyncIterator[tuple[WebSocketServer[Any], WebSocketServer[Any]]]:
    nodes = [
        WebSocketServer(HOST, 0, clientHandler=LiteralHandler, backplane=RedisBackplane(url, channel_prefix=prefix))
        for _ in range(2)
    ]
    async with AsyncExitStack() as stack:
        for node in nodes:
            await node.start()
            stack.push_async_callback(node.close, 2.0)
        yield nodes[0], nodes[1]


async def test_literal_subscription_across_nodes_is_a_plain_redis_subscribe(redis_server: RedisServer) -> None:
    import redis.asyncio

    async with redis_nodes(redis_server.url, "lit:") as (node_a, node_b), AsyncExitStack() as stack:
        listener = WebSocketClient(uri_of(node_b))
        await listener.connect()
        stack.push_async_callback(listener.close)
        speaker = WebSocketClient(uri_of(node_a))
        await speaker.connect()
        stack.push_async_callback(speaker.close)
        await sub(listener, "room[1]", "a*", literal=True)
        client = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            channels = set(await client.execute_command("PUBSUB", "CHANNELS", "lit:c:*"))
            assert {b"lit:c:room[1]", b"lit:c:a*"} <= channels
            assert await client.execute_command("PUBSUB", "NUMPAT") == 0  # no PSUBSCRIBE: O(1) per PUBLISH
        finally:
            await client.aclose()
        for channel in ("room1", "room[1]", "ab", "a*"):
            assert (await speaker.send_rpc("say", channel, channel)).error is None
        assert await drain(listener, 0.5) == [("room[1]", "room[1]"), ("a*", "a*")]
        # the 0.5.x pattern still crosses as a pattern
        await sub(listener, "room[12]")
        assert (await speaker.send_rpc("say", "room2", "two")).error is None
        assert (await speaker.send_rpc("say", "room[12]", "literal text")).error is None
        assert await drain(listener, 0.5) == [("room2", "two")]


# ---------------------------------------------------------------------------- the chat example


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOSTILE_ROOMS = [
    "*", "?", "??????", "s*", "*t", "[s]ecret", "[!x]ecret", "[a-z]*", "secre?", "secret*",
    "secret.x", ".secret", "lobby.secret", "secret.", "..", "chat.secret", "*.*", "SECRET", "secret\x00", "",
    "s" * 33,
]  # fmt: skip


async def test_chat_example_client_cannot_read_a_room_it_did_not_join() -> None:
    chat = load_example("chat")
    async with chat.make_server() as server, AsyncExitStack() as stack:
        uri = uri_of(server)

        async def client() -> WebSocketClient:
            c = WebSocketClient(uri)
            await c.connect()
            stack.push_async_callback(c.close)
            return c

        victim, friend, attacker = await client(), await client(), await client()
        assert (await victim.send_rpc("join", "victim", "secret")).error is None
        assert (await friend.send_rpc("join", "friend", "secret")).error is None
        assert (await victim.recv(timeout=2)).data["text"] == "friend joined"

        for room in HOSTILE_ROOMS:
            reply = await attacker.send_rpc("join", "mallory", room)
            assert reply.error == RPCErrorCode.APPLICATION_ERROR, (room, reply)
            assert "invalid room name" in reply.response
        for args in ([123], [["secret"]], [{"room": "secret"}], [None]):
            reply = await attacker.send_rpc("join", "mallory", *args)
            assert reply.error is not None, args
        reply = await attacker.send_rpc("moderate", "mallory", "guessed-key")
        assert reply.error == RPCErrorCode.APPLICATION_ERROR  # no pattern without the moderator key
        assert (await attacker.send_rpc("join", "mallory", "secret2")).error is None  # a room of its own
        reply = await attacker.send_rpc("say", "let me in", room="secret")  # speaking elsewhere: moderators only
        assert reply.error == RPCErrorCode.APPLICATION_ERROR

        assert (await victim.send_rpc("say", "the password is swordfish")).error is None
        assert (await friend.recv(timeout=2)).data == {"from": "victim", "text": "the password is swordfish"}
        server.publish("chat.secret", {"from": "server", "text": "for the secret room"})
        assert len(await drain(friend)) == 1 and len(await drain(victim)) == 1
        leaked = await drain(attacker)
        assert leaked == [], leaked
        assert sorted(server.handler.patterns) == []  # nobody got a pattern subscription
        assert set(server.handler.channels) == {"chat.secret", "chat.secret2"}
        assert (await attacker.send_rpc("who")).data == ["mallory"]


class LiteralOnlyChat(WebSocketHandler[Any]):
    """The chat's join without the name check: ``literal=True`` alone keeps hostile names from widening."""

    @rpc_method()
    async def join(self, connection: Conn, room: str) -> list[str]:
        connection.subscribe(f"chat.{room}", literal=True)
        return sorted(connection.subscribed_channel)


async def test_literal_alone_keeps_any_room_name_from_widening_a_subscription() -> None:
    async with running_server(LiteralOnlyChat, max_subscribed_channels=None) as server:
        async with connected_client(server) as attacker:
            for room in HOSTILE_ROOMS:
                assert (await attacker.send_rpc("join", room)).error is None, room
            rooms = ["secret", "secret.x", "lobby.secret", "s", "secret2", "x.secret", "secre", "Secret"]
            for room in rooms:
                server.publish(f"chat.{room}", room)
            received = [data for _, data in await drain(attacker)]
            joined = set(HOSTILE_ROOMS)
            assert received == [room for room in rooms if room in joined]  # only rooms named exactly
            for room in HOSTILE_ROOMS:  # each hostile name is its own room
                server.publish(f"chat.{room}", "own")
            assert len(await drain(attacker)) == len(set(HOSTILE_ROOMS))
