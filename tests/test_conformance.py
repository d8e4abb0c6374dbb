"""RFC 6455 edge cases, checked frame by frame with a raw-socket client.

Reserved bits, close codes (section 7.4), control frames, fragmentation rules and masking.
A protocol violation closes that connection (1002, or 1007 for bad UTF-8) and nothing else.
"""

from __future__ import annotations

import itertools
import json
import struct
from typing import Any

import msgpack
import pytest
from helpers import connected_client, running_server, wait_until
from rawws import (
    BINARY,
    CLOSE,
    CONTINUATION,
    FRAMEWORK,
    PING,
    PONG,
    TEXT,
    RawWebSocket,
    decode,
    raw_websocket,
    rpc_request,
)

from webshocket import ClientConnection, WebSocketHandler, WebSocketServer, rpc_method

Conn = ClientConnection[Any]


class Handler(WebSocketHandler[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[Any] = []

    async def on_receive(self, connection: Conn, packet: Any) -> None:
        self.received.append(packet)

    @rpc_method()
    async def echo(self, connection: Conn, value: Any) -> Any:
        return value

    @rpc_method()
    async def ping(self, connection: Conn) -> str:
        return "pong"


async def expect_close(server: WebSocketServer[Any], ws: RawWebSocket, code: int | set[int]) -> None:
    """The server closes ``ws`` with ``code`` and hangs up; other clients still get answers."""
    frame = await ws.read_close(timeout=2)
    codes = {code} if isinstance(code, int) else code
    assert frame.close_code in codes, (frame.close_code, frame.payload[2:])
    assert not frame.masked
    await ws.wait_eof()
    await wait_until(lambda: not server.clients, timeout=2.0)
    async with connected_client(server) as other:
        assert (await other.send_rpc("ping", wait_timeout=2)).data == "pong"


# ---------------------------------------------------------------------------- reserved bits


@pytest.mark.parametrize("rsv", [4, 2, 1], ids=["rsv1", "rsv2", "rsv3"])
@pytest.mark.parametrize("opcode", [BINARY, TEXT, PING, PONG, CLOSE], ids=["binary", "text", "ping", "pong", "close"])
async def test_reserved_bits_without_extension_close_1002(opcode: int, rsv: int) -> None:
    payloads = {
        BINARY: rpc_request("echo", 1),
        TEXT: rpc_request("echo", 1, as_json=True),
        PING: b"ping?",
        PONG: b"pong!",
        CLOSE: struct.pack("!H", 1000),
    }
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            ws.send_frame(opcode, payloads[opcode], rsv=rsv)
            await expect_close(server, ws, 1002)


async def test_reserved_bit_on_a_continuation_frame_closes_1002() -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            message = rpc_request("echo", "x" * 100)
            ws.send_frame(BINARY, message[:50], fin=False)
            ws.send_frame(CONTINUATION, message[50:], rsv=4)
            await expect_close(server, ws, 1002)


# ---------------------------------------------------------------------------- close handshake


async def test_close_without_code_is_answered_with_1000() -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            ws.send_close(None)
            frame = await ws.read_close()
            assert frame.payload[:2] == struct.pack("!H", 1000)
            await ws.wait_eof()
            await wait_until(lambda: not server.clients, timeout=2.0)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999])
async def test_valid_close_codes_are_echoed(code: int) -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            ws.send_close(code, b"bye")
            frame = await ws.read_close()
            assert frame.close_code == code
            await ws.wait_eof()


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
async def test_invalid_close_codes_are_answered_with_1002(code: int) -> None:
    """RFC 6455 section 7.4: 1004-1006 and 1015 are reserved, 1016-2999 unassigned, <1000 and >=5000 invalid."""
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            ws.send_close(code)
            await expect_close(server, ws, 1002)


async def test_close_with_one_byte_payload_is_a_protocol_error() -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            ws.send_frame(CLOSE, b"\x03")
            await expect_close(server, ws, 1002)


async def test_close_reason_with_invalid_utf8_fails_the_connection() -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            ws.send_frame(CLOSE, struct.pack("!H", 1000) + b"\xc3\x28")
            await expect_close(server, ws, {1007, 1002})


async def test_nothing_is_processed_after_the_client_close_frame() -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            ws.send_close(1000)
            ws.send_frame(BINARY, msgpack.packb({"source": 4, "data": "too late"}))
            ws.send_frame(BINARY, rpc_request("echo", "too late", call_id="late"))
            frames, control = await ws.read_message()
            assert not frames and [f.opcode for f in control] == [CLOSE]
            assert control[0].close_code == 1000
            rest = await ws.wait_eof()
            assert rest == b""
            assert server.handler.received == []


# ---------------------------------------------------------------------------- control frames


@pytest.mark.parametrize("payload", [b"", b"p", bytes(range(125))], ids=["empty", "short", "125-bytes"])
async def test_ping_gets_pong_with_the_same_payload(payload: bytes) -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            ws.send_frame(PING, payload)
            frame = await ws.read_frame()
            assert (frame.opcode, frame.payload, frame.fin, frame.rsv, frame.masked) == (PONG, payload, True, 0, False)
            await ws.assert_alive()


