"""A sharded Redis backplane (``backplane=[url, url]``) against two real redis-servers: routing, exactly
once across shards, patterns and broadcasts, recovery and presence on shards, one shard down, the CLI."""

from __future__ import annotations

import asyncio
import re
import signal
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import msgpack
import pytest
import redis.asyncio
from backplane_node import NodeHandler
from helpers import FAST_RETRY, HOST, Proxy, uri_of, wait_until
from redis_server import NodeProcess, RedisServer, free_port, redis_available

from webshocket import (
    ConnectionFailedError,
    Packet,
    Presence,
    ReceiveTimeoutError,
    Recovery,
    WebSocketClient,
    WebSocketServer,
    rpc_method,
)
from webshocket._codec import decode_packet
from webshocket.backplane import ENVELOPE_VERSION, KIND_CHANNEL, BackplaneBridge, MemoryBackplane, MemoryHub
from webshocket.redis_backplane import RedisBackplane, fold_channel
from webshocket.redis_recovery import RedisStore
from webshocket.redis_shards import ShardedRedisBackplane, shard_of
from webshocket.server import make_backplane

needs_redis = pytest.mark.skipif(not redis_available(), reason="redis-server is not installed")

PREFIX = "shard:"


# --------------------------------------------------------------------------- helpers


def router(urls: list[str], prefix: str = PREFIX) -> ShardedRedisBackplane:
    """A backplane used only for its routing (never started)."""
    return ShardedRedisBackplane(urls, channel_prefix=prefix)


def names_on(backplane: ShardedRedisBackplane, shard: int, stem: str, count: int) -> list[str]:
    """``count`` channel names ``stem<i>`` that live on ``shard``."""
    names = (f"{stem}{i}" for i in range(10_000))
    found = [name for name in names if backplane.shard_index(name) == shard]
    return found[:count]


async def redis_query(url: str, *args: Any) -> Any:
    client = redis.asyncio.Redis.from_url(url)
    try:
        return await client.execute_command(*args)  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()


async def backplane_clients(url: str) -> int:
    """Connections named ``webshocket-backplane`` on the Redis at ``url``."""
    listing = await redis_query(url, "CLIENT", "LIST")
    text = listing.decode() if isinstance(listing, bytes) else str(listing)
    return text.count("name=webshocket-backplane ")


async def joined(client: WebSocketClient, *channels: str) -> WebSocketClient:
    for channel in channels:
        reply = await client.send_rpc("join", channel)
        assert reply.data is True, reply
    return client


async def packets(client: WebSocketClient, count: int, timeout: float = 10.0) -> list[Packet[Any]]:
    return [await client.recv(timeout) for _ in range(count)]


async def assert_silent(client: WebSocketClient, quiet: float = 0.3) -> None:
    with pytest.raises(ReceiveTimeoutError):
        extra = await client.recv(timeout=quiet)
        pytest.fail(f"unexpected packet {extra!r}")


def by_channel(received: list[Packet[Any]]) -> dict[str, list[Any]]:
    """The data received on each channel, in the order received."""
    out: dict[str, list[Any]] = {}
    for packet in received:
        assert packet.channel is not None
        out.setdefault(packet.channel, []).append(packet.data)
    return out


@pytest.fixture(scope="module")
def redis_pair() -> Iterator[tuple[RedisServer, RedisServer]]:
    if not redis_available():
        pytest.skip("redis-server is not installed")
    with RedisServer() as first, RedisServer() as second:
        yield first, second


@pytest.fixture(scope="module")
def urls(redis_pair: tuple[RedisServer, RedisServer]) -> list[str]:
    return [server.url for server in redis_pair]


@pytest.fixture(scope="module")
def processes(urls: list[str]) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """Two server nodes, each in its own process, on a sharded backplane of both Redis servers."""
    nodes = [NodeProcess("--redis", ",".join(urls), "--prefix", PREFIX) for _ in range(2)]
    try:
        for node in nodes:
            node.start()
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.stop()


@asynccontextmanager
async def clients(*uris: str) -> AsyncIterator[list[WebSocketClient]]:
    async with AsyncExitStack() as stack:
        out = []
        for uri in uris:
            client = WebSocketClient(uri)
            await client.connect()
            stack.push_async_callback(client.close)
            out.append(client)
        yield out


