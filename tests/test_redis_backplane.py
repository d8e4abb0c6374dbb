"""The Redis backplane against a real redis-server: separate server processes plus an in-process node."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from fnmatch import fnmatchcase
from typing import Any

import msgpack
import pytest
import redis
import redis.asyncio
import websockets
from backplane_node import NodeHandler
from helpers import HOST, uri_of, wait_until
from redis_server import NodeProcess, RedisServer, free_port, redis_available

from webshocket import (
    All,
    ConnectionFailedError,
    Has,
    IsEqual,
    PacketSource,
    ReceiveTimeoutError,
    WebSocketClient,
    WebSocketServer,
    rpc_method,
)
from webshocket.backplane import ENVELOPE_VERSION, KIND_CHANNEL, MAX_ORIGINS, predicate_spec
from webshocket.handler import hub_of
from webshocket.redis_backplane import RedisBackplane, fold_channel, redis_glob
from webshocket.server import make_backplane

pytestmark = pytest.mark.skipif(not redis_available(), reason="redis-server is not installed")

PREFIX = "wst:"


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def processes(redis_server: RedisServer) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """Two server nodes, each in its own process, on the module's Redis."""
    nodes = [NodeProcess("--redis", redis_server.url, "--prefix", PREFIX) for _ in range(2)]
    try:
        for node in nodes:
            node.start()
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.stop()


def node_server(url: str, prefix: str = PREFIX, **options: Any) -> WebSocketServer[NodeHandler]:
    backplane = RedisBackplane(url, channel_prefix=prefix, **options)
    return WebSocketServer(HOST, 0, clientHandler=NodeHandler, backplane=backplane, max_subscribed_channels=None)


@pytest.fixture
async def local_node(redis_server: RedisServer) -> AsyncIterator[WebSocketServer[NodeHandler]]:
    """A third node, in the test's own process and event loop."""
    server = node_server(redis_server.url)
    await server.start()
    try:
        yield server
    finally:
        await server.close(timeout=2.0)


async def client_of(stack: AsyncExitStack, uri: str) -> WebSocketClient:
    client = WebSocketClient(uri)
    await client.connect()
    stack.push_async_callback(client.close)
    return client


async def joined(client: WebSocketClient, *channels: str, team: str = "") -> WebSocketClient:
    for channel in channels:
        reply = await client.send_rpc("join", channel, team=team)
        assert reply.data is True, reply
    return client


async def assert_silent(*clients: WebSocketClient) -> None:
    """No client receives anything within 0.3 s."""

    async def silent(client: WebSocketClient) -> None:
        with pytest.raises(ReceiveTimeoutError):
            extra = await client.recv(timeout=0.3)
            pytest.fail(f"unexpected packet {extra!r}")

    await asyncio.gather(*(silent(c) for c in clients))


async def received(client: WebSocketClient) -> tuple[str | None, Any]:
    packet = await client.recv(timeout=3)
    return packet.channel, packet.data


async def redis_query(url: str, *args: Any) -> Any:
    client = redis.asyncio.Redis.from_url(url)
    try:
        return await client.execute_command(*args)
    finally:
        await client.aclose()


def subscribe_calls(info: dict[str, Any]) -> int:
    return sum(info.get(f"cmdstat_{verb}", {}).get("calls", 0) for verb in ("subscribe", "psubscribe"))


# --------------------------------------------------------------------------- glob translation


