"""Transport-level behaviour, checked with a minimal raw-socket WebSocket client.

Fragmentation (64 KiB frames) both ways, control frames between fragments, binary
opcode for every packet in both dialects, protocol errors, and running on asyncio's
default loop as well as on uvloop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from typing import Any

import msgpack
import pytest
import uvloop
from helpers import HOST, connected_client, running_server, uri_of, wait_until
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)
from rawws import (
    BINARY,
    CLOSE,
    CONTINUATION,
    FRAMEWORK,
    PING,
    PONG,
    TEXT,
    SyncWebSocket,
    decode,
    frame_bytes,
    raw_websocket,
    rpc_request,
)

import webshocket
from webshocket import ClientConnection, PacketSource, WebSocketClient, WebSocketHandler, rpc_method

CHUNK = 64 * 1024


class Handler(WebSocketHandler[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[Any] = []

    async def on_connect(self, connection: ClientConnection[Any]) -> None:
        connection.subscribe("room")

    async def on_receive(self, connection: ClientConnection[Any], packet: webshocket.Packet[Any]) -> None:
        self.received.append(packet)

    @rpc_method()
    async def echo(self, connection: ClientConnection[Any], value: Any) -> Any:
        return value

    @rpc_method()
    async def size(self, connection: ClientConnection[Any], value: Any) -> int:
        return len(value)

    @rpc_method()
    async def count(self, connection: ClientConnection[Any], n: int) -> Any:
        for i in range(n):
            yield i

    @rpc_method()
    async def push_all(self, connection: ClientConnection[Any]) -> str:
        connection.send({"kind": "custom"})
        self.publish("room", {"kind": "channel"})
        self.broadcast({"kind": "broadcast"})
        return "pushed"


# --------------------------------------------------------------------------- write batching


class Gate(WebSocketHandler[Any]):
    """``hold`` blocks the server's loop until another thread opens the gate (or 5 s pass)."""

    gate = threading.Event()

    @rpc_method()
    async def echo(self, connection: ClientConnection[Any], value: Any) -> Any:
        return value

    @rpc_method()
    async def hold(self, connection: ClientConnection[Any]) -> str:
        return "released" if self.gate.wait(5.0) else "timed out"


async def test_replies_leave_before_a_long_batch_is_done() -> None:
    """Replies queued during one read batch go out once FLUSH_FRAMES are waiting, not at its end.

    One write carries FLUSH_FRAMES echo requests, then ``hold``, which blocks the server until
    a client thread has read every echo reply: that only happens if those replies were written
    before the batch finished.
    """
    from webshocket._fanout import FLUSH_FRAMES

    Gate.gate = threading.Event()
    async with running_server(Gate) as server:
        port = server.port

        def client() -> list[Any]:
            ws = SyncWebSocket(port, FRAMEWORK)
            try:
                batch = [rpc_request("echo", i, call_id=f"e{i}") for i in range(FLUSH_FRAMES)]
                batch.append(rpc_request("hold", call_id="hold"))
                ws.sock.sendall(b"".join(frame_bytes(BINARY, message) for message in batch))
                replies = [decode(ws.recv_message(), False)["rpc"] for _ in range(FLUSH_FRAMES)]
                Gate.gate.set()
                replies.append(decode(ws.recv_message(), False)["rpc"])
                return replies
            finally:
                ws.close()

        replies = await asyncio.to_thread(client)
    assert [r["response"] for r in replies[:-1]] == list(range(FLUSH_FRAMES))
    assert (replies[-1]["call_id"], replies[-1]["response"]) == ("hold", "released")


# --------------------------------------------------------------------------- fragmentation


BIG = bytes(range(256)) * 1200  # 300 KiB


