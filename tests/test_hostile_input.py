"""Hostile and broken input over real sockets.

Bad packets never close the connection by themselves (docs/protocol.md): a malformed RPC request
whose ``call_id`` can be read gets an INVALID_PARAMS reply, anything else reaches
``on_receive`` as an UNKNOWN packet carrying the raw bytes. Only WebSocket-level violations
(invalid UTF-8 in a text frame) close the offending connection, and never another one.
Nothing may reach the event loop's exception handler or be logged at ERROR.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest
from helpers import HOST, connected_client, running_server, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rawws import (
    BINARY,
    CONTINUATION,
    FRAMEWORK,
    TEXT,
    RawWebSocket,
    SyncWebSocket,
    decode,
    encode,
    raw_websocket,
    request_map,
)

from webshocket import (
    ClientConnection,
    Packet,
    PacketSource,
    WebSocketClient,
    WebSocketHandler,
    WebSocketServer,
    rpc_method,
)

Conn = ClientConnection[Any]
INVALID_PARAMS = -32602


class HostileHandler(WebSocketHandler[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[Conn, Packet[Any]]] = []
        self.calls = 0

    async def on_receive(self, connection: Conn, packet: Packet[Any]) -> None:
        self.received.append((connection, packet))

    @rpc_method()
    async def echo(self, connection: Conn, value: Any) -> Any:
        self.calls += 1
        return value

    @rpc_method()
    async def noop(self, connection: Conn, *args: Any, **kwargs: Any) -> None:
        self.calls += 1

    @rpc_method()
    async def ping(self, connection: Conn) -> str:
        return "pong"


# ---------------------------------------------------------------------------- error watch


@dataclass
class Errors:
    loop: list[dict[str, Any]] = field(default_factory=list)
    logs: list[logging.LogRecord] = field(default_factory=list)

    def describe(self) -> str:
        return repr([c.get("message") for c in self.loop] + [r.getMessage() for r in self.logs])

    def __bool__(self) -> bool:
        return bool(self.loop or self.logs)


class _Collect(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


def watch(loop: asyncio.AbstractEventLoop, errors: Errors) -> tuple[Any, logging.Handler]:
    """Collect loop exceptions and ERROR records of the ``webshocket`` loggers into ``errors``."""
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.loop.append(context))
    handler = _Collect(errors.logs)
    logging.getLogger("webshocket").addHandler(handler)
    return previous, handler


@asynccontextmanager
async def watching() -> AsyncIterator[Errors]:
    loop = asyncio.get_running_loop()
    errors = Errors()
    previous, handler = watch(loop, errors)
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)
        logging.getLogger("webshocket").removeHandler(handler)


# ---------------------------------------------------------------------------- helpers


def dialect(as_json: bool) -> str | None:
    return None if as_json else FRAMEWORK


def opcode_for(payload: bytes, as_text: bool) -> int:
    """TEXT when asked for and the payload is valid UTF-8 (as a browser sends JSON), else BINARY."""
    if as_text:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            return BINARY
        return TEXT
    return BINARY


def unknowns_of(handler: HostileHandler, conn: Conn) -> list[bytes]:
    out = []
    for who, packet in handler.received:
        if who is conn:
            assert packet.source is PacketSource.UNKNOWN and int(packet.source) == 3, packet
            assert isinstance(packet.data, bytes)
            out.append(packet.data)
    return out


@dataclass
class Setup:
    server: WebSocketServer[Any]
    handler: HostileHandler
    ws: RawWebSocket  # the hostile client
    conn: Conn  # its server-side connection
    bystander: WebSocketClient

    def unknowns(self) -> list[bytes]:
        return unknowns_of(self.handler, self.conn)

    async def bystander_ok(self) -> None:
        assert (await self.bystander.send_rpc("ping", wait_timeout=2)).data == "pong"


@asynccontextmanager
async def hostile_setup(as_json: bool) -> AsyncIterator[Setup]:
    async with running_server(HostileHandler) as server, connected_client(server) as bystander:
        handler = server.handler
        assert isinstance(handler, HostileHandler)
        await wait_until(lambda: len(server.clients) == 1)
        known = set(server.clients)
        async with raw_websocket(server.port, dialect(as_json)) as ws:
            await wait_until(lambda: len(server.clients) == 2)
            (conn,) = server.clients - known
            yield Setup(server, handler, ws, conn, bystander)


MSGPACK_GARBAGE: list[bytes] = [
    b"",
    b"\xc1",  # the one byte msgpack never uses
    b"\x82\xa6source",  # truncated map
    b"\x92\x01",  # truncated array
    b"\x81\xa6source\x04\xc1",
    msgpack.packb([1, 2]),
    msgpack.packb("just a string"),
    msgpack.packb(42),
    msgpack.packb(None),
    msgpack.packb({"data": 1}),  # no source
    *(msgpack.packb({"source": s, "data": 1}) for s in (0, 6, 99, -1, "5", 2**40, 5.0, True, None, [5], {"x": 5})),
    msgpack.packb({"source": 4}) + b"\x00",  # trailing bytes
    b"\x81\x91\x01\x02",  # unhashable (array) key
    b"\x82\xa6source\x04\xa4data\xa2\xff\xfe",  # invalid UTF-8 in a str
    b'{"source": 4, "data": 1}',  # JSON to a msgpack connection
    msgpack.packb({"source": 5, "rpc": "call me"}),
    msgpack.packb({"source": 5, "rpc": [1, 2]}),
    msgpack.packb({"source": 5, "rpc": {"type": "bogus", "call_id": "x"}}),
    msgpack.packb({"source": 5, "rpc": {"type": "response", "call_id": "x", "error": 12345}}),
    msgpack.packb({"source": 5, "rpc": {"type": "response", "call_id": 7}}),
    msgpack.packb({"source": 4, "timestamp": "yesterday"}),
    msgpack.packb({"source": 4, "channel": 5}),
    msgpack.packb({"source": 4, "correlation_id": [1]}),
    b"\x82\xa6source\x04\xa4data\xd4\xff\x00",  # timestamp ext of the wrong length
]

JSON_GARBAGE: list[bytes] = [
    b"",
    b"{",
    b"not json",
    b'{"source": 4,}',
    b"[1, 2]",
    b'"str"',
    b"42",
    b"null",
    b'{"data": 1}',
    *(
        f'{{"source": {s}, "data": 1}}'.encode()
        for s in ("0", "6", "99", "-1", '"5"', "5.0", "true", "null", "[5]", "1e400")
    ),
    b'{"source": 4} trailing',
    b'{"source": 4, "data": "\xff"}',  # invalid UTF-8 in a binary frame
    msgpack.packb({"source": 4, "data": 1}),  # msgpack to a JSON connection
    b'{"source": 5, "rpc": "call me"}',
    b'{"source": 5, "rpc": {"type": "bogus", "call_id": "x"}}',
    b'{"source": 5, "rpc": {"type": "response", "call_id": "x", "error": 12345}}',
    b'{"source": 4, "timestamp": "yesterday"}',
]


# ---------------------------------------------------------------------------- garbage


@pytest.mark.parametrize("as_json", [False, True], ids=["msgpack", "json"])
async def test_garbage_becomes_unknown_packets_and_the_connection_keeps_working(as_json: bool) -> None:
    garbage = JSON_GARBAGE if as_json else MSGPACK_GARBAGE
    async with watching() as errors, hostile_setup(as_json) as t:
        for i, message in enumerate(garbage):
            t.ws.send_frame(opcode_for(message, as_json), message)
            if i % 5 == 0:
                await t.ws.assert_alive(f"alive-{i}", as_json, next_packet=True)
        await t.ws.assert_alive("alive-end", as_json, next_packet=True)
        await wait_until(lambda: len(t.unknowns()) == len(garbage), timeout=2.0)
        assert t.unknowns() == garbage  # in order, raw bytes, one each
        assert t.handler.calls == 1 + (len(garbage) - 1) // 5 + 1  # only the liveness probes ran
        await t.bystander_ok()
        assert len(t.server.clients) == 2
    assert not errors, errors.describe()


@pytest.mark.parametrize("as_json", [False, True], ids=["msgpack", "json"])
@pytest.mark.parametrize(
    "rpc",
    [
        {"type": "request", "method": 5, "call_id": "abc"},
        {"type": "request", "method": None, "args": [], "kwargs": {}, "call_id": "abc"},
        {"type": "request", "call_id": "abc"},
        {"type": "request", "method": ["echo"], "call_id": "abc"},
        {"type": "request", "method": "echo", "args": "not a list", "call_id": "abc"},
        {"type": "request", "method": "echo", "args": {"value": 1}, "call_id": "abc"},
        {"type": "request", "method": "echo", "args": 5, "call_id": "abc"},
        {"type": "request", "method": "echo", "args": [1], "kwargs": [1, 2], "call_id": "abc"},
        {"type": "request", "method": "echo", "args": [1], "kwargs": "value=1", "call_id": "abc"},
    ],
    ids=[
        "method-int",
        "method-null",
        "method-missing",
        "method-list",
        "args-str",
        "args-map",
        "args-int",
        "kwargs-list",
        "kwargs-str",
    ],
)
async def test_rpc_with_wrong_field_types_gets_invalid_params_reply(rpc: dict[str, Any], as_json: bool) -> None:
    async with watching() as errors, hostile_setup(as_json) as t:
        message = encode({"source": 5, "rpc": rpc}, as_json)
        t.ws.send_frame(opcode_for(message, as_json), message)
        reply = await t.ws.read_packet(as_json, timeout=2)
        assert reply["source"] == 5
        answer = reply["rpc"]
        assert answer["type"] == "response"
        assert answer["call_id"] == "abc"
        assert answer["error"] == INVALID_PARAMS
        assert answer["is_stream"] is False
        assert isinstance(answer["response"], str) and answer["response"]
        await t.ws.assert_alive("after", as_json, next_packet=True)  # exactly one reply, and the connection works
        assert t.handler.calls == 1
        await t.bystander_ok()
    assert not errors, errors.describe()


async def test_kwargs_with_non_string_keys_gets_invalid_params_reply() -> None:
    async with watching() as errors, hostile_setup(False) as t:
        for key in (1, b"bytes", None, 2.5):
            rpc = {"type": "request", "method": "noop", "args": [], "kwargs": {key: 1}, "call_id": "abc"}
            t.ws.send_frame(BINARY, msgpack.packb({"source": 5, "rpc": rpc}, use_bin_type=True))
            answer = (await t.ws.read_packet(timeout=2))["rpc"]
            assert (answer["call_id"], answer["error"]) == ("abc", INVALID_PARAMS), key
        await t.ws.assert_alive("after", False, next_packet=True)
        assert t.handler.calls == 1
    assert not errors, errors.describe()


@pytest.mark.parametrize("as_json", [False, True], ids=["msgpack", "json"])
@pytest.mark.parametrize("call_id", [5, ["abc"], {"id": "abc"}, True, 1.5], ids=["int", "list", "map", "bool", "float"])
async def test_rpc_with_unreadable_call_id_is_not_answered_and_harmless(call_id: Any, as_json: bool) -> None:
    async with watching() as errors, hostile_setup(as_json) as t:
        message = encode(request_map("echo", "x", call_id=call_id), as_json)
        t.ws.send_frame(opcode_for(message, as_json), message)
        await t.ws.assert_alive("after", as_json, next_packet=True)  # the next packet is this reply: garbage got none
        assert t.handler.calls == 1
        assert set(t.unknowns()) <= {message}  # delivered as UNKNOWN, or dropped
        await t.bystander_ok()
    assert not errors, errors.describe()


# ---------------------------------------------------------------------------- WebSocket-level violations


@pytest.mark.parametrize("as_json", [False, True], ids=["msgpack", "json"])
@pytest.mark.parametrize("fragmented", [False, True], ids=["one-frame", "fragmented"])
async def test_invalid_utf8_in_a_text_frame_closes_1007_that_connection_only(as_json: bool, fragmented: bool) -> None:
    async with watching() as errors, hostile_setup(as_json) as t:
        async with raw_websocket(t.server.port, dialect(as_json)) as other:
            bad = b'{"source": 4, "data": "\xc3\x28"}'
            if fragmented:
                t.ws.send_frame(TEXT, bad[:5], fin=False)
                t.ws.send_frame(CONTINUATION, bad[5:])
            else:
                t.ws.send_frame(TEXT, bad)
            assert (await t.ws.read_close(timeout=2)).close_code == 1007
            await t.ws.wait_eof(timeout=2)
            await wait_until(lambda: t.conn not in t.server.clients, timeout=2.0)
            assert t.unknowns() == []
            await other.assert_alive("other", as_json, next_packet=True)
            await t.bystander_ok()
            assert len(t.server.clients) == 2
    assert not errors, errors.describe()


# ---------------------------------------------------------------------------- nesting and declared lengths


def deep_msgpack(levels: int, maps: bool = False) -> bytes:
    return (b"\x81\xa1k" if maps else b"\x91") * levels + b"\xc0"


def in_packet(value: bytes) -> bytes:
    """A msgpack CUSTOM packet whose ``data`` is the already-encoded ``value``."""
    return b"\x82\xa6source\x04\xa4data" + value


DEEP_MSGPACK = {
    "array-1025": in_packet(deep_msgpack(1025)),
    "array-100k": in_packet(deep_msgpack(100_000)),
    "map-1100": in_packet(deep_msgpack(1100, maps=True)),
    "bare-array-100k": deep_msgpack(100_000),
    "rpc-args-5000": b"\x82\xa6source\x05\xa3rpc\x85\xa4type\xa7request\xa6method\xa4echo\xa4args"
    + deep_msgpack(5000)
    + b"\xa6kwargs\x80\xa7call_id\xa1x",
}
DEEP_JSON = {
    "array-100k": b"[" * 100_000 + b"]" * 100_000,
    "packet-array-100k": b'{"source": 4, "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "packet-object-50k": b'{"source": 4, "data": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}",
    "rpc-args-100k": b'{"source": 5, "rpc": {"type": "request", "method": "echo", "args": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b', "call_id": "x"}}',
}


@pytest.mark.parametrize(
    ("as_json", "name"), [(False, n) for n in DEEP_MSGPACK] + [(True, n) for n in DEEP_JSON], ids=lambda v: str(v)
)
async def test_deeply_nested_input_is_refused_without_harm(as_json: bool, name: str) -> None:
    message = (DEEP_JSON if as_json else DEEP_MSGPACK)[name]
    async with watching() as errors, hostile_setup(as_json) as t:
        t.ws.send_frame(opcode_for(message, as_json), message)
        await t.ws.assert_alive("after", as_json, next_packet=True)
        await wait_until(lambda: len(t.unknowns()) == 1, timeout=2.0)
        assert t.unknowns() == [message]
        assert t.handler.calls == 1
        await t.bystander_ok()
    assert not errors, errors.describe()


@pytest.mark.parametrize("as_json", [False, True], ids=["msgpack", "json"])
async def test_moderately_nested_data_is_still_a_valid_packet(as_json: bool) -> None:
    value: Any = "core"
    for _ in range(500):
        value = [value]
    async with watching() as errors, hostile_setup(as_json) as t:
        message = encode({"source": 4, "data": value}, as_json)
        t.ws.send_frame(opcode_for(message, as_json), message)
        await wait_until(lambda: len(t.handler.received) == 1, timeout=2.0)
        packet = t.handler.received[0][1]
        assert (packet.source, packet.data) == (PacketSource.CUSTOM, value)
    assert not errors, errors.describe()


HUGE = b"\xff\xff\xff\xff"
HUGE_LENGTHS = {
    "str32": b"\xdb" + HUGE + b"abc",
    "bin32": b"\xc6" + HUGE + b"abc",
    "array32": b"\xdd" + HUGE + b"\x01\x02",
    "map32": b"\xdf" + HUGE + b"\x01\x02",
    "ext32": b"\xc9" + HUGE + b"\x05abc",
    "packet-map32": b"\xdf" + HUGE + b"\xa6source\x04",
    "data-str32": in_packet(b"\xdb" + HUGE + b"abc"),
    "data-array32": in_packet(b"\xdd" + HUGE + b"\xc0\xc0"),
    "data-map32": in_packet(b"\xdf" + HUGE + b"\xc0\xc0"),
    "data-array16": in_packet(b"\xdc\xff\xff\x01"),
    "args-array32": b"\x82\xa6source\x05\xa3rpc\x85\xa4type\xa7request\xa6method\xa4echo\xa4args\xdd" + HUGE + b"\x01",
    "rpc-map32": b"\x82\xa6source\x05\xa3rpc\xdf" + HUGE + b"\xa4type\xa7request",
    "key-str32": b"\x81\xdb" + HUGE + b"source",
}


@pytest.mark.parametrize("name", list(HUGE_LENGTHS))
async def test_huge_declared_lengths_are_refused_without_allocating(name: str) -> None:
    message = HUGE_LENGTHS[name]
    async with watching() as errors, hostile_setup(False) as t:
        t.ws.send_frame(BINARY, message)
        await t.ws.assert_alive("after", False, next_packet=True)
        await wait_until(lambda: len(t.unknowns()) == 1, timeout=2.0)
        assert t.unknowns() == [message]
        await t.bystander_ok()
    assert not errors, errors.describe()


async def test_hostile_barrage_on_two_dialects_leaves_a_bystander_untouched() -> None:
    async with watching() as errors, running_server(HostileHandler) as server, connected_client(server) as bystander:
        mp = await RawWebSocket.connect(server.port, FRAMEWORK)
        js = await RawWebSocket.connect(server.port)
        try:
            await wait_until(lambda: len(server.clients) == 3)
            streams = [
                (mp, False, [*MSGPACK_GARBAGE, *DEEP_MSGPACK.values(), *HUGE_LENGTHS.values()]),
                (js, True, [*JSON_GARBAGE, *DEEP_JSON.values()]),
            ]
            for round_ in range(3):
                for ws, as_json, messages in streams:
                    for message in messages:
                        ws.send_frame(opcode_for(message, as_json), message)
                results = await asyncio.gather(*(bystander.send_rpc("ping", wait_timeout=2) for _ in range(20)))
                assert [r.data for r in results] == ["pong"] * 20
                for ws, as_json, _ in streams:
                    await ws.assert_alive(f"round-{round_}", as_json, next_packet=True)
            assert len(server.clients) == 3
            total = sum(len(m) for _, _, m in streams) * 3
            await wait_until(lambda: len(server.handler.received) == total, timeout=3.0)
        finally:
            await mp.close()
            await js.close()
    assert not errors, errors.describe()


# ---------------------------------------------------------------------------- property-based


class LiveServer:
    """A server running in its own thread and event loop, watched for errors."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.errors = Errors()
        self._previous, self._log_handler = watch(self.loop, self.errors)
        self.thread = threading.Thread(target=self.loop.run_forever, name="live-server", daemon=True)
        self.thread.start()
        self.server: Any = self.call(self._start())
        self.connections: dict[bool, SyncWebSocket] = {}
        self.sequence = 0

    async def _start(self) -> Any:
        from webshocket import WebSocketServer

        return await WebSocketServer(HOST, 0, clientHandler=HostileHandler).start()

    def call(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def connection(self, as_json: bool) -> SyncWebSocket:
        ws = self.connections.get(as_json)
        if ws is None or ws.closed is not None:
            ws = self.connections[as_json] = SyncWebSocket(self.server.port, dialect(as_json))
        return ws

    def sync(self, as_json: bool) -> None:
        """A normal RPC still gets its answer; every packet before it is a well-formed packet."""
        ws = self.connection(as_json)
        self.sequence += 1
        call_id = f"sync-{self.sequence}"
        ws.send(TEXT if as_json else BINARY, encode(request_map("ping", call_id=call_id), as_json))
        while True:
            packet = decode(ws.recv_message(), as_json)
            assert isinstance(packet, dict) and packet["source"] == 5, packet
            rpc = packet["rpc"]
            assert rpc["type"] == "response" and isinstance(rpc["call_id"], str)
            assert rpc["error"] is None or rpc["error"] in (-32601, -32602, -32603, -32001), rpc
            if rpc["call_id"] == call_id:
                assert (rpc["response"], rpc["error"]) == ("pong", None)
                return

    def stop(self) -> None:
        for ws in self.connections.values():
            ws.close()
        self.call(self.server.close(timeout=2))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        logging.getLogger("webshocket").removeHandler(self._log_handler)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    server = LiveServer()
    try:
        yield server
    finally:
        server.stop()


KEYS = ["source", "data", "rpc", "channel", "timestamp", "correlation_id"]
RPC_KEYS = ["type", "method", "args", "kwargs", "call_id", "response", "error", "is_stream", "is_end"]


def values(as_json: bool) -> st.SearchStrategy[Any]:
    scalars: st.SearchStrategy[Any] = (
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats(allow_nan=not as_json, allow_infinity=not as_json)
        | st.text(max_size=12)
        | st.sampled_from(KEYS + RPC_KEYS + ["request", "response", "echo", "noop", "ping", "__abort__"])
    )
    if not as_json:
        scalars = scalars | st.binary(max_size=12)
    keys = st.text(max_size=8) | st.sampled_from(KEYS + RPC_KEYS)
    if not as_json:
        keys = keys | st.integers(-5, 5) | st.none() | st.booleans()
    return st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=10
    )