def test_redis_glob_agrees_with_fnmatch_in_real_redis(redis_server: RedisServer) -> None:
    """Redis (KEYS uses the same matcher as PSUBSCRIBE) never misses a channel fnmatch matches,
    and for ASCII names matches exactly the same ones."""
    rng = random.Random(20261127)
    pattern_alphabet = "ab.*?[]!-^\\é"
    channel_alphabet = "abc.*?[]!-^\\é"
    patterns = {"".join(rng.choice(pattern_alphabet) for _ in range(rng.randint(1, 7))) for _ in range(600)}
    patterns |= {"[]]", "[!]]", "[a-]", "[-a]", "[z-a]", "[^a]", "[\\]", "a\\*", "[", "a[b", "[!é]", "[é]a", "*[!a-b]*"}
    channels = {"".join(rng.choice(channel_alphabet) for _ in range(rng.randint(0, 6))) for _ in range(800)}
    client = redis.Redis(host=redis_server.host, port=redis_server.port, db=3)
    try:
        client.flushdb()
        client.mset({b"k:" + fold_channel(c): b"1" for c in channels})
        pipe = client.pipeline(transaction=False)
        checked = [p for p in patterns if redis_glob(p) is not None]
        for pattern in checked:
            pipe.keys(b"k:" + (redis_glob(pattern) or b""))
        results = pipe.execute()
        exact = 0
        for pattern, keys in zip(checked, results, strict=True):
            found = {k[2:] for k in keys}
            for channel in channels:
                wanted = fnmatchcase(channel, pattern)
                if wanted:
                    assert fold_channel(channel) in found, (pattern, channel, redis_glob(pattern))
                if pattern.isascii() and channel.isascii():
                    assert (channel.encode() in found) == wanted, (pattern, channel, redis_glob(pattern))
                    exact += 1
        assert exact > 10_000
        for pattern in patterns - set(checked):  # "matches nothing" must be true
            assert not any(fnmatchcase(c, pattern) for c in channels), pattern
    finally:
        client.flushdb()
        client.close()


def test_redis_url_makes_a_redis_backplane() -> None:
    backplane = make_backplane("redis://127.0.0.1:1/0")
    assert isinstance(backplane, RedisBackplane) and backplane.url == "redis://127.0.0.1:1/0"
    assert backplane.redis_channel("news.café") == b"webshocket:c:news.caf\x7f"
    assert backplane.redis_pattern("a*[?]") == b"webshocket:c:a*[\\?]"


# --------------------------------------------------------------------------- across processes


async def test_exact_and_glob_subscriptions_across_processes_exactly_once(
    processes: tuple[NodeProcess, NodeProcess], local_node: WebSocketServer[NodeHandler]
) -> None:
    a, b = processes
    async with AsyncExitStack() as stack:
        exact_b = await joined(await client_of(stack, b.uri), "room.ab")
        star_a = await joined(await client_of(stack, a.uri), "room.*")
        question_c = await joined(await client_of(stack, uri_of(local_node)), "room.a?")
        set_b = await joined(await client_of(stack, b.uri), "room.[ab]b")
        negated_a = await joined(await client_of(stack, a.uri), "room.[!ab]b")
        both_c = await joined(await client_of(stack, uri_of(local_node)), "room.ab", "room.*")
        other_b = await joined(await client_of(stack, b.uri), "lobby")
        publisher = await client_of(stack, a.uri)

        await publisher.send_rpc("say", "room.ab", {"n": 1})
        for client in (exact_b, star_a, question_c, set_b, both_c):
            assert await received(client) == ("room.ab", {"n": 1})
        await assert_silent(exact_b, star_a, question_c, set_b, negated_a, both_c, other_b)

        await (await client_of(stack, uri_of(local_node))).send_rpc("say", "room.cb", "second")
        for client in (star_a, negated_a, both_c):
            assert await received(client) == ("room.cb", "second")
        await assert_silent(exact_b, star_a, question_c, set_b, negated_a, both_c, other_b)


async def test_broadcast_predicates_across_processes(
    processes: tuple[NodeProcess, NodeProcess], local_node: WebSocketServer[NodeHandler]
) -> None:
    a, b = processes
    async with AsyncExitStack() as stack:
        teams: dict[str, list[WebSocketClient]] = {"red": [], "blue": [], "": []}
        for uri in (a.uri, b.uri, uri_of(local_node)):
            for team in teams:
                client = await client_of(stack, uri)
                if team:
                    await client.send_rpc("set_team", team)
                teams[team].append(client)
        everyone = [c for clients in teams.values() for c in clients]
        cases: list[tuple[Any, list[WebSocketClient]]] = [
            (IsEqual("team", "red"), teams["red"]),
            (Has("team"), teams["red"] + teams["blue"]),
            (All(Has("team"), IsEqual("team", "blue")), teams["blue"]),
        ]
        shouter = teams[""][0]
        for i, (predicate, expected) in enumerate(cases):
            await shouter.send_rpc("shout", i, predicate_spec(predicate))
            for client in expected:
                assert await received(client) == (None, i), predicate
            await assert_silent(*everyone)


