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
from typing import Any, ClassVar

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
        "limit 2.5": (2.5, "1m"),
        "limit 0.5": (0.5, "1m"),
        "limit -0.5": (-0.5, "1m"),
        "limit True": (True, "1m"),
        "limit False": (False, "1m"),
        "limit inf": (float("inf"), "1m"),
        "limit nan": (float("nan"), "1m"),
        "limit '5'": ("5", "1m"),
        "limit None": (None, "1m"),
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
IMPORTED = {  # names 0.5.x's modules imported from each other, so that code could import them from there too
    "websocket": "ClientConnection ClientType ConnectionClosedError ConnectionFailedError ConnectionState "
    "DefaultWebSocketHandler Packet PacketSource RPCError RPCErrorCode RPCMethod RPCRequest RPCResponse "
    "RPCTimeoutError RPC_Predicate RateLimitConfig RateLimitError ReceiveTimeoutError Serializable ServerState "
    "WebSocketError WebSocketHandler deserialize serialize",
    "connection": "DEFAULT_ENCODE_BUFFER_SIZE DefaultWebSocketHandler RPCResponse ReceiveTimeoutError Serializable "
    "deserialize",
    "handler": "ClientType PacketError PacketSource Serializable serialize",
    "packets": "RPCErrorCode generate_uuid",
    "predicate": "RPC_Predicate",
    "rpc": "RPCDecorator",
    "typing": "Packet",
}
NAMES += [f"webshocket.{module}.{name}" for module, names in IMPORTED.items() for name in names.split()]


async def names() -> dict[str, Any]:
    """Which 0.5.x module-level names resolve after a plain ``import webshocket`` (+ its submodules)."""
    import importlib

    for module in ("constant", "typing", "packets", *IMPORTED):
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


def packet_samples() -> dict[str, Any]:
    """What application code gets from msgspec for webshocket's packet classes (0.5.x made them
    ``msgspec.Struct`` types)."""
    import pickle

    import msgspec

    from webshocket import Packet, PacketSource, RPCRequest, RPCResponse
    from webshocket.packets import serialize

    envelope = msgspec.defstruct("Envelope", [("packet", Packet), ("note", str, "")])  # an application's Struct

    def attempt(call: Any) -> Any:
        try:
            value = call()
        except Exception as exc:
            return {"error": type(exc).__name__}
        return value.hex() if isinstance(value, bytes) else repr(value)

    reply = json.loads(
        '{"source":5,"rpc":{"type":"response","call_id":"c1","response":[1,2],"error":-32001,'
        '"is_stream":false,"is_end":true}}'
    )
    request = {"source": 5, "rpc": {"type": "request", "method": "add", "args": [1, 2], "call_id": "c2"}}
    custom = Packet(PacketSource.CUSTOM, data={"a": [1.5, None]}, channel="room", timestamp=2.0)
    packet = msgspec.convert(reply, type=Packet)
    out: dict[str, Any] = {
        "convert reply": repr(packet),
        "convert request": attempt(lambda: msgspec.convert(request, type=Packet)),
        "convert generic": attempt(lambda: msgspec.convert(reply, type=Packet[RPCResponse])),
        "convert response": attempt(lambda: msgspec.convert(reply["rpc"], type=RPCResponse)),
        "convert custom": attempt(lambda: msgspec.convert({"source": 4, "data": "x", "timestamp": 1}, type=Packet)),
        "json.encode reply": attempt(lambda: msgspec.json.encode(packet)),
        "json.encode custom": attempt(lambda: msgspec.json.encode(custom)),
        "json.encode request": attempt(lambda: msgspec.json.encode(RPCRequest("m", [1], {"k": 2}, "c3"))),
        "json.encode rpc not an RPC": attempt(lambda: msgspec.json.encode(Packet(PacketSource.CUSTOM, rpc={"a": 1}))),
        "msgpack.encode reply": attempt(lambda: msgspec.msgpack.encode(packet)),
        "msgpack.encode is serialize": msgspec.msgpack.encode(custom) == serialize(custom),
        "to_builtins": msgspec.to_builtins(packet),
        "json.decode": attempt(lambda: msgspec.json.decode(msgspec.json.encode(custom), type=Packet)),
        "msgpack.decode": attempt(lambda: msgspec.msgpack.decode(serialize(packet), type=Packet)),
        "in a Struct": attempt(lambda: msgspec.json.encode(envelope(packet))),
        "in a Struct, decoded": attempt(
            lambda: msgspec.json.decode(msgspec.json.encode(envelope(packet)), type=envelope) == envelope(packet)
        ),
        "invalid source": attempt(lambda: msgspec.convert({"source": 99}, type=Packet)),
        "no source": attempt(lambda: msgspec.convert({"data": 1}, type=Packet)),
        "untagged rpc": attempt(lambda: msgspec.convert({"source": 5, "rpc": {"a": 1}}, type=Packet)),
        "pickle": pickle.dumps(packet, 2).hex(),
        "unpickled": pickle.loads(pickle.dumps(custom)) == custom,
        "repr": repr(Packet(PacketSource.CUSTOM, "x")),
        "module": [cls.__module__ for cls in (Packet, RPCRequest, RPCResponse)],
        "match args": [Packet.__match_args__[:6], RPCRequest.__match_args__, RPCResponse.__match_args__],
    }
    match packet:
        case Packet(PacketSource.RPC, None, RPCResponse("c1", response)):
            out["match"] = response
    # The msgspec.structs helpers, which need a real Struct (docs/migration.md 3.17).
    out["structs.asdict"] = attempt(lambda: {k: repr(v) for k, v in msgspec.structs.asdict(packet).items()})
    out["structs.astuple"] = attempt(lambda: [repr(v) for v in msgspec.structs.astuple(packet)])
    out["structs.replace"] = attempt(lambda: msgspec.structs.replace(packet, data=1))
    out["structs.fields"] = attempt(lambda: [f.name for f in msgspec.structs.fields(Packet)])
    out["structs.fields of a request"] = attempt(lambda: [f.name for f in msgspec.structs.fields(RPCRequest)])
    out["structs.asdict of a response"] = attempt(lambda: msgspec.structs.asdict(packet.rpc))
    out["is a Struct"] = [issubclass(cls, msgspec.Struct) for cls in (Packet, RPCRequest, RPCResponse)]
    out["config"] = attempt(
        lambda: [
            (c.tag, c.tag_field, c.omit_defaults, c.gc)
            for c in (cls.__struct_config__ for cls in (Packet, RPCRequest, RPCResponse))
        ]
    )
    return out


