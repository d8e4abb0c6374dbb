"""Packet objects of the wire format (see docs/protocol.md).

:class:`Packet` is one WebSocket message; :class:`RPCRequest` and
:class:`RPCResponse` travel in its ``rpc`` field. The classes and the codec come
from the codec implementation in use (compiled ``_codec_c`` or pure ``_codec_py``);
:func:`serialize` / :func:`deserialize` are the 0.5.x helpers on top of it.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgpack

from ._codec import Packet, RPCRequest, RPCResponse, decode_packet, encode_packet, encode_value
from .enum import PacketSource
from .enum import RPCErrorCode as RPCErrorCode
from .utils import generate_uuid as generate_uuid

# ``X as X`` imports re-export names 0.5.x's module had (it imported them): docs/migration.md 2.14.

__all__ = ["Packet", "RPCRequest", "RPCResponse", "deserialize", "serialize"]

T = TypeVar("T")
"""0.5.x name (there bound to ``msgspec.Struct``)."""
RType = TypeVar("RType", RPCRequest, RPCResponse)
"""0.5.x name: the type of a packet's ``rpc``."""

_UNKNOWN = PacketSource.UNKNOWN


def serialize(packet: Any) -> bytes:
    """Encode a packet as msgpack (the framework dialect); any other value (an RPCRequest or
    RPCResponse alone, a dict, a ``msgspec.Struct``, ...) as its own msgpack, as 0.5.x did."""
    if isinstance(packet, Packet):
        return encode_packet(packet, False)
    return encode_value(packet, False)


def deserialize(data: bytes | bytearray | memoryview) -> Packet[Any]:
    """Decode msgpack bytes into a packet.

    Raises:
        TypeError: ``data`` is not bytes-like.
        ValueError: the bytes are not a packet. With msgspec installed this is what 0.5.x
            raised: ``msgspec.DecodeError`` for bytes that are not msgpack,
            ``msgspec.ValidationError`` for msgpack that is not a packet.
    """
    if type(data) is not bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"a bytes-like object is required, not '{type(data).__name__}'")
        data = bytes(data)
    packet = decode_packet(data, False)
    if packet.source is _UNKNOWN and packet.data is data:  # what the decoder makes of anything else
        raise _not_a_packet(data)
    return packet


def _not_a_packet(data: bytes) -> Exception:
    """The ValueError 0.5.x raised for ``data`` (msgspec's, when it is installed)."""
    try:
        msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:
        malformed, message = True, "MessagePack data is malformed or truncated"
    else:
        malformed, message = False, "MessagePack data is not a packet (a map with a valid `source`)"
    try:
        import msgspec
    except ImportError:
        return ValueError(message)
    return (msgspec.DecodeError if malformed else msgspec.ValidationError)(message)
