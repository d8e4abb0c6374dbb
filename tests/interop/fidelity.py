"""Run with either webshocket (0.5.2's venv python, or ours): 0.5.x behaviours an application relies on.

Usage: ``python fidelity.py CASE [ARGS]`` (``connect_errors`` takes a PEM with a
certificate for 127.0.0.1 and its key). Prints one JSON object: what the same application code
observed. The test runs it under both and compares (``tests/test_fidelity.py``); it uses
only the public API both releases share.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from typing import Any

import webshocket
from webshocket import WebSocketClient, WebSocketHandler, WebSocketServer, rate_limit, rpc_method


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def definition(limit: Any, period: Any) -> dict[str, Any]:
    """Define a handler with ``@rate_limit(limit=limit, period=period)``: the error it raises, if any."""
    try:

        class Handler(WebSocketHandler):
            @rate_limit(limit=limit, period=period)
            @rpc_method()
            async def hit(self, connection: Any) -> str:
                return "ok"

    except Exception as exc:
        return {"defined": False, "error": type(exc).__name__}
    return {"defined": True, "handler": Handler}


async def calls(handler: type, count: int) -> list[Any]:
    """``count`` calls of ``hit``: "ok" or the error code's value."""
    port = free_port()
    server = WebSocketServer("127.0.0.1", port, clientHandler=handler)
    await server.start()
    try:
        async with WebSocketClient(f"ws://127.0.0.1:{port}") as client:
            out = []
            for _ in range(count):
                response = await client.send_rpc("hit", raise_on_rate_limit=False)
                out.append(response.response if response.error is None else int(response.error))
            return out
    finally:
        await server.close()


async def rate_limit_edges() -> dict[str, Any]:
    cases = {
        "limit 0": (0, "1m"),
        "limit -1": (-1, "1m"),
        "limit 2": (2, "1m"),
        "period 0s": (2, "0s"),
        "period -5s": (2, "-5s"),
        "period without unit": (2, "5"),
        "period 5/1m": (2, "5/1m"),
        "period empty": (2, ""),
    }
    result: dict[str, Any] = {}
    for name, (limit, period) in cases.items():
        made = definition(limit, period)
        if made["defined"]:
            result[name] = {"calls": await calls(made["handler"], 4)}
        else:
            result[name] = {"error": made["error"]}
    return result


async def caught(make: Any, *classes: type) -> dict[str, Any]:
    """Which of ``classes`` an ``except`` clause catches from ``await make()``, and its message."""
    try:
        await make()
    except Exception as exc:
        return {
            "caught": [cls.__name__ for cls in classes if isinstance(exc, cls)],
            "message": str(exc),
        }
    return {"caught": None}


async def connect_errors() -> dict[str, Any]:
    import ssl

    import picows

    result: dict[str, Any] = {}
    # a server at max_connection refuses the next client
    port = free_port()
    server = WebSocketServer("127.0.0.1", port, clientHandler=WebSocketHandler, max_connection=1)
    await server.start()
    try:
        async with WebSocketClient(f"ws://127.0.0.1:{port}"):
            extra = WebSocketClient(f"ws://127.0.0.1:{port}")
            got = await caught(extra.connect, picows.WSError, webshocket.ConnectionFailedError)
            result["server full"] = got["caught"]
    finally:
        await server.close()
    # a certificate the client does not trust
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(sys.argv[2])  # a certificate of a CA the client does not know
    port = free_port()
    server = WebSocketServer("127.0.0.1", port, clientHandler=WebSocketHandler, ssl_context=server_context)
    await server.start()
    try:
        client = WebSocketClient(f"wss://127.0.0.1:{port}", ssl_context=ssl.create_default_context())
        got = await caught(client.connect, ssl.SSLCertVerificationError, ssl.SSLError, webshocket.ConnectionFailedError)
        result["untrusted certificate"] = got["caught"]
    finally:
        await server.close()
    # nobody listens, retried
    client = WebSocketClient(f"ws://127.0.0.1:{free_port()}")
    got = await caught(
        lambda: client.connect(retry=True, max_retry_attempt=2, retry_interval=0.01), webshocket.ConnectionFailedError
    )
    result["retries exhausted"] = got["caught"]
    result["retries exhausted message"] = "All connection attempts failed after multiple retries." in got["message"]
    return result


class Greeter(WebSocketHandler):
    """Reads the client's first message itself, in on_connect; the rest goes to on_receive."""

    async def on_connect(self, connection: Any) -> None:
        packet = await connection.recv(timeout=5.0)
        connection.send({"first": packet.data})

    async def on_receive(self, connection: Any, packet: Any) -> None:
        connection.send({"then": packet.data})


async def recv_in_on_connect() -> dict[str, Any]:
    port = free_port()
    server = WebSocketServer("127.0.0.1", port, clientHandler=Greeter)
    await server.start()
    try:
        async with WebSocketClient(f"ws://127.0.0.1:{port}") as client:
            for word in ("hello", "a", "b", "c"):
                client.send(word)
            got = [(await client.recv(timeout=5)).data for _ in range(4)]
    finally:
        await server.close()
    return {"received": got}


