"""The compiled codec and its pure-Python twin: same inputs, same bytes, same packets.

Comparisons take the ``twins`` fixture (both implementations; skipped, with the reason, where
the compiled one cannot be tested, as in the pure run); behaviour tests take ``impl`` and run
on each implementation available. Which one the package itself uses is tests/test_speedups.py's.
"""

from __future__ import annotations

import gc
import json
import math
from types import ModuleType
from typing import Any

import msgpack
import pytest
from helpers import Twins, twin
from hypothesis import given, settings
from hypothesis import strategies as st

TWIN = "codec"  # the hot module of the ``impl`` and ``twins`` fixtures


@pytest.fixture(scope="module")
def codec(impl: str) -> ModuleType:
    """The ``impl`` twin of the codec."""
    return twin(TWIN, impl)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=30,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6),
    max_leaves=30,
)


def as_tuple(packet: Any) -> tuple[Any, ...]:
    """A packet as plain data, comparable across the two implementations' classes."""
    rpc = packet.rpc
    if rpc is None:
        rpc_t: Any = None
    elif hasattr(rpc, "method"):
        rpc_t = ("request", rpc.method, list(rpc.args), rpc.kwargs, rpc.call_id)
    else:
        rpc_t = ("response", rpc.call_id, rpc.response, rpc.error, rpc.is_stream, rpc.is_end)
    return (int(packet.source), packet.data, rpc_t, packet.channel, packet.timestamp, packet.correlation_id)


@settings(max_examples=300, deadline=None)
@given(
    call_id=st.text(),
    response=values,
    error=st.sampled_from([None, -32601, -32001]),
    flags=st.tuples(st.booleans(), st.booleans()),
)
def test_encode_response_identical(
    twins: Twins, call_id: str, response: Any, error: int | None, flags: tuple[bool, bool]
) -> None:
    for as_json in (False, True):
        if as_json:
            response = json.loads(json.dumps(response, default=lambda b: None)) if _json_safe(response) else None
        outputs = {impl.encode_response(call_id, response, error, *flags, as_json) for impl in twins}
        assert len(outputs) == 1
    raw = twins.py.encode_response(call_id, response, error, *flags, False)
    assert msgpack.unpackb(raw, raw=False, strict_map_key=False)["rpc"]["call_id"] == call_id


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(source=st.sampled_from([1, 2, 4]), data=values, channel=st.none() | st.text())
def test_encode_push_identical(twins: Twins, source: int, data: Any, channel: str | None) -> None:
    outputs = {impl.encode_push(source, data, channel, False) for impl in twins}
    assert len(outputs) == 1
    payload = outputs.pop()
    decoded = [as_tuple(impl.decode_packet(payload, False)) for impl in twins]
    assert all(d == decoded[0] for d in decoded)


@settings(max_examples=200, deadline=None)
@given(source=st.sampled_from([1, 2, 4]), data=json_values, channel=st.none() | st.text())
def test_encode_push_json_identical(twins: Twins, source: int, data: Any, channel: str | None) -> None:
    outputs = {impl.encode_push(source, data, channel, True) for impl in twins}
    assert len(outputs) == 1
    assert json.loads(outputs.pop())["source"] == source


@settings(max_examples=300, deadline=None)
@given(
    method=st.text(),
    args=st.lists(values, max_size=4),
    kwargs=st.dictionaries(st.text(max_size=6), values, max_size=3),
    call_id=st.text(),
)
def test_request_round_trip(twins: Twins, method: str, args: list[Any], kwargs: dict[str, Any], call_id: str) -> None:
    raw = {impl.encode_request(method, args, kwargs, call_id, False) for impl in twins}
    assert len(raw) == 1
    payload = raw.pop()
    decoded = [as_tuple(impl.decode_packet(payload, False)) for impl in twins]
    assert all(d == decoded[0] for d in decoded)
    assert decoded[0][2][1] == method and decoded[0][2][4] == call_id


@settings(max_examples=1000, deadline=None)
@given(blob=st.binary(max_size=64))
def test_decode_random_bytes_identical(twins: Twins, blob: bytes) -> None:
    for as_json in (False, True):
        decoded = [as_tuple(impl.decode_packet(blob, as_json)) for impl in twins]
        assert all(d == decoded[0] for d in decoded)


