"""Pure-Python packet objects and codec (twin of the compiled ``_codec_c``).

Writes packets byte-for-byte as docs/protocol.md describes: keys in table order, null
keys of the packet left out, all keys of an ``rpc`` map written. msgpack for
framework clients, compact UTF-8 JSON for generic ones.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import json
import math
import uuid
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import msgpack

from . import _packets_py
from ._ext import packet_classes
from .constant import DEFAULT_CHUNK_SIZE
from .enum import PacketSource, RPCErrorCode
from .utils import generate_uuid

__all__ = [
    "INVALID_REQUEST",
    "PACKET_CLASSES",
    "Packet",
    "RPCRequest",
    "RPCResponse",
    "decode_packet",
    "encode_packet",
    "encode_push",
    "encode_request",
    "encode_response",
    "encode_value",
    "frame",
    "response_frame",
    "salvage_call_id",
]

# --------------------------------------------------------------------------- packet objects

PACKET_CLASSES = packet_classes((_packets_py.Packet, _packets_py.RPCRequest, _packets_py.RPCResponse))
"""The packet classes this codec reads and writes: msgspec Structs, or ours (the compiled codec's are compiled)."""
if TYPE_CHECKING:
    from ._packets_py import Packet, RPCRequest, RPCResponse
else:
    Packet, RPCRequest, RPCResponse = PACKET_CLASSES


_SOURCES: dict[Any, PacketSource] = {int(s): s for s in PacketSource}
_ERRORS: dict[Any, RPCErrorCode] = {int(e): e for e in RPCErrorCode}
_UNKNOWN = PacketSource.UNKNOWN


class _Invalid(Exception):
    """A decoded value does not have the shape of a packet."""


# --------------------------------------------------------------------------- encode


def _to_builtin(obj: Any) -> Any:
    """Map values msgpack/json don't know to ones they do, as msgspec (webshocket 0.5.x) does."""
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, Packet):
        return _packet_map(obj)
    if isinstance(obj, (RPCRequest, RPCResponse)):
        return rpc_map(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, datetime.datetime):
        return _isoformat(obj)
    if isinstance(obj, (datetime.date, datetime.time)):
        return obj.isoformat()
    if isinstance(obj, datetime.timedelta):
        return _iso_duration(obj)
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, memoryview):
        return obj.tobytes()
    if getattr(type(obj), "__struct_fields__", None) is not None:
        return _struct_builtin(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not serializable")


class _StructLayout(NamedTuple):
    """How msgspec writes the instances of one ``msgspec.Struct`` type."""

    tag: tuple[()] | tuple[str, Any]  # (tag field, tag value), or () when untagged
    fields: tuple[tuple[str, str, Callable[[Any], bool] | None], ...]  # (attribute, name written, is_default)
    array_like: bool
    unset: Any  # msgspec.UNSET: never written


_STRUCT_LAYOUTS: weakref.WeakKeyDictionary[type, _StructLayout] = weakref.WeakKeyDictionary()


def _struct_layout(cls: Any) -> _StructLayout:
    import msgspec  # loaded: an instance of one of its Structs is being encoded

    config = cls.__struct_config__
    names, written, defaults = cls.__struct_fields__, cls.__struct_encode_fields__, cls.__struct_defaults__
    tests: list[Callable[[Any], bool] | None] = [None] * len(names)
    if config.omit_defaults:  # the defaults belong to the last fields
        probe = msgspec.defstruct("Probe", [("a", list, msgspec.field(default_factory=list))])
        factory_type = type(probe.__struct_defaults__[0])  # what a default_factory is kept as
        for index, default in enumerate(defaults, len(names) - len(defaults)):
            tests[index] = _default_test(default, factory_type)
    tag = (config.tag_field, config.tag) if config.tag is not None else ()
    layout = _STRUCT_LAYOUTS[cls] = _StructLayout(
        tag, tuple(zip(names, written, tests, strict=True)), config.array_like, msgspec.UNSET
    )
    return layout


def _default_test(default: Any, factory_type: Any) -> Callable[[Any], bool] | None:
    """msgspec's test for a field at its default (``omit_defaults``): the default object itself,
    or an empty list, dict or set made by its ``default_factory``."""
    if type(default) is not factory_type:
        return lambda value: value is default
    factory = default.factory
    if factory in (list, dict, set):
        return lambda value: type(value) is factory and not value
    return None


def _struct_builtin(obj: Any) -> Any:
    """A ``msgspec.Struct`` as 0.5.x (msgspec) wrote it: a map of its fields under their encoded
    names, the tag first, UNSET fields and (``omit_defaults``) fields at their default left out;
    a list with ``array_like``. The values are encoded as any others."""
    layout = _STRUCT_LAYOUTS.get(type(obj)) or _struct_layout(type(obj))
    if layout.array_like:
        return [*layout.tag[1:], *(getattr(obj, name) for name, _, _ in layout.fields)]
    out = dict([layout.tag]) if layout.tag else {}
    unset = layout.unset
    for name, written, is_default in layout.fields:
        value = getattr(obj, name)
        if value is not unset and (is_default is None or not is_default(value)):
            out[written] = value
    return out


def _isoformat(value: datetime.datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _iso_duration(value: datetime.timedelta) -> str:
    """ISO 8601 duration as msgspec writes it (``P1DT90.5S``)."""
    sign = "-" if value < datetime.timedelta(0) else ""
    value = abs(value)
    out = "P"
    if value.days:
        out += f"{value.days}D"
    if value.seconds or value.microseconds:
        fraction = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
        out += f"T{value.seconds}{fraction}S"
    return sign + (out if out != "P" else "P0D")


def _msgpack_default(obj: Any) -> Any:
    if isinstance(obj, datetime.datetime) and obj.tzinfo is not None:
        return msgpack.Timestamp.from_datetime(obj)
    return _to_builtin(obj)


# ---- JSON. Floats are written as msgspec writes them: no NaN/Infinity (null instead),
# exponents without "+" or leading zeros, 1e-5 as 0.00001. The stdlib's C encoder writes
# float repr(), which agrees for every finite float in [1e-4, 1e16): such values take the
# fast path, anything else the Python encoder with our float formatter.


def _floatstr(value: float) -> str:
    if value != value or value in (math.inf, -math.inf):
        return "null"
    text = float.__repr__(value)
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    if int(exponent) == -5:
        sign = "-" if mantissa.startswith("-") else ""
        return f"{sign}0.0000{mantissa.lstrip('-').replace('.', '')}"
    return f"{mantissa}e{int(exponent)}"


def has_odd_float(obj: Any) -> bool:
    """True when ``obj`` holds a float whose repr() differs from msgspec's JSON form."""
    kind = type(obj)
    if kind is float:
        magnitude = abs(obj)
        return not (1e-4 <= magnitude < 1e16 or magnitude == 0.0)
    if kind is dict:
        return any(has_odd_float(k) or has_odd_float(v) for k, v in obj.items())
    if kind is list or kind is tuple:
        return any(has_odd_float(v) for v in obj)
    if isinstance(obj, float):
        return has_odd_float(float(obj))
    return False


class _OddFloat(Exception):
    """A converted value holds a float the fast JSON encoder would write differently."""


def make_json_encoder(
    to_builtin: Callable[[Any], Any], odd_float: Callable[[Any], bool] = has_odd_float
) -> Callable[[Any], bytes]:
    """A JSON writer (to UTF-8 bytes) with ``to_builtin`` for the types JSON lacks.

    ``odd_float`` is :func:`has_odd_float` or a faster equivalent.
    """

    def default(obj: Any) -> Any:
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return base64.b64encode(obj).decode("ascii")
        return to_builtin(obj)

    def checked_default(obj: Any) -> Any:
        value = default(obj)
        if odd_float(value):
            raise _OddFloat
        return value

    fast = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=checked_default).encode

    def slow(obj: Any) -> str:
        iterencode = json.encoder._make_iterencode(  # type: ignore[attr-defined]
            {}, default, json.encoder.py_encode_basestring, None, _floatstr, ":", ",", False, False, True
        )
        return "".join(iterencode(obj, 0))

    def encode(obj: Any) -> bytes:
        if not odd_float(obj):
            try:
                return fast(obj).encode("utf-8", "surrogatepass")
            except _OddFloat:
                pass
        return slow(obj).encode("utf-8", "surrogatepass")

    return encode


_json_bytes = make_json_encoder(_to_builtin)


def _dumps(obj: Any, as_json: bool) -> bytes:
    if as_json:
        return _json_bytes(obj)
    return msgpack.packb(obj, use_bin_type=True, default=_msgpack_default, datetime=False)  # type: ignore[no-any-return]


def rpc_map(rpc: Any) -> Any:
    """The map an RPC object is written as (anything else: the value itself, as 0.5.x did)."""
    if isinstance(rpc, RPCResponse):
        return {
            "type": "response",
            "call_id": rpc.call_id,
            "response": rpc.response,
            "error": None if rpc.error is None else int(rpc.error),
            "is_stream": rpc.is_stream,
            "is_end": rpc.is_end,
        }
    if isinstance(rpc, RPCRequest):
        return {
            "type": "request",
            "method": rpc.method,
            "args": rpc.args,
            "kwargs": rpc.kwargs,
            "call_id": rpc.call_id,
        }
    return rpc


def _packet_map(packet: Packet[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"source": int(packet.source)}
    if packet.data is not None:
        out["data"] = packet.data
    if packet.rpc is not None:
        out["rpc"] = rpc_map(packet.rpc)
    if packet.channel is not None:
        out["channel"] = packet.channel
    if packet.timestamp is not None:
        out["timestamp"] = packet.timestamp
    if packet.correlation_id is not None:
        out["correlation_id"] = packet.correlation_id
    if packet.offset is not None:
        out["offset"] = packet.offset
    if packet.epoch is not None:
        out["epoch"] = packet.epoch
    return out


def encode_packet(packet: Packet[Any], as_json: bool) -> bytes:
    """Encode any :class:`Packet`."""
    return _dumps(_packet_map(packet), as_json)


def encode_value(value: Any, as_json: bool) -> bytes:
    """Encode any value the codec writes, as a packet's ``data`` would be (0.5.x ``serialize``)."""
    return _dumps(value, as_json)


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
    offset = obj.get("offset")
    if offset is not None and type(offset) is not int:
        raise _Invalid
    return Packet(
        _SOURCES[source],
        obj.get("data"),
        rpc,
        _str_or_none(obj.get("channel")),
        timestamp,
        _str_or_none(obj.get("correlation_id")),
        offset,
        _str_or_none(obj.get("epoch")),
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


INVALID_REQUEST = (
    "Invalid RPC request: 'method' must be a string, 'args' a list, "
    "'kwargs' a map with string keys and 'call_id' a string."
)


def salvage_call_id(raw: bytes, as_json: bool) -> str | None:
    """The ``call_id`` of a message that is not a valid packet but is shaped like an RPC request.

    Lets the server answer malformed requests with an error instead of silence.
    """
    try:
        obj = json.loads(raw) if as_json else msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception:
        return None
    if type(obj) is not dict:
        return None
    rpc = obj.get("rpc")
    if type(rpc) is not dict or rpc.get("type", "request") != "request":
        return None
    call_id = rpc.get("call_id")
    return call_id if type(call_id) is str else None


FRAME_SIZE = DEFAULT_CHUNK_SIZE
"""Largest frame payload the server writes; longer messages are fragmented."""


def _header(opcode_byte: int, size: int) -> bytes:
    if size < 126:
        return bytes((opcode_byte, size))
    if size < 0x10000:
        return bytes((opcode_byte, 126)) + size.to_bytes(2, "big")
    return bytes((opcode_byte, 127)) + size.to_bytes(8, "big")


def frame(payload: bytes) -> bytes:
    """One binary message as server frames (unmasked): a single frame, or 64 KiB fragments."""
    size = len(payload)
    if size <= FRAME_SIZE:
        return _header(0x82, size) + payload
    parts: list[bytes | memoryview] = []
    view = memoryview(payload)
    for offset in range(0, size, FRAME_SIZE):
        chunk = view[offset : offset + FRAME_SIZE]
        last = offset + FRAME_SIZE >= size
        opcode = 0x02 if offset == 0 else 0x00
        parts.append(_header(opcode | (0x80 if last else 0), len(chunk)))
        parts.append(chunk)
    return b"".join(parts)


def response_frame(
    call_id: str, response: Any, error: int | None, is_stream: bool, is_end: bool, as_json: bool
) -> bytes:
    """``frame(encode_response(...))``: an RPC response ready to write."""
    return frame(encode_response(call_id, response, error, is_stream, is_end, as_json))