@pytest.mark.parametrize("as_json", [False, True], ids=["msgpack", "json"])
async def test_large_reply_is_written_in_64k_fragments(as_json: bool) -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, None if as_json else FRAMEWORK) as ws:
            value: Any = base64.b64encode(BIG).decode() if as_json else BIG
            ws.send_frame(TEXT if as_json else BINARY, rpc_request("echo", value, as_json=as_json))
            frames, control = await ws.read_message()
            assert not [f for f in control if f.opcode == CLOSE]
            payload = b"".join(f.payload for f in frames)
            assert len(payload) > CHUNK
            assert len(frames) == -(-len(payload) // CHUNK)
            assert (frames[0].opcode, frames[0].fin) == (BINARY, False)
            assert all(f.opcode == CONTINUATION for f in frames[1:])
            assert all(not f.fin for f in frames[:-1]) and frames[-1].fin
            assert all(len(f.payload) <= CHUNK for f in frames)
            assert all(len(f.payload) == CHUNK for f in frames[:-1])  # 64 KiB frames, as 0.5.x writes them
            assert not any(f.masked or f.rsv for f in frames)  # server frames are never masked
            reply = decode(payload, as_json)
            assert reply["rpc"]["call_id"] == "raw-1"
            assert reply["rpc"]["error"] is None
            assert reply["rpc"]["response"] == value


async def test_message_of_exactly_64k_is_one_frame() -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            # find a string length whose encoded reply is exactly CHUNK bytes
            overhead = len(msgpack.packb(_reply_map("raw-1", "")))
            text = "a" * (CHUNK - overhead - 2)  # str16 header is 3 bytes instead of 1 for ""
            assert len(msgpack.packb(_reply_map("raw-1", text))) == CHUNK
            ws.send_frame(BINARY, rpc_request("echo", text))
            frames, _ = await ws.read_message()
            assert [(f.opcode, f.fin, len(f.payload)) for f in frames] == [(BINARY, True, CHUNK)]
            ws.send_frame(BINARY, rpc_request("echo", text + "a", call_id="raw-2"))
            frames, _ = await ws.read_message()
            assert [(f.opcode, f.fin, len(f.payload)) for f in frames] == [
                (BINARY, False, CHUNK),
                (CONTINUATION, True, 1),
            ]


def _reply_map(call_id: str, response: Any) -> dict[str, Any]:
    return {
        "source": 5,
        "rpc": {
            "type": "response",
            "call_id": call_id,
            "response": response,
            "error": None,
            "is_stream": False,
            "is_end": False,
        },
    }


async def test_large_message_round_trip_with_our_client() -> None:
    async with running_server(Handler) as server, connected_client(server) as client:
        result = await client.send_rpc("echo", BIG)
        assert result.error is None
        assert result.data == BIG
        assert (await client.send_rpc("size", BIG * 2)).data == len(BIG) * 2  # 600 KiB up, int back
        nested = {"blobs": [BIG[:100_000], BIG[100_000:]], "text": "ü" * 70_000}
        assert (await client.send_rpc("echo", nested)).data == nested


async def test_large_push_to_our_client() -> None:
    async with running_server(Handler) as server, connected_client(server) as client:
        await wait_until(lambda: len(server.clients) == 1)
        (connection,) = server.clients
        connection.send(BIG)
        server.publish("room", {"big": BIG})
        first, second = await client.recv(5), await client.recv(5)
        assert (first.source, first.data) == (PacketSource.CUSTOM, BIG)
        assert (second.source, second.channel, second.data) == (PacketSource.CHANNEL, "room", {"big": BIG})


async def test_our_client_writes_64k_fragments() -> None:
    """Our client's frames, seen by a bare picows server: masked 64 KiB fragments of one binary message."""
    frames: list[tuple[WSMsgType, bool, int]] = []
    messages: list[bytes] = []
    parts: list[bytes] = []

    class Recorder(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type in (WSMsgType.BINARY, WSMsgType.TEXT, WSMsgType.CONTINUATION):
                frames.append((frame.msg_type, bool(frame.fin), frame.payload_size))
                parts.append(frame.get_payload_as_bytes())
                if frame.fin:
                    messages.append(b"".join(parts))
                    parts.clear()

    def factory(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
        response = WSUpgradeResponse.create_101_response(extra_headers={"Sec-WebSocket-Protocol": "webshocket.v1"})
        return WSUpgradeResponseWithListener(response, Recorder())

    server = await ws_create_server(factory, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with WebSocketClient(f"ws://{HOST}:{port}") as client:
            client.send(BIG)
            await wait_until(lambda: len(messages) == 1)
        expected = msgpack.packb({"source": 4, "data": BIG}, use_bin_type=True)
        assert messages == [expected]
        assert len(frames) == -(-len(expected) // CHUNK)
        assert frames[0][:2] == (WSMsgType.BINARY, False)
        assert all(t == WSMsgType.CONTINUATION for t, _, _ in frames[1:])
        assert [fin for _, fin, _ in frames] == [False] * (len(frames) - 1) + [True]
        assert all(size == CHUNK for _, _, size in frames[:-1]) and frames[-1][2] <= CHUNK
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("as_json", [False, True], ids=["msgpack", "json"])
async def test_fragmented_message_from_client_is_reassembled(as_json: bool) -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, None if as_json else FRAMEWORK) as ws:
            message = rpc_request("size", "x" * 5000, as_json=as_json)
            parts = [message[:10], message[10:3000], message[3000:]]
            ws.send_frame(TEXT if as_json else BINARY, parts[0], fin=False)
            ws.send_frame(CONTINUATION, parts[1], fin=False)
            ws.send_frame(CONTINUATION, parts[2], fin=True)
            frames, _ = await ws.read_message()
            reply = decode(b"".join(f.payload for f in frames), as_json)
            assert (reply["rpc"]["response"], reply["rpc"]["error"]) == (5000, None)


async def test_fragmented_non_rpc_packet_reaches_on_receive() -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            message = msgpack.packb({"source": 4, "data": {"blob": BIG}}, use_bin_type=True)
            for offset in range(0, len(message), 50_000):
                chunk = message[offset : offset + 50_000]
                opcode = BINARY if offset == 0 else CONTINUATION
                ws.send_frame(opcode, chunk, fin=offset + 50_000 >= len(message))
            await wait_until(lambda: len(server.handler.received) == 1)
            packet = server.handler.received[0]
            assert (packet.source, packet.data) == (PacketSource.CUSTOM, {"blob": BIG})


async def test_pings_between_fragments_get_pongs() -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            message = rpc_request("size", "y" * 300)
            ws.send_frame(BINARY, message[:100], fin=False)
            ws.send_frame(PING, b"p1")
            ws.send_frame(CONTINUATION, message[100:200], fin=False)
            ws.send_frame(PING, b"p2")
            ws.send_frame(CONTINUATION, message[200:], fin=True)
            frames, control = await ws.read_message()
            assert [(f.opcode, f.payload) for f in control] == [(PONG, b"p1"), (PONG, b"p2")]
            reply = decode(b"".join(f.payload for f in frames), False)
            assert reply["rpc"]["response"] == 300
            ws.send_frame(PING, b"after")  # and outside a message too
            pong = await ws.read_frame()
            assert (pong.opcode, pong.payload) == (PONG, b"after")


# --------------------------------------------------------------------------- opcodes and dialects


@pytest.mark.parametrize("as_json", [False, True], ids=["msgpack", "json"])
async def test_every_packet_is_a_binary_message(as_json: bool) -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, None if as_json else FRAMEWORK) as ws:
            if as_json:
                assert "sec-websocket-protocol" not in ws.headers
            else:
                assert ws.headers["sec-websocket-protocol"] == "webshocket.v1"
            await wait_until(lambda: len(server.subscribers("room")) == 1)
            ws.send_frame(TEXT if as_json else BINARY, rpc_request("push_all", as_json=as_json))
            ws.send_frame(BINARY, rpc_request("count", 2, call_id="raw-2", as_json=as_json))  # binary JSON works too
            ws.send_frame(TEXT if as_json else BINARY, rpc_request("missing", call_id="raw-3", as_json=as_json))
            seen: list[dict[str, Any]] = []
            while len(seen) < 8:
                frames, control = await ws.read_message()
                assert not control
                assert len(frames) == 1 and frames[0].fin
                assert frames[0].opcode == BINARY, f"opcode {frames[0].opcode} for {frames[0].payload[:80]!r}"
                seen.append(decode(frames[0].payload, as_json))
            sources = sorted(p["source"] for p in seen)
            assert sources == [1, 2, 4, 5, 5, 5, 5, 5]  # broadcast, channel, custom, 1 + 3 stream + 1 error
            custom = next(p for p in seen if p["source"] == 4)
            assert custom == {"source": 4, "data": {"kind": "custom"}}
            channel = next(p for p in seen if p["source"] == 2)
            assert channel == {"source": 2, "data": {"kind": "channel"}, "channel": "room"}


async def test_generic_client_offering_another_subprotocol_gets_json() -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, "chat, superchat") as ws:
            assert "sec-websocket-protocol" not in ws.headers
            ws.send_frame(TEXT, rpc_request("echo", "hi", as_json=True))
            frames, _ = await ws.read_message()
            assert frames[0].opcode == BINARY
            assert json.loads(frames[0].payload)["rpc"]["response"] == "hi"


# --------------------------------------------------------------------------- protocol errors


async def test_data_frame_inside_fragmented_message_is_a_protocol_error() -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            ws.send_frame(BINARY, b"\x82", fin=False)
            ws.send_frame(BINARY, b"\x80", fin=True)  # a new message before the first one ended
            assert await ws.close_code() == 1002


async def test_continuation_without_start_is_a_protocol_error() -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            ws.send_frame(CONTINUATION, b"orphan", fin=True)
            assert await ws.close_code() == 1002


async def test_fragmented_message_above_max_size_is_closed_1009() -> None:
    async with running_server(Handler, max_message_size=100_000) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            ws.send_frame(BINARY, b"\x00" * 60_000, fin=False)
            ws.send_frame(CONTINUATION, b"\x00" * 60_000, fin=False)
            assert await ws.close_code() == 1009
        async with connected_client(server) as client:  # others are unaffected
            assert (await client.send_rpc("size", b"z" * 90_000)).data == 90_000


async def test_single_frame_above_max_size_is_closed_1009() -> None:
    async with running_server(Handler, max_message_size=100_000) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            ws.send_frame(BINARY, b"\x00" * 150_000)
            assert await ws.close_code() == 1009


# --------------------------------------------------------------------------- event loops


async def _round_trip() -> type[asyncio.AbstractEventLoop]:
    loop = asyncio.get_running_loop()
    async with running_server(Handler) as server:
        async with WebSocketClient(uri_of(server)) as client:
            assert (await client.send_rpc("echo", {"x": [1, 2]})).data == {"x": [1, 2]}
            assert [c.data async for c in client.stream_rpc("count", 3)] == [0, 1, 2]
            assert (await client.send_rpc("echo", BIG)).data == BIG
            await wait_until(lambda: len(server.subscribers("room")) == 1)
            server.publish("room", "hello")
            packet = await client.recv(5)
            assert (packet.source, packet.data) == (PacketSource.CHANNEL, "hello")
    return type(loop)


def test_runs_on_asyncio_default_loop() -> None:
    loop = asyncio.DefaultEventLoopPolicy().new_event_loop()  # asyncio's own loop, whatever policy is set
    try:
        assert not isinstance(loop, uvloop.Loop)
        loop_type = loop.run_until_complete(_round_trip())
        assert loop_type is type(loop)
        assert not issubclass(loop_type, uvloop.Loop)
        assert issubclass(loop_type, asyncio.BaseEventLoop)
    finally:
        loop.close()


def test_runs_on_uvloop() -> None:
    assert webshocket.UVLOOP is True
    assert isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)
    loop = asyncio.new_event_loop()  # the policy webshocket installed on import
    try:
        assert isinstance(loop, uvloop.Loop)
        assert issubclass(loop.run_until_complete(_round_trip()), uvloop.Loop)
    finally:
        loop.close()


def test_webshocket_run_uses_uvloop() -> None:
    assert issubclass(webshocket.run(_round_trip()), uvloop.Loop)