packet_like = st.fixed_dictionaries(
    {"source": st.sampled_from([1, 2, 3, 4, 5, 0, 6, "5", None, True, 5.0])},
    optional={
        "data": values,
        "channel": st.none() | st.text() | st.integers(-5, 5),
        "timestamp": st.none() | st.floats(allow_nan=False) | st.integers(-10, 10) | st.text(),
        "correlation_id": st.none() | st.text() | st.integers(-5, 5),
        "extra": values,
        "rpc": st.none()
        | st.integers(-5, 5)
        | st.fixed_dictionaries(
            {"type": st.sampled_from(["request", "response", "other", None, 1])},
            optional={
                "method": st.text() | st.integers(-5, 5) | st.none(),
                "args": st.lists(values, max_size=3) | st.none() | st.text() | st.dictionaries(st.text(), values),
                "kwargs": st.dictionaries(st.text(max_size=4) | st.integers(-5, 5), values, max_size=3)
                | st.none()
                | st.lists(values),
                "call_id": st.text() | st.none() | st.integers(-5, 5),
                "response": values,
                "error": st.sampled_from([None, -32601, -32602, -32603, -32000, -32001, -32002, 0, "x", True]),
                "is_stream": st.sampled_from([None, True, False, 1, "yes"]),
                "is_end": st.sampled_from([None, True, False, 0]),
            },
        ),
    },
)


@settings(max_examples=1000, deadline=None)
@given(packet=packet_like)
def test_decode_structured_packets_identical(twins: Twins, packet: dict[str, Any]) -> None:
    raw = msgpack.packb(packet, use_bin_type=True)
    decoded = [as_tuple(impl.decode_packet(raw, False)) for impl in twins]
    if packet.get("rpc") is None or not isinstance(packet["rpc"], dict) or packet["rpc"].get("call_id") is not None:
        assert all(d == decoded[0] for d in decoded)
    else:  # a request without call_id gets a fresh id from each decoder: compare the rest
        assert all(d[:2] == decoded[0][:2] and d[3:] == decoded[0][3:] for d in decoded)
    if _json_safe(packet):
        text = json.dumps(packet).encode()
        decoded_json = [as_tuple(impl.decode_packet(text, True)) for impl in twins]
        assert {d[0] for d in decoded_json} == {decoded_json[0][0]}


@settings(max_examples=200, deadline=None)
@given(
    call_id=st.text(),
    response=values,
    error=st.sampled_from([None, -32601, -32001]),
    flags=st.tuples(st.booleans(), st.booleans()),
)
def test_encode_response_keeps_call_id(
    codec: ModuleType, call_id: str, response: Any, error: int | None, flags: tuple[bool, bool]
) -> None:
    raw = codec.encode_response(call_id, response, error, *flags, False)
    assert msgpack.unpackb(raw, raw=False, strict_map_key=False)["rpc"]["call_id"] == call_id


@settings(max_examples=200, deadline=None)
@given(source=st.sampled_from([1, 2, 4]), data=json_values, channel=st.none() | st.text())
def test_encode_push_json_keeps_source(codec: ModuleType, source: int, data: Any, channel: str | None) -> None:
    assert json.loads(codec.encode_push(source, data, channel, True))["source"] == source


@settings(max_examples=200, deadline=None)
@given(
    method=st.text(),
    args=st.lists(values, max_size=4),
    kwargs=st.dictionaries(st.text(max_size=6), values, max_size=3),
    call_id=st.text(),
)
def test_request_decodes_to_itself(
    codec: ModuleType, method: str, args: list[Any], kwargs: dict[str, Any], call_id: str
) -> None:
    decoded = as_tuple(codec.decode_packet(codec.encode_request(method, args, kwargs, call_id, False), False))
    assert decoded[2][1] == method and decoded[2][4] == call_id


def test_invalid_input_becomes_unknown(codec: ModuleType) -> None:
    for raw, as_json in [
        (b"\xc1", False),
        (b"\x92\x01", False),
        (b"\x01\x02", False),
        (msgpack.packb({"source": 9}), False),
        (msgpack.packb({"data": 1}), False),
        (msgpack.packb({"source": 5, "rpc": {"type": "request", "method": 3}}), False),
        (msgpack.packb({"source": 5, "rpc": {"type": "request", "method": "m", "args": "x"}}), False),
        (b"\x91" * 1025 + b"\x01", False),
        (b"{not json", True),
        (b'{"source": 1} trailing', True),
        (b"\xff\xfe{}", True),
        (b"[" * 100000, True),
    ]:
        packet = codec.decode_packet(raw, as_json)
        assert int(packet.source) == 3 and packet.data == raw


def test_depth_limit_is_msgpack_s(codec: ModuleType) -> None:
    def nest(depth: int) -> Any:
        value: Any = 1
        for _ in range(depth):
            value = [value]
        return value

    codec.encode_push(1, nest(1023), None, False)
    with pytest.raises(ValueError):
        codec.encode_push(1, nest(1024), None, False)
    assert int(codec.decode_packet(msgpack.packb({"source": 1, "data": nest(1023)}), False).source) == 1