async def msgspec_packets() -> dict[str, Any]:
    return packet_samples()


def struct_types() -> dict[str, type]:
    import msgspec

    class Point(msgspec.Struct):
        x: int
        y: float

    class Tagged(msgspec.Struct, tag=True, omit_defaults=True):
        name: str
        tags: list[str] = []
        note: str | None = None
        level: int = 0

    class Camel(msgspec.Struct, rename="camel", tag_field="kind", tag=7):
        first_name: str
        last_seen: Any = None

    class Pair(msgspec.Struct, array_like=True):
        a: int
        b: Point

    class Maybe(msgspec.Struct):
        a: int
        b: int | msgspec.UnsetType = msgspec.UNSET

    return {"Point": Point, "Tagged": Tagged, "Camel": Camel, "Pair": Pair, "Maybe": Maybe}


class StructServer(WebSocketHandler):
    """Structs as RPC results, sent, published and broadcast (0.5.x encoded them with msgspec)."""

    types: ClassVar[dict[str, type]] = {}

    async def on_connect(self, connection: Any) -> None:
        connection.subscribe("room")

    @rpc_method()
    async def get(self, connection: Any) -> Any:
        t = self.types
        return [
            t["Point"](1, 2.5),
            t["Tagged"]("t"),
            t["Camel"]("Ann"),
            t["Pair"](1, t["Point"](3, 1e-7)),
            t["Maybe"](1),
        ]

    @rpc_method()
    async def push(self, connection: Any) -> None:
        t = self.types
        connection.send(t["Tagged"]("sent", ["a"], "n", 3))
        self.publish("room", {"p": t["Point"](5, 6.0)})
        self.broadcast(t["Pair"](7, t["Point"](8, 9.0)))


