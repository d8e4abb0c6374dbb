"""Presence (``WebSocketServer(presence=...)``, ``handler.presence(channel)``, join/leave events) over real
sockets: one node, nodes sharing a MemoryHub, and nodes joined by a real redis-server (one of them a separate
process, stopped cleanly or killed with SIGKILL)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from helpers import HOST, connected_client, raw_connect, running_server, uri_of, wait_until
from redis_server import NodeProcess, RedisServer, redis_available

import webshocket
from webshocket import ClientConnection, Presence, WebSocketClient, WebSocketHandler, WebSocketServer, rpc_method
from webshocket.backplane import MemoryBackplane, MemoryHub
from webshocket.handler import hub_of
from webshocket.redis_backplane import RedisBackplane

Conn = ClientConnection[Any]
QUIET = 0.3


class RoomHandler(WebSocketHandler[Any]):
    @rpc_method()
    async def join(self, connection: Conn, channel: str, nick: str = "", literal: bool = False) -> None:
        if nick:
            connection.nick = nick
        connection.subscribe(channel, literal=literal)
        await self.sync_subscriptions()

    @rpc_method()
    async def leave(self, connection: Conn, channel: str, literal: bool = False) -> None:
        connection.unsubscribe(channel, literal=literal)
        await self.sync_subscriptions()

    @rpc_method()
    async def set(self, connection: Conn, name: str, value: Any) -> None:
        connection[name] = value

    @rpc_method()
    async def who(self, connection: Conn, channel: str) -> list[dict[str, Any]]:
        return await self.presence(channel)

    @rpc_method()
    async def whoami(self, connection: Conn) -> str:
        return connection.uid.hex


async def drain(client: WebSocketClient, quiet: float = QUIET) -> list[tuple[str | None, Any]]:
    packets: list[tuple[str | None, Any]] = []
    while True:
        try:
            packet = await client.recv(timeout=quiet)
        except webshocket.ReceiveTimeoutError:
            return packets
        packets.append((packet.channel, packet.data))


def infos(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry["info"] for entry in entries]


@asynccontextmanager
async def clients(server: WebSocketServer[Any], count: int) -> AsyncIterator[list[WebSocketClient]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(connected_client(server)) for _ in range(count)]


# ---------------------------------------------------------------------------- options


def test_options_are_checked() -> None:
    assert Presence.of(None) is None and Presence.of(False) is None
    assert Presence.of(True) == Presence()
    assert Presence(channels="chat.*", fields=["nick"], events=["chat.*"]).channels == ("chat.*",)
    assert Presence(fields=["nick"]).fields == ("nick",)
    assert Presence(ttl=3).refresh_interval == 1
    bads: list[dict[str, Any]] = [{"max_members": 0}, {"max_info_bytes": 0}, {"ttl": 0}, {"ttl": 2, "refresh": 2}]
    for bad in [*bads, {"refresh": -1}]:
        with pytest.raises(ValueError):
            Presence(**bad)
    with pytest.raises(TypeError):
        Presence(fields=(1,))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        WebSocketServer(HOST, 0, presence="yes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- one node


async def test_presence_is_off_by_default() -> None:
    async with running_server(RoomHandler) as server, connected_client(server) as client:
        assert hub_of(server.handler).presence is None
        assert (await client.send_rpc("join", "room", nick="ann")).error is None
        with pytest.raises(RuntimeError, match="presence is off"):
            await server.handler.presence("room")
        server.publish("room", "only this")
        assert await drain(client) == [("room", "only this")]  # no event of any kind


async def test_members_join_and_leave_with_their_fields() -> None:
    options = Presence(fields=("nick", "role"))
    async with running_server(RoomHandler, presence=options) as server, clients(server, 3) as (ann, bob, mod):
        ann_id, bob_id = (await ann.send_rpc("whoami")).data, (await bob.send_rpc("whoami")).data
        await ann.send_rpc("set", "role", "admin")
        await ann.send_rpc("set", "secret", "not listed")
        await ann.send_rpc("join", "room", nick="ann")
        await bob.send_rpc("join", "room", nick="bob")
        await mod.send_rpc("join", "*", nick="mod")  # a pattern: receives everything, member of nothing
        await mod.send_rpc("join", "ro?m", nick="mod")
        assert await server.handler.presence("room") == [
            {"client": ann_id, "info": {"nick": "ann", "role": "admin"}},
            {"client": bob_id, "info": {"nick": "bob"}},
        ]
        assert await server.handler.presence("elsewhere") == []
        # subscribing again, or by a one-name pattern too, keeps one entry; it goes with the last of them
        await bob.send_rpc("join", "room")
        await bob.send_rpc("join", "roo[m]")
        assert len(await server.handler.presence("room")) == 2
        await bob.send_rpc("leave", "room")
        assert infos(await server.handler.presence("room"))[1] == {"nick": "bob"}
        await bob.send_rpc("leave", "roo[m]")
        assert infos(await server.handler.presence("room")) == [{"nick": "ann", "role": "admin"}]
        await ann.close()  # a disconnect leaves every channel
        await wait_until(lambda: not hub_of(server.handler).presence.members)  # type: ignore[union-attr]
        assert await server.handler.presence("room") == []
        assert (await mod.send_rpc("who", "room")).data == []


async def test_literal_names_and_channels_without_presence() -> None:
    options = Presence(channels=("chat.*",), fields=("nick",))
    async with running_server(RoomHandler, presence=options) as server, clients(server, 2) as (ann, bob):
        await ann.send_rpc("join", "chat.[1]", nick="ann", literal=True)  # the room named "[1]"
        await bob.send_rpc("join", "chat.[1]", nick="bob")  # the 0.5.x pattern: the room "1"
        assert infos(await server.handler.presence("chat.[1]")) == [{"nick": "ann"}]
        assert infos(await server.handler.presence("chat.1")) == [{"nick": "bob"}]
        await ann.send_rpc("join", "lobby")
        with pytest.raises(ValueError, match="keeps no presence"):
            await server.handler.presence("lobby")
        reply = await ann.send_rpc("who", "lobby")
        assert reply.error == webshocket.RPCErrorCode.INTERNAL_SERVER_ERROR
        with pytest.raises(TypeError):
            await server.handler.presence(b"chat.1")
        await ann.send_rpc("leave", "chat.[1]", literal=True)
        assert await server.handler.presence("chat.[1]") == []


async def test_members_beyond_the_cap_wait_their_turn_and_info_is_bounded() -> None:
    options = Presence(fields=("nick", "bio", "blob"), max_members=2, max_info_bytes=40)
    async with running_server(RoomHandler, presence=options) as server, clients(server, 4) as people:
        for n, client in enumerate(people):
            await client.send_rpc("set", "bio", "x" * 50 if n == 0 else "short")
            await client.send_rpc("set", "blob", object.__name__ if n else "ok")
            await client.send_rpc("join", "room", nick=f"p{n}")
        tracker = hub_of(server.handler).presence
        assert tracker is not None
        assert infos(await server.handler.presence("room")) == [
            {"nick": "p0", "blob": "ok"},  # the bio did not fit in 40 bytes: left out
            {"nick": "p1", "bio": "short", "blob": "object"},
        ]
        assert tracker.stats["info_truncated"] == 1 and tracker.stats["waiting"] == 2
        await people[0].send_rpc("leave", "room")  # p2 waited longest: listed now
        assert [i["nick"] for i in infos(await server.handler.presence("room"))] == ["p1", "p2"]
        await people[3].send_rpc("leave", "room")  # leaving the queue changes nothing listed
        await people[1].send_rpc("leave", "room")
        assert [i["nick"] for i in infos(await server.handler.presence("room"))] == ["p2"]


async def test_join_and_leave_events_are_channel_packets_to_the_other_subscribers() -> None:
    options = Presence(channels=("room.*", "quiet"), fields=("nick",), events=("room.*",))
    async with running_server(RoomHandler, presence=options) as server, clients(server, 3) as (ann, bob, mod):
        await mod.send_rpc("join", "room.*", nick="mod")
        await ann.send_rpc("join", "room.1", nick="ann")
        ann_id = (await ann.send_rpc("whoami")).data
        assert await drain(mod) == [("room.1", {"presence": "join", "client": ann_id, "info": {"nick": "ann"}})]
        assert await drain(ann) == []  # not its own join
        await bob.send_rpc("join", "room.1", nick="bob")
        bob_id = (await bob.send_rpc("whoami")).data
        joined = ("room.1", {"presence": "join", "client": bob_id, "info": {"nick": "bob"}})
        assert await drain(ann) == [joined]
        assert await drain(mod) == [joined]
        await bob.close()
        left = ("room.1", {"presence": "leave", "client": bob_id, "info": {"nick": "bob"}})
        assert await drain(ann) == [left]
        assert await drain(mod) == [left]
        await ann.send_rpc("join", "quiet")  # presence without events: nothing is sent
        await mod.send_rpc("join", "quiet")
        await ann.send_rpc("leave", "quiet")
        assert await drain(ann) == [] and await drain(mod) == []


async def test_events_on_the_wire_for_a_json_client() -> None:
    options = Presence(fields=("nick",), events=True)
    async with running_server(RoomHandler, presence=options) as server, connected_client(server) as ann:
        async with raw_connect(uri_of(server)) as ws:
            request = {"type": "request", "method": "join", "args": ["lobby"], "kwargs": {}, "call_id": "1"}
            await ws.send(json.dumps({"source": 5, "rpc": request}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply["rpc"]["error"] is None
            await ann.send_rpc("join", "lobby", nick="ann")
            ann_id = (await ann.send_rpc("whoami")).data
            event = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert event == {
                "source": 2,
                "data": {"presence": "join", "client": ann_id, "info": {"nick": "ann"}},
                "channel": "lobby",
            }


# ---------------------------------------------------------------------------- nodes in one process


async def test_nodes_sharing_a_memory_hub_see_each_others_members() -> None:
    hub = MemoryHub()
    options = Presence(fields=("nick",), events=True)
    async with AsyncExitStack() as stack:
        nodes = []
        for _ in range(2):
            node = WebSocketServer(HOST, 0, clientHandler=RoomHandler, backplane=MemoryBackplane(hub), presence=options)
            await node.start()
            stack.push_async_callback(node.close, 2.0)
            nodes.append(node)
        ann = await stack.enter_async_context(connected_client(nodes[0]))
        bob = await stack.enter_async_context(connected_client(nodes[1]))
        await ann.send_rpc("join", "room", nick="ann")
        await bob.send_rpc("join", "room", nick="bob")
        assert infos((await ann.send_rpc("who", "room")).data) == [{"nick": "ann"}, {"nick": "bob"}]
        assert infos((await bob.send_rpc("who", "room")).data) == [{"nick": "bob"}, {"nick": "ann"}]
        assert [data["presence"] for _, data in await drain(ann)] == ["join"]  # bob's, from the other node
        await nodes[1].close()
        assert [data["presence"] for _, data in await drain(ann)] == ["leave"]
        assert infos(await nodes[0].handler.presence("room")) == [{"nick": "ann"}]


# ---------------------------------------------------------------------------- nodes joined by Redis

PREFIX = "pres:"
TTL = 1.5


class PresenceNode(NodeProcess):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presence_node.py")


@pytest.fixture(scope="module")
def redis_server() -> Any:
    if not redis_available():
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        yield server


@asynccontextmanager
async def local_node(url: str, **options: Any) -> AsyncIterator[WebSocketServer[RoomHandler]]:
    presence = Presence(fields=("team", "nick"), events=True, ttl=TTL, refresh=0.3, **options)
    server = WebSocketServer(
        HOST, 0, clientHandler=RoomHandler, backplane=RedisBackplane(url, channel_prefix=PREFIX), presence=presence
    )
    await server.start()
    try:
        yield server
    finally:
        await server.close(timeout=2.0)


async def redis_keys(url: str, channel: str) -> list[bytes]:
    """The presence keys of ``channel`` in Redis."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    try:
        keys: list[bytes] = await client.keys(f"{PREFIX}presence:*:{channel}")
        return sorted(keys)
    finally:
        await client.aclose()


