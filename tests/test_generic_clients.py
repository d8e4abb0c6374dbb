"""Generic (non-framework) clients: JSON dialect, subprotocol negotiation, the README JavaScript example."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from helpers import Adder, connected_client, running_server, uri_of, wait_until
from websockets.asyncio.client import ClientConnection as RawConnection
from websockets.asyncio.client import connect as ws_connect

from webshocket import (
    ClientConnection,
    ClientType,
    Packet,
    PacketSource,
    RPCError,
    WebSocketServer,
    rpc_method,
)

Conn = ClientConnection[Any]
PACKET_KEYS = ["source", "data", "rpc", "channel", "timestamp", "correlation_id"]
RESPONSE_KEYS = ["type", "call_id", "response", "error", "is_stream", "is_end"]


def raw_connect(uri: str, **kwargs: Any) -> Any:
    return ws_connect(uri, proxy=None, compression=None, open_timeout=2, close_timeout=1, **kwargs)


def request(method: str, *args: Any, call_id: str | None = "c1", **kwargs: Any) -> dict[str, Any]:
    rpc: dict[str, Any] = {"type": "request", "method": method, "args": list(args), "kwargs": kwargs}
    if call_id is not None:
        rpc["call_id"] = call_id
    return {"source": 5, "rpc": rpc}


async def recv_binary(ws: RawConnection, timeout: float = 2.0) -> bytes:
    message = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(message, bytes), f"expected a binary message, got {type(message).__name__}"
    return message


async def recv_json(ws: RawConnection, timeout: float = 2.0) -> dict[str, Any]:
    packet = json.loads(await recv_binary(ws, timeout))
    assert isinstance(packet, dict)
    return packet


def assert_key_order(packet: dict[str, Any]) -> None:
    """Keys in docs/protocol.md table order, nulls of the packet left out, every rpc key present in order."""
    keys = list(packet)
    assert keys == [k for k in PACKET_KEYS if k in packet]
    assert all(packet[k] is not None for k in keys), packet
    if "rpc" in packet and packet["rpc"]["type"] == "response":
        assert list(packet["rpc"]) == RESPONSE_KEYS


class GenericHandler(Adder):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[Packet[Any]] = []
        self.client_types: list[ClientType] = []

    async def on_connect(self, connection: Conn) -> None:
        self.client_types.append(connection.client_type)

    async def on_receive(self, connection: Conn, packet: Packet[Any]) -> None:
        self.received.append(packet)

    @rpc_method()
    async def blob(self, connection: Conn) -> bytes:
        return b"\x00\x01hi\xff"

    @rpc_method()
    async def join(self, connection: Conn, channel: str) -> bool:
        connection.subscribe(channel)
        return True

    @rpc_method()
    async def push(self, connection: Conn, data: Any) -> None:
        connection.send(data)

    @rpc_method()
    async def refuse(self, connection: Conn) -> None:
        raise RPCError("no way")

    @rpc_method()
    async def count(self, connection: Conn, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i


def generic_handler(server: WebSocketServer[Any]) -> GenericHandler:
    handler = server.handler
    assert isinstance(handler, GenericHandler)
    return handler


# ---------------------------------------------------------------------------- JSON dialect


async def test_json_client_gets_binary_json_replies_in_protocol_shape() -> None:
    async with running_server(GenericHandler) as server, raw_connect(uri_of(server)) as ws:
        assert ws.subprotocol is None
        await ws.send(json.dumps(request("add", 10, 20, call_id="abc")))
        raw = await recv_binary(ws)
        packet = json.loads(raw)
        assert packet["rpc"]["response"] == 30
        assert packet == {
            "source": 5,
            "rpc": {
                "type": "response",
                "call_id": "abc",
                "response": 30,
                "error": None,
                "is_stream": False,
                "is_end": False,
            },
        }
        assert_key_order(packet)
        assert raw.decode("utf-8").startswith('{"source":5,"rpc":{"type":"response","call_id":"abc"')
        await wait_until(lambda: generic_handler(server).client_types == [ClientType.GENERIC], timeout=2.0)


async def test_json_error_reply_shape() -> None:
    async with running_server(GenericHandler) as server, raw_connect(uri_of(server)) as ws:
        await ws.send(json.dumps(request("nope", call_id="e1")))
        packet = await recv_json(ws)
        assert packet == {
            "source": 5,
            "rpc": {
                "type": "response",
                "call_id": "e1",
                "response": "RPC method 'nope' not found.",
                "error": -32601,
                "is_stream": False,
                "is_end": True,
            },
        }
        assert_key_order(packet)
        await ws.send(json.dumps(request("refuse", call_id="e2")))
        refused = await recv_json(ws)
        assert (refused["rpc"]["error"], refused["rpc"]["response"]) == (-32001, "no way")


async def test_request_without_call_id_and_with_defaults() -> None:
    async with running_server(GenericHandler) as server, raw_connect(uri_of(server)) as ws:
        await ws.send(json.dumps(request("add", 1, 2, call_id=None)))
        packet = await recv_json(ws)
        assert packet["rpc"]["response"] == 3
        assert isinstance(packet["rpc"]["call_id"], str) and packet["rpc"]["call_id"]
        # args/kwargs left out default to [] / {}: kwargs only, then args only
        await ws.send(
            json.dumps({"source": 5, "rpc": {"type": "request", "method": "add", "kwargs": {"a": 4, "b": 5}}})
        )
        assert (await recv_json(ws))["rpc"]["response"] == 9
        await ws.send(json.dumps({"source": 5, "rpc": {"type": "request", "method": "add", "args": [6, 7]}}))
        assert (await recv_json(ws))["rpc"]["response"] == 13


async def test_text_and_binary_frames_are_both_accepted() -> None:
    async with running_server(GenericHandler) as server, raw_connect(uri_of(server)) as ws:
        await ws.send(json.dumps(request("add", 1, 1, call_id="text")))
        await ws.send(json.dumps(request("add", 2, 2, call_id="binary")).encode())
        replies = {p["rpc"]["call_id"]: p["rpc"]["response"] for p in [await recv_json(ws), await recv_json(ws)]}
        assert replies == {"text": 2, "binary": 4}


async def test_bytes_are_base64_strings_for_json_clients() -> None:
    payload = b"\x00\x01hi\xff"
    encoded = base64.b64encode(payload).decode("ascii")
    async with running_server(GenericHandler) as server:
        async with raw_connect(uri_of(server)) as ws:
            await ws.send(json.dumps(request("blob")))
            assert (await recv_json(ws))["rpc"]["response"] == encoded
            conn = next(iter(server.clients))
            conn.send({"raw": payload})
            assert await recv_json(ws) == {"source": 4, "data": {"raw": encoded}}
        async with connected_client(server) as client:  # a framework client gets real bytes
            assert (await client.send_rpc("blob")).data == payload


async def test_server_pushed_packets_to_json_client() -> None:
    async with running_server(GenericHandler) as server, raw_connect(uri_of(server)) as ws:
        await ws.send(json.dumps(request("join", "room", call_id="j")))
        assert (await recv_json(ws))["rpc"]["response"] is True
        server.publish("room", {"x": 1})
        channel_packet = await recv_json(ws)
        assert channel_packet == {"source": 2, "data": {"x": 1}, "channel": "room"}
        assert list(channel_packet) == ["source", "data", "channel"]
        server.publish("room", None)
        assert await recv_json(ws) == {"source": 2, "channel": "room"}
        server.broadcast([1, "two"])
        broadcast = await recv_json(ws)
        assert broadcast == {"source": 1, "data": [1, "two"]}
        assert list(broadcast) == ["source", "data"]
        await ws.send(json.dumps(request("push", "hello", call_id="p")))
        first, second = await recv_json(ws), await recv_json(ws)
        by_source = {first["source"]: first, second["source"]: second}
        assert by_source[4] == {"source": 4, "data": "hello"}
        assert by_source[5]["rpc"]["call_id"] == "p"


async def test_pattern_publish_to_json_client_names_the_concrete_channel() -> None:
    async with running_server(GenericHandler) as server, raw_connect(uri_of(server)) as ws:
        await ws.send(json.dumps(request("join", "news.*")))
        await recv_json(ws)
        server.publish("news.sport", "goal")
        assert await recv_json(ws) == {"source": 2, "data": "goal", "channel": "news.sport"}


async def test_json_and_framework_clients_get_the_same_publish_in_their_dialects() -> None:
    async with (
        running_server(GenericHandler) as server,
        raw_connect(uri_of(server)) as ws,
        connected_client(server) as client,
    ):
        await ws.send(json.dumps(request("join", "mix")))
        await recv_json(ws)
        assert (await client.send_rpc("join", "mix")).data is True
        server.publish("mix", {"n": [1, 2]})
        assert await recv_json(ws) == {"source": 2, "data": {"n": [1, 2]}, "channel": "mix"}
        packet = await client.recv(timeout=2)
        assert (packet.source, packet.data, packet.channel) == (PacketSource.CHANNEL, {"n": [1, 2]}, "mix")


async def test_streaming_to_json_client() -> None:
    async with running_server(GenericHandler) as server, raw_connect(uri_of(server)) as ws:
        await ws.send(json.dumps(request("count", 3, call_id="s")))
        packets = [await recv_json(ws) for _ in range(4)]
        assert [p["rpc"]["response"] for p in packets] == [0, 1, 2, None]
        assert [p["rpc"]["is_stream"] for p in packets] == [True] * 4
        assert [p["rpc"]["is_end"] for p in packets] == [False, False, False, True]
        assert all(p["rpc"]["call_id"] == "s" and p["rpc"]["error"] is None for p in packets)
        for p in packets:
            assert_key_order(p)


# ---------------------------------------------------------------------------- subprotocol negotiation


async def test_webshocket_subprotocol_gets_msgpack() -> None:
    async with running_server(GenericHandler) as server:
        async with raw_connect(uri_of(server), subprotocols=["webshocket.v1"]) as ws:
            assert ws.subprotocol == "webshocket.v1"
            assert ws.response.headers["Sec-WebSocket-Protocol"] == "webshocket.v1"
            await ws.send(msgpack.packb(request("add", 2, 3, call_id="m1")))
            raw = await recv_binary(ws)
            with pytest.raises(ValueError):
                json.loads(raw)
            packet = msgpack.unpackb(raw)
            assert packet == {
                "source": 5,
                "rpc": {
                    "type": "response",
                    "call_id": "m1",
                    "response": 5,
                    "error": None,
                    "is_stream": False,
                    "is_end": False,
                },
            }
            assert_key_order(packet)
            await ws.send(msgpack.packb(request("blob", call_id="m2")))
            assert msgpack.unpackb(await recv_binary(ws))["rpc"]["response"] == b"\x00\x01hi\xff"
        await wait_until(lambda: generic_handler(server).client_types == [ClientType.FRAMEWORK], timeout=2.0)


async def test_subprotocol_among_several_offers_and_foreign_only() -> None:
    async with running_server(GenericHandler) as server:
        async with raw_connect(uri_of(server), subprotocols=["chat", "webshocket.v1"]) as ws:
            assert ws.subprotocol == "webshocket.v1"
            await ws.send(msgpack.packb(request("add", 1, 2)))
            assert msgpack.unpackb(await recv_binary(ws))["rpc"]["response"] == 3
        async with raw_connect(uri_of(server), additional_headers={"Sec-WebSocket-Protocol": "chat"}) as ws:
            assert "Sec-WebSocket-Protocol" not in ws.response.headers
            await ws.send(json.dumps(request("add", 1, 2)))
            assert (await recv_json(ws))["rpc"]["response"] == 3


# ---------------------------------------------------------------------------- bad input


async def test_invalid_messages_become_unknown_packets() -> None:
    async with running_server(GenericHandler) as server, raw_connect(uri_of(server)) as ws:
        handler = generic_handler(server)
        bad: list[str | bytes] = ["not json{", b"\xff\xfe\x00", "[1, 2]", '{"source": 99}', '{"data": 1}']
        for message in bad:
            await ws.send(message)
        await ws.send('{"source": 4, "data": {"k": 1}}')
        await wait_until(lambda: len(handler.received) == len(bad) + 1, timeout=2.0)
        for message, packet in zip(bad, handler.received, strict=False):
            assert packet.source is PacketSource.UNKNOWN
            assert int(packet.source) == 3
            expected = message.encode() if isinstance(message, str) else message
            assert packet.data == expected
            assert isinstance(packet.data, bytes)
        custom = handler.received[-1]
        assert (custom.source, custom.data) == (PacketSource.CUSTOM, {"k": 1})
        await ws.send(json.dumps(request("add", 20, 22, call_id="after")))
        reply = await recv_json(ws)
        assert (reply["rpc"]["call_id"], reply["rpc"]["response"]) == ("after", 42)
        assert len(server.clients) == 1


# ---------------------------------------------------------------------------- README JavaScript example

README_JS = """\
const socket = new WebSocket("__URL__");
socket.onopen = () => {
\tconst rpcRequest = { rpc: { type: "request", method: "add", args: [10, 20], kwargs: {} }, source: 5 };
\tsocket.send(JSON.stringify(rpcRequest));
};
socket.onmessage = async (event) => {
\tconst packet = JSON.parse(await event.data.text());
\tconsole.log("Result:", packet.rpc.response); // 30
\tsocket.close();
};
setTimeout(() => { console.error("timed out waiting for the reply"); process.exit(2); }, 5000).unref();
"""


async def test_readme_javascript_example_in_node(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js (>= 20) is required for this test: install `node` and put it on PATH"
    version = await asyncio.create_subprocess_exec(node, "--version", stdout=asyncio.subprocess.PIPE)
    out, _ = await version.communicate()
    major = int(out.decode().strip().lstrip("v").split(".")[0])
    assert major >= 20, f"Node.js >= 20 is required (global WebSocket), found {out.decode().strip()}"
    flags = ["--experimental-websocket"] if major < 22 else []
    async with running_server(GenericHandler) as server:
        script = tmp_path / "readme_example.js"
        script.write_text(README_JS.replace("__URL__", uri_of(server)))
        proc = await asyncio.create_subprocess_exec(
            node, *flags, str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 10)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, f"node exited with {proc.returncode}: {stderr.decode()}"
        assert "Result: 30" in stdout.decode(), stdout.decode() + stderr.decode()