def test_packet_objects(codec: ModuleType) -> None:
    packet = codec.Packet(4, {"a": 1}, None, "ch")
    assert packet == codec.Packet(4, {"a": 1}, channel="ch")
    packet.data = 2
    assert packet.data == 2 and "data=2" in repr(packet)
    response = codec.RPCResponse("c1", 30)
    assert (response.data, response.rpc, int(response.source), response.ok) == (30, response, 5, True)
    request = codec.RPCRequest("add", [1, 2])
    assert request.kwargs == {} and isinstance(request.call_id, str) and request.call_id
    assert codec.Packet[codec.RPCResponse] is not None
    assert not math.isnan(codec.decode_packet(codec.encode_push(1, 1.5, None, False), False).data)


def struct_values() -> dict[str, Any]:
    """``msgspec.Struct`` values with each setting msgspec honours when it writes one."""
    msgspec = pytest.importorskip("msgspec")

    class Point(msgspec.Struct):
        x: int
        y: float

    class Tagged(msgspec.Struct, tag=True, omit_defaults=True):
        name: str
        tags: list[str] = []  # noqa: RUF012  (msgspec makes it a default_factory)
        seen: dict[str, int] = msgspec.field(default_factory=dict)
        note: str | None = None
        level: int = 0
        code: str = "abc"

    class Camel(msgspec.Struct, rename="camel", tag_field="kind", tag=7):
        first_name: str
        last_seen: Any = None

    class Pair(msgspec.Struct, array_like=True, tag="pair"):
        a: int
        b: Point

    class Maybe(msgspec.Struct):
        a: int
        b: int | msgspec.UnsetType = msgspec.UNSET

    return {
        "plain": Point(1, 2.5),
        "in a list": [Point(1, 1e-7), {"p": Point(2, 1e100)}],
        "tagged, at defaults": Tagged("t"),
        "tagged, equal to the defaults but not them": Tagged("t", ["x"][:0], {}, None, 0, "".join(["ab", "c"])),
        "tagged, set": Tagged("t", ["a"], {"k": 1}, "n", 3, "xyz"),
        "renamed, int tag": Camel("Ann", 1.5),
        "array_like": Pair(1, Point(3, 4.0)),
        "unset": Maybe(1),
        "unset, set": Maybe(1, 2),
    }


def test_msgspec_structs_are_written_as_msgspec_writes_them(codec: ModuleType) -> None:
    """0.5.x encoded data with msgspec: a Struct's bytes are msgspec's, in both dialects."""
    msgspec = pytest.importorskip("msgspec")
    for name, value in struct_values().items():
        assert codec.encode_value(value, False) == msgspec.msgpack.encode(value), name
        assert codec.encode_value(value, True) == msgspec.json.encode(value), name
        packet = codec.Packet(4, value)
        assert codec.encode_packet(packet, False) == msgspec.msgpack.encode({"source": 4, "data": value}), name
        assert codec.encode_packet(packet, True) == msgspec.json.encode({"source": 4, "data": value}), name


def test_msgspec_reads_and_writes_the_packet_classes(codec: ModuleType) -> None:
    """0.5.x's packet classes were Structs: msgspec.convert/encode/decode work on ours, as there."""
    msgspec = pytest.importorskip("msgspec")
    packet_cls, request_cls, response_cls = codec.Packet, codec.RPCRequest, codec.RPCResponse
    reply = {"source": 5, "rpc": {"type": "response", "call_id": "c", "response": [1], "error": -32001}}
    packet = msgspec.convert(reply, type=packet_cls)
    assert type(packet) is packet_cls and type(packet.rpc) is response_cls
    assert packet == packet_cls(5, rpc=response_cls("c", [1], -32001)) and int(packet.rpc.error) == -32001
    assert msgspec.json.encode(packet) == codec.encode_packet(packet, True)
    assert msgspec.msgpack.encode(packet) == codec.encode_packet(packet, False)
    request = packet_cls(5, rpc=request_cls("m", [1], {"k": 2}, "c2"), correlation_id="x", offset=3, epoch="e")
    for dialect, as_json in ((msgspec.json, True), (msgspec.msgpack, False)):
        assert dialect.encode(request) == codec.encode_packet(request, as_json)
        assert dialect.decode(codec.encode_packet(request, as_json), type=packet_cls) == request
    assert msgspec.convert({"source": 4}, type=packet_cls[request_cls]) == packet_cls(4)
    for bad in ({"source": 99}, {"data": 1}, {"source": 5, "rpc": {"type": "x"}}, {"source": 4, "channel": 1}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, type=packet_cls)
    for _ in range(3):  # objects msgspec builds (tp_alloc, then each field) live and die cleanly
        built = [msgspec.convert({"source": 4, "data": [i]}, type=packet_cls) for i in range(1000)]
        assert [p.data for p in built] == [[i] for i in range(1000)]
        del built
        gc.collect()