def packets(as_json: bool) -> st.SearchStrategy[Any]:
    """Maps shaped like packets, with fields of the right and of the wrong types."""
    value = values(as_json)
    rpc = st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["request", "response", "other"]) | value,
            "method": st.sampled_from(["echo", "noop", "ping", "missing", "__abort__"]) | value,
            "args": st.lists(value, max_size=3) | value,
            "kwargs": st.dictionaries(st.sampled_from(["value", "x", "y"]), value, max_size=2) | value,
            "call_id": st.text(max_size=6) | value,
            "response": value,
            "error": st.sampled_from([-32601, -32602, -32603, -32000, -32001, -32002]) | value,
            "is_stream": st.booleans() | value,
            "is_end": st.booleans() | value,
        },
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "source": st.integers(-1, 7) | value,
            "data": value,
            "rpc": rpc | value,
            "channel": st.text(max_size=6) | value,
            "timestamp": st.floats(allow_nan=False, allow_infinity=False) | value,
            "correlation_id": st.text(max_size=6) | value,
        },
    )


Mutation = tuple[str, int, int, bytes]
mutations = st.tuples(
    st.sampled_from(["flip", "truncate", "insert", "delete", "replace"]),
    st.integers(0, 1 << 20),
    st.integers(0, 255),
    st.binary(min_size=1, max_size=8),
)