# --------------------------------------------------------------------------- routing, options


def test_a_channels_shard_is_the_crc32_of_its_redis_channel() -> None:
    backplane = router(["redis://127.0.0.1:1/0", "redis://127.0.0.1:2/0", "redis://127.0.0.1:3/0"], "webshocket:")
    for name in ("news", "sport", "room.1", "café", ""):
        expected = zlib.crc32(b"webshocket:c:" + fold_channel(name)) % 3  # the Redis channel's CRC-32
        assert backplane.shard_index(name) == expected == shard_of(backplane.channel_key(name), 3)
        assert backplane.shard_for(name) is backplane.shards[expected]
    # fixed forever: every node, every run, every release must agree (nodes of two releases share a cluster)
    assert [backplane.shard_index(n) for n in ("news", "sport", "café", "room.1")] == [0, 2, 0, 2]
    two = router(["redis://127.0.0.1:1/0", "redis://127.0.0.1:2/0"])
    assert [two.shard_index(n) for n in ("news", "sport", "room.1", "room.4")] == [1, 0, 1, 0]


def test_subscriptions_go_to_the_channels_shard_patterns_to_every_shard() -> None:
    backplane = router(["redis://127.0.0.1:1/0", "redis://127.0.0.1:2/0"])
    first, second = backplane.shards
    backplane.subscribe("sport")  # shard 0
    backplane.subscribe("news")  # shard 1
    backplane.subscribe("room[.]1")  # a literal subscription: room.1's shard (1)
    backplane.subscribe("room.*")  # a pattern: both
    assert set(first._names) == {"sport", "room.*"}
    assert set(second._names) == {"news", "room[.]1", "room.*"}
    backplane.unsubscribe("room.*")
    backplane.unsubscribe("news")
    assert set(first._names) == {"sport"} and set(second._names) == {"room[.]1"}


def test_the_option_makes_one_backplane_or_a_sharded_one() -> None:
    one = make_backplane("redis://127.0.0.1:6379/0")
    assert type(one) is RedisBackplane  # one URL: the plain backplane, as before
    assert type(make_backplane(["redis://127.0.0.1:6379/0"])) is RedisBackplane
    for option in (
        "redis://a:6379/0,redis://b:6379/0",
        "redis://a:6379/0, redis://b:6379/0",
        ("redis://a:6379/0", "redis://b:6379/0"),
    ):
        sharded = make_backplane(option)
        assert isinstance(sharded, ShardedRedisBackplane)
        assert sharded.urls == ("redis://a:6379/0", "redis://b:6379/0")
        assert [shard.url for shard in sharded.shards] == list(sharded.urls)
    password = make_backplane("redis://u:p,w@a:6379/0")  # a comma in a password is not a separator
    assert type(password) is RedisBackplane and password.url == "redis://u:p,w@a:6379/0"
    with pytest.raises(ValueError, match="got 'b:6379' \\(in \\['redis://a:6379/0', 'b:6379'\\]\\)"):
        make_backplane(["redis://a:6379/0", "b:6379"])
    with pytest.raises(ValueError, match="got ''"):
        make_backplane("redis://a:6379/0,")
    with pytest.raises(ValueError, match="got 'localhost:6380' \\(in 'redis://a:6379/0,localhost:6380'\\)"):
        make_backplane("redis://a:6379/0,localhost:6380")
    with pytest.raises(ValueError, match="are one Redis server"):
        make_backplane("redis://a:6379/0,redis://A:6379/1")  # pub/sub ignores the database
    with pytest.raises(ValueError, match="are one Redis server"):
        url = "redis://a/0"
        make_backplane([url, url])


