"""The client checks what a server sends exactly as the server checks what clients send.

Both sides share one frame layer (``webshocket._framing``). A raw server, written by hand
over a socket, sends crafted frames to a real :class:`WebSocketClient`; the client must
answer a protocol violation with the matching close code (1002, 1007, 1009), fail what
it was waiting for with :class:`ConnectionClosedError`, and take valid input apart
correctly (fragments reassembled, pings answered with the same payload).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import msgpack
import pytest
from rawws import (
    BINARY,
    CLOSE,
    CONTINUATION,
    FRAMEWORK,
    GUID,
    HOST,
    PING,
    PONG,
    TEXT,
    RawWebSocket,
    parse_response_head,
)

from webshocket import ConnectionClosedError, WebSocketClient

Script = Callable[[RawWebSocket], Awaitable[None]]


@asynccontextmanager
async def raw_server(script: Script) -> AsyncIterator[tuple[int, asyncio.Future[None]]]:
    """A one-connection server: accepts the upgrade (with the framework subprotocol), then runs ``script``."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            _, headers = parse_response_head("HTTP/1.1 000 request\r\n" + head.split("\r\n", 1)[1])
            accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + GUID).digest()).decode()
            writer.write(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {FRAMEWORK}\r\n\r\n"
                ).encode()
            )
            await script(RawWebSocket(reader, writer, headers))
            if not done.done():
                done.set_result(None)
        except BaseException as exc:
            if not done.done():
                done.set_exception(exc)
            raise
        finally:
            writer.close()

    server = await asyncio.start_server(serve, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1], done
    finally:
        server.close()
        await server.wait_closed()


def push(data: object) -> bytes:
    """A CUSTOM packet (msgpack), as the server would push it."""
    return msgpack.packb({"source": 1, "data": data})


async def close_code_after(frames: list[tuple[int, bytes, bool, int]], **client_options: object) -> int:
    """Send ``frames`` (opcode, payload, fin, rsv) to a fresh client; the code of the close frame it answers with."""
    got: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def script(ws: RawWebSocket) -> None:
        await ws.read_frame(timeout=5)  # the client is connected and says so
        for opcode, payload, fin, rsv in frames:
            ws.send_frame(opcode, payload, fin=fin, mask=False, rsv=rsv)
        while True:
            frame = await ws.read_frame(timeout=5)
            if frame.opcode == CLOSE:
                got.set_result(frame.close_code)
                return

    async with raw_server(script) as (port, done):
        client = WebSocketClient(f"ws://{HOST}:{port}", **client_options)  # type: ignore[arg-type]
        await client.connect()
        client.send("ready")
        waiting = asyncio.ensure_future(client.recv(timeout=5))
        try:
            code = await asyncio.wait_for(got, 5)
            await done
            with pytest.raises(ConnectionClosedError):
                await waiting  # what the client waited for fails, it does not hang
        finally:
            waiting.cancel()
            await client.close()
    return code


async def test_reserved_bits_close_with_1002() -> None:
    assert await close_code_after([(BINARY, push("x"), True, 0b100)]) == 1002


async def test_invalid_utf8_in_a_text_message_closes_with_1007() -> None:
    assert await close_code_after([(TEXT, b'{"source":1,"data":"\xff"}', True, 0)]) == 1007


async def test_invalid_utf8_across_fragments_closes_with_1007() -> None:
    frames = [(TEXT, b'{"source":1,"data":"\xe2', False, 0), (CONTINUATION, b'\x28\xa1"}', True, 0)]
    assert await close_code_after(frames) == 1007


async def test_a_message_over_the_size_cap_closes_with_1009() -> None:
    parts = [(BINARY, b"x" * 400, False, 0), *[(CONTINUATION, b"x" * 400, False, 0)] * 3, (CONTINUATION, b"", True, 0)]
    assert await close_code_after(parts, max_message_size=1000) == 1009


async def test_continuation_without_a_message_closes_with_1002() -> None:
    assert await close_code_after([(CONTINUATION, b"x", True, 0)]) == 1002


async def test_a_new_message_inside_a_fragmented_one_closes_with_1002() -> None:
    assert await close_code_after([(BINARY, b"ab", False, 0), (BINARY, b"cd", True, 0)]) == 1002


async def test_fragments_are_reassembled_and_pings_answered() -> None:
    payload = push({"text": "é" * 3000})
    pong: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def script(ws: RawWebSocket) -> None:
        third = len(payload) // 3
        ws.send_frame(BINARY, payload[:third], fin=False, mask=False)
        ws.send_frame(PING, b"are you there", mask=False)  # a control frame between fragments is allowed
        ws.send_frame(CONTINUATION, payload[third : 2 * third], fin=False, mask=False)
        ws.send_frame(CONTINUATION, payload[2 * third :], fin=True, mask=False)
        while True:
            frame = await ws.read_frame(timeout=5)
            if frame.opcode == PONG:
                pong.set_result(frame.payload)
            if frame.opcode == CLOSE:
                ws.send_frame(CLOSE, struct.pack("!H", 1000), mask=False)
                return

    async with raw_server(script) as (port, done):
        async with WebSocketClient(f"ws://{HOST}:{port}") as client:
            packet = await client.recv(timeout=5)
            assert packet.data == {"text": "é" * 3000}
            assert await asyncio.wait_for(pong, 5) == b"are you there"
        await done
