"""Pure-Python packet objects and codec (twin of the compiled ``_codec_c``).

Writes packets byte-for-byte as PROTOCOL.md describes: keys in table order, null
keys of the packet left out, all keys of an ``rpc`` map written. msgpack for
framework clients, compact UTF-8 JSON for generic ones.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import json
import uuid
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import msgpack

from .enum import PacketSource, RPCErrorCode
from .utils import generate_uuid

__all__ = [
    "Packet",
    "RPCRequest",
    "RPCResponse",
    "decode_packet",
    "encode_packet",
    "encode_push",
    "encode_request",
    "encode_response",
]

# --------------------------------------------------------------------------- packet objects


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
            f"RPCRequest(method={self.method!r}, args={self.args!r}, kwargs={self.kwargs!r}, call_id={self.call_id!r})"
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


_SOURCES: dict[Any, PacketSource] = {int(s): s for s in PacketSource}
_ERRORS: dict[Any, RPCErrorCode] = {int(e): e for e in RPCErrorCode}
_UNKNOWN = PacketSource.UNKNOWN


class _Invalid(Exception):
    """A decoded value does not have the shape of a packet."""


# --------------------------------------------------------------------------- encode


def _to_builtin(obj: Any) -> Any:
    """Map values msgpack/json don't know to ones they do (the types msgspec accepts)."""
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, Packet):
        return _packet_map(obj)
    if isinstance(obj, (RPCRequest, RPCResponse)):
        return _rpc_map(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
        return obj.isoformat()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, memoryview):
        return obj.tobytes()
    raise TypeError(f"Object of type {type(obj).__name__} is not serializable")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(obj).decode("ascii")
    return _to_builtin(obj)


_dump_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default, allow_nan=True).encode


def _dumps(obj: Any, as_json: bool) -> bytes:
    if as_json:
        return _dump_json(obj).encode("utf-8", "surrogatepass")
    return msgpack.packb(obj, use_bin_type=True, default=_to_builtin, datetime=False)  # type: ignore[no-any-return]


def _rpc_map(rpc: RPCRequest | RPCResponse) -> dict[str, Any]:
    if isinstance(rpc, RPCResponse):
        return {
            "type": "response",
            "call_id": rpc.call_id,
            "response": rpc.response,
            "error": None if rpc.error is None else int(rpc.error),
            "is_stream": rpc.is_stream,
            "is_end": rpc.is_end,
        }
    return {
        "type": "request",
        "method": rpc.method,
        "args": rpc.args,
        "kwargs": rpc.kwargs,
        "call_id": rpc.call_id,
    }


def _packet_map(packet: Packet[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"source": int(packet.source)}
    if packet.data is not None:
        out["data"] = packet.data
    if packet.rpc is not None:
        out["rpc"] = _rpc_map(packet.rpc)
    if packet.channel is not None:
        out["channel"] = packet.channel
    if packet.timestamp is not None:
        out["timestamp"] = packet.timestamp
    if packet.correlation_id is not None:
        out["correlation_id"] = packet.correlation_id
    return out


def encode_packet(packet: Packet[Any], as_json: bool) -> bytes:
    """Encode any :class:`Packet`."""
    return _dumps(_packet_map(packet), as_json)


def encode_push(source: int, data: Any, channel: str | None, as_json: bool) -> bytes:
    """Encode a server-pushed packet (custom, channel or broadcast) without a Packet object."""
    out: dict[str, Any] = {"source": int(source)}
    if data is not None:
        out["data"] = data
    if channel is not None:
        out["channel"] = channel
    return _dumps(out, as_json)


def encode_response(
    call_id: str, response: Any, error: int | None, is_stream: bool, is_end: bool, as_json: bool
) -> bytes:
    """Encode an RPC response packet."""
    return _dumps(
        {
            "source": 5,
            "rpc": {
                "type": "response",
                "call_id": call_id,
                "response": response,
                "error": None if error is None else int(error),
                "is_stream": is_stream,
                "is_end": is_end,
            },
        },
        as_json,
    )


def encode_request(method: str, args: Any, kwargs: dict[str, Any], call_id: str, as_json: bool) -> bytes:
    """Encode an RPC request packet."""
    return _dumps(
        {
            "source": 5,
            "rpc": {"type": "request", "method": method, "args": args, "kwargs": kwargs, "call_id": call_id},
        },
        as_json,
    )


# --------------------------------------------------------------------------- decode


def _str_or_none(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    raise _Invalid


def _bool(value: Any) -> bool:
    if value is None or value is False:
        return False
    if value is True:
        return True
    raise _Invalid


def _request(rpc: dict[Any, Any]) -> RPCRequest:
    method = rpc.get("method")
    if type(method) is not str:
        raise _Invalid
    args = rpc.get("args")
    if args is None:
        args = []
    elif type(args) is not list:
        raise _Invalid
    kwargs = rpc.get("kwargs")
    if kwargs is None:
        kwargs = {}
    elif type(kwargs) is not dict or not all(type(k) is str for k in kwargs):
        raise _Invalid
    call_id = rpc.get("call_id")
    if call_id is None:
        call_id = generate_uuid()
    elif type(call_id) is not str:
        raise _Invalid
    return RPCRequest(method, args, kwargs, call_id)


def _response(rpc: dict[Any, Any]) -> RPCResponse:
    call_id = rpc.get("call_id")
    if type(call_id) is not str:
        raise _Invalid
    error = rpc.get("error")
    if error is not None:
        if type(error) is not int or error not in _ERRORS:
            raise _Invalid
        error = _ERRORS[error]
    return RPCResponse(call_id, rpc.get("response"), error, _bool(rpc.get("is_stream")), _bool(rpc.get("is_end")))


def _packet(obj: Any) -> Packet[Any]:
    if type(obj) is not dict:
        raise _Invalid
    source = obj.get("source")
    if type(source) is not int or source not in _SOURCES:
        raise _Invalid
    rpc = obj.get("rpc")
    if rpc is not None:
        if type(rpc) is not dict:
            raise _Invalid
        kind = rpc.get("type")
        if kind == "request":
            rpc = _request(rpc)
        elif kind == "response":
            rpc = _response(rpc)
        else:
            raise _Invalid
    timestamp = obj.get("timestamp")
    if timestamp is not None:
        if type(timestamp) not in (float, int):
            raise _Invalid
        timestamp = float(timestamp)
    return Packet(
        _SOURCES[source],
        obj.get("data"),
        rpc,
        _str_or_none(obj.get("channel")),
        timestamp,
        _str_or_none(obj.get("correlation_id")),
    )


def decode_packet(raw: bytes, as_json: bool) -> Packet[Any]:
    """Decode one message; anything that is not a packet becomes an UNKNOWN packet."""
    try:
        if as_json:
            obj = json.loads(raw)
        else:
            obj = msgpack.unpackb(raw, raw=False, strict_map_key=False, timestamp=3)
        return _packet(obj)
    except (
        _Invalid,
        ValueError,
        TypeError,
        RecursionError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
    ):
        return Packet(_UNKNOWN, raw)
