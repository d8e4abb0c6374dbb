"""End-to-end smoke test of the main features over a real socket."""

from __future__ import annotations

from typing import Any

from helpers import Adder, connected_client, running_server

import webshocket
from webshocket import Is, RPCError, RPCErrorCode, rate_limit, rpc_method


class Handler(Adder):
    async def on_connect(self, connection: webshocket.ClientConnection[Any]) -> None:
        connection.subscribe("lobby")

    @rpc_method()
    async def count(self, connection: webshocket.ClientConnection[Any], n: int) -> Any:
        for i in range(n):
            yield i

    @rate_limit(limit=2, period="1m")
    @rpc_method()
    async def limited(self, connection: webshocket.ClientConnection[Any]) -> str:
        return "ok"

    @rpc_method(requires=Is("admin"))
    async def secret(self, connection: webshocket.ClientConnection[Any]) -> str:
        return "s"

    @rpc_method()
    async def fail(self, connection: webshocket.ClientConnection[Any]) -> None:
        raise RPCError("nope")


async def test_smoke() -> None:
    async with running_server(Handler) as server, connected_client(server) as client:
        assert (await client.send_rpc("add", 10, 20)).data == 30
        assert [p.data async for p in client.stream_rpc("count", 3)] == [0, 1, 2]
        errors = [(await client.send_rpc("limited")).error for _ in range(3)]
        assert errors == [None, None, RPCErrorCode.RATE_LIMIT_EXCEEDED]
        assert (await client.send_rpc("secret")).error == RPCErrorCode.ACCESS_DENIED
        failed = await client.send_rpc("fail")
        assert (failed.error, failed.response) == (RPCErrorCode.APPLICATION_ERROR, "nope")
        server.publish("lobby", {"hi": 1})
        packet = await client.recv(2)
        assert (packet.source, packet.channel, packet.data) == (webshocket.PacketSource.CHANNEL, "lobby", {"hi": 1})
