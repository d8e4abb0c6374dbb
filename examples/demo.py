"""Webshocket demo: a server and a client exercising every main feature, in one process.

Run it with ``make demo`` (or ``python examples/demo.py`` once installed). It needs no
external service: pub/sub runs on the embedded in-process backplane.
"""

from __future__ import annotations

import asyncio
from typing import Any

import webshocket
from webshocket import ClientConnection, Is, IsEqual, RPCError, WebSocketHandler, rate_limit, rpc_method


class DemoHandler(WebSocketHandler[Any]):
    async def on_connect(self, connection: ClientConnection[Any]) -> None:
        connection.subscribe("lobby")

    @rpc_method(alias_name="add")
    async def add(self, connection: ClientConnection[Any], a: int, b: int) -> int:
        return a + b

    @rpc_method()
    async def login(self, connection: ClientConnection[Any], name: str, team: str) -> str:
        connection.username = name  # session state, kept for this connection
        connection.team = team
        connection.is_admin = name == "alice"
        connection.subscribe("prices.*")  # glob pattern subscription
        return f"welcome {name}"

    @rpc_method(requires=Is("is_admin"))
    async def secret(self, connection: ClientConnection[Any]) -> str:
        return f"the vault code, for {connection.username}"

    @rate_limit(limit=3, period="10s")
    @rpc_method()
    async def ping(self, connection: ClientConnection[Any]) -> str:
        return "pong"

    @rpc_method()
    async def tokens(self, connection: ClientConnection[Any], text: str) -> Any:
        for word in text.split():
            await asyncio.sleep(0.01)
            yield word

    @rpc_method()
    async def withdraw(self, connection: ClientConnection[Any], amount: int) -> int:
        if amount > 100:
            raise RPCError("insufficient funds")
        return 100 - amount


async def main() -> None:
    server = webshocket.WebSocketServer("127.0.0.1", 0, clientHandler=DemoHandler)
    async with server:
        uri = f"ws://127.0.0.1:{server.port}"
        print(f"server listening on {uri} (speedups: {webshocket.SPEEDUPS}, uvloop: {webshocket.UVLOOP})")
        async with webshocket.WebSocketClient(uri) as alice, webshocket.WebSocketClient(uri) as bob:
            print("add(10, 20)            ->", (await alice.send_rpc("add", 10, 20)).data)
            print("login alice            ->", (await alice.send_rpc("login", "alice", team="red")).data)
            print("login bob              ->", (await bob.send_rpc("login", "bob", team="blue")).data)
            print("secret as alice        ->", (await alice.send_rpc("secret")).data)
            denied = await bob.send_rpc("secret")
            print("secret as bob          ->", denied.error.name, "|", denied.response)
            pings = [await alice.send_rpc("ping") for _ in range(4)]
            print("ping x4                ->", [p.data if p.ok else p.error.name for p in pings])
            failed = await alice.send_rpc("withdraw", 500)
            print("withdraw(500)          ->", failed.error.name, "|", failed.response)
            words = [chunk.data async for chunk in alice.stream_rpc("tokens", "streaming one token at a time")]
            print("stream tokens          ->", words)

            server.publish("prices.ACME", {"price": 12.5})  # both match the "prices.*" pattern
            print("alice got              ->", (await alice.recv(timeout=2)).data)
            print("bob got                ->", (await bob.recv(timeout=2)).data)
            server.broadcast("red team only", predicate=IsEqual("team", "red"))
            print("broadcast to red team  ->", (await alice.recv(timeout=2)).data)
            server.publish(
                "lobby", "hello lobby", exclude=[c for c in server.clients if c.session_state.get("username") == "bob"]
            )
            print("lobby, bob excluded    ->", (await alice.recv(timeout=2)).data)
    print("demo finished")


if __name__ == "__main__":
    asyncio.run(main())