def test_repeats_are_told_per_lane() -> None:
    """One origin's envelopes arrive in order on each lane (shard), not across lanes."""
    delivered: list[Any] = []
    bridge = BackplaneBridge(lambda *args: delivered.append(args[2]), MemoryBackplane(MemoryHub()))

    def envelope(seq: int) -> bytes:
        fields = [ENVELOPE_VERSION, b"origin-a", seq, KIND_CHANNEL, "c", b"packet-%d" % seq, None]
        return bytes(msgpack.packb(fields, use_bin_type=True))

    bridge.deliver(envelope(2), 1)
    bridge.deliver(envelope(1), 0)  # lower, on another lane: new
    bridge.deliver(envelope(1), 0)  # the same again on its lane: a repeat
    bridge.deliver(envelope(3), 0)
    bridge.deliver(envelope(2), 1)
    assert delivered == [b"packet-2", b"packet-1", b"packet-3"]
    assert bridge.duplicates == 2


# --------------------------------------------------------------------------- across node processes


@needs_redis
async def test_publishes_on_many_channels_cross_both_shards_exactly_once_in_order(
    processes: tuple[NodeProcess, NodeProcess], urls: list[str]
) -> None:
    node_a, node_b = processes
    backplane = router(urls)
    channels = names_on(backplane, 0, "many.", 10) + names_on(backplane, 1, "many.", 10)
    async with clients(node_a.uri, node_b.uri) as (publisher, subscriber):
        await joined(subscriber, *channels)
        per_shard = [set(await redis_query(url, "PUBSUB", "CHANNELS", f"{PREFIX}c:many.*")) for url in urls]
        assert per_shard[0] == {f"{PREFIX}c:{c}".encode() for c in channels[:10]}  # each shard has its own
        assert per_shard[1] == {f"{PREFIX}c:{c}".encode() for c in channels[10:]}
        await publisher.send_rpc("spray", channels, 50)
        got = by_channel(await packets(subscriber, 20 * 50))
        assert got == {channel: list(range(50)) for channel in channels}  # none missing, none twice, in order
        await assert_silent(subscriber)
        stats = [(await node.send_rpc("stats")).data for node in (publisher, subscriber)]
        assert stats[0]["published"] >= 1000 and stats[1]["received"] >= 1000
        calls = [await redis_query(url, "INFO", "commandstats") for url in urls]
        assert all(info.get("cmdstat_publish", {}).get("calls", 0) >= 500 for info in calls)  # both carried some


@needs_redis
async def test_alternating_shards_lose_nothing(processes: tuple[NodeProcess, NodeProcess], urls: list[str]) -> None:
    """One origin's publishes alternate between two shards: the receiving node reads the two shards'
    connections independently, so the sequence numbers arrive out of order across them; none is a repeat."""
    node_a, node_b = processes
    backplane = router(urls)
    channels = [names_on(backplane, 0, "alt.", 1)[0], names_on(backplane, 1, "alt.", 1)[0]]
    async with clients(node_a.uri, node_b.uri) as (publisher, subscriber):
        await joined(subscriber, *channels)
        for _ in range(3):
            await publisher.send_rpc("spray", channels, 1000)
        got = by_channel(await packets(subscriber, 6000, timeout=20))
        assert got == {channel: list(range(1000)) * 3 for channel in channels}
        await assert_silent(subscriber)


@needs_redis
async def test_a_pattern_subscriber_gets_channels_of_both_shards(
    processes: tuple[NodeProcess, NodeProcess], urls: list[str]
) -> None:
    node_a, node_b = processes
    backplane = router(urls)
    channels = names_on(backplane, 0, "room.", 3) + names_on(backplane, 1, "room.", 3)
    async with clients(node_a.uri, node_b.uri) as (publisher, subscriber):
        await joined(subscriber, "room.*")
        for url in urls:
            assert await redis_query(url, "PUBSUB", "NUMPAT") >= 1  # a PSUBSCRIBE on every shard
        await publisher.send_rpc("spray", channels, 5)
        got = by_channel(await packets(subscriber, 30))
        assert got == {channel: list(range(5)) for channel in channels}
        await assert_silent(subscriber)


@needs_redis
async def test_a_broadcast_reaches_every_client_once(processes: tuple[NodeProcess, NodeProcess]) -> None:
    node_a, node_b = processes
    async with clients(node_a.uri, node_a.uri, node_b.uri, node_b.uri) as everyone:
        await everyone[0].send_rpc("shout", "hello")
        await everyone[3].send_rpc("shout", "again")
        for client in everyone:
            assert sorted([(await client.recv(5)).data, (await client.recv(5)).data]) == ["again", "hello"]
        for client in everyone:
            await assert_silent(client, 0.2)