async def test_unsolicited_pong_is_ignored() -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            ws.send_frame(PONG, b"heartbeat")
            await ws.assert_alive()
            assert server.handler.received == []


@pytest.mark.parametrize(
    "frame",
    [(PING, b"x" * 126, True), (PING, b"x", False), (PONG, b"x", False), (CLOSE, struct.pack("!H", 1000), False)],
    ids=["ping-126-bytes", "fragmented-ping", "fragmented-pong", "fragmented-close"],
)
async def test_oversized_or_fragmented_control_frames_close_1002(frame: tuple[int, bytes, bool]) -> None:
    opcode, payload, fin = frame
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            ws.send_frame(opcode, payload, fin=fin)
            await expect_close(server, ws, 1002)


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x7, 0xB, 0xF])
async def test_reserved_opcodes_close_1002(opcode: int) -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            ws.send_frame(opcode, b"what")
            await expect_close(server, ws, 1002)


# ---------------------------------------------------------------------------- fragmentation


@pytest.mark.parametrize("as_json", [False, True], ids=["msgpack", "json"])
async def test_fragments_interleaved_with_control_frames_reassemble(as_json: bool) -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, None if as_json else FRAMEWORK) as ws:
            value = "ünïcödé-" * 40  # multi-byte characters get split across fragments
            message = rpc_request("echo", value, call_id="frag", as_json=as_json)
            cuts = [0, 1, 7, 7, 100, 101, 250, len(message) - 1, len(message)]  # includes an empty fragment
            pieces = [message[a:b] for a, b in itertools.pairwise(cuts)]
            for i, piece in enumerate(pieces):
                opcode = (TEXT if as_json else BINARY) if i == 0 else CONTINUATION
                ws.send_frame(opcode, piece, fin=i == len(pieces) - 1)
                if i % 2 == 0:
                    ws.send_frame(PING, f"p{i}".encode())
                else:
                    ws.send_frame(PONG, b"unsolicited")
            frames, control = await ws.read_message()
            assert [(f.opcode, f.payload) for f in control] == [
                (PONG, f"p{i}".encode()) for i in range(0, len(pieces), 2)
            ]
            payload = b"".join(f.payload for f in frames)
            reply = decode(payload, as_json)
            assert (reply["rpc"]["call_id"], reply["rpc"]["response"]) == ("frag", value)


async def test_text_message_split_inside_a_character_is_valid() -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port) as ws:
            message = json.dumps({"source": 4, "data": "€"}, ensure_ascii=False).encode()
            cut = message.index("€".encode()) + 1  # in the middle of the 3-byte sequence
            ws.send_frame(TEXT, message[:cut], fin=False)
            ws.send_frame(CONTINUATION, message[cut:])
            await wait_until(lambda: len(server.handler.received) == 1, timeout=2.0)
            assert server.handler.received[0].data == "€"
            ws.send_frame(TEXT, rpc_request("echo", 1, call_id="t", as_json=True))
            assert (await ws.read_reply("t", as_json=True))["response"] == 1


@pytest.mark.parametrize("after_message", [False, True], ids=["first-frame", "after-a-message"])
async def test_continuation_without_a_started_message_closes_1002(after_message: bool) -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            if after_message:
                await ws.assert_alive()
            ws.send_frame(CONTINUATION, b"orphan", fin=True)
            await expect_close(server, ws, 1002)


@pytest.mark.parametrize(("first", "second"), [(BINARY, BINARY), (BINARY, TEXT), (TEXT, TEXT), (TEXT, BINARY)])
async def test_new_data_frame_while_a_fragmented_message_is_open_closes_1002(first: int, second: int) -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port) as ws:
            message = rpc_request("echo", 1, as_json=True)
            ws.send_frame(first, message[:5], fin=False)
            ws.send_frame(second, message, fin=True)
            await expect_close(server, ws, 1002)
            assert server.handler.received == []


async def test_unmasked_client_frame_closes_1002() -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            await ws.assert_alive()
            ws.send_frame(BINARY, rpc_request("echo", 1, call_id="unmasked"), mask=False)
            await expect_close(server, ws, 1002)


async def test_unmasked_control_frame_closes_1002() -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            ws.send_frame(PING, b"x", mask=False)
            await expect_close(server, ws, 1002)


@pytest.mark.parametrize("as_json", [False, True], ids=["msgpack", "json"])
async def test_invalid_utf8_in_fragmented_text_message_closes_1007(as_json: bool) -> None:
    async with running_server(Handler) as server:
        async with raw_websocket(server.port, None if as_json else FRAMEWORK) as ws:
            ws.send_frame(TEXT, b'{"source": 4, "data": "', fin=False)
            ws.send_frame(CONTINUATION, b"\xed\xa0\x80", fin=False)  # an encoded surrogate: not UTF-8
            ws.send_frame(CONTINUATION, b'"}')
            await expect_close(server, ws, 1007)
            assert server.handler.received == []
