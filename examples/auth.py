"""Token authentication at the handshake: ``python examples/auth.py`` (needs ``pip install 'webshocket[jwt]'``).

A client proves who it is with a signed JWT (HS256, PyJWT) when it connects, in one of
three places (browsers cannot set headers on a WebSocket, so the first two are theirs):

- the query string: ``ws://host:port/?token=<jwt>``;
- the subprotocol list: ``new WebSocket(url, ["webshocket.json", "bearer." + jwt])``; the
  server answers with ``webshocket.json`` (or ``webshocket.v1``), never with the token;
- the ``Authorization: Bearer <jwt>`` header, for clients that can set one.

``on_handshake`` checks the signature and the expiry before the upgrade: a bad or expired
token is refused with HTTP 401 and no connection is made. An accepted token seeds the
session (``connection.user``, ``connection.expires``) before ``on_connect`` runs.

When the token expires while the client is connected, the server **closes the connection
with 4401** ("token expired"): calls stop and so do pushes. ``WebSocketClient`` does not
reconnect after 4401; the application gets a fresh token and connects again. A client may
call ``refresh(new_token)`` before then to stay connected.

The script starts a server on a free port, runs clients with good, forged, expired and
short-lived tokens against it, prints what each one gets and exits.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import jwt

import webshocket
from webshocket import ClientConnection, Reject, Request, WebSocketHandler, rpc_method

Conn = ClientConnection[Any]

SECRET = secrets.token_bytes(32)  # shared with whoever issues the tokens (an auth service)
ALGORITHMS = ["HS256"]
CLOSE_TOKEN_EXPIRED = 4401
"""Close code when a connection's token expires (4401: unauthorized; the client should not reconnect as is)."""


def issue_token(user: str, lifetime: float, key: bytes = SECRET) -> str:
    """What an auth service does: a signed token for ``user``, valid ``lifetime`` seconds."""
    return jwt.encode({"sub": user, "exp": int(time.time() + lifetime)}, key, algorithm=ALGORITHMS[0])


def verify(token: str) -> dict[str, Any]:
    """The token's claims if it is signed with SECRET and not expired; raises jwt.InvalidTokenError."""
    claims: dict[str, Any] = jwt.decode(token, SECRET, algorithms=ALGORITHMS, options={"require": ["exp", "sub"]})
    return claims


def token_of(request: Request) -> str | None:
    """The token a client presents: query string, a ``bearer.`` subprotocol, or an Authorization header."""
    token = request.query_params.get("token")
    if token:
        return token
    for offered in request.subprotocols:
        if offered.startswith("bearer."):
            return offered[len("bearer.") :]
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return credentials.strip()
    return None