# --------------------------------------------------------------------------- recovery on shards


@needs_redis
async def test_a_client_of_a_killed_node_resumes_with_missed_messages_of_both_shards(urls: list[str]) -> None:
    prefix = "shrec1:"
    backplane = router(urls, prefix)
    news = [names_on(backplane, 0, "news.", 1)[0], names_on(backplane, 1, "news.", 1)[0]]
    nodes = [NodeProcess("--redis", ",".join(urls), "--prefix", prefix, "--recovery").start() for _ in range(2)]
    first, second = nodes
    stack = AsyncExitStack()
    reconnects: list[bool] = []
    publisher = WebSocketClient(second.uri)
    proxy = Proxy(first.port)
    try:
        async with proxy.running() as port:
            client = WebSocketClient(f"ws://{HOST}:{port}", on_reconnect=reconnects.append)
            stack.push_async_callback(client.close)
            await client.connect(**FAST_RETRY)
            await joined(client, *news)
            await client.send_rpc("set_team", "red")
            await publisher.connect()
            for value in range(1, 26):
                for channel in news:
                    await publisher.send_rpc("say", channel, value)
            early = await packets(client, 10)  # read some; the rest waits
            await asyncio.sleep(0.3)  # a session snapshot is written every 0.1 s
            first.stop(signal.SIGKILL)
            proxy.port = second.port  # the load balancer now sends the client to the other node
            for value in range(26, 51):
                for channel in news:
                    await publisher.send_rpc("say", channel, value)
            rest = await packets(client, 90)
            assert by_channel(early + rest) == {channel: list(range(1, 51)) for channel in news}
            for channel in news:  # offsets are one sequence per channel, each on its own shard
                offsets = [p.offset for p in early + rest if p.channel == channel]
                assert offsets == list(range(1, 51))
            await assert_silent(client)
            assert reconnects == [True]
            assert (await client.send_rpc("team")).data == "red"
            for shard, url in enumerate(urls):  # each channel's history on its own shard, nowhere else
                keys = await redis_query(url, "KEYS", f"{prefix}h:*")
                assert keys == [f"{prefix}h:{news[shard]}".encode()]
                assert await redis_query(url, "EXISTS", f"{prefix}seq") == 1  # one sequence per shard
    finally:
        await stack.aclose()
        await publisher.close()
        for node in nodes:
            node.stop()


class History(NodeHandler):
    @rpc_method()
    async def last(self, connection: Any, channel: str, limit: int) -> list[Any]:
        return [packet.data for packet in await self.history(channel, limit)]


@needs_redis
async def test_history_latest_and_missed_messages_read_each_channels_shard(urls: list[str]) -> None:
    prefix = "shrec2:"
    backplane = router(urls, prefix)
    prices = names_on(backplane, 0, "prices.", 1) + names_on(backplane, 1, "prices.", 1)
    recovery = Recovery(history_size=20, deliver_latest=("prices.*",))
    servers = [
        WebSocketServer(
            HOST,
            0,
            clientHandler=History,
            backplane=ShardedRedisBackplane(urls, channel_prefix=prefix),
            recovery=recovery,
            max_subscribed_channels=None,
        )
        for _ in range(2)
    ]
    for server in servers:
        await server.start()
    try:
        async with clients(uri_of(servers[1])) as (client,):
            store = servers[1]._hub.store
            assert isinstance(store, RedisStore)
            start = store.seq  # a subscription to prices.* made now
            for value in range(10):
                for channel in prices:
                    servers[0].publish(channel, value)  # published on one node ...
                    await asyncio.sleep(0.005)  # (a few ms apart: Redis times tell the order across shards)
            for channel in prices:  # ... read on the other, from the channel's shard
                for _ in range(100):
                    if (await client.send_rpc("last", channel, 3)).data == [7, 8, 9]:
                        break
                    await asyncio.sleep(0.05)
                assert (await client.send_rpc("last", channel, 3)).data == [7, 8, 9]
                assert (await client.send_rpc("last", channel, 100)).data == list(range(10))
            await joined(client, *prices)  # deliver_latest: each channel's last message, from its shard
            latest = [await client.recv(5) for _ in prices]
            assert sorted((p.channel, p.data, p.offset) for p in latest) == sorted((c, 9, 10) for c in prices)

            # what a pattern subscription missed: a SCAN of both shards, each shard's history read there,
            # the two lists interleaved by Redis time (both servers on this machine's clock: publish order)
            missed = await store.missed({"prices.*": start}, {})
            assert missed is not None
            decoded = [decode_packet(out.encoded(False), False) for out in missed]
            assert [(p.channel, p.data) for p in decoded] == [(c, v) for v in range(10) for c in prices]
            position = {prices[0]: ("x", 0)}  # an unknown epoch: that channel's messages may be lost
            assert await store.missed({prices[0]: start, prices[1]: start}, position) is None
    finally:
        for server in servers:
            await server.close(timeout=2)


