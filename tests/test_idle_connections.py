"""What an idle connection costs, and what it takes once it is used (issue 17: memory per connection).

The server's keep-alive is one timer for all connections (``ServerCore.tick``), not a picows
task per connection; a connection makes its RPC tables, held-message list, queues and session
dict on first use; its 101 response shares its header objects with one made once. These tests
pin the behaviour that must not change: idle clients are pinged and closed (1001) when they
stop answering, and every lazy structure works when first used after being absent.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
from helpers import connected_client, running_server, wait_until
from picows import WSAutoPingStrategy, ws_create_server
from rawws import BINARY, FRAMEWORK, PING, PONG, Frame, RawWebSocket, frame_bytes, request_map

from webshocket import ClientConnection, WebSocketHandler, WebSocketServer, rpc_method
from webshocket import server as server_module

HOST = "127.0.0.1"
AIOFASTNET_OPTION = "use_aiofastnet" in inspect.signature(ws_create_server).parameters
FAST_PINGS = {"auto_ping_idle_timeout": 0.2, "auto_ping_reply_timeout": 0.2}
Conn = ClientConnection[Any]


class Handler(WebSocketHandler[Any]):
    @rpc_method()
    async def echo(self, connection: Conn, value: Any) -> Any:
        return value

    @rpc_method()
    async def later(self, connection: Conn, value: Any) -> Any:
        await asyncio.sleep(0.01)  # not inline: runs in a task, through the connection's call table
        return value

    @rpc_method()
    async def count(self, connection: Conn, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @rpc_method()
    async def remember(self, connection: Conn, value: Any) -> None:
        connection.value = value

    @rpc_method()
    async def recall(self, connection: Conn) -> Any:
        return connection.session_state.get("value")

    @rpc_method()
    async def join(self, connection: Conn, channel: str) -> bool:
        return connection.subscribe(channel)


class SlowConnect(Handler):
    async def on_connect(self, connection: Conn) -> None:
        await asyncio.sleep(0.2)


async def started(**options: Any) -> WebSocketServer[Any]:
    server: WebSocketServer[Any] = WebSocketServer(HOST, 0, clientHandler=Handler)
    await server.start(**options)
    return server


def engine_of(conn: Conn) -> Any:
    return conn._engine


async def frames_for(ws: RawWebSocket, seconds: float) -> list[Frame]:
    """Every frame the server sends within ``seconds``."""
    frames: list[Frame] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            frames.append(await ws.read_frame(timeout=left))
        except (asyncio.TimeoutError, TimeoutError):
            break
    return frames


async def call(ws: RawWebSocket, method: str, *args: Any, call_id: str) -> Any:
    ws.send_raw(frame_bytes(BINARY, msgpack.packb(request_map(method, *args, call_id=call_id))))
    return (await ws.read_reply(call_id))["response"]


# ---------------------------------------------------------------------------- keep-alive


async def test_an_idle_client_is_pinged_and_stays_while_it_answers() -> None:
    server = await started(**FAST_PINGS)
    try:
        ws = await RawWebSocket.connect(server.port, FRAMEWORK)
        pings = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.5  # several idle periods
        while loop.time() < deadline:
            frame = await ws.read_frame(timeout=1.0)
            assert frame.opcode == PING, frame
            pings += 1
            ws.send_frame(PONG, frame.payload)
        assert pings >= 2
        assert len(server.clients) == 1
        assert await call(ws, "echo", "still here", call_id="c1") == "still here"
        await ws.close()
    finally:
        await server.close(timeout=1)


async def test_a_client_that_stops_answering_is_closed_with_going_away() -> None:
    server = await started(**FAST_PINGS)
    try:
        ws = await RawWebSocket.connect(server.port, FRAMEWORK)
        first = await ws.read_frame(timeout=1.0)
        assert first.opcode == PING
        close = await ws.read_close(timeout=1.0)  # no pong: closed within the reply timeout (and a tick)
        assert close.close_code == 1001
        await wait_until(lambda: not server.clients, timeout=2)
        await ws.close()
    finally:
        await server.close(timeout=1)


async def test_a_client_that_keeps_talking_is_not_pinged() -> None:
    server = await started(**FAST_PINGS)
    try:
        ws = await RawWebSocket.connect(server.port, FRAMEWORK)
        for i in range(12):  # 1.2 s: six idle periods, never idle for one
            assert await call(ws, "echo", i, call_id=f"c{i}") == i
            await asyncio.sleep(0.1)
        ws.send_raw(frame_bytes(BINARY, msgpack.packb(request_map("echo", 0, call_id="last"))))
        seen = await frames_for(ws, 0.1)
        assert all(frame.opcode != PING for frame in seen)
        await ws.close()
    finally:
        await server.close(timeout=1)


async def test_keep_alive_off() -> None:
    server = await started(enable_auto_ping=False, **FAST_PINGS)
    try:
        ws = await RawWebSocket.connect(server.port, FRAMEWORK)
        assert await frames_for(ws, 0.8) == []
        assert server._core.ticking is None
        assert len(server.clients) == 1
        await ws.close()
    finally:
        await server.close(timeout=1)


async def test_the_periodic_strategy_is_left_to_picows() -> None:
    server = await started(auto_ping_strategy=WSAutoPingStrategy.PING_PERIODICALLY, **FAST_PINGS)
    try:
        assert server._core.tick_interval == 0  # ours is off: picows pings
        ws = await RawWebSocket.connect(server.port, FRAMEWORK)
        frame = await ws.read_frame(timeout=1.0)
        assert frame.opcode == PING
        ws.send_frame(PONG, frame.payload)
        await ws.close()
    finally:
        await server.close(timeout=1)


async def test_the_keep_alive_timer_stops_with_the_last_connection() -> None:
    server = await started(**FAST_PINGS)
    try:
        assert server._core.ticking is None  # nobody connected: no timer
        ws = await RawWebSocket.connect(server.port, FRAMEWORK)
        await wait_until(lambda: server._core.ticking is not None, timeout=2)
        await ws.close()
        await wait_until(lambda: server._core.ticking is None, timeout=2)
    finally:
        await server.close(timeout=1)


async def lean_transport_round() -> None:
    server: WebSocketServer[Any] = WebSocketServer(HOST, 0, clientHandler=Handler)
    serving = asyncio.ensure_future(server.serve_forever(use_aiofastnet=False))
    try:
        await wait_until(lambda: server.port != 0 and server._core is not None, timeout=2)
        async with connected_client(server) as client:
            assert (await client.send_rpc("later", 7)).data == 7
            (conn,) = server.clients
            assert not type(engine_of(conn).transport.underlying_transport).__module__.startswith("aiofastnet")
        await server.close(timeout=1)
        await asyncio.wait_for(serving, 2)  # uvloop's Server.close() alone would not end it
    finally:
        serving.cancel()
        await server.close(timeout=1)


@pytest.mark.skipif(not AIOFASTNET_OPTION, reason="picows < 2.3 has no use_aiofastnet option")
def test_the_lean_transport_serves_and_ends_with_close_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    uvloop.run(lean_transport_round())


# ---------------------------------------------------------------------------- made on first use


async def test_a_fresh_connection_makes_nothing_it_does_not_use() -> None:
    async with running_server(Handler) as server, connected_client(server):
        (conn,) = server.clients
        engine = engine_of(conn)
        for name in ("calls", "streams", "queued", "pending", "queue", "inbox", "buckets", "writers", "remote"):
            assert getattr(engine, name) is None, name
        assert conn not in server._hub.subscriptions


async def test_rpc_tables_work_when_made_late() -> None:
    async with running_server(Handler) as server, connected_client(server) as client:
        (conn,) = server.clients
        assert (await client.send_rpc("echo", 1)).data == 1  # inline: no table needed
        assert engine_of(conn).calls is None
        assert [(await client.send_rpc("later", i)).data for i in range(3)] == [0, 1, 2]
        assert engine_of(conn).calls == {}  # made by the first call, empty again
        assert [p.data async for p in client.stream_rpc("count", 3)] == [0, 1, 2]
        assert engine_of(conn).streams == {}


async def test_an_abort_before_any_stream_is_harmless() -> None:
    async with running_server(Handler) as server:
        ws = await RawWebSocket.connect(server.port, FRAMEWORK)
        ws.send_raw(frame_bytes(BINARY, msgpack.packb(request_map("__abort__", "nothing", call_id="a1"))))
        assert await call(ws, "echo", "ok", call_id="c1") == "ok"
        await ws.close()


async def test_session_state_set_late() -> None:
    async with running_server(Handler) as server, connected_client(server) as client:
        (conn,) = server.clients
        assert conn.session_state == {}
        assert (await client.send_rpc("recall")).data is None
        await client.send_rpc("remember", "kept")
        assert (await client.send_rpc("recall")).data == "kept"
        assert conn.value == "kept" and conn.session_state == {"value": "kept"}


async def test_subscriptions_added_after_connect() -> None:
    async with running_server(Handler) as server, connected_client(server) as client:
        (conn,) = server.clients
        assert conn.subscribed_channel == set()
        assert (await client.send_rpc("join", "news")).data is True
        assert conn.subscribed_channel == {"news"}
        server.publish("news", "hello")
        packet = await client.recv(timeout=2)
        assert (packet.channel, packet.data) == ("news", "hello")


async def test_messages_held_during_on_connect_are_dispatched_in_order() -> None:
    async with running_server(SlowConnect) as server:
        ws = await RawWebSocket.connect(server.port, FRAMEWORK)
        for i in range(3):  # while on_connect sleeps: held in the list made for them
            ws.send_raw(frame_bytes(BINARY, msgpack.packb(request_map("echo", i, call_id=f"c{i}"))))
        replies = [(await ws.read_packet())["rpc"] for _ in range(3)]
        assert [(r["call_id"], r["response"]) for r in replies] == [("c0", 0), ("c1", 1), ("c2", 2)]
        await ws.close()


async def test_each_connection_gets_its_own_101_answer() -> None:
    async with running_server(Handler) as server:
        first = await RawWebSocket.connect(server.port, FRAMEWORK)  # checks its Sec-WebSocket-Accept
        second = await RawWebSocket.connect(server.port, FRAMEWORK)
        assert first.headers["sec-websocket-protocol"] == second.headers["sec-websocket-protocol"] == FRAMEWORK
        assert first.headers["sec-websocket-accept"] != second.headers["sec-websocket-accept"]
        await wait_until(lambda: len(server.clients) == 2, timeout=2)
        accepts = {engine_of(c).transport.response.headers["Sec-WebSocket-Accept"] for c in server.clients}
        assert len(accepts) == 2
        assert "Sec-WebSocket-Accept" not in server_module._RESPONSES[FRAMEWORK].headers
        plain = await RawWebSocket.connect(server.port)  # no subprotocol: a JSON client, no Sec-WebSocket-Protocol
        assert "sec-websocket-protocol" not in plain.headers
        for ws in (first, second, plain):
            await ws.close()


@pytest.mark.parametrize("subprotocol", [None, FRAMEWORK, "webshocket.json"])
def test_a_101_answer_written_from_its_template_is_what_picows_writes(subprotocol: str | None) -> None:
    """``SwitchingProtocols.to_bytes`` (the template's bytes, then picows's accept header) is
    byte for byte ``WSUpgradeResponse.to_bytes``; any other header state is written by picows."""
    response = server_module.switching_protocols(subprotocol)
    response.headers["Sec-WebSocket-Accept"] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    written = bytes(response.to_bytes())
    assert written == bytes(server_module.WSUpgradeResponse.to_bytes(response))
    assert written.endswith(b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    assert written.startswith(b"HTTP/1.1 101 ")
    if subprotocol is not None:
        assert b"\r\nSec-WebSocket-Protocol: %b\r\n" % subprotocol.encode() in written
    response.headers["X-Extra"] = "1"  # not the template's headers and one accept: picows writes it
    assert bytes(response.to_bytes()) == bytes(server_module.WSUpgradeResponse.to_bytes(response))
    assert b"X-Extra: 1\r\n" in bytes(response.to_bytes())


async def test_closing_a_slow_consumer_goes_through_its_owner() -> None:
    async with running_server(Handler) as server, connected_client(server):
        (conn,) = server.clients
        sink = engine_of(conn).sink
        assert sink.owner is engine_of(conn)
        sink.cut()
        await wait_until(lambda: not conn.is_connected, timeout=2)
