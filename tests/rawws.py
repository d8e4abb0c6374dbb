"""A minimal raw-socket WebSocket client (RFC 6455) for tests that need to misbehave.

It does the HTTP upgrade by hand and reads and writes single frames, so a test can send
what a real client never would (reserved bits, unmasked frames, bad close codes, orphan
continuations, huge declared lengths) and look at exactly what the server answers.
It can also shrink its receive buffer and stop reading, to play a slow consumer.
:class:`SyncWebSocket` is the same client over a blocking socket, for code that runs
outside an event loop (hypothesis examples against a server in another thread).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import msgpack

HOST = "127.0.0.1"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
FRAMEWORK = "webshocket.v1"


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes

    @property
    def close_code(self) -> int:
        """Code of a CLOSE frame (1005 when it carries none)."""
        assert self.opcode == CLOSE
        return int(struct.unpack("!H", self.payload[:2])[0]) if len(self.payload) >= 2 else 1005


class HandshakeRefused(Exception):
    """The server answered the upgrade request with something other than 101."""

    def __init__(self, status: int, head: str, body: bytes) -> None:
        super().__init__(f"upgrade refused with HTTP {status}: {head.splitlines()[0] if head else ''}")
        self.status = status
        self.head = head
        self.body = body


def mask_bytes(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def frame_bytes(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0) -> bytes:
    """Encode one frame (``rsv`` is the 3-bit RSV1..RSV3 field, RSV1 = 4)."""
    head = bytes([(0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0x0F)])
    size = len(payload)
    mask_bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if mask:
        key = os.urandom(4)
        return head + key + mask_bytes(payload, key)
    return head + payload


def new_key() -> str:
    """A fresh ``Sec-WebSocket-Key``."""
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_request(port: int, key: str, subprotocol: str | None = None) -> bytes:
    """The HTTP request that asks the server on ``port`` to upgrade to WebSocket."""
    lines = [
        "GET / HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_response_head(head: str) -> tuple[int, dict[str, str]]:
    """Status code and headers (names lower-cased) of an HTTP/1.1 response head."""
    status_line, *header_lines = head.split("\r\n")
    assert status_line.startswith("HTTP/1.1 "), status_line
    headers: dict[str, str] = {}
    for line in header_lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


def assert_accepted(headers: dict[str, str], key: str) -> None:
    """The 101 answer carries the ``Sec-WebSocket-Accept`` that ``key`` calls for."""
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    assert headers["sec-websocket-accept"] == accept


def request_map(method: Any, *args: Any, call_id: Any = "raw-1", kwargs: Any = None) -> dict[str, Any]:
    return {
        "source": 5,
        "rpc": {"type": "request", "method": method, "args": list(args), "kwargs": kwargs or {}, "call_id": call_id},
    }


def encode(obj: Any, as_json: bool) -> bytes:
    return json.dumps(obj).encode() if as_json else msgpack.packb(obj, use_bin_type=True)


def decode(payload: bytes, as_json: bool) -> Any:
    return json.loads(payload) if as_json else msgpack.unpackb(payload, raw=False, strict_map_key=False)


def rpc_request(method: Any, *args: Any, call_id: Any = "raw-1", as_json: bool = False) -> bytes:
    return encode(request_map(method, *args, call_id=call_id), as_json)


async def _open(port: int, rcvbuf: int | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if rcvbuf is None:
        return await asyncio.open_connection(HOST, port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Set before connecting so the small window is what the handshake advertises.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


class RawWebSocket:
    """Just enough of RFC 6455 to look at frames: HTTP upgrade by hand, masked frames out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
        self.reader = reader
        self.writer = writer
        self.headers = headers

    @classmethod
    async def connect(cls, port: int, subprotocol: str | None = None, *, rcvbuf: int | None = None) -> RawWebSocket:
        """Open a connection and upgrade it; raises :class:`HandshakeRefused` on a non-101 answer."""
        reader, writer = await _open(port, rcvbuf)
        try:
            key = new_key()
            writer.write(upgrade_request(port, key, subprotocol))
            head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode("latin-1")
            status, headers = parse_response_head(head)
            if status != 101:
                body = b""
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    body = await asyncio.wait_for(reader.readexactly(length), 5)
                raise HandshakeRefused(status, head, body)
            assert_accepted(headers, key)
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer, headers)

    # ------------------------------------------------------------------ writing

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, mask: bool = True, rsv: int = 0) -> None:
        self.writer.write(frame_bytes(opcode, payload, fin=fin, mask=mask, rsv=rsv))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def send_packet(self, obj: Any, as_json: bool = False) -> None:
        self.send_frame(TEXT if as_json else BINARY, encode(obj, as_json))

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        self.send_frame(CLOSE, b"" if code is None else struct.pack("!H", code) + reason)

    # ------------------------------------------------------------------ reading

    def pause_reading(self) -> None:
        self.writer.transport.pause_reading()  # type: ignore[attr-defined]

    def resume_reading(self) -> None:
        self.writer.transport.resume_reading()  # type: ignore[attr-defined]

    async def read_frame(self, timeout: float = 5.0) -> Frame:
        async def read() -> Frame:
            first, second = await self.reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
            masked = bool(second & 0x80)
            key = await self.reader.readexactly(4) if masked else b""
            payload = await self.reader.readexactly(size)
            if masked:
                payload = mask_bytes(payload, key)
            return Frame(bool(first & 0x80), (first >> 4) & 0x7, first & 0x0F, masked, payload)

        return await asyncio.wait_for(read(), timeout)

    async def read_message(self, timeout: float = 5.0) -> tuple[list[Frame], list[Frame]]:
        """Frames of the next data message, and the control frames seen meanwhile (ends early at CLOSE)."""
        frames: list[Frame] = []
        control: list[Frame] = []
        while True:
            frame = await self.read_frame(timeout)
            if frame.opcode >= 0x8:
                control.append(frame)
                if frame.opcode == CLOSE:
                    return frames, control
                continue
            frames.append(frame)
            if frame.fin:
                return frames, control

    async def read_packet(self, as_json: bool = False, timeout: float = 5.0) -> Any:
        """Decode the next data message (fails on a CLOSE frame)."""
        frames, control = await self.read_message(timeout)
        closes = [f for f in control if f.opcode == CLOSE]
        assert not closes, f"connection closed with {closes[0].close_code}: {closes[0].payload[2:]!r}"
        return decode(b"".join(f.payload for f in frames), as_json)

    async def read_reply(self, call_id: str, as_json: bool = False, timeout: float = 5.0) -> dict[str, Any]:
        """Skip packets until the RPC reply carrying ``call_id``; return its ``rpc`` map."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            packet = await self.read_packet(as_json, max(0.01, deadline - loop.time()))
            rpc = packet.get("rpc") if isinstance(packet, dict) else None
            if isinstance(rpc, dict) and rpc.get("call_id") == call_id:
                return rpc

    async def assert_alive(self, call_id: str = "alive", as_json: bool = False, *, next_packet: bool = False) -> None:
        """The server still answers an ``echo`` RPC on this connection.

        ``next_packet``: the reply must be the very next packet (nothing else was sent meanwhile).
        """
        self.send_frame(TEXT if as_json else BINARY, encode(request_map("echo", call_id, call_id=call_id), as_json))
        if not next_packet:
            assert (await self.read_reply(call_id, as_json))["response"] == call_id
            return
        packet = await self.read_packet(as_json)
        assert packet["source"] == 5, packet
        assert (packet["rpc"]["call_id"], packet["rpc"]["response"], packet["rpc"]["error"]) == (call_id, call_id, None)

    async def read_close(self, timeout: float = 5.0) -> Frame:
        """Read until a CLOSE frame and return it."""
        while True:
            frame = await self.read_frame(timeout)
            if frame.opcode == CLOSE:
                return frame

    async def close_code(self, timeout: float = 5.0) -> int:
        return (await self.read_close(timeout)).close_code

    async def wait_eof(self, timeout: float = 5.0) -> bytes:
        """Read everything until the server closes the TCP connection; returns what was read."""
        data = bytearray()

        async def drain() -> None:
            while True:
                try:
                    chunk = await self.reader.read(65536)
                except ConnectionError:
                    return
                if not chunk:
                    return
                data.extend(chunk)

        await asyncio.wait_for(drain(), timeout)
        return bytes(data)

    async def close(self) -> None:
        if not self.writer.is_closing():
            try:
                self.send_frame(CLOSE, struct.pack("!H", 1000))
                await asyncio.wait_for(self.writer.drain(), 2)
            except (ConnectionError, asyncio.TimeoutError, TimeoutError):
                pass
            self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (ConnectionError, asyncio.TimeoutError, TimeoutError):
            pass


@asynccontextmanager
async def raw_websocket(
    port: int, subprotocol: str | None = None, *, rcvbuf: int | None = None
) -> AsyncIterator[RawWebSocket]:
    """A :class:`RawWebSocket` for the ``async with`` block, closed at its end."""
    ws = await RawWebSocket.connect(port, subprotocol, rcvbuf=rcvbuf)
    try:
        yield ws
    finally:
        await ws.close()


class SyncWebSocket:
    """A blocking raw WebSocket client: upgrade, masked frames out, whole messages in."""

    def __init__(self, port: int, subprotocol: str | None = None) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.closed: int | None = None  # the close code, once the server sent a CLOSE frame
        key = new_key()
        self.sock.sendall(upgrade_request(port, key, subprotocol))
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        end = self.buffer.index(b"\r\n\r\n") + 4
        head = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[:end]
        status, self.headers = parse_response_head(head)
        assert status == 101, head
        assert_accepted(self.headers, key)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server hung up")
        self.buffer.extend(chunk)

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    def send(self, opcode: int, payload: bytes) -> None:
        self.sock.sendall(frame_bytes(opcode, payload))

    def read_frame(self) -> Frame:
        first, second = self._take(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._take(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._take(8))
        masked = bool(second & 0x80)
        key = self._take(4) if masked else b""
        payload = self._take(size)
        if masked:
            payload = mask_bytes(payload, key)
        return Frame(bool(first & 0x80), (first >> 4) & 0x7, first & 0x0F, masked, payload)

    def recv_message(self) -> bytes:
        """Payload of the next data message; raises :class:`ConnectionError` on a CLOSE frame."""
        parts: list[bytes] = []
        while True:
            frame = self.read_frame()
            if frame.opcode == CLOSE:
                self.closed = frame.close_code
                raise ConnectionError(f"server closed the connection with {self.closed}: {frame.payload[2:]!r}")
            if frame.opcode >= 0x8:
                continue
            parts.append(frame.payload)
            if frame.fin:
                return b"".join(parts)

    def close(self) -> None:
        try:
            self.send(CLOSE, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()