def mutate(data: bytes, ops: list[Mutation]) -> bytes:
    buf = bytearray(data)
    for kind, where, number, blob in ops:
        pos = where % (len(buf) + 1)
        if kind == "flip" and buf:
            buf[pos % len(buf)] ^= 1 << (number % 8)
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = blob
        elif kind == "delete":
            del buf[pos : pos + 1 + number % 8]
        elif kind == "replace" and buf:
            buf[pos % len(buf)] = number
    return bytes(buf)


def messages(as_json: bool) -> st.SearchStrategy[bytes]:
    valid_requests = st.builds(
        lambda method, args, call_id: encode(request_map(method, *args, call_id=call_id), as_json),
        st.sampled_from(["echo", "noop", "ping", "missing"]),
        st.lists(values(as_json), max_size=2),
        st.text(max_size=6),
    )
    return st.one_of(
        st.binary(max_size=64),
        st.builds(mutate, valid_requests, st.lists(mutations, min_size=1, max_size=4)),
        st.builds(mutate, packets(as_json).map(lambda p: encode(p, as_json)), st.lists(mutations, max_size=2)),
        values(as_json).map(lambda v: encode(v, as_json)),
        packets(as_json).map(lambda p: encode(p, as_json)),
    )


def batches(as_json: bool) -> st.SearchStrategy[list[tuple[bytes, bool]]]:
    return st.lists(st.tuples(messages(as_json), st.booleans()), min_size=1, max_size=8)


def _fuzz(live: LiveServer, as_json: bool, batch: list[tuple[bytes, bool]]) -> None:
    ws = live.connection(as_json)
    for payload, as_text in batch:
        ws.send(opcode_for(payload, as_text), payload)
    live.sync(as_json)
    assert not live.errors, live.errors.describe()


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(batch=batches(False))
def test_fuzzed_msgpack_packets_never_break_the_server(live: LiveServer, batch: list[tuple[bytes, bool]]) -> None:
    _fuzz(live, False, batch)


@FUZZ
@given(batch=batches(True))
def test_fuzzed_json_packets_never_break_the_server(live: LiveServer, batch: list[tuple[bytes, bool]]) -> None:
    _fuzz(live, True, batch)


def test_fuzzed_server_is_healthy_afterwards(live: LiveServer) -> None:
    async def check() -> None:
        async with WebSocketClient(f"ws://{HOST}:{live.server.port}") as client:
            assert (await client.send_rpc("ping", wait_timeout=2)).data == "pong"

    live.call(check())
    for as_json in (False, True):
        live.sync(as_json)
        assert live.connections[as_json].closed is None
    assert live.server.handler.received, "the fuzzers delivered nothing to on_receive"
    assert not live.errors, live.errors.describe()