class Waiter(WebSocketHandler):
    """A method with a parameter named ``timeout``."""

    @rpc_method()
    async def wait(self, connection: Any, timeout: float = 0.0, other: int = 0) -> list[Any]:
        return [timeout, other]

    @rpc_method()
    async def plain(self, connection: Any) -> str:
        return "plain"


async def timeout_keyword() -> dict[str, Any]:
    """``send_rpc(..., timeout=...)`` passes ``timeout`` on to the server method, as 0.5.2 does."""
    port = free_port()
    server = WebSocketServer("127.0.0.1", port, clientHandler=Waiter)
    await server.start()
    try:
        async with WebSocketClient(f"ws://127.0.0.1:{port}") as client:
            both = await client.send_rpc("wait", timeout=5, other=1)
            plain = await client.send_rpc("plain", timeout=5)
            out = {"wait": both.response, "plain error": int(plain.error) if plain.error is not None else None}
    finally:
        await server.close()
    return out


async def serialize_edges() -> dict[str, Any]:
    """``packets.serialize`` of a packet whose ``rpc`` is a plain value, and of a bare request."""
    from webshocket.enum import PacketSource
    from webshocket.packets import Packet, RPCRequest, serialize

    return {
        "rpc is a dict": serialize(Packet(source=PacketSource.CUSTOM, rpc={"a": 1})).hex(),
        "bare request": serialize(RPCRequest(method="add", args=[1, 2], call_id="x")).hex(),
    }


class Ordered(WebSocketHandler):
    """A plain packet logs in (on_receive, which takes a moment); the RPC after it must see it."""

    async def on_receive(self, connection: Any, packet: Any) -> None:
        await asyncio.sleep(0.05)
        connection.session_state["user"] = packet.data

    @rpc_method()
    async def whoami(self, connection: Any) -> Any:
        return connection.session_state.get("user")

    @rpc_method()
    async def audience(self, connection: Any, channel: str) -> int:
        return len(self.channels[channel])  # 0.5.x: a channel nobody joined has no subscribers

    @rpc_method()
    async def many(self, connection: Any, count: int) -> int:
        self.subscribe(connection, [f"c{i}" for i in range(count)])  # the server's own call
        return len(connection.subscribed_channel)


async def api_edges() -> dict[str, Any]:
    port = free_port()
    server = WebSocketServer("127.0.0.1", port, clientHandler=Ordered, max_subscribed_channels=5)
    await server.start()
    result: dict[str, Any] = {}
    try:
        async with WebSocketClient(f"ws://127.0.0.1:{port}") as client:
            client.send("alice")
            result["rpc after on_receive"] = (await client.send_rpc("whoami")).response
            reply = await client.send_rpc("audience", "nobody")
            result["channels of nobody"] = reply.response if reply.error is None else int(reply.error)
            reply = await client.send_rpc("many", 8)
            result["handler.subscribe past the limit"] = reply.response if reply.error is None else int(reply.error)
        server.max_connection = 7  # 0.5.x applications assign options
        result["max_connection assigned"] = server.max_connection

        async def extra(connection: Any) -> str:
            return "extra"

        extra = rpc_method(alias_name="extra")(extra)
        server.handler.register_rpc_method(extra)
        server.handler.register_rpc_method(extra)  # the same function twice
        result["registered twice"] = True
    finally:
        await server.close()
    return result


NAMES = [
    "webshocket.__author__",
    "webshocket.__license__",
    "webshocket.log",
    "webshocket.websocket.server",
    "webshocket.websocket.client",
    "webshocket.websocket.H",
    "webshocket.constant.DEFAULT_ENCODE_BUFFER_SIZE",
    "webshocket.typing.RPCDecorator",
    "webshocket.typing.P",
    "webshocket.typing.R",
    "webshocket.packets.T",
    "webshocket.packets.RType",
]


async def names() -> dict[str, Any]:
    """Which 0.5.x module-level names resolve after a plain ``import webshocket`` (+ its submodules)."""
    import importlib

    for module in ("constant", "typing", "packets"):
        importlib.import_module(f"webshocket.{module}")
    found = {}
    for dotted in NAMES:
        target: Any = webshocket
        try:
            for part in dotted.split(".")[1:]:
                target = getattr(target, part)
            found[dotted] = True
        except AttributeError:
            found[dotted] = False
    found["author, license"] = [webshocket.__author__, webshocket.__license__]
    return found


CASES = {
    "names": names,
    "api_edges": api_edges,
    "serialize_edges": serialize_edges,
    "rate_limit_edges": rate_limit_edges,
    "connect_errors": connect_errors,
    "recv_in_on_connect": recv_in_on_connect,
    "timeout_keyword": timeout_keyword,
}


if __name__ == "__main__":
    output = asyncio.run(CASES[sys.argv[1]]())
    output["version"] = webshocket.__version__ if hasattr(webshocket, "__version__") else "?"
    print(json.dumps(output))