async def test_exclude_only_concerns_the_publishing_node(processes: tuple[NodeProcess, NodeProcess]) -> None:
    a, b = processes
    async with AsyncExitStack() as stack:
        speaker = await joined(await client_of(stack, a.uri), "ex")
        neighbour = await joined(await client_of(stack, a.uri), "ex")
        remote = await joined(await client_of(stack, b.uri), "ex")
        await speaker.send_rpc("say_others", "ex", "hi")
        assert await received(neighbour) == ("ex", "hi")
        assert await received(remote) == ("ex", "hi")
        await assert_silent(speaker, neighbour, remote)


async def test_order_of_publishes_from_one_node_is_kept(processes: tuple[NodeProcess, NodeProcess]) -> None:
    a, b = processes
    async with AsyncExitStack() as stack:
        subscriber = await joined(await client_of(stack, b.uri), "seq")
        publisher = await client_of(stack, a.uri)
        await publisher.send_rpc("burst", "seq", 200)  # 200 publishes in one go: pipelined
        assert [(await received(subscriber))[1] for _ in range(200)] == list(range(200))
        await asyncio.gather(*(publisher.send_rpc("say", "seq", i) for i in range(200)))  # one at a time
        assert [(await received(subscriber))[1] for _ in range(200)] == list(range(200))
        await assert_silent(subscriber)


async def test_json_client_on_a_remote_node(
    processes: tuple[NodeProcess, NodeProcess], local_node: WebSocketServer[NodeHandler]
) -> None:
    a, b = processes
    async with AsyncExitStack() as stack:
        browser = await stack.enter_async_context(websockets.connect(b.uri))
        request = {"source": 5, "rpc": {"type": "request", "method": "join", "args": ["json.*"], "call_id": "j1"}}
        await browser.send(json.dumps(request))
        reply = json.loads(await asyncio.wait_for(browser.recv(), 3))
        assert reply["rpc"]["call_id"] == "j1" and reply["rpc"]["response"] is True
        framework = await joined(await client_of(stack, a.uri), "json.é")
        data = {"x": [1, "two", None, 2.5], "s": "é", "b": b"\x00\x01"}
        await (await client_of(stack, uri_of(local_node))).send_rpc("say", "json.é", data)
        got = json.loads(await asyncio.wait_for(browser.recv(), 3))
        assert got == {"source": 2, "data": {"x": [1, "two", None, 2.5], "s": "é", "b": "AAE="}, "channel": "json.é"}
        assert await received(framework) == ("json.é", data)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(browser.recv(), 0.3)


# --------------------------------------------------------------------------- subscriptions in Redis


class FlipHandler(NodeHandler):
    @rpc_method()
    async def flip(self, connection: Any, channel: str) -> None:
        connection.subscribe(channel)
        connection.unsubscribe(channel)


