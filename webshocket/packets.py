"""Packet objects of the wire format (see docs/protocol.md).

:class:`Packet` is one WebSocket message; :class:`RPCRequest` and
:class:`RPCResponse` travel in its ``rpc`` field. The classes and the codec come
from the codec implementation in use (compiled ``_codec_c`` or pure ``_codec_py``);
:func:`serialize` / :func:`deserialize` are the 0.5.x helpers on top of it.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgpack

from ._codec import Packet, RPCRequest, RPCResponse, decode_packet, encode_packet
from .enum import PacketSource

__all__ = ["Packet", "RPCRequest", "RPCResponse", "deserialize", "serialize"]

T = TypeVar("T")
"""0.5.x name (there bound to ``msgspec.Struct``)."""
RType = TypeVar("RType", RPCRequest, RPCResponse)
"""0.5.x name: the type of a packet's ``rpc``."""


def serialize(packet: Packet[Any] | RPCRequest | RPCResponse) -> bytes:
    """Encode a packet as msgpack (the framework dialect); an RPCRequest or RPCResponse alone
    is written as its own map, as 0.5.x did."""
    if isinstance(packet, (RPCRequest, RPCResponse)):
        whole = msgpack.unpackb(encode_packet(Packet(PacketSource.RPC, rpc=packet), False), raw=False)
        return bytes(msgpack.packb(whole["rpc"], use_bin_type=True))
    return encode_packet(packet, False)


def deserialize(data: bytes) -> Packet[Any]:
    """Decode msgpack bytes into a packet (an UNKNOWN packet when they are not one)."""
    return decode_packet(data, False)
