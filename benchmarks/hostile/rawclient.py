"""A small raw WebSocket client (RFC 6455) for the attackers: it sends what a real client never would.

The HTTP upgrade is done by hand and frames are written as bytes, so an attacker can
pipeline hundreds of requests in one write, send a message of 200,000 empty fragments,
shrink its receive buffer and stop reading, or leave without a close frame.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import select
import socket
import struct
from typing import Any

import msgpack

HOST = "127.0.0.1"
SUBPROTOCOL = "webshocket.v1"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
RPC_SOURCE = 5  # PacketSource.RPC
CUSTOM_SOURCE = 1  # PacketSource.CUSTOM
GONE = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)


def mask_bytes(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``key``."""
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def frame_bytes(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One masked client frame."""
    head = bytes([(0x80 if fin else 0) | (opcode & 0x0F)])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    key = os.urandom(4)
    return head + key + mask_bytes(payload, key)


def request(method: str, *args: Any, call_id: str) -> dict[str, Any]:
    """An RPC request packet (the wire map)."""
    return {
        "source": RPC_SOURCE,
        "rpc": {"type": "request", "method": method, "args": list(args), "kwargs": {}, "call_id": call_id},
    }


def rpc_frame(method: str, *args: Any, call_id: str) -> bytes:
    """An RPC request as one masked binary frame."""
    return frame_bytes(BINARY, msgpack.packb(request(method, *args, call_id=call_id), use_bin_type=True))


def upgrade_request(port: int, key: str) -> bytes:
    """The HTTP request asking the server on ``port`` to upgrade to WebSocket (webshocket's subprotocol)."""
    lines = [
        "GET / HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Protocol: {SUBPROTOCOL}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Closed(Exception):
    """The server sent a CLOSE frame; ``code`` is its close code (1005 when it carried none)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


class RawWebSocket:
    """An upgraded connection: frames out as bytes, frames in one by one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, *, rcvbuf: int | None = None, timeout: float = 10.0) -> RawWebSocket:
        """Connect to 127.0.0.1:``port`` (with a ``rcvbuf`` receive buffer, set before connecting) and upgrade."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:  # before connecting, so the small window is what the handshake advertises
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (HOST, port)), timeout)
            reader, writer = await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(upgrade_request(port, key))
            head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)).decode("latin-1")
            status = head.split(" ", 2)[1] if " " in head else "?"
            accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
            if status != "101" or accept not in head:
                raise ConnectionError(f"upgrade refused: {head.splitlines()[0] if head else 'no answer'}")
        except BaseException:
            writer.transport.abort()
            raise
        return cls(reader, writer)

    # ------------------------------------------------------------------ writing

    def send_raw(self, data: bytes) -> None:
        """Queue ``data`` as is (frames already encoded)."""
        self.writer.write(data)

    def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        """Queue one masked frame."""
        self.writer.write(frame_bytes(opcode, payload, fin=fin))

    def send_packet(self, packet: Any) -> None:
        """Queue one msgpack packet as a binary frame."""
        self.send_frame(BINARY, msgpack.packb(packet, use_bin_type=True))

    # ------------------------------------------------------------------ reading

    def pause_reading(self) -> None:
        """Stop reading from the socket (what was not read stays in the kernel: TCP backpressure)."""
        self.writer.transport.pause_reading()  # type: ignore[attr-defined]

    def resume_reading(self) -> None:
        """Read again."""
        self.writer.transport.resume_reading()  # type: ignore[attr-defined]

    async def read_frame(self) -> tuple[int, bool, bytes]:
        """``(opcode, fin, payload)`` of the next frame (server frames are not masked)."""
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        key = await self.reader.readexactly(4) if second & 0x80 else b""
        payload = await self.reader.readexactly(size)
        return first & 0x0F, bool(first & 0x80), mask_bytes(payload, key) if key else payload

    async def read_packet(self) -> Any:
        """The next data message, decoded; raises :class:`Closed` on a CLOSE frame."""
        parts: list[bytes] = []
        while True:
            opcode, fin, payload = await self.read_frame()
            if opcode == CLOSE:
                raise Closed(int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else 1005)
            if opcode >= 0x8:
                continue
            parts.append(payload)
            if fin:
                return msgpack.unpackb(b"".join(parts), raw=False, strict_map_key=False)

    async def read_rpc(self) -> dict[str, Any]:
        """The ``rpc`` map of the next RPC reply (other packets are skipped)."""
        while True:
            packet = await self.read_packet()
            rpc = packet.get("rpc") if isinstance(packet, dict) else None
            if isinstance(rpc, dict):
                return rpc

    async def close_code(self, patience: float = 3.0) -> int | None:
        """Read on until the server closes: its close code, 0 when it only hung up (EOF or reset).

        None when data still flows (the server has not closed) after ``patience`` seconds.
        """
        self.resume_reading()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        try:
            while True:
                opcode, _fin, payload = await asyncio.wait_for(self.read_frame(), max(0.01, deadline - loop.time()))
                if opcode == CLOSE:
                    return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else 1005
        except (asyncio.IncompleteReadError, ConnectionError):
            return 0
        except (asyncio.TimeoutError, TimeoutError):
            return None

    def gone(self) -> bool:
        """True once the server dropped the connection (hang-up or reset seen by the kernel), without reading."""
        sock = self.writer.get_extra_info("socket")
        if sock is None or sock.fileno() < 0:
            return True
        poller = select.poll()
        poller.register(sock.fileno(), GONE)
        return bool(poller.poll(0))

    # ------------------------------------------------------------------ leaving

    def abort(self) -> None:
        """Leave at once: no close frame (a reset if data is unread)."""
        self.writer.transport.abort()

    def hang_up(self) -> None:
        """Leave without a close frame: FIN after what was queued is written."""
        self.writer.close()