async def test_redis_subscriptions_follow_local_ones_in_batches() -> None:
    with RedisServer() as own:
        server = WebSocketServer(
            HOST,
            0,
            clientHandler=FlipHandler,
            backplane=RedisBackplane(own.url, channel_prefix="b:"),
            max_subscribed_channels=None,
        )
        await server.start()
        backplane = server.backplane
        assert isinstance(backplane, RedisBackplane)

        async def in_redis() -> tuple[set[bytes], int]:
            await backplane.sync()
            channels = set(await redis_query(own.url, "PUBSUB", "CHANNELS", "b:*"))
            return channels, await redis_query(own.url, "PUBSUB", "NUMPAT")

        def expected() -> tuple[set[bytes], int]:
            channels = {backplane.redis_channel(c) for c in server.channels} | {backplane.broadcast_channel}
            return channels, len({backplane.redis_pattern(p) for p in server.patterns})

        try:
            before = subscribe_calls(await redis_query(own.url, "INFO", "commandstats"))
            async with AsyncExitStack() as stack:
                clients = [await client_of(stack, uri_of(server)) for _ in range(5)]
                names = [[f"ch.{k}.{i}" for i in range(100)] + [f"p{k}.*", "shared.[ab]"] for k in range(5)]
                await asyncio.gather(
                    *(c.send_rpc("join", n) for c, own_names in zip(clients, names, strict=True) for n in own_names)
                )
                assert len(server.channels) == 500 and len(server.patterns) == 6
                assert await in_redis() == expected()
                assert len(expected()[0]) == 501
                commands = subscribe_calls(await redis_query(own.url, "INFO", "commandstats")) - before
                assert 2 <= commands <= 50, commands  # 505 names, batched

                await asyncio.gather(
                    *(c.send_rpc("leave", n) for c, ns in zip(clients, names, strict=True) for n in ns[:50])
                )
                await asyncio.gather(*(c.send_rpc("leave", "shared.[ab]") for c in clients[:4]))
                assert len(server.channels) == 250 and "shared.[ab]" in server.patterns
                assert await in_redis() == expected()

                sent = backplane.stats["subscribe_commands"]
                await clients[0].send_rpc("flip", "brief")  # in and out before the flush: nothing sent
                assert await in_redis() == expected()
                assert backplane.stats["subscribe_commands"] == sent
                await clients[0].close()
                await wait_until(lambda: len(server.channels) == 200)
                assert await in_redis() == expected()
            await wait_until(lambda: not server.channels and not server.patterns)
            assert await in_redis() == ({backplane.broadcast_channel}, 0)
        finally:
            await server.close(timeout=2.0)


# --------------------------------------------------------------------------- faults


async def test_unreachable_redis_fails_start_clearly() -> None:
    port = free_port()
    server: WebSocketServer[Any] = WebSocketServer(HOST, 0, backplane=f"redis://127.0.0.1:{port}/0")
    with pytest.raises(ConnectionFailedError, match=f"cannot reach Redis at redis://127.0.0.1:{port}/0"):
        await server.start()
    assert server._server is None and hub_of(server.handler).bridge is None  # never listened