async def raw_messages(port: int, subprotocol: str | None, requests: list[bytes], count: int) -> list[str]:
    """The first ``count`` messages (hex) the server sends a plain WebSocket client that sends
    ``requests``: msgpack with ``subprotocol`` webshocket.v1, JSON without."""
    import base64
    import os

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
    )
    if subprotocol:
        head += f"Sec-WebSocket-Protocol: {subprotocol}\r\n"
    writer.write(f"{head}\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    for payload in requests:
        mask = os.urandom(4)
        opcode = 0x82 if subprotocol else 0x81
        assert len(payload) < 126
        writer.write(
            bytes([opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        )
    out = []
    while len(out) < count:
        first, second = await asyncio.wait_for(reader.readexactly(2), 5)
        size = second & 0x7F
        if size >= 126:
            size = int.from_bytes(await reader.readexactly(2 if size == 126 else 8), "big")
        payload = await reader.readexactly(size)
        if first & 0x0F in (0x1, 0x2):
            out.append(payload.hex())
    writer.close()
    return out


async def struct_payloads() -> dict[str, Any]:
    import msgspec

    StructServer.types = struct_types()
    port = free_port()
    server = WebSocketServer("127.0.0.1", port, clientHandler=StructServer)
    await server.start()
    out: dict[str, Any] = {}
    try:
        for dialect, subprotocol in (("msgpack", "webshocket.v1"), ("json", None)):
            encode = msgspec.msgpack.encode if subprotocol else msgspec.json.encode
            requests = [
                encode(
                    {"source": 5, "rpc": {"type": "request", "method": name, "args": [], "kwargs": {}, "call_id": name}}
                )
                for name in ("get", "push")
            ]
            out[dialect] = sorted(await raw_messages(port, subprotocol, requests, 5))
        t = StructServer.types
        out["serialize"] = webshocket.packets.serialize([t["Tagged"]("x", ["y"]), t["Camel"]("Bo", 1)]).hex()
    finally:
        await server.close()
    return out


class Kicker(WebSocketHandler):
    """Closes another client, then sends to everyone (0.5.x sent to the rest, and dropped the data
    for the closed one)."""

    after_leaving: ClassVar[list[str]] = []

    @rpc_method()
    async def kick_then_send(self, connection: Any) -> list[Any]:
        other = next(c for c in self.clients if c is not connection)
        other.close()
        out = []
        for client in list(self.clients):
            out.append(attempted(lambda client=client: client.send("x")))
        await asyncio.sleep(0.1)
        out.append(attempted(lambda: other.send("y")))
        out.append(len(self.clients))
        return out

    async def on_disconnect(self, connection: Any) -> None:
        self.after_leaving.append(attempted(lambda: connection.send("bye")))


def attempted(call: Any) -> str:
    try:
        call()
    except Exception as exc:
        return type(exc).__name__
    return "ok"


async def send_after_close() -> dict[str, Any]:
    port = free_port()
    server = WebSocketServer("127.0.0.1", port, clientHandler=Kicker)
    await server.start()
    out: dict[str, Any] = {}
    try:
        async with WebSocketClient(f"ws://127.0.0.1:{port}") as client, WebSocketClient(f"ws://127.0.0.1:{port}"):
            out["kick then send"] = (await client.send_rpc("kick_then_send")).response
            await asyncio.sleep(0.2)
            out["in on_disconnect, closed by the server"] = list(Kicker.after_leaving)
            Kicker.after_leaving.clear()
        await asyncio.sleep(0.3)
        out["in on_disconnect, closed by the client"] = list(Kicker.after_leaving)
    finally:
        await server.close()
    return out


class Echo(WebSocketHandler):
    @rpc_method()
    async def echo(self, connection: Any, value: Any) -> Any:
        await asyncio.sleep(0.01)
        return value

    @rpc_method()
    async def describe(self, connection: Any) -> str:
        return repr(connection).replace(str(connection.remote_address[1]), "PORT")

    @rate_limit(limit=1, period="1m")
    @rpc_method()
    async def once(self, connection: Any) -> str:
        return "once"


async def server_options() -> dict[str, Any]:
    """Option values 0.5.x accepted, and what the server then does."""
    out: dict[str, Any] = {}
    for name, options in {
        "packet_qsize 0": {"packet_qsize": 0},
        "packet_qsize -1": {"packet_qsize": -1},
        "rpc_task_limit 0": {"rpc_task_limit": 0},
        "rpc_task_limit -1": {"rpc_task_limit": -1},
    }.items():
        port = free_port()
        try:
            server = WebSocketServer("127.0.0.1", port, clientHandler=Echo, **options)
        except Exception as exc:
            out[name] = {"error": type(exc).__name__}
            continue
        await server.start()
        try:
            async with WebSocketClient(f"ws://127.0.0.1:{port}") as client:
                replies = await asyncio.gather(*(client.send_rpc("echo", i) for i in range(300)))
                out[name] = {"echoed": [reply.response for reply in replies] == list(range(300))}
                out["repr"] = (await client.send_rpc("describe")).response.split("remote_address=")[1]
                await client.send_rpc("once")
                try:
                    await client.send_rpc("once", raise_on_rate_limit=True)
                except webshocket.RateLimitError as exc:
                    out["rate limit message"] = "RPC call rate limit exceeded." in str(exc)
        finally:
            await server.close()
    return out


CASES = {
    "msgspec_packets": msgspec_packets,
    "struct_payloads": struct_payloads,
    "send_after_close": send_after_close,
    "server_options": server_options,
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
