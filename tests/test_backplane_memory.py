"""Two server nodes joined by the in-process backplane: the bridge's behaviour without Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from helpers import HOST, uri_of, wait_until

from webshocket import (
    ClientConnection,
    IsEqual,
    ReceiveTimeoutError,
    WebSocketClient,
    WebSocketHandler,
    WebSocketServer,
    rpc_method,
)
from webshocket.backplane import MemoryBackplane, MemoryHub, predicate_from_spec, predicate_spec


class Handler(WebSocketHandler[Any]):
    @rpc_method()
    async def join(self, connection: ClientConnection[Any], channel: str, team: str = "") -> None:
        connection.team = team
        connection.subscribe(channel)

    @rpc_method()
    async def leave(self, connection: ClientConnection[Any], channel: str) -> None:
        connection.unsubscribe(channel)

    @rpc_method()
    async def say(self, connection: ClientConnection[Any], channel: str, text: Any) -> None:
        self.publish(channel, text)


@asynccontextmanager
async def two_nodes() -> AsyncIterator[tuple[WebSocketServer[Any], WebSocketServer[Any]]]:
    hub = MemoryHub()
    async with AsyncExitStack() as stack:
        nodes = []
        for _ in range(2):
            server = WebSocketServer(HOST, 0, clientHandler=Handler, backplane=MemoryBackplane(hub))
            await server.start()
            stack.push_async_callback(server.close, 2.0)
            nodes.append(server)
        yield nodes[0], nodes[1]


async def client_of(stack: AsyncExitStack, server: WebSocketServer[Any]) -> WebSocketClient:
    client = WebSocketClient(uri_of(server))
    await client.connect()
    stack.push_async_callback(client.close)
    return client


async def assert_silent(client: WebSocketClient) -> None:
    with pytest.raises(ReceiveTimeoutError):
        await client.recv(timeout=0.2)


async def test_cross_node_publish_exact_and_pattern_once_each() -> None:
    async with two_nodes() as (a, b), AsyncExitStack() as stack:
        on_a = await client_of(stack, a)
        on_b = await client_of(stack, b)
        both = await client_of(stack, b)
        await on_a.send_rpc("join", "news.sport")
        await on_b.send_rpc("join", "news.*")
        await both.send_rpc("join", "news.sport")
        await both.send_rpc("join", "news.*")
        a.publish("news.sport", {"n": 1})
        for client in (on_a, on_b, both):
            packet = await client.recv(timeout=2)
            assert (packet.channel, packet.data) == ("news.sport", {"n": 1})
            await assert_silent(client)


async def test_broadcast_with_predicate_crosses_nodes() -> None:
    async with two_nodes() as (a, b), AsyncExitStack() as stack:
        red_b = await client_of(stack, b)
        blue_b = await client_of(stack, b)
        red_a = await client_of(stack, a)
        await red_b.send_rpc("join", "x", team="red")
        await blue_b.send_rpc("join", "x", team="blue")
        await red_a.send_rpc("join", "x", team="red")
        a.broadcast("reds", predicate=IsEqual("team", "red"))
        assert (await red_b.recv(timeout=2)).data == "reds"
        assert (await red_a.recv(timeout=2)).data == "reds"
        await assert_silent(blue_b)


async def test_node_subscribes_only_while_it_has_local_subscribers() -> None:
    async with two_nodes() as (_a, b), AsyncExitStack() as stack:
        client = await client_of(stack, b)
        backplane_b = b.backplane
        assert isinstance(backplane_b, MemoryBackplane)
        await client.send_rpc("join", "room.[ab]")
        assert backplane_b.names == {"room.[ab]"}
        await client.send_rpc("leave", "room.[ab]")
        assert backplane_b.names == set()
        await client.send_rpc("join", "room.1")
        await client.close()
        await wait_until(lambda: backplane_b.names == set())


async def test_order_and_json_clients_across_nodes() -> None:
    import json

    import websockets

    async with two_nodes() as (a, b), AsyncExitStack() as stack:
        subscriber = await client_of(stack, b)
        await subscriber.send_rpc("join", "feed")
        raw = await stack.enter_async_context(websockets.connect(uri_of(b)))
        await raw.send(json.dumps({"source": 5, "rpc": {"type": "request", "method": "join", "args": ["feed"]}}))
        await raw.recv()
        publisher = await client_of(stack, a)
        for i in range(50):
            await publisher.send_rpc("say", "feed", i)
        assert [(await subscriber.recv(timeout=2)).data for _ in range(50)] == list(range(50))
        got = [json.loads(await asyncio.wait_for(raw.recv(), 2)) for _ in range(50)]
        assert [g["data"] for g in got] == list(range(50)) and got[0] == {"source": 2, "data": 0, "channel": "feed"}


def test_predicates_cross_as_data_and_lambdas_are_refused() -> None:
    pred = IsEqual("team", "red")
    rebuilt = predicate_from_spec(predicate_spec(pred))
    assert repr(rebuilt) == repr(pred)
    with pytest.raises(TypeError, match="cannot cross the backplane"):
        predicate_spec(lambda connection: True)
