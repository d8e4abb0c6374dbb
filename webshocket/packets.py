"""Packet objects of the wire format (see PROTOCOL.md).

:class:`Packet` is one WebSocket message; :class:`RPCRequest` and
:class:`RPCResponse` travel in its ``rpc`` field. Encoding and decoding live in
the codec module (``webshocket._codec_py`` or its compiled twin ``_codec_c``);
:func:`serialize` / :func:`deserialize` are the 0.5.x helpers on top of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from .enum import PacketSource, RPCErrorCode
from .utils import generate_uuid

__all__ = ["Packet", "RPCRequest", "RPCResponse", "deserialize", "serialize"]


class RPCRequest:
    """An RPC call: ``method(*args, **kwargs)`` identified by ``call_id``."""

    __slots__ = ("args", "call_id", "kwargs", "method")

    def __init__(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        call_id: str | None = None,
    ) -> None:
        self.method = method
        self.args = args
        self.kwargs = {} if kwargs is None else kwargs
        self.call_id = generate_uuid() if call_id is None else call_id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RPCRequest):
            return NotImplemented
        return (self.method, list(self.args), self.kwargs, self.call_id) == (
            other.method,
            list(other.args),
            other.kwargs,
            other.call_id,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"RPCRequest(method={self.method!r}, args={self.args!r}, "
            f"kwargs={self.kwargs!r}, call_id={self.call_id!r})"
        )


class RPCResponse:
    """The answer to an :class:`RPCRequest` (one per chunk for a streaming method).

    ``response`` is the result, or the error message when ``error`` is set.
    ``data``, ``rpc`` and ``source`` make it usable where a :class:`Packet` is
    expected: ``(await client.send_rpc("add", 1, 2)).data == 3``.
    """

    __slots__ = ("call_id", "error", "is_end", "is_stream", "response")

    def __init__(
        self,
        call_id: str,
        response: Any = None,
        error: RPCErrorCode | None = None,
        is_stream: bool = False,
        is_end: bool = False,
    ) -> None:
        self.call_id = call_id
        self.response = response
        self.error = error
        self.is_stream = is_stream
        self.is_end = is_end

    @property
    def data(self) -> Any:
        """The result (alias of ``response``), as in ``packet.data``."""
        return self.response

    @property
    def rpc(self) -> RPCResponse:
        """This response (so ``result.rpc.response`` works as on a packet)."""
        return self

    @property
    def source(self) -> PacketSource:
        """Always :attr:`PacketSource.RPC`."""
        return PacketSource.RPC

    @property
    def ok(self) -> bool:
        """True when the call succeeded (``error`` is None)."""
        return self.error is None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RPCResponse):
            return NotImplemented
        return (self.call_id, self.response, self.error, self.is_stream, self.is_end) == (
            other.call_id,
            other.response,
            other.error,
            other.is_stream,
            other.is_end,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"RPCResponse(call_id={self.call_id!r}, response={self.response!r}, error={self.error!r}, "
            f"is_stream={self.is_stream!r}, is_end={self.is_end!r})"
        )


RType = TypeVar("RType", RPCRequest, RPCResponse)


class Packet(Generic[RType]):
    """One message of the protocol.

    Attributes:
        source: where it comes from (:class:`PacketSource`).
        data: the payload of a custom, channel or broadcast packet.
        rpc: an :class:`RPCRequest` or :class:`RPCResponse`.
        channel: the channel a CHANNEL packet was published to.
        timestamp: optional float.
        correlation_id: optional string.
    """

    __slots__ = ("channel", "correlation_id", "data", "rpc", "source", "timestamp")

    def __init__(
        self,
        source: PacketSource | int,
        data: Any = None,
        rpc: RType | None = None,
        channel: str | None = None,
        timestamp: float | None = None,
        correlation_id: str | None = None,
    ) -> None:
        self.source = source
        self.data = data
        self.rpc = rpc
        self.channel = channel
        self.timestamp = timestamp
        self.correlation_id = correlation_id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Packet):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _PACKET_FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in _PACKET_FIELDS
            if name == "source" or getattr(self, name) is not None
        )
        return f"Packet({fields})"


_PACKET_FIELDS = ("source", "data", "rpc", "channel", "timestamp", "correlation_id")


def serialize(packet: Packet[Any] | RPCRequest | RPCResponse) -> bytes:
    """Encode a packet as msgpack (the framework dialect)."""
    from ._codec import encode_packet

    if not isinstance(packet, Packet):
        packet = Packet(PacketSource.RPC, rpc=packet)
    return encode_packet(packet, False)


def deserialize(data: bytes) -> Packet[Any]:
    """Decode msgpack bytes into a packet (an UNKNOWN packet when they are not one)."""
    from ._codec import decode_packet

    return decode_packet(data, False)
