"""Packets compared byte for byte between our codec and webshocket 0.5.2's msgspec codec.

Standard library only: imported both by the test process (our codec) and by
``their_codec.py`` running in a 0.5.x virtualenv (their codec).

Each case is a dict with ``name``, ``kind`` and the fields of that kind:

- ``push``: ``source``, ``data``, ``channel`` (a server-pushed CUSTOM/CHANNEL/BROADCAST packet)
- ``request``: ``method``, ``args``, ``kwargs``, ``call_id``
- ``response``: ``call_id``, ``response``, ``error``, ``is_stream``, ``is_end``
- ``packet``: every Packet field (``source``, ``data``, ``rpc``, ``channel``, ``timestamp``,
  ``correlation_id``), ``rpc`` being None or a dict with ``type`` "request"/"response" and its fields.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from typing import Any

BROADCAST, CHANNEL, UNKNOWN, CUSTOM, RPC = 1, 2, 3, 4, 5


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 7


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: float
    label: str


INTS = [
    0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1,
    -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63),
]  # fmt: skip

PLAIN_FLOATS = [0.0, -0.0, 0.1, 1.5, -2.25, 3.0, 123456789.125, 0.333, 1234567890123456.0, 0.0001]

UNICODE = [
    "",
    "ascii",
    "héllo wörld",
    "日本語のテキスト",
    "emoji 😀🎉 and 𝄞",
    'quotes " and \\ backslash / slash',
    "controls \x00\x01\x1f\t\n\r\x7f",
    "separators \u2028\u2029",
    "x" * 31,
    "y" * 32,
    "z" * 255,
    "w" * 256,
    "v" * 65536,
]


def _push(name: str, source: int, data: Any, channel: str | None = None) -> dict[str, Any]:
    return {"name": name, "kind": "push", "source": source, "data": data, "channel": channel}


def _response(
    name: str, call_id: str, response: Any, error: int | None = None, is_stream: bool = False, is_end: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "response",
        "call_id": call_id,
        "response": response,
        "error": error,
        "is_stream": is_stream,
        "is_end": is_end,
    }


def _request(name: str, method: str, args: list[Any], kwargs: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {"name": name, "kind": "request", "method": method, "args": args, "kwargs": kwargs, "call_id": call_id}


def _packet(name: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "source": CUSTOM,
        "data": None,
        "rpc": None,
        "channel": None,
        "timestamp": None,
        "correlation_id": None,
    }
    base.update(fields)
    return {"name": name, "kind": "packet", **base}


def cases() -> list[dict[str, Any]]:
    """Cases whose values are plain JSON/msgpack data (the wire format must match exactly)."""
    nested = {
        "user": {"id": 42, "name": "alice", "tags": ["a", "b"], "profile": {"age": 30, "score": 99.5}},
        "items": [{"k": 1}, {"k": [1, 2, [3, {"deep": None}]]}],
        "flags": [True, False, None],
        "empty_list": [],
        "empty_dict": {},
    }
    return [
        # RPC requests / responses
        _request("request_positional", "add", [10, 20], {}, "call-1"),
        _request("request_kwargs", "update", [], {"a": 1, "b": [1, 2], "c": {"d": None}}, "call-2"),
        _request("request_mixed", "mixed", ["x", 1.5, None, True], {"flag": False}, "f" * 32),
        _request("request_abort", "__abort__", ["call-9"], {}, "call-10"),
        _response("response_int", "call-1", 30),
        _response("response_none", "call-3", None),
        _response("response_nested", "call-4", nested),
        _response("response_bytes", "call-5", b"\x00\x01\xff" * 10),
        _response("response_app_error", "call-6", "nope", -32001),
        _response("response_not_found", "call-7", "RPC method 'x' not found.", -32601, False, True),
        _response("response_stream_chunk", "call-8", {"i": 1}, None, True, False),
        _response("response_stream_end", "call-8", None, None, True, True),
        _response("response_stream_error", "call-8", "\nStream aborted: boom", -32603, True, True),
        _response("response_rate_limited", "call-11", "Rate limit exceeded", -32000, False, True),
        _response("response_denied", "call-12", "Access denied", -32002, True, True),
        # pushed packets
        _push("custom_str", CUSTOM, "hello"),
        _push("custom_nested", CUSTOM, nested),
        _push("custom_none_data", CUSTOM, None),
        _push("custom_zero", CUSTOM, 0),
        _push("custom_false", CUSTOM, False),
        _push("custom_empty_str", CUSTOM, ""),
        _push("custom_empty_list", CUSTOM, []),
        _push("custom_ints", CUSTOM, INTS),
        _push("custom_plain_floats", CUSTOM, PLAIN_FLOATS),
        _push("custom_unicode", CUSTOM, UNICODE),
        _push("custom_unicode_keys", CUSTOM, {"ключ": "значение", "😀": 1, "": None}),
        _push("custom_bytes_small", CUSTOM, b"\x00\x01binary\xff"),
        _push("custom_bytes_sizes", CUSTOM, [b"", b"a" * 255, b"b" * 256, b"c" * 65536]),
        _push("custom_big_list", CUSTOM, list(range(20))),
        _push("custom_big_map", CUSTOM, {f"key{i}": i for i in range(20)}),
        _push("custom_int_keys", CUSTOM, {1: "one", 2: "two"}),
        _push("channel_dict", CHANNEL, {"msg": "hi", "n": 1}, "room-1"),
        _push("channel_unicode_name", CHANNEL, "x", "комната.😀"),
        _push("channel_none_data", CHANNEL, None, "news"),
        _push("broadcast_str", BROADCAST, "server restarting"),
        _push("broadcast_list", BROADCAST, [1, "two", 3.5, None, {"x": b"y"}]),
        # full packets
        _packet(
            "packet_all_fields",
            source=CUSTOM,
            data={"a": 1},
            channel="c",
            timestamp=1700000000.5,
            correlation_id="corr-1",
        ),
        _packet("packet_timestamp_only", source=BROADCAST, data="b", timestamp=0.25),
        _packet(
            "packet_rpc_request",
            source=RPC,
            rpc={"type": "request", "method": "add", "args": [1, 2], "kwargs": {"z": 3}, "call_id": "r1"},
            correlation_id="corr-2",
        ),
        _packet(
            "packet_rpc_response",
            source=RPC,
            rpc={
                "type": "response",
                "call_id": "r1",
                "response": [1, 2],
                "error": None,
                "is_stream": False,
                "is_end": False,
            },
        ),
        _packet("packet_unknown_bytes", source=UNKNOWN, data=b"\x81\xa1x"),
    ]


def float_cases() -> list[dict[str, Any]]:
    """Floats whose JSON text needs an exponent or is not finite."""
    return [
        _push("float_exponent_large", CUSTOM, [1e100, 1e16, 1.5e300]),
        _push("float_exponent_small", CUSTOM, [1.5e-7, 1e-5, 2.5e-300]),
        _push("float_non_finite", CUSTOM, [float("inf"), float("-inf")]),
    ]


def extended_cases() -> list[dict[str, Any]]:
    """Values that are not plain data but that msgspec (0.5.x) and our codec both accept."""
    return [
        _push("ext_naive_datetime", CUSTOM, datetime.datetime(2024, 1, 2, 3, 4, 5, 123456)),
        _push("ext_aware_datetime", CUSTOM, datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)),
        _push("ext_date", CUSTOM, datetime.date(2024, 1, 2)),
        _push("ext_uuid", CUSTOM, uuid.UUID("12345678-1234-5678-1234-567812345678")),
        _push("ext_tuple", CUSTOM, (1, "two", (3,))),
        _push("ext_bytearray", CUSTOM, bytearray(b"abc")),
        _push("ext_frozenset", CUSTOM, frozenset([5])),
        _push("ext_int_enum", CUSTOM, [Level.LOW, Level.HIGH]),
        _push("ext_str_enum", CUSTOM, Color.RED),
        _push("ext_dataclass", CUSTOM, Point(1, 2.5, "p")),
        _push("ext_time", CUSTOM, datetime.time(1, 2, 3)),
        _push("ext_decimal", CUSTOM, decimal.Decimal("1.50")),
        _push("ext_timedelta", CUSTOM, datetime.timedelta(seconds=90)),
    ]


def all_cases() -> list[dict[str, Any]]:
    return cases() + float_cases() + extended_cases()


def tagged(value: Any) -> Any:
    """A JSON-able, type-exact description of a decoded value (compared across processes)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return {"$float": repr(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, (list, tuple)):
        return [tagged(v) for v in value]
    if isinstance(value, dict):
        return {"$map": [[tagged(k), tagged(v)] for k, v in value.items()]}
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return {"$" + type(value).__name__: value.isoformat()}
    return {"$repr": f"{type(value).__name__}: {value!r}"}


def tagged_packet(packet: Any) -> dict[str, Any]:
    """:func:`tagged` for a decoded Packet (ours or a 0.5.x msgspec one)."""
    rpc = packet.rpc
    rpc_out: dict[str, Any] | None = None
    if rpc is not None and hasattr(rpc, "method"):
        rpc_out = {
            "type": "request",
            "method": rpc.method,
            "args": tagged(list(rpc.args)),
            "kwargs": tagged(rpc.kwargs),
            "call_id": rpc.call_id,
        }
    elif rpc is not None:
        rpc_out = {
            "type": "response",
            "call_id": rpc.call_id,
            "response": tagged(rpc.response),
            "error": None if rpc.error is None else int(rpc.error),
        }
        for name in ("is_stream", "is_end"):  # 0.5.0's RPCResponse has neither
            if hasattr(rpc, name):
                rpc_out[name] = getattr(rpc, name)
    return {
        "source": int(packet.source),
        "data": tagged(packet.data),
        "rpc": rpc_out,
        "channel": packet.channel,
        "timestamp": tagged(packet.timestamp),
        "correlation_id": packet.correlation_id,
    }
