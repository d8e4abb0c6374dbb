"""Server lifecycle over real sockets: binding, accept/recv, limits, graceful shutdown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import HOST, connected_client, raw_connect, running_server, uri_of, wait_until
from websockets.exceptions import ConnectionClosed, InvalidStatus

import webshocket
from webshocket import (
    ClientConnection,
    ConnectionState,
    PacketSource,
    ServerState,
    WebSocketClient,
    WebSocketHandler,
    WebSocketServer,
    rpc_method,
)

Conn = ClientConnection[Any]


class LifecycleHandler(WebSocketHandler[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.disconnects = 0
        self.slow_started = asyncio.Event()
        self.stream_started = asyncio.Event()
        self.stream_finalized = asyncio.Event()

    async def on_disconnect(self, connection: Conn) -> None:
        await asyncio.sleep(0.01)
        self.disconnects += 1

    @rpc_method()
    async def ping(self, connection: Conn) -> str:
        return "pong"

    @rpc_method()
    async def slow(self, connection: Conn) -> str:
        self.slow_started.set()
        await asyncio.sleep(0.3)
        return "done"

    @rpc_method()
    async def ticker(self, connection: Conn) -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                self.stream_started.set()
                i += 1
                await asyncio.sleep(0.02)
        finally:
            self.stream_finalized.set()


def lifecycle_handler(server: WebSocketServer[Any]) -> LifecycleHandler:
    handler = server.handler
    assert isinstance(handler, LifecycleHandler)
    return handler


# ---------------------------------------------------------------------------- binding and state


async def test_port_zero_binds_a_real_port_and_state_transitions() -> None:
    server = WebSocketServer(HOST, 0, clientHandler=LifecycleHandler)
    assert server.state is ServerState.CLOSED
    await server.start()
    try:
        assert server.state is ServerState.SERVING
        assert isinstance(server.port, int) and server.port > 0
        assert server.address == (HOST, server.port)
        port = server.port
        assert await server.start() is server  # starting again is a no-op
        assert server.port == port
        async with running_server(LifecycleHandler) as other:
            assert other.port != server.port
        async with connected_client(server) as client:
            assert (await client.send_rpc("ping")).data == "pong"
    finally:
        await server.close(timeout=2)
    assert server.state is ServerState.CLOSED
    with pytest.raises(webshocket.ConnectionFailedError):
        await WebSocketClient(f"ws://{HOST}:{port}").connect()
    await server.close(timeout=2)  # closing twice is harmless
    assert server.state is ServerState.CLOSED


async def test_async_with_server() -> None:
    async with WebSocketServer(HOST, 0, clientHandler=LifecycleHandler) as server:
        assert server.state is ServerState.SERVING
        assert server.port > 0
        async with connected_client(server) as client:
            assert (await client.send_rpc("ping")).data == "pong"
        port = server.port
    assert server.state is ServerState.CLOSED
    with pytest.raises(webshocket.ConnectionFailedError):
        await WebSocketClient(f"ws://{HOST}:{port}").connect()


async def test_serve_forever_ends_cleanly_after_close_from_another_task() -> None:
    server = WebSocketServer(HOST, 0, clientHandler=LifecycleHandler)
    task = asyncio.ensure_future(server.serve_forever())
    try:
        await wait_until(lambda: server.state is ServerState.SERVING and server.port != 0, timeout=2.0)
        async with connected_client(server) as client:
            assert (await client.send_rpc("ping")).data == "pong"
            await server.close(timeout=2)
            await wait_until(lambda: not client.is_connected, timeout=2.0)
        await asyncio.wait_for(asyncio.shield(task), 2.0)
        assert task.done()
        assert not task.cancelled()
        assert task.exception() is None
        assert server.state is ServerState.CLOSED
    finally:
        if not task.done():
            task.cancel()
        await server.close(timeout=1)


# ---------------------------------------------------------------------------- default handler


async def test_default_handler_accept_and_recv() -> None:
    async with running_server() as server, connected_client(server) as client:
        conn = await asyncio.wait_for(server.accept(), 2)
        assert isinstance(conn, ClientConnection)
        assert conn in server.clients
        client.send({"a": 1})
        client.send([1, 2, 3])
        packet = await conn.recv(timeout=2)
        assert packet.source is PacketSource.CUSTOM
        assert packet.data == {"a": 1}
        assert (await conn.recv(timeout=2)).data == [1, 2, 3]
        with pytest.raises(webshocket.ReceiveTimeoutError):
            await conn.recv(timeout=0.2)
        conn.send("reply")
        assert (await client.recv(timeout=2)).data == "reply"
        client.send("last")
        await client.close()
        assert (await conn.recv(timeout=2)).data == "last"  # queued packets survive the close
        with pytest.raises(webshocket.ConnectionClosedError):
            await conn.recv(timeout=2)


async def test_default_handler_iteration_ends_with_the_connection() -> None:
    async with running_server() as server, connected_client(server) as client:
        conn = await asyncio.wait_for(server.accept(), 2)
        for i in range(3):
            client.send(i)

        async def collect() -> list[Any]:
            return [packet.data async for packet in conn]

        collector = asyncio.ensure_future(collect())
        await asyncio.sleep(0.1)
        await client.close()
        assert await asyncio.wait_for(collector, 2) == [0, 1, 2]


async def test_accept_is_refused_with_a_custom_handler() -> None:
    async with running_server(LifecycleHandler) as server:
        with pytest.raises(TypeError):
            await server.accept()


# ---------------------------------------------------------------------------- limits


async def test_max_connection_refuses_extra_clients() -> None:
    async with running_server(LifecycleHandler, max_connection=2) as server:
        first = WebSocketClient(uri_of(server))
        await first.connect()
        async with connected_client(server) as second:
            await wait_until(lambda: len(server.clients) == 2, timeout=2.0)
            with pytest.raises(webshocket.ConnectionFailedError):
                await WebSocketClient(uri_of(server)).connect()
            with pytest.raises(InvalidStatus) as refused:
                async with raw_connect(uri_of(server)):
                    pass
            assert refused.value.response.status_code == 503
            assert len(server.clients) == 2
            await first.close()
            await wait_until(lambda: len(server.clients) == 1, timeout=2.0)
            async with connected_client(server) as third:
                assert (await third.send_rpc("ping")).data == "pong"
            assert (await second.send_rpc("ping")).data == "pong"


# ---------------------------------------------------------------------------- shutdown


async def test_close_sends_1001_and_waits_for_every_client() -> None:
    async with running_server(LifecycleHandler) as server:
        handler = lifecycle_handler(server)
        async with raw_connect(uri_of(server)) as ws1, raw_connect(uri_of(server)) as ws2:
            client = WebSocketClient(uri_of(server))
            await client.connect()
            await wait_until(lambda: len(server.clients) == 3, timeout=2.0)
            await server.close(timeout=2)
            assert server.state is ServerState.CLOSED
            assert server.clients == set()
            assert handler.disconnects == 3
            for ws in (ws1, ws2):
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 2)
                assert ws.close_code == 1001
            await wait_until(lambda: client.state is not ConnectionState.CONNECTED, timeout=2.0)
            with pytest.raises(webshocket.ConnectionClosedError):
                await client.send_rpc("ping", wait_timeout=1)
            await client.close()


async def test_rpc_in_flight_is_answered_before_1001() -> None:
    async with running_server(LifecycleHandler) as server, raw_connect(uri_of(server)) as ws:
        handler = lifecycle_handler(server)
        request = {"source": 5, "rpc": {"type": "request", "method": "slow", "args": [], "kwargs": {}, "call_id": "s1"}}
        await ws.send(json.dumps(request))
        await asyncio.wait_for(handler.slow_started.wait(), 2)
        await server.close(timeout=2)
        reply = json.loads(await asyncio.wait_for(ws.recv(), 2))
        assert reply["rpc"]["call_id"] == "s1"
        assert reply["rpc"]["response"] == "done"
        assert reply["rpc"]["error"] is None
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 2)
        assert ws.close_code == 1001


async def test_rpc_in_flight_reaches_framework_client_on_shutdown() -> None:
    async with running_server(LifecycleHandler) as server, connected_client(server) as client:
        handler = lifecycle_handler(server)
        call = asyncio.ensure_future(client.send_rpc("slow", wait_timeout=2))
        await asyncio.wait_for(handler.slow_started.wait(), 2)
        await server.close(timeout=2)
        result = await asyncio.wait_for(call, 2)
        assert result.data == "done"
        assert result.error is None
        await wait_until(lambda: not client.is_connected, timeout=2.0)


async def test_stream_in_flight_is_cut_on_shutdown() -> None:
    async with running_server(LifecycleHandler) as server, connected_client(server) as client:
        handler = lifecycle_handler(server)
        seen: list[int] = []

        async def consume() -> None:
            async for chunk in client.stream_rpc("ticker"):
                seen.append(chunk.data)

        consumer = asyncio.ensure_future(consume())
        await asyncio.wait_for(handler.stream_started.wait(), 2)
        await wait_until(lambda: len(seen) >= 2, timeout=2.0)
        await asyncio.wait_for(server.close(timeout=2), 3)
        with pytest.raises(webshocket.ConnectionClosedError):
            await asyncio.wait_for(consumer, 2)
        assert seen[:2] == [0, 1]
        await asyncio.wait_for(handler.stream_finalized.wait(), 2)


async def test_no_new_connections_after_close() -> None:
    async with running_server(LifecycleHandler) as server:
        uri = uri_of(server)
        await server.close(timeout=2)
        with pytest.raises(webshocket.ConnectionFailedError):
            await WebSocketClient(uri).connect()
        with pytest.raises((OSError, InvalidStatus, asyncio.TimeoutError)):
            async with raw_connect(uri):
                pass
