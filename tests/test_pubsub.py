"""Channels, glob patterns, publish/broadcast filtering and subscription limits over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from helpers import connected_client, running_server, wait_until

import webshocket
from webshocket import (
    All,
    ClientConnection,
    Has,
    Is,
    IsEqual,
    Packet,
    PacketSource,
    RPCErrorCode,
    WebSocketClient,
    WebSocketHandler,
    WebSocketServer,
    rpc_method,
)
from webshocket import Any as AnyOf

Conn = ClientConnection[Any]
QUIET = 0.3  # how long "nothing more arrives" is observed


class PubSubHandler(WebSocketHandler[Any]):
    @rpc_method()
    async def whoami(self, connection: Conn) -> str:
        return connection.uid.hex

    @rpc_method()
    async def sub(self, connection: Conn, channels: list[str]) -> list[str]:
        connection.subscribe(channels)
        return sorted(connection.subscribed_channel)

    @rpc_method()
    async def unsub(self, connection: Conn, channels: list[str]) -> list[str]:
        connection.unsubscribe(channels)
        return sorted(connection.subscribed_channel)

    @rpc_method()
    async def set_state(self, connection: Conn, key: str, value: Any) -> None:
        connection[key] = value


async def server_conn(server: WebSocketServer[Any], client: WebSocketClient) -> Conn:
    """The server-side connection object of ``client``."""
    uid = (await client.send_rpc("whoami")).data
    matches = [c for c in server.clients if c.uid.hex == uid]
    assert len(matches) == 1
    return matches[0]


async def subscribe(client: WebSocketClient, *channels: str) -> None:
    result = await client.send_rpc("sub", list(channels))
    assert result.error is None, result.response
    assert set(channels) <= set(result.data)


async def drain(client: WebSocketClient, quiet: float = QUIET) -> list[Packet[Any]]:
    """Every pushed packet that arrives until nothing comes for ``quiet`` seconds."""
    packets: list[Packet[Any]] = []
    while True:
        try:
            packets.append(await client.recv(timeout=quiet))
        except webshocket.ReceiveTimeoutError:
            return packets


async def assert_nothing_more(*clients: WebSocketClient) -> None:
    async def one(client: WebSocketClient) -> None:
        with pytest.raises(webshocket.ReceiveTimeoutError):
            await client.recv(timeout=QUIET)

    await asyncio.gather(*(one(c) for c in clients))


@asynccontextmanager
async def clients_of(server: WebSocketServer[Any], count: int) -> AsyncIterator[list[WebSocketClient]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(connected_client(server)) for _ in range(count)]


# ---------------------------------------------------------------------------- publish


async def test_publish_reaches_exact_subscribers_only() -> None:
    async with running_server(PubSubHandler) as server, clients_of(server, 3) as (news, sports, nobody):
        await subscribe(news, "news")
        await subscribe(sports, "sports")
        server.publish("news", {"headline": "hi"})
        packet = await news.recv(timeout=2)
        assert packet.source is PacketSource.CHANNEL
        assert packet.channel == "news"
        assert packet.data == {"headline": "hi"}
        assert packet.rpc is None
        await assert_nothing_more(news, sports, nobody)
        server.publish("nobody-listens", 1)  # no subscribers: a no-op
        await assert_nothing_more(news, sports, nobody)


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("news.*", ["news.a", "news.a.b", "news."], ["xnews.a", "news", "new.a", "NEWS.a"]),
        ("*", ["x", "a.b.c", "anything"], []),
        ("room?", ["room1", "roomX"], ["room", "room12", "xroom1"]),
        ("log.[abc]", ["log.a", "log.c"], ["log.d", "log.ab", "log."]),
        ("log.[!abc]", ["log.d", "log.z"], ["log.a", "log.dd", "log."]),
        ("*.error", ["db.error", "a.b.error"], ["error", "db.errors", "db.error.x"]),
    ],
)
async def test_pattern_subscriptions_use_fnmatch_over_the_whole_name(
    pattern: str, matching: list[str], not_matching: list[str]
) -> None:
    async with running_server(PubSubHandler) as server, connected_client(server) as client:
        await subscribe(client, pattern)
        for channel in not_matching + matching:
            server.publish(channel, channel)
        packets = await drain(client)
        assert [p.data for p in packets] == matching
        assert [p.channel for p in packets] == matching  # the concrete channel, not the pattern
        assert all(p.source is PacketSource.CHANNEL for p in packets)


async def test_exact_and_pattern_subscriber_gets_one_copy() -> None:
    async with running_server(PubSubHandler) as server, clients_of(server, 2) as (both, patterns_only):
        await subscribe(both, "chat.main", "chat.*", "*.main")
        await subscribe(patterns_only, "chat.*", "*.main", "c*")
        server.publish("chat.main", "once")
        for client in (both, patterns_only):
            packet = await client.recv(timeout=2)
            assert (packet.channel, packet.data) == ("chat.main", "once")
        await assert_nothing_more(both, patterns_only)


async def test_publish_to_several_channels() -> None:
    async with running_server(PubSubHandler) as server, clients_of(server, 3) as (ab, c, none):
        await subscribe(ab, "a", "b")
        await subscribe(c, "c")
        server.publish(["a", "b", "c", "d"], "multi")
        ab_packets = [await ab.recv(timeout=2) for _ in range(2)]
        assert sorted(p.channel for p in ab_packets) == ["a", "b"]  # type: ignore[type-var]
        assert all(p.data == "multi" for p in ab_packets)
        c_packet = await c.recv(timeout=2)
        assert (c_packet.channel, c_packet.data) == ("c", "multi")
        await assert_nothing_more(ab, c, none)
        server.publish(("a", "a"), "dup")  # the same channel twice: one copy
        server.publish(iter(["b"]), "iter")
        assert [(p.channel, p.data) for p in await drain(ab)] == [("a", "dup"), ("b", "iter")]


async def test_publish_channel_packet_as_is_and_wrong_source_rejected() -> None:
    async with running_server(PubSubHandler) as server, connected_client(server) as client:
        await subscribe(client, "room")
        server.publish("room", Packet(PacketSource.CHANNEL, data="pkt", channel="room", correlation_id="cid"))
        packet = await client.recv(timeout=2)
        assert (packet.source, packet.data, packet.channel, packet.correlation_id) == (
            PacketSource.CHANNEL,
            "pkt",
            "room",
            "cid",
        )
        for source in (PacketSource.BROADCAST, PacketSource.CUSTOM, PacketSource.RPC, PacketSource.UNKNOWN):
            with pytest.raises(webshocket.PacketError):
                server.publish("room", Packet(source, data="bad"))
        for source in (PacketSource.CHANNEL, PacketSource.CUSTOM):
            with pytest.raises(webshocket.PacketError):
                server.broadcast(Packet(source, data="bad"))
        await assert_nothing_more(client)


# ---------------------------------------------------------------------------- filtering


async def prepare_roles(server: WebSocketServer[Any], clients: list[WebSocketClient]) -> list[Conn]:
    admin, user, _anonymous = clients
    assert (await admin.send_rpc("set_state", "role", "admin")).error is None
    assert (await admin.send_rpc("set_state", "vip", True)).error is None
    assert (await user.send_rpc("set_state", "role", "user")).error is None
    assert (await user.send_rpc("set_state", "vip", False)).error is None
    return [await server_conn(server, c) for c in clients]


def filter_cases(admin: Conn, user: Conn, anonymous: Conn) -> list[tuple[str, dict[str, Any], set[str]]]:
    """(label, publish kwargs, who receives it)"""
    return [
        ("exclude", {"exclude": (admin,)}, {"user", "anonymous"}),
        ("exclude-two", {"exclude": [admin, anonymous]}, {"user"}),
        ("has", {"predicate": Has("role")}, {"admin", "user"}),
        ("has-falsy", {"predicate": Has("vip")}, {"admin", "user"}),
        ("is", {"predicate": Is("vip")}, {"admin"}),
        ("isequal", {"predicate": IsEqual("role", "user")}, {"user"}),
        ("any", {"predicate": AnyOf(IsEqual("role", "user"), Is("vip"))}, {"admin", "user"}),
        ("all", {"predicate": All(Has("role"), Is("vip"))}, {"admin"}),
        ("all-none", {"predicate": All(IsEqual("role", "user"), Is("vip"))}, set()),
        ("lambda", {"predicate": lambda c: "role" not in c.session_state}, {"anonymous"}),
        ("exclude+predicate", {"exclude": (user,), "predicate": Has("role")}, {"admin"}),
    ]


async def check_filters(server: WebSocketServer[Any], clients: list[WebSocketClient], use_publish: bool) -> None:
    conns = await prepare_roles(server, clients)
    cases = filter_cases(*conns)
    for label, kwargs, _ in cases:
        if use_publish:
            server.publish("room", label, **kwargs)
        else:
            server.broadcast(label, **kwargs)
    received = await asyncio.gather(*(drain(c) for c in clients))
    for name, packets in zip(("admin", "user", "anonymous"), received, strict=True):
        expected = [label for label, _, who in cases if name in who]
        assert [p.data for p in packets] == expected, name
        source = PacketSource.CHANNEL if use_publish else PacketSource.BROADCAST
        assert all(p.source is source for p in packets)


async def test_publish_exclude_and_predicates() -> None:
    async with running_server(PubSubHandler) as server, clients_of(server, 3) as clients:
        for client in clients:
            await subscribe(client, "room")
        await check_filters(server, clients, use_publish=True)


async def test_broadcast_exclude_and_predicates() -> None:
    async with running_server(PubSubHandler) as server, clients_of(server, 3) as clients:
        await check_filters(server, clients, use_publish=False)


async def test_broadcast_reaches_everyone() -> None:
    async with running_server(PubSubHandler) as server, clients_of(server, 3) as clients:
        await subscribe(clients[0], "room")
        server.broadcast({"all": True})
        for client in clients:
            packet = await client.recv(timeout=2)
            assert packet.source is PacketSource.BROADCAST
            assert packet.data == {"all": True}
            assert packet.channel is None
        server.broadcast("with-id", correlation_id="abc")
        for client in clients:
            packet = await client.recv(timeout=2)
            assert (packet.data, packet.correlation_id) == ("with-id", "abc")
        await assert_nothing_more(*clients)


# ---------------------------------------------------------------------------- unsubscribe / disconnect


async def test_unsubscribe_stops_delivery() -> None:
    async with running_server(PubSubHandler) as server, connected_client(server) as client:
        await subscribe(client, "alpha", "beta.*")
        server.publish("alpha", 1)
        server.publish("beta.x", 2)
        assert [p.data for p in await drain(client)] == [1, 2]
        remaining = await client.send_rpc("unsub", ["alpha", "beta.*"])
        assert remaining.data == []
        server.publish("alpha", 3)
        server.publish("beta.x", 4)
        await assert_nothing_more(client)
        assert "alpha" not in server.channels
        assert "beta.*" not in server.handler.patterns
        # unsubscribing from something never subscribed is harmless
        assert (await client.send_rpc("unsub", ["never"])).error is None


async def test_subscriptions_removed_on_disconnect() -> None:
    async with running_server(PubSubHandler) as server, connected_client(server) as stayer:
        await subscribe(stayer, "shared")
        leaver = WebSocketClient(f"ws://127.0.0.1:{server.port}")
        await leaver.connect()
        await subscribe(leaver, "shared", "solo", "pat.*")
        conn = await server_conn(server, leaver)
        assert conn in server.channels["shared"]
        assert conn in server.channels["solo"]
        assert conn in server.handler.patterns["pat.*"]
        await leaver.close()
        await wait_until(lambda: conn not in server.clients, timeout=2.0)
        assert conn not in server.channels.get("shared", set())
        assert conn not in server.channels.get("solo", set())
        assert conn not in server.handler.patterns.get("pat.*", set())
        assert all(conn not in subs for subs in server.channels.values())
        assert all(conn not in subs for subs in server.handler.patterns.values())
        assert conn.subscribed_channel == set()
        server.publish(["shared", "solo", "pat.x"], "after")
        packet = await stayer.recv(timeout=2)
        assert (packet.channel, packet.data) == ("shared", "after")
        await assert_nothing_more(stayer)


async def test_subscribed_channel_property() -> None:
    async with running_server(PubSubHandler) as server, connected_client(server) as client:
        conn = await server_conn(server, client)
        assert conn.subscribed_channel == set()
        assert conn.subscribe("one") is True
        conn.subscribe(["two", "t*"])
        assert conn.subscribed_channel == {"one", "two", "t*"}
        snapshot = conn.subscribed_channel
        snapshot.add("injected")
        assert "injected" not in conn.subscribed_channel
        conn.unsubscribe("two")
        assert conn.subscribed_channel == {"one", "t*"}
        assert conn in server.channels["one"]
        assert conn in server.handler.patterns["t*"]
        assert (await client.send_rpc("sub", ["one"])).data == ["one", "t*"]


# ---------------------------------------------------------------------------- limits


async def test_subscription_limit_direct_and_over_rpc() -> None:
    async with running_server(PubSubHandler, max_subscribed_channels=2) as server, connected_client(server) as client:
        conn = await server_conn(server, client)
        assert (await client.send_rpc("sub", ["a", "b.*"])).data == ["a", "b.*"]
        assert (await client.send_rpc("sub", ["a"])).data == ["a", "b.*"]  # already subscribed: no extra slot
        with pytest.raises(webshocket.SubscriptionLimitError):
            conn.subscribe("c")
        with pytest.raises(webshocket.SubscriptionLimitError):
            conn.subscribe(["a", "c"])
        failed = await client.send_rpc("sub", ["c"])
        assert failed.error == RPCErrorCode.APPLICATION_ERROR
        assert int(failed.error) == -32001
        assert isinstance(failed.response, str)
        assert "limit" in failed.response.lower()
        assert "2" in failed.response
        assert conn.subscribed_channel == {"a", "b.*"}
        assert "c" not in server.channels
        assert client.is_connected
        # after unsubscribing a slot is free again
        assert (await client.send_rpc("unsub", ["a"])).data == ["b.*"]
        assert (await client.send_rpc("sub", ["c"])).data == ["b.*", "c"]


async def test_subscription_limit_is_all_or_nothing() -> None:
    async with running_server(PubSubHandler, max_subscribed_channels=3) as server, connected_client(server) as client:
        conn = await server_conn(server, client)
        conn.subscribe("x")
        with pytest.raises(webshocket.SubscriptionLimitError):
            conn.subscribe(["y", "z", "w"])
        assert conn.subscribed_channel == {"x"}
        assert not {"y", "z", "w"} & set(server.channels)
        conn.subscribe(["y", "z"])
        assert conn.subscribed_channel == {"x", "y", "z"}


async def test_default_limit_is_five_and_none_is_unlimited() -> None:
    async with running_server(PubSubHandler) as server, connected_client(server) as client:
        assert (await client.send_rpc("sub", [f"c{i}" for i in range(5)])).error is None
        assert (await client.send_rpc("sub", ["c5"])).error == RPCErrorCode.APPLICATION_ERROR
    async with (
        running_server(PubSubHandler, max_subscribed_channels=None) as server,
        connected_client(server) as client,
    ):
        names = [f"c{i}" for i in range(50)]
        assert (await client.send_rpc("sub", names)).data == sorted(names)
        server.publish("c49", "last")
        assert (await client.recv(timeout=2)).data == "last"