async def test_redis_restart_is_survived(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    caplog.set_level(logging.WARNING, logger="webshocket.backplane.redis")
    own = RedisServer().start()
    x = node_server(own.url, "r:")
    y = node_server(own.url, "r:")
    try:
        await x.start()
        await y.start()
        bx, by = x.backplane, y.backplane
        assert isinstance(bx, RedisBackplane) and isinstance(by, RedisBackplane)
        async with AsyncExitStack() as stack:
            local = await joined(await client_of(stack, uri_of(x)), "live", "li*")
            remote = await joined(await client_of(stack, uri_of(y)), "live")
            speaker_x = await client_of(stack, uri_of(x))
            await speaker_x.send_rpc("say", "live", "before")
            assert await received(local) == ("live", "before")
            assert await received(remote) == ("live", "before")

            own.kill()
            await wait_until(lambda: not bx.connected and not by.connected, timeout=3)
            await speaker_x.send_rpc("say", "live", "during")
            assert await received(local) == ("live", "during")  # local delivery goes on
            assert bx.stats["dropped_while_disconnected"] >= 1
            await assert_silent(remote)

            await asyncio.sleep(0.3)
            own.start()
            deadline = loop.time() + 8
            got: tuple[str | None, Any] | None = None
            attempt = 0
            while got is None:  # publish until one gets through
                assert loop.time() < deadline, "delivery did not resume after Redis came back"
                attempt += 1
                await speaker_x.send_rpc("say", "live", attempt)
                assert await received(local) == ("live", attempt)
                try:
                    got = (await remote.recv(timeout=0.2)).channel, None
                except ReceiveTimeoutError:
                    continue
            assert bx.stats["reconnects"] == 1 and by.stats["reconnects"] == 1
            await by.sync()
            await bx.sync()
            # subscriptions were restored: the exact one and the pattern, still once per client
            await (await client_of(stack, uri_of(y))).send_rpc("say", "live", "after")
            assert await received(local) == ("live", "after")
            while (packet := await received(remote)) != ("live", "after"):
                assert packet[0] == "live"  # late polling publishes
            await assert_silent(local, remote)
            assert await redis_query(own.url, "PUBSUB", "NUMPAT") == 1
        messages = [r.getMessage() for r in caplog.records]
        assert any("lost its connection" in m for m in messages)
        assert any("reconnected" in m and "publishes of this node were not sent" in m for m in messages)
        assert loop_errors == []
    finally:
        await x.close(timeout=2.0)
        await y.close(timeout=2.0)
        own.close()
        loop.set_exception_handler(None)


async def test_foreign_messages_on_the_channel_are_ignored(local_node: WebSocketServer[NodeHandler]) -> None:
    backplane = local_node.backplane
    assert isinstance(backplane, RedisBackplane)
    async with AsyncExitStack() as stack:
        client = await joined(await client_of(stack, uri_of(local_node)), "junk")
        await redis_query(backplane.url, "PUBLISH", backplane.redis_channel("junk"), b"not an envelope")
        await redis_query(backplane.url, "PUBLISH", backplane.broadcast_channel, msgpack.packb([99, 1, 2]))
        await wait_until(lambda: backplane.stats["received"] >= 2)
        await assert_silent(client)
        assert backplane.connected


async def test_unresponsive_redis_is_noticed_by_health_pings() -> None:
    import os
    import signal

    own = RedisServer().start()
    server = node_server(own.url, "h:", health_check_interval=0.2, connect_timeout=0.5)
    try:
        await server.start()
        backplane = server.backplane
        assert isinstance(backplane, RedisBackplane)
        assert own.process is not None
        os.kill(own.process.pid, signal.SIGSTOP)  # the socket stays open, nothing answers
        try:
            await wait_until(lambda: not backplane.connected, timeout=3)
        finally:
            os.kill(own.process.pid, signal.SIGCONT)
        await wait_until(lambda: backplane.connected, timeout=5)
        assert backplane.stats["reconnects"] == 1
        assert await backplane.sync()
    finally:
        await server.close(timeout=2.0)
        own.close()


def forged_envelope(origin: bytes, seq: int, channel: str, data: Any) -> bytes:
    """An envelope as anyone who can PUBLISH to Redis could write it."""
    packet = msgpack.packb({"source": int(PacketSource.CHANNEL), "data": data, "channel": channel})
    return msgpack.packb([ENVELOPE_VERSION, origin, seq, KIND_CHANNEL, channel, packet, None], use_bin_type=True)


async def test_a_forged_far_future_sequence_does_not_silence_an_origin(
    local_node: WebSocketServer[NodeHandler],
) -> None:
    backplane = local_node.backplane
    assert isinstance(backplane, RedisBackplane)
    channel = backplane.redis_channel("seq")
    async with AsyncExitStack() as stack:
        client = await joined(await client_of(stack, uri_of(local_node)), "seq")
        origin = b"node-A.."
        for seq, data in ((5, "five"), (2**62, "forged"), (6, "six"), (6, "six again"), (7, "seven")):
            await redis_query(backplane.url, "PUBLISH", channel, forged_envelope(origin, seq, "seq", data))
        got = [(await client.recv(timeout=5)).data for _ in range(4)]
        assert got == ["five", "forged", "six", "seven"]  # the repeat of 6 is dropped, 7 is not silenced
        await assert_silent(client)


async def test_the_table_of_origins_is_bounded(local_node: WebSocketServer[NodeHandler]) -> None:
    backplane = local_node.backplane
    assert isinstance(backplane, RedisBackplane)
    bridge = hub_of(local_node.handler).bridge
    assert bridge is not None
    channel = backplane.redis_channel("many")
    async with AsyncExitStack() as stack:
        client = await joined(await client_of(stack, uri_of(local_node)), "many")
        count = MAX_ORIGINS + 500
        publisher = redis.asyncio.Redis.from_url(backplane.url)
        try:
            pipe = publisher.pipeline(transaction=False)
            for i in range(count):
                pipe.publish(channel, forged_envelope(i.to_bytes(8, "big"), 1, "many", i))
            await pipe.execute()
        finally:
            await publisher.aclose()
        await wait_until(lambda: bridge.received >= count, timeout=30)
        assert bridge.origins == MAX_ORIGINS
        assert (await client.recv(timeout=5)).data == 0
