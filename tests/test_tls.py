"""wss:// with certificates made by trustme: round trips, and clients that must be refused."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trustme
import websockets
from helpers import Adder, connected_client, running_server, uri_of, wait_until

import webshocket
from webshocket import (
    ClientConnection,
    ConnectionFailedError,
    ConnectionState,
    PacketSource,
    RPCErrorCode,
    WebSocketClient,
    rpc_method,
)


class Handler(Adder):
    async def on_connect(self, connection: ClientConnection[Any]) -> None:
        connection.subscribe("secure-news")

    @rpc_method()
    async def count(self, connection: ClientConnection[Any], n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @rpc_method()
    async def echo(self, connection: ClientConnection[Any], value: Any) -> Any:
        return value

    @rpc_method()
    async def is_tls(self, connection: ClientConnection[Any]) -> bool:
        transport = connection._engine.transport.underlying_transport
        return transport.get_extra_info("ssl_object") is not None


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def untrusting_ctx() -> Iterator[ssl.SSLContext]:
    """Verifies certificates against another CA: ours is unknown to it."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    trustme.CA().configure_trust(ctx)
    yield ctx


async def test_wss_rpc_stream_and_publish(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> None:
    async with running_server(Handler, ssl_context=server_ctx) as server:
        client = WebSocketClient(uri_of(server, "wss"), ssl_context=client_ctx)
        await client.connect()
        try:
            assert client.state is ConnectionState.CONNECTED
            assert (await client.send_rpc("is_tls")).data is True
            assert (await client.send_rpc("add", 10, 20)).data == 30
            assert [chunk.data async for chunk in client.stream_rpc("count", 4)] == [0, 1, 2, 3]
            await wait_until(lambda: len(server.subscribers("secure-news")) == 1)
            server.publish("secure-news", {"headline": "encrypted"})
            packet = await client.recv(5)
            assert (packet.source, packet.channel, packet.data) == (
                PacketSource.CHANNEL,
                "secure-news",
                {"headline": "encrypted"},
            )
            server.broadcast("to all")
            packet = await client.recv(5)
            assert (packet.source, packet.data) == (PacketSource.BROADCAST, "to all")
        finally:
            await client.close()


async def test_wss_large_message_round_trip(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> None:
    payload = bytes(range(256)) * 1200  # 300 KiB: fragmented frames inside TLS records
    async with running_server(Handler, ssl_context=server_ctx) as server:
        async with WebSocketClient(uri_of(server, "wss"), ssl_context=client_ctx) as client:
            result = await client.send_rpc("echo", payload)
            assert result.error is None
            assert result.data == payload


async def test_plain_ws_uri_to_tls_server_is_not_tls(server_ctx: ssl.SSLContext) -> None:
    async with running_server(Handler, ssl_context=server_ctx) as server:
        client = WebSocketClient(uri_of(server, "ws"))
        with pytest.raises(ConnectionFailedError):
            await asyncio.wait_for(client.connect(), 10)
        assert client.state is not ConnectionState.CONNECTED
        assert server.clients == set()


async def test_client_not_trusting_the_ca_fails(server_ctx: ssl.SSLContext, untrusting_ctx: ssl.SSLContext) -> None:
    async with running_server(Handler, ssl_context=server_ctx) as server:
        client = WebSocketClient(uri_of(server, "wss"), ssl_context=untrusting_ctx)
        with pytest.raises(ConnectionFailedError) as info:
            await asyncio.wait_for(client.connect(), 10)
        assert isinstance(info.value, webshocket.ConnectionError)
        assert client.state is ConnectionState.DISCONNECTED
        assert server.clients == set()


async def test_client_with_system_trust_store_fails(server_ctx: ssl.SSLContext) -> None:
    async with running_server(Handler, ssl_context=server_ctx) as server:
        for ctx in (ssl.create_default_context(), None):
            client = WebSocketClient(uri_of(server, "wss"), ssl_context=ctx)
            with pytest.raises(ConnectionFailedError):
                await asyncio.wait_for(client.connect(), 10)
            assert client.state is ConnectionState.DISCONNECTED


async def test_certificate_for_another_host_fails(ca: trustme.CA, client_ctx: ssl.SSLContext) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.example").configure_cert(ctx)  # trusted CA, wrong name
    async with running_server(Handler, ssl_context=ctx) as server:
        client = WebSocketClient(uri_of(server, "wss"), ssl_context=client_ctx)
        with pytest.raises(ConnectionFailedError):
            await asyncio.wait_for(client.connect(), 10)


async def test_wss_uri_to_plain_server_fails(client_ctx: ssl.SSLContext) -> None:
    async with running_server(Handler) as server:
        client = WebSocketClient(uri_of(server, "wss"), ssl_context=client_ctx)
        with pytest.raises(ConnectionFailedError):
            # the plain server never answers the TLS ClientHello: bound the wait (kwargs reach create_connection)
            await asyncio.wait_for(client.connect(ssl_handshake_timeout=0.5), 10)
        assert client.state is ConnectionState.DISCONNECTED
        # the plain server still serves plain clients afterwards
        async with connected_client(server) as plain:
            assert (await plain.send_rpc("add", 1, 2)).data == 3


async def test_failed_tls_client_can_retry_with_the_right_context(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, untrusting_ctx: ssl.SSLContext
) -> None:
    async with running_server(Handler, ssl_context=server_ctx) as server:
        client = WebSocketClient(uri_of(server, "wss"), ssl_context=untrusting_ctx)
        with pytest.raises(ConnectionFailedError):
            await asyncio.wait_for(client.connect(), 10)
        client.ssl_context = client_ctx
        await asyncio.wait_for(client.connect(), 10)
        try:
            assert (await client.send_rpc("add", 2, 3)).data == 5
        finally:
            await client.close()


async def test_generic_json_client_over_wss(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> None:
    async with running_server(Handler, ssl_context=server_ctx) as server:
        async with websockets.connect(uri_of(server, "wss"), ssl=client_ctx) as ws:
            request = {"source": 5, "rpc": {"type": "request", "method": "add", "args": [4, 5], "call_id": "j1"}}
            await ws.send(json.dumps(request))
            reply = await asyncio.wait_for(ws.recv(), 5)
            assert isinstance(reply, bytes)  # every packet is a binary message
            assert json.loads(reply) == {
                "source": 5,
                "rpc": {
                    "type": "response",
                    "call_id": "j1",
                    "response": 9,
                    "error": None,
                    "is_stream": False,
                    "is_end": False,
                },
            }
            await ws.send(json.dumps({"source": 5, "rpc": {"type": "request", "method": "nope", "call_id": "j2"}}))
            error = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert error["rpc"]["error"] == int(RPCErrorCode.METHOD_NOT_FOUND)