class AuthHandler(WebSocketHandler[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.expiry: dict[Conn, asyncio.TimerHandle] = {}  # connection -> its expiry timer

    def on_handshake(self, request: Request) -> dict[str, Any]:
        """Runs before the upgrade (a plain def: no I/O here). Refuse, or seed the session."""
        token = token_of(request)
        if token is None:
            raise Reject(401, "A token is required: ?token=, a bearer.<token> subprotocol or Authorization.")
        try:
            claims = verify(token)
        except jwt.ExpiredSignatureError:
            raise Reject(401, "Token expired.", {"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
        except jwt.InvalidTokenError:
            raise Reject(401, "Invalid token.", {"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
        return {"user": claims["sub"], "expires": float(claims["exp"])}  # connection.user, connection.expires

    async def on_connect(self, connection: Conn) -> None:
        self.schedule_expiry(connection)

    async def on_disconnect(self, connection: Conn) -> None:
        timer = self.expiry.pop(connection, None)
        if timer is not None:
            timer.cancel()

    def schedule_expiry(self, connection: Conn) -> None:
        """Close the connection with 4401 when its token expires."""
        old = self.expiry.pop(connection, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, connection.expires - time.time())
        self.expiry[connection] = loop.call_at(
            loop.time() + delay, connection.close, CLOSE_TOKEN_EXPIRED, "token expired"
        )

    @rpc_method()
    async def whoami(self, connection: Conn) -> str:
        return str(connection.user)

    @rpc_method()
    async def refresh(self, connection: Conn, token: str) -> float:
        """Present a newer token for the same user: the connection lives until it expires."""
        try:
            claims = verify(token)
        except jwt.InvalidTokenError as exc:
            raise webshocket.RPCError(f"refresh refused: {exc}") from None
        if claims["sub"] != connection.user:
            raise webshocket.RPCError("refresh refused: the token is for another user")
        connection.expires = float(claims["exp"])
        self.schedule_expiry(connection)
        return float(connection.expires)


def refused(exc: webshocket.ConnectionFailedError) -> str:
    """The HTTP status and body of a refused upgrade (picows's WSInvalidStatusError is the cause)."""
    response = getattr(exc.__cause__, "response", None)
    if response is None:
        return f"failed: {exc}"
    body = bytes(getattr(exc.__cause__, "raw_body", b"") or b"").decode()
    return f"refused: HTTP {int(response.status)} {body}"


async def try_connect(uri: str, **connect_kwargs: Any) -> str:
    """Connect (``connect_kwargs`` go to ``connect``, e.g. ``extra_headers``) and ask who we are."""
    client = webshocket.WebSocketClient(uri)
    try:
        await client.connect(**connect_kwargs)
        return f"accepted as {(await client.send_rpc('whoami')).data}"
    except webshocket.ConnectionFailedError as exc:
        return refused(exc)
    finally:
        await client.close()


async def main() -> None:
    async with webshocket.WebSocketServer("127.0.0.1", 0, clientHandler=AuthHandler) as server:
        uri = f"ws://127.0.0.1:{server.port}"
        print(f"auth server on {uri}")

        print("no token               ->", await try_connect(uri))
        forged = issue_token("eve", 60, key=secrets.token_bytes(32))  # signed with another key
        print("forged token           ->", await try_connect(f"{uri}/?token={forged}"))
        print("expired token          ->", await try_connect(f"{uri}/?token={issue_token('alice', -10)}"))
        print("token in query string  ->", await try_connect(f"{uri}/?token={issue_token('alice', 60)}"))
        protocols = f"webshocket.v1, bearer.{issue_token('bob', 60)}"  # what a browser's list becomes on the wire
        print(
            "token as subprotocol   ->",
            await try_connect(uri, extra_headers={"Sec-WebSocket-Protocol": protocols}),
        )
        header = {"Authorization": f"Bearer {issue_token('carol', 60)}"}
        print("token in Authorization ->", await try_connect(uri, extra_headers=header))

        # a token that expires while connected: the server closes the connection with 4401
        closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        dave = webshocket.WebSocketClient(
            f"{uri}/?token={issue_token('dave', 2)}", on_disconnect=lambda code: closed.set_result(code)
        )
        await dave.connect()
        print("dave whoami()          ->", (await dave.send_rpc("whoami")).data)
        erin = webshocket.WebSocketClient(f"{uri}/?token={issue_token('erin', 2)}")
        await erin.connect()
        renewed = await erin.send_rpc("refresh", issue_token("erin", 60))
        print("erin refresh()         ->", "renewed" if renewed.error is None else renewed.response)
        stolen = await erin.send_rpc("refresh", issue_token("mallory", 60))
        print("erin refresh(mallory)  ->", f"{stolen.error.name}: {stolen.response}" if stolen.error else "renewed!")
        code = await asyncio.wait_for(closed, 10)
        print("dave's token expired   -> closed by the server with", code)
        try:
            await dave.send_rpc("whoami", wait_timeout=2)
            print("dave whoami() after expiry -> answered!")
        except webshocket.ConnectionClosedError:
            print("dave whoami() after    -> ConnectionClosedError (reconnect with a new token)")
        print("erin whoami() after    ->", (await erin.send_rpc("whoami")).data, "(refreshed, still connected)")
        await dave.close()
        await erin.close()
    print("auth demo finished")


if __name__ == "__main__":
    asyncio.run(main())