# --------------------------------------------------------------------------- failures


def sharded_node(urls: list[str], prefix: str = PREFIX, **options: Any) -> WebSocketServer[NodeHandler]:
    backplane = ShardedRedisBackplane(urls, channel_prefix=prefix, health_check_interval=0.5, max_backoff=0.2)
    return WebSocketServer(
        HOST, 0, clientHandler=NodeHandler, backplane=backplane, max_subscribed_channels=None, **options
    )


def shards_of(server: WebSocketServer[Any]) -> tuple[RedisBackplane, ...]:
    assert isinstance(server.backplane, ShardedRedisBackplane)
    return server.backplane.shards


@needs_redis
async def test_one_shard_down_stops_only_its_channels() -> None:
    with RedisServer() as first, RedisServer() as second:
        urls = [first.url, second.url]
        backplane = router(urls)
        down, up = names_on(backplane, 0, "c.", 1)[0], names_on(backplane, 1, "c.", 1)[0]
        node_a, node_b = sharded_node(urls), sharded_node(urls)
        await node_a.start()
        await node_b.start()
        try:
            async with clients(uri_of(node_b)) as (subscriber,):
                await joined(subscriber, down, up)
                node_a.publish(down, "before")
                assert (await subscriber.recv(5)).data == "before"

                first.stop()  # shard 0: its channels, and broadcasts by default
                await wait_until(lambda: not any(shards_of(n)[0].connected for n in (node_a, node_b)), timeout=5)
                assert not node_a.backplane.connected and shards_of(node_a)[1].connected  # type: ignore[union-attr]
                for i in range(20):
                    node_a.publish(up, i)
                    node_a.publish(down, i)  # dropped: its shard is down
                got = await packets(subscriber, 20)
                assert [(p.channel, p.data) for p in got] == [(up, i) for i in range(20)]
                node_a.broadcast("through the other shard")  # a broadcast takes the next shard that is up
                assert (await subscriber.recv(5)).data == "through the other shard"
                await assert_silent(subscriber)
                assert shards_of(node_a)[0].stats["dropped_while_disconnected"] >= 20
                assert node_a.backplane.stats["dropped_while_disconnected"] >= 20  # type: ignore[union-attr]

                first.start()  # it comes back: each node reconnects and subscribes again
                await wait_until(lambda: node_a.backplane.connected and node_b.backplane.connected, timeout=10)  # type: ignore[union-attr]
                assert await node_b.handler.sync_subscriptions()
                node_a.publish(down, "after")
                node_a.broadcast("on shard 0 again")
                assert sorted([(await subscriber.recv(5)).data for _ in range(2)]) == ["after", "on shard 0 again"]
                assert shards_of(node_b)[0].stats["reconnects"] == 1 and shards_of(node_b)[1].stats["reconnects"] == 0
        finally:
            await node_a.close(timeout=2)
            await node_b.close(timeout=2)


