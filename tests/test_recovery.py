"""Sessions that survive disconnection (``recovery=``): resume, channel history, tokens.

Everything runs over real sockets; a TCP proxy (``helpers.Proxy``) cuts the link the way
a network does (bytes stop, no FIN), so neither side sees a close frame.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from helpers import FAST_RETRY, HOST, Proxy, running_server, wait_until
from websockets.asyncio.client import connect as ws_connect

from webshocket import (
    ClientConnection,
    ConnectionState,
    Packet,
    PacketSource,
    Recovery,
    Request,
    WebSocketClient,
    WebSocketHandler,
    WebSocketServer,
    rpc_method,
)


class Room(WebSocketHandler[Any]):
    """Counts on_connect calls; keeps a session value; joins channels on request."""

    def __init__(self) -> None:
        super().__init__()
        self.connects = 0

    async def on_connect(self, connection: ClientConnection[Any]) -> None:
        self.connects += 1
        connection.user = f"user-{self.connects}"

    @rpc_method()
    async def join(self, connection: ClientConnection[Any], channel: str) -> list[str]:
        connection.subscribe(channel)
        return sorted(connection.subscribed_channel)

    @rpc_method()
    async def whoami(self, connection: ClientConnection[Any]) -> Any:
        return connection.user

    @rpc_method()
    async def remember(self, connection: ClientConnection[Any], key: str, value: Any) -> None:
        connection[key] = value

    @rpc_method()
    async def recall(self, connection: ClientConnection[Any], key: str) -> Any:
        return connection[key]


class Events:
    def __init__(self) -> None:
        self.reconnects: list[bool] = []
        self.disconnects: list[int | None] = []

    def client(self, port: int, **kwargs: Any) -> WebSocketClient:
        return WebSocketClient(
            f"ws://{HOST}:{port}",
            on_reconnect=self.reconnects.append,
            on_disconnect=self.disconnects.append,
            **kwargs,
        )


async def drain_data(client: WebSocketClient, count: int, timeout: float = 10.0) -> list[Any]:
    return [(await client.recv(timeout)).data for _ in range(count)]


async def publish_slowly(server: WebSocketServer[Any], channel: str, values: range, pause: float) -> None:
    for value in values:
        server.publish(channel, value)
        await asyncio.sleep(pause)


@asynccontextmanager
async def through_proxy(server: WebSocketServer[Any]) -> AsyncIterator[tuple[Proxy, int]]:
    proxy = Proxy(server.port)
    async with proxy.running() as port:
        yield proxy, port


# --------------------------------------------------------------------------- resume


async def test_cut_link_resumes_session_and_every_message_exactly_once_in_order() -> None:
    events = Events()
    async with running_server(Room, recovery=True) as server, through_proxy(server) as (proxy, port):
        client = events.client(port)
        try:
            await client.connect(**FAST_RETRY)
            assert client.recovered is False  # a new session
            assert (await client.send_rpc("join", "news")).data == ["news"]
            await client.send_rpc("remember", "cart", [1, 2, 3])
            publisher = asyncio.ensure_future(publish_slowly(server, "news", range(1, 201), 0.01))
            await asyncio.sleep(0.5)
            proxy.cut()  # ~50 published so far; the rest while the link is down and after
            await publisher
            assert await drain_data(client, 200) == list(range(1, 201))
            with pytest.raises(Exception, match="timed out"):
                await client.recv(0.3)  # nothing twice
            assert events.reconnects == [True]
            assert client.state is ConnectionState.CONNECTED
            assert (await client.send_rpc("whoami")).data == "user-1"  # on_connect did not run again
            assert (await client.send_rpc("recall", "cart")).data == [1, 2, 3]
            assert server.handler.connects == 1
            server.publish("news", "after")  # the subscription came back with the session
            assert (await client.recv(5)).data == "after"
            assert server.stats["sessions_resumed"] == 1
        finally:
            await client.close()


async def test_resume_covers_pattern_subscriptions_across_channels_in_publish_order() -> None:
    events = Events()
    async with running_server(Room, recovery=True) as server, through_proxy(server) as (proxy, port):
        client = events.client(port)
        try:
            await client.connect(**FAST_RETRY)
            await client.send_rpc("join", "room.*")
            server.publish("room.a", "a1")
            assert (await client.recv(5)).data == "a1"
            proxy.cut()
            await wait_until(lambda: events.disconnects != [], timeout=10)
            for value in ("b1", "a2", "c1", "b2"):  # room.b and room.c never seen by the client before
                server.publish(f"room.{value[0]}", value)
            server.publish("elsewhere", "not subscribed")
            assert await drain_data(client, 4) == ["b1", "a2", "c1", "b2"]
            assert events.reconnects == [True]
        finally:
            await client.close()


async def test_restarted_node_tells_the_client_it_was_not_recovered() -> None:
    events = Events()
    first = WebSocketServer(HOST, 0, clientHandler=Room, recovery=True)
    await first.start()
    port = first.port
    client = events.client(port)
    second: WebSocketServer[Any] | None = None
    try:
        await client.connect(retry=True, max_retry_attempt=100, retry_interval=0.05, max_retry_interval=0.2)
        await client.send_rpc("join", "news")
        first.publish("news", 1)
        assert (await client.recv(5)).data == 1
        await first.close(timeout=2)  # in-memory history and sessions go with it
        second = WebSocketServer(HOST, port, clientHandler=Room, recovery=True)
        await second.start()
        await wait_until(lambda: events.reconnects != [], timeout=15)
        assert events.reconnects == [False]
        assert client.recovered is False
        assert second.handler.connects == 1  # a new session: on_connect ran on the new node
        assert (await client.send_rpc("whoami")).data == "user-1"
        assert (await client.send_rpc("join", "news")).data == ["news"]
        second.publish("news", 2)
        assert (await client.recv(5)).data == 2  # a new epoch: not taken for a duplicate
    finally:
        await client.close()
        if second is not None:
            await second.close(timeout=2)


async def test_history_trimmed_past_the_clients_position_is_not_recovered() -> None:
    events = Events()
    recovery = Recovery(history_size=3)
    async with running_server(Room, recovery=recovery) as server, through_proxy(server) as (proxy, port):
        client = events.client(port)
        try:
            await client.connect(**FAST_RETRY)
            await client.send_rpc("join", "news")
            server.publish("news", 0)
            assert (await client.recv(5)).data == 0
            proxy.cut()
            await wait_until(lambda: events.disconnects != [], timeout=10)
            for value in range(1, 11):  # 10 while away, history keeps 3
                server.publish("news", value)
            await wait_until(lambda: events.reconnects != [], timeout=15)
            assert events.reconnects == [False]
            assert server.handler.connects == 2  # a new session
            assert (await client.send_rpc("whoami")).data == "user-2"
            assert (await client.send_rpc("join", "news")).data == ["news"]  # the app subscribes again
            server.publish("news", 11)
            assert (await client.recv(5)).data == 11
        finally:
            await client.close()


async def test_expired_session_starts_a_new_one() -> None:
    events = Events()
    recovery = Recovery(session_ttl=0.2)
    async with running_server(Room, recovery=recovery) as server, through_proxy(server) as (proxy, port):
        client = events.client(port, session=True)
        try:
            await client.connect(**{**FAST_RETRY, "retry_interval": 1.0, "max_retry_interval": 1.0})
            await client.send_rpc("join", "news")
            proxy.cut()
            await wait_until(lambda: events.reconnects != [], timeout=15)
            assert events.reconnects == [False]
            assert server.handler.connects == 2
        finally:
            await client.close()


async def test_a_client_back_before_its_old_connection_dropped_takes_the_session_over() -> None:
    """The server does not notice a cut link at once: the resume closes the old connection (4009)."""
    events = Events()
    async with running_server(Room, recovery=True) as server, through_proxy(server) as (proxy, port):
        client = events.client(port)
        try:
            await client.connect(**FAST_RETRY)
            await client.send_rpc("join", "news")
            assert len(server.clients) == 1
            proxy.cut()
            await wait_until(lambda: events.reconnects != [], timeout=15)
            assert events.reconnects == [True]
            await wait_until(lambda: len(server.clients) == 1)
            server.publish("news", "one copy")
            assert (await client.recv(5)).data == "one copy"
            with pytest.raises(Exception, match="timed out"):
                await client.recv(0.3)
        finally:
            await client.close()


# --------------------------------------------------------------------------- tokens, on the wire


async def raw_session(port: int, hello: dict[str, Any], path: str = "/") -> tuple[Any, dict[str, Any]]:
    """A JSON-dialect session client written by hand: offer the subprotocol, send the hello."""
    ws = await ws_connect(f"ws://{HOST}:{port}{path}", subprotocols=["webshocket.json+session"])  # type: ignore[list-item]
    assert ws.subprotocol == "webshocket.json+session"
    await ws.send(json.dumps({"source": 6, "data": hello}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert reply["source"] == 6
    return ws, reply["data"]


async def test_forged_token_is_refused_as_a_resume_and_starts_a_new_session() -> None:
    async with running_server(Room, recovery=True) as server:
        ws, answer = await raw_session(server.port, {"token": "forged-" + "x" * 20, "positions": {"news": ["e", 5]}})
        try:
            assert answer["recovered"] is False
            assert isinstance(answer["token"], str) and len(answer["token"]) >= 32
            await wait_until(lambda: server.handler.connects == 1)
        finally:
            await ws.close()


async def test_a_token_resumes_once_and_each_connection_gets_a_fresh_one() -> None:
    async with running_server(Room, recovery=True) as server:
        ws, first = await raw_session(server.port, {"token": None})
        await ws.send(json.dumps({"source": 5, "rpc": {"type": "request", "method": "join", "args": ["news"],
                                                       "kwargs": {}, "call_id": "j"}}))
        assert json.loads(await ws.recv())["rpc"]["response"] == ["news"]
        server.publish("news", "seen")
        seen = json.loads(await ws.recv())
        assert (seen["data"], seen["offset"]) == ("seen", 1) and isinstance(seen["epoch"], str)
        ws.transport.abort()  # a drop, no close frame
        await wait_until(lambda: len(server.clients) == 0)
        server.publish("news", "missed")
        ws2, second = await raw_session(
            server.port, {"token": first["token"], "positions": {"news": [seen["epoch"], 1]}}
        )
        try:
            assert second["recovered"] is True and second["token"] != first["token"]
            missed = json.loads(await asyncio.wait_for(ws2.recv(), 5))
            assert (missed["data"], missed["offset"], missed["epoch"]) == ("missed", 2, seen["epoch"])
            ws3, third = await raw_session(server.port, {"token": first["token"]})  # used already
            assert third["recovered"] is False
            await ws3.close()
            assert server.handler.connects == 2
        finally:
            await ws2.close()


async def test_a_client_that_asks_for_no_session_sees_no_change() -> None:
    async with running_server(Room, recovery=True) as server:
        client = WebSocketClient(f"ws://{HOST}:{server.port}", session=False)
        await client.connect()
        try:
            assert client.recovered is None
            await client.send_rpc("join", "news")
            server.publish("news", 1)
            packet = await client.recv(5)
            assert packet.data == 1 and packet.offset == 1  # pushes carry their position anyway
        finally:
            await client.close()


async def test_a_server_without_recovery_ignores_the_session_offer() -> None:
    async with running_server(Room) as server:
        client = WebSocketClient(f"ws://{HOST}:{server.port}")
        await client.connect()
        try:
            assert client.recovered is None
            await client.send_rpc("join", "news")
            server.publish("news", 1)
            packet = await client.recv(5)
            assert (packet.data, packet.offset, packet.epoch) == (1, None, None)
        finally:
            await client.close()


async def test_first_message_that_is_not_a_hello_is_handled_as_usual() -> None:
    async with running_server(Room, recovery=True) as server:
        ws = await ws_connect(f"ws://{HOST}:{server.port}", subprotocols=["webshocket.json+session"])  # type: ignore[list-item]
        try:
            await ws.send(json.dumps({"source": 5, "rpc": {"type": "request", "method": "whoami", "args": [],
                                                          "kwargs": {}, "call_id": "w"}}))
            first = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert first["source"] == 6 and first["data"]["recovered"] is False
            second = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert second["rpc"]["response"] == "user-1"
        finally:
            await ws.close()


async def test_malformed_hellos_never_break_the_server() -> None:
    async with running_server(Room, recovery=True) as server:
        for hello in (None, 5, "x", {"token": 7}, {"token": "t" * 10_000}, {"positions": {"a": "b"}},
                      {"positions": [1, 2]}, {"positions": {"news": ["e", "1"]}}):
            ws, answer = await raw_session(server.port, hello)  # type: ignore[arg-type]
            assert answer["recovered"] is False
            await ws.close()
        client = WebSocketClient(f"ws://{HOST}:{server.port}")
        await client.connect()
        assert (await client.send_rpc("whoami")).data.startswith("user-")
        await client.close()


class Authenticated(Room):
    """The handshake hook says who the client is (here from the query string, as a token would)."""

    def on_handshake(self, request: Request) -> dict[str, Any]:
        return {"user": request.query_params["user"], "stamp": request.query_params["stamp"]}

    async def on_connect(self, connection: ClientConnection[Any]) -> None:
        self.connects += 1
        connection.number = self.connects

    @rpc_method()
    async def number(self, connection: ClientConnection[Any]) -> Any:
        return connection.number

    @rpc_method()
    async def stamp(self, connection: ClientConnection[Any]) -> Any:
        return connection.stamp


async def rpc_over(ws: Any, method: str, *args: Any) -> Any:
    await ws.send(json.dumps({"source": 5, "rpc": {"type": "request", "method": method, "args": list(args),
                                                   "kwargs": {}, "call_id": method}}))
    while True:
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if reply["source"] == 5:
            return reply["rpc"]["response"]


async def test_a_session_token_resumes_only_for_the_same_authenticated_user() -> None:
    async with running_server(Authenticated, recovery=True) as server:
        ws, first = await raw_session(server.port, {"token": None}, "/?user=alice&stamp=1")
        await rpc_over(ws, "remember", "cart", ["book"])
        ws.transport.abort()
        await wait_until(lambda: len(server.clients) == 0)
        # mallory stole alice's session token, and has a valid login of her own
        thief, answer = await raw_session(server.port, {"token": first["token"]}, "/?user=mallory&stamp=9")
        assert answer["recovered"] is False  # refused as a resume: a new session for mallory
        assert await rpc_over(thief, "whoami") == "mallory"
        assert await rpc_over(thief, "number") == 2
        await thief.close()
        ws2, second = await raw_session(server.port, {"token": first["token"]}, "/?user=alice&stamp=2")
        try:
            assert second["recovered"] is False  # the refused attempt used the token up
        finally:
            await ws2.close()
        ws3, third = await raw_session(server.port, {"token": second["token"]}, "/?user=alice&stamp=3")
        try:
            assert third["recovered"] is False  # ws2 closed on purpose (close frame 1000): nothing parked
        finally:
            ws3.transport.abort()
        await wait_until(lambda: len(server.clients) == 0)
        ws4, fourth = await raw_session(server.port, {"token": third["token"]}, "/?user=alice&stamp=4")
        try:
            assert fourth["recovered"] is True  # same user: resumed
            assert await rpc_over(ws4, "stamp") == "4"  # the hook's fresh value wins over the parked one
            assert await rpc_over(ws4, "whoami") == "alice"
            assert await rpc_over(ws4, "number") == 4  # ws4 is ws3's session: on_connect ran 4 times, not 5
        finally:
            await ws4.close()


async def test_a_session_packet_after_the_hello_is_an_unknown_packet() -> None:
    received: list[Packet[Any]] = []

    class Recorder(Room):
        async def on_receive(self, connection: ClientConnection[Any], packet: Packet[Any]) -> None:
            received.append(packet)

    async with running_server(Recorder, recovery=True) as server:
        ws, _answer = await raw_session(server.port, {"token": None})
        try:
            await ws.send(json.dumps({"source": 6, "data": {"token": "again"}}))
            await wait_until(lambda: len(received) == 1)
            assert received[0].source is PacketSource.UNKNOWN and isinstance(received[0].data, bytes)
        finally:
            await ws.close()


# --------------------------------------------------------------------------- history from handler code


class Prices(WebSocketHandler[Any]):
    @rpc_method()
    async def watch(self, connection: ClientConnection[Any], channel: str) -> None:
        connection.subscribe(channel)

    @rpc_method()
    async def last(self, connection: ClientConnection[Any], channel: str, limit: int) -> list[Any]:
        return [packet.data for packet in await self.history(channel, limit)]


async def test_handler_reads_a_channels_recent_history() -> None:
    async with running_server(Prices, recovery=Recovery(history_size=5)) as server:
        for value in range(10):
            server.publish("eurusd", value)
        client = WebSocketClient(f"ws://{HOST}:{server.port}")
        await client.connect()
        try:
            assert (await client.send_rpc("last", "eurusd", 3)).data == [7, 8, 9]
            assert (await client.send_rpc("last", "eurusd", 100)).data == [5, 6, 7, 8, 9]
            assert (await client.send_rpc("last", "nothing", 3)).data == []
        finally:
            await client.close()


async def test_latest_message_goes_to_a_new_subscriber_of_configured_channels() -> None:
    recovery = Recovery(deliver_latest=("prices.*",))
    async with running_server(Prices, recovery=recovery) as server:
        server.publish("prices.eurusd", 1.08)
        server.publish("prices.eurusd", 1.09)
        server.publish("news", "old news")
        client = WebSocketClient(f"ws://{HOST}:{server.port}")
        await client.connect()
        try:
            await client.send_rpc("watch", "prices.eurusd")
            await client.send_rpc("watch", "news")
            packet = await client.recv(5)
            assert (packet.channel, packet.data, packet.offset) == ("prices.eurusd", 1.09, 2)
            with pytest.raises(Exception, match="timed out"):
                await client.recv(0.3)  # news is not configured: nothing old
            server.publish("prices.eurusd", 1.10)
            assert (await client.recv(5)).data == 1.10
        finally:
            await client.close()


# --------------------------------------------------------------------------- options


def test_recovery_options_are_checked() -> None:
    with pytest.raises(ValueError, match="history_size"):
        Recovery(history_size=0)
    with pytest.raises(ValueError, match="session_ttl"):
        Recovery(session_ttl=0)
    with pytest.raises(TypeError, match="recovery must be"):
        WebSocketServer(HOST, 0, recovery="yes")  # type: ignore[arg-type]


def test_packets_carry_offset_and_epoch_both_ways() -> None:
    from webshocket._codec import decode_packet, encode_packet

    packet = Packet(PacketSource.CHANNEL, {"x": 1}, channel="c", offset=7, epoch="ab12")
    for as_json in (False, True):
        back = decode_packet(encode_packet(packet, as_json), as_json)
        assert back == packet and (back.offset, back.epoch) == (7, "ab12")
    assert "offset=7" in repr(packet)


# --------------------------------------------------------------------------- across nodes, with Redis


@pytest.fixture(scope="module")
def redis_url() -> Any:
    from redis_server import RedisServer

    with RedisServer() as server:
        yield server.url


async def test_client_of_a_killed_node_resumes_on_another_node_through_redis(redis_url: str) -> None:
    import signal

    from redis_server import NodeProcess

    nodes = [NodeProcess("--redis", redis_url, "--prefix", "rec1:", "--recovery").start() for _ in range(2)]
    first, second = nodes
    events = Events()
    publisher = WebSocketClient(second.uri)
    proxy = Proxy(first.port)
    try:
        async with proxy.running() as port:
            client = events.client(port)
            try:
                await client.connect(**FAST_RETRY)
                assert client.recovered is False
                assert (await client.send_rpc("join", "news")).data is True
                await client.send_rpc("set_team", "red")
                await publisher.connect()
                for value in range(1, 51):
                    await publisher.send_rpc("say", "news", value)
                assert await drain_data(client, 10) == list(range(1, 11))  # read some; the rest waits
                await asyncio.sleep(0.3)  # a session snapshot is written every 0.1 s
                first.stop(signal.SIGKILL)
                proxy.port = second.port  # the load balancer now sends the client to the other node
                for value in range(51, 101):
                    await publisher.send_rpc("say", "news", value)
                rest = await drain_data(client, 90)
                assert rest == list(range(11, 101))
                with pytest.raises(Exception, match="timed out"):
                    await client.recv(0.3)
                assert events.reconnects == [True]
                assert (await client.send_rpc("team")).data == "red"
                await publisher.send_rpc("say", "news", "live")
                assert (await client.recv(5)).data == "live"
            finally:
                await client.close()
    finally:
        await publisher.close()
        for node in nodes:
            node.stop()


async def test_offsets_are_one_sequence_per_channel_across_nodes(redis_url: str) -> None:
    from redis_server import NodeProcess

    nodes = [NodeProcess("--redis", redis_url, "--prefix", "rec2:", "--recovery").start() for _ in range(2)]
    clients = [WebSocketClient(node.uri) for node in nodes]
    try:
        for client in clients:
            await client.connect()
            await client.send_rpc("join", "ticks")
        for i in range(20):
            await clients[i % 2].send_rpc("say", "ticks", i)
        seen = []
        for client in clients:
            packets = [await client.recv(5) for _ in range(20)]
            assert [p.offset for p in packets] == list(range(1, 21))  # one order, whichever node published
            assert sorted(p.data for p in packets) == list(range(20))
            assert len({p.epoch for p in packets}) == 1
            seen.append([(p.offset, p.epoch, p.data) for p in packets])
        assert seen[0] == seen[1]  # every node delivers the same sequence
    finally:
        for client in clients:
            await client.close()
        for node in nodes:
            node.stop()


async def test_history_and_latest_message_from_redis(redis_url: str) -> None:
    from webshocket.redis_backplane import RedisBackplane

    recovery = Recovery(history_size=5, deliver_latest=("prices.*",))
    servers = [
        WebSocketServer(
            HOST,
            0,
            clientHandler=Prices,
            backplane=RedisBackplane(redis_url, channel_prefix="rec3:"),
            recovery=recovery,
        )
        for _ in range(2)
    ]
    for server in servers:
        await server.start()
    client = WebSocketClient(f"ws://{HOST}:{servers[1].port}")
    try:
        for value in range(10):
            servers[0].publish("prices.eurusd", value)  # published on one node ...
        await client.connect()  # ... read on the other
        for _ in range(100):  # the publishes go through Redis in the background
            if (await client.send_rpc("last", "prices.eurusd", 3)).data == [7, 8, 9]:
                break
            await asyncio.sleep(0.05)
        assert (await client.send_rpc("last", "prices.eurusd", 3)).data == [7, 8, 9]
        assert (await client.send_rpc("last", "prices.eurusd", 100)).data == [5, 6, 7, 8, 9]
        await client.send_rpc("watch", "prices.eurusd")
        latest = await client.recv(5)
        assert (latest.data, latest.offset) == (9, 10)
        await servers[1].handler.sync_subscriptions()
        servers[0].publish("prices.eurusd", 10)
        assert (await client.recv(5)).data == 10
    finally:
        await client.close()
        for server in servers:
            await server.close(timeout=2)