async def presence_of(server: WebSocketServer[Any], channel: str) -> list[Any]:
    return sorted(info.get("team") or info.get("nick") for info in infos(await server.handler.presence(channel)))


async def eventually(server: WebSocketServer[Any], channel: str, expected: list[str], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found: Any = await presence_of(server, channel)
        except webshocket.ConnectionError as exc:  # Redis restarting
            found = exc
        if found == expected:
            return
        assert time.monotonic() < deadline, f"presence of {channel}: {found}, expected {expected}"
        await asyncio.sleep(0.05)


async def test_presence_across_nodes_with_redis_and_a_killed_node_expiring(redis_server: RedisServer) -> None:
    remote = PresenceNode("--redis", redis_server.url, "--prefix", PREFIX, "--ttl", str(TTL), "--refresh", "0.3")
    remote.start()
    try:
        async with local_node(redis_server.url) as node_a, AsyncExitStack() as stack:

            async def client(uri: str) -> WebSocketClient:
                c = WebSocketClient(uri)
                await c.connect()
                stack.push_async_callback(c.close)
                return c

            b1, b2 = await client(remote.uri), await client(remote.uri)
            a1 = await client(uri_of(node_a))
            assert (await b1.send_rpc("join", "room", team="b1")).error is None
            assert (await a1.send_rpc("join", "room", nick="a1")).error is None
            await eventually(node_a, "room", ["a1", "b1"])
            assert (await b2.send_rpc("join", "room", team="b2")).error is None
            b2_id = None
            for channel, data in await drain(a1, 1.0):  # the join on the other node, through Redis
                assert (channel, data["presence"], data["info"]) == ("room", "join", {"team": "b2"})
                b2_id = data["client"]
            assert b2_id is not None
            await eventually(node_a, "room", ["a1", "b1", "b2"])
            seen_from_b = (await b1.send_rpc("who", "room")).data  # and the other way round
            assert sorted(e["info"].get("team") or e["info"]["nick"] for e in seen_from_b) == ["a1", "b1", "b2"]
            assert (await b2.send_rpc("leave", "room")).error is None
            assert await drain(a1, 1.0) == [("room", {"presence": "leave", "client": b2_id, "info": {"team": "b2"}})]
            await eventually(node_a, "room", ["a1", "b1"])

            # members outlive their node's death by at most the TTL (they are refreshed meanwhile)
            await asyncio.sleep(2 * TTL)
            await eventually(node_a, "room", ["a1", "b1"], timeout=0.5)
            remote.stop(signal.SIGKILL)
            killed = time.monotonic()
            assert await presence_of(node_a, "room") == ["a1", "b1"]  # not yet expired
            await eventually(node_a, "room", ["a1"], timeout=TTL + 2.0)
            assert time.monotonic() - killed >= TTL * 0.5
            assert await drain(a1) == []  # a killed node sends no leave event
            assert len(await redis_keys(redis_server.url, "room")) == 2  # its hash expired: node A's hash and the set
        assert await redis_keys(redis_server.url, "room") == []  # node A removed its own when it closed
    finally:
        remote.stop()


async def test_clean_shutdown_removes_a_nodes_members_at_once(redis_server: RedisServer) -> None:
    # a long TTL for the other node: only its shutdown can remove its members within the test
    remote = PresenceNode("--redis", redis_server.url, "--prefix", PREFIX, "--ttl", "60")
    remote.start()
    try:
        async with local_node(redis_server.url) as node_a, AsyncExitStack() as stack:
            watcher = WebSocketClient(uri_of(node_a))
            await watcher.connect()
            stack.push_async_callback(watcher.close)
            assert (await watcher.send_rpc("join", "hall", nick="watcher")).error is None
            members = []
            for n in range(3):
                member = WebSocketClient(remote.uri)
                await member.connect()
                stack.push_async_callback(member.close)
                assert (await member.send_rpc("join", "hall", team=f"r{n}")).error is None
                members.append(member)
            await eventually(node_a, "hall", ["r0", "r1", "r2", "watcher"])
            assert len(await drain(watcher, 0.5)) == 3  # three joins
            assert len(await redis_keys(redis_server.url, "hall")) == 3  # the set of nodes, and one hash per node
            assert remote.stop(signal.SIGTERM) == 0
            await eventually(node_a, "hall", ["watcher"], timeout=2.0)
            events = await drain(watcher, 0.5)
            assert sorted(data["info"]["team"] for _, data in events if data["presence"] == "leave") == [
                "r0",
                "r1",
                "r2",
            ]
            assert len(await redis_keys(redis_server.url, "hall")) == 2  # the other node's hash is gone
        assert await redis_keys(redis_server.url, "hall") == []  # and this node's, when it closes
    finally:
        remote.stop()


async def test_redis_restart_rewrites_a_nodes_members(redis_server: RedisServer) -> None:
    async with local_node(redis_server.url) as node_a, local_node(redis_server.url) as node_b:
        async with connected_client(node_b) as member:
            assert (await member.send_rpc("join", "den", nick="m")).error is None
            await eventually(node_a, "den", ["m"])
            redis_server.kill()  # everything in Redis is lost
            redis_server.start()
            assert await redis_keys(redis_server.url, "den") == []
            await eventually(node_a, "den", ["m"], timeout=10.0)  # node B wrote it again on its next refresh
            assert len(await redis_keys(redis_server.url, "den")) == 2
