"""Admin-only RPCs with predicates: ``python examples/admin.py``.

``login`` checks a password and writes ``user`` and ``role`` into the connection's
session state. Admin methods say who may call them with ``requires=``: the server
answers ACCESS_DENIED to anybody else without running the method. ``announce`` uses a
predicate the other way round, to pick recipients: it broadcasts to admins only.

The script starts a server on a free port, runs an anonymous client, a user and two
admins against it, prints what each one gets and exits.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import webshocket
from webshocket import All, ClientConnection, Has, IsEqual, ReceiveTimeoutError, RPCError, WebSocketHandler, rpc_method

Conn = ClientConnection[Any]

# name -> (password, role); a real server would keep salted hashes in a database
USERS = {"alice": ("wonderland", "admin"), "dave": ("hunter2", "admin"), "bob": ("builder", "user")}

IS_ADMIN = All(Has("user"), IsEqual("role", "admin"))


class AdminHandler(WebSocketHandler[Any]):
    @rpc_method()
    async def login(self, connection: Conn, user: str, password: str) -> str:
        known_password, role = USERS.get(user, ("", ""))
        if not known_password or not hmac.compare_digest(known_password, password):
            raise RPCError("wrong user name or password")  # APPLICATION_ERROR, the message goes to the client
        connection.user = user  # session state: kept until this connection closes
        connection.role = role
        return role

    @rpc_method(requires=Has("user"))  # any logged-in user
    async def whoami(self, connection: Conn) -> str:
        return f"{connection.user} ({connection.role})"

    @rpc_method(requires=IS_ADMIN)
    async def online(self, connection: Conn) -> dict[str, str]:
        return dict(sorted((c.user, c.role) for c in self.clients if "user" in c))

    @rpc_method(requires=IS_ADMIN)
    async def kick(self, connection: Conn, user: str) -> bool:
        victims = [c for c in self.clients if c.session_state.get("user") == user]
        for victim in victims:
            victim.close(4000, f"kicked by {connection.user}")
        return bool(victims)

    @rpc_method(requires=IS_ADMIN)
    async def announce(self, connection: Conn, text: str) -> None:
        # recipients picked by a predicate too: every connected admin, the sender included
        self.broadcast({"from": connection.user, "text": text}, predicate=IsEqual("role", "admin"))


def outcome(response: webshocket.RPCResponse) -> str:
    if response.error is None:
        return repr(response.data)
    return f"{response.error.name}: {response.response}"


async def main() -> None:
    async with webshocket.WebSocketServer("127.0.0.1", 0, clientHandler=AdminHandler) as server:
        uri = f"ws://127.0.0.1:{server.port}"
        print(f"admin server on {uri}")
        async with (
            webshocket.WebSocketClient(uri) as anon,
            webshocket.WebSocketClient(uri) as bob,
            webshocket.WebSocketClient(uri) as alice,
            webshocket.WebSocketClient(uri) as dave,
        ):
            print("anonymous online()      ->", outcome(await anon.send_rpc("online")))
            print("anonymous whoami()      ->", outcome(await anon.send_rpc("whoami")))
            print("bob, wrong password     ->", outcome(await bob.send_rpc("login", "bob", "guess")))
            print("bob login               ->", outcome(await bob.send_rpc("login", "bob", "builder")))
            print("bob whoami()            ->", outcome(await bob.send_rpc("whoami")))
            print("bob online()            ->", outcome(await bob.send_rpc("online")))
            print("bob announce()          ->", outcome(await bob.send_rpc("announce", "I am admin now")))
            print("alice login             ->", outcome(await alice.send_rpc("login", "alice", "wonderland")))
            print("dave login              ->", outcome(await dave.send_rpc("login", "dave", "hunter2")))
            print("alice online()          ->", outcome(await alice.send_rpc("online")))

            print("alice announce()        ->", outcome(await alice.send_rpc("announce", "deploy at 17:00")))
            for name, client in (("alice", alice), ("dave", dave)):
                packet = await client.recv(timeout=2)
                print(f"{name:<5} got broadcast     -> {packet.data['from']}: {packet.data['text']}")
            for name, client in (("bob", bob), ("anonymous", anon)):
                try:
                    await client.recv(timeout=0.3)
                    print(f"{name} got the admin broadcast!")
                except ReceiveTimeoutError:
                    print(f"{name:<9} got nothing    -> not an admin")

            print("dave kick('bob')        ->", outcome(await dave.send_rpc("kick", "bob")))
            await asyncio.sleep(0.2)
            print("bob still connected     ->", bob.is_connected)
            print("alice online()          ->", outcome(await alice.send_rpc("online")))
    print("admin demo finished")


if __name__ == "__main__":
    asyncio.run(main())