@needs_redis
async def test_an_unreachable_shard_fails_the_start_naming_its_url(urls: list[str]) -> None:
    bad = f"redis://127.0.0.1:{free_port()}/0"
    server: WebSocketServer[Any] = WebSocketServer(HOST, 0, backplane=[urls[0], bad, urls[1]])
    before = await backplane_clients(urls[0])
    with pytest.raises(ConnectionFailedError, match=re.escape(f"cannot reach Redis at {bad}")):
        await server.start()
    backplane = server.backplane
    assert isinstance(backplane, ShardedRedisBackplane) and backplane.unreachable == bad

    async def let_go() -> bool:  # the shards that had connected disconnected again
        return await backplane_clients(urls[0]) == before

    await wait_until(let_go, timeout=5)
    with pytest.raises(ConnectionFailedError, match=re.escape("invalid Redis URL 'redis://127.0.0.1:port/0'")):
        await WebSocketServer(HOST, 0, backplane=[urls[0], "redis://127.0.0.1:port/0"]).start()


# --------------------------------------------------------------------------- presence, command line


@needs_redis
async def test_presence_keeps_each_channels_members_on_its_shard(urls: list[str]) -> None:
    prefix = "shpres:"
    backplane = router(urls, prefix)
    rooms = [names_on(backplane, 0, "hall.", 1)[0], names_on(backplane, 1, "hall.", 1)[0]]
    presence = Presence(fields=("team",), ttl=5.0, refresh=0.3)
    nodes = [sharded_node(urls, prefix, presence=presence) for _ in range(2)]
    for node in nodes:
        await node.start()
    try:
        async with clients(uri_of(nodes[0]), uri_of(nodes[1])) as (a, b):
            for room in rooms:
                assert (await a.send_rpc("join", room, team="a")).data is True
                assert (await b.send_rpc("join", room, team="b")).data is True

            async def everyone() -> bool:
                for node in nodes:
                    for room in rooms:
                        teams = sorted(entry["info"]["team"] for entry in await node.handler.presence(room))
                        if teams != ["a", "b"]:
                            return False
                return True

            await wait_until(everyone, timeout=5)
            for shard, url in enumerate(urls):  # each room's keys on its own shard only
                keys = await redis_query(url, "KEYS", f"{prefix}presence:*")
                assert keys and all(key.decode().endswith(":" + rooms[shard]) for key in keys), keys
    finally:
        for node in nodes:
            await node.close(timeout=2)
    for url in urls:  # a clean shutdown removes each node's members from every shard
        assert await redis_query(url, "KEYS", f"{prefix}presence:*") == []


@needs_redis
async def test_cli_serves_on_a_sharded_backplane_and_names_an_unreachable_shard(urls: list[str]) -> None:
    from test_cli import assert_one_line, run_cli, start_cli, stop

    demo = "examples.demo:DemoHandler"
    before = [await backplane_clients(url) for url in urls]
    proc, line = await start_cli(demo, "--log-level", "warning", env={"WEBSHOCKET_BACKPLANE": ",".join(urls)})
    try:
        assert "serving examples.demo:DemoHandler" in line
        after = [await backplane_clients(url) for url in urls]
        assert [n - m for n, m in zip(after, before, strict=True)] == [2, 2]  # both connections on each shard
    finally:
        await stop(proc)
    bad = f"redis://127.0.0.1:{free_port()}/0"
    expected = (
        f"--backplane {bad} (shard 1 of 2): cannot reach Redis (Connection refused); start Redis there or fix the URL"
    )
    assert_one_line(run_cli("serve", demo, "--backplane", f"{urls[0]},{bad}"), expected)
    expected = (
        "--backplane localhost:6380 (in redis://127.0.0.1:6379/0,localhost:6380): not a redis:// URL; write it as "
        "redis://localhost:6380/0 (rediss:// for TLS, unix:///path/redis.sock for a socket)"
    )
    assert_one_line(run_cli("serve", demo, "--backplane", "redis://127.0.0.1:6379/0,localhost:6380"), expected)
    twice = f"{urls[0]},{urls[0][:-1]}1"  # database 1 of the same server
    expected = (
        f"--backplane {twice}: Redis shards {urls[0]!r} and '{urls[0][:-1]}1' are one Redis server: give each "
        "shard its own server (pub/sub ignores the database number)"
    )
    assert_one_line(run_cli("serve", demo, "--backplane", twice), expected)
