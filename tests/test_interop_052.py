"""Interoperability with the real ``webshocket`` 0.5.2 and 0.5.0 releases from PyPI.

The releases share our import name, so each lives in its own virtualenv (see
``interop/venvs.py``; cached under ``tests/.venvs`` or ``$WEBSHOCKET_INTEROP_VENVS``) and
runs only in subprocesses (``interop/their_*.py``):

a) THEIR client -> OUR server: RPC, streaming, error codes, publish, broadcast, custom packets.
b) OUR client -> THEIR server: the same features the other way round.
c) Codec: our bytes are identical to 0.5.2's msgspec bytes, and each side decodes the other's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import HOST, Adder, running_server
from interop import samples, venvs

import webshocket
from webshocket import (
    ClientConnection,
    Packet,
    PacketSource,
    RPCError,
    RPCErrorCode,
    RPCRequest,
    RPCResponse,
    WebSocketClient,
    rpc_method,
)
from webshocket._codec import decode_packet, encode_packet, encode_push, encode_request, encode_response

INTEROP = Path(__file__).resolve().parent / "interop"
BIG = bytes(range(256)) * 1200  # 300 KiB: fragmented into 64 KiB frames both ways


def run_script(version: str, script: str, *args: str, stdin: str = "", timeout: float = 120) -> str:
    """Run ``interop/<script>`` with the venv python of ``version``; return its stdout."""
    done = subprocess.run(
        [str(venvs.venv_python(version)), str(INTEROP / script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=venvs.clean_env(),
        cwd=str(INTEROP),
        check=False,
    )
    assert done.returncode == 0, f"{script} ({version}) exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="session")
def venv_052() -> Path:
    return venvs.venv_python("0.5.2")


@pytest.fixture(scope="session")
def venv_050() -> Path:
    return venvs.venv_python("0.5.0")


def test_venvs_hold_the_pypi_releases(venv_052: Path, venv_050: Path) -> None:
    code = "import webshocket, msgspec, picows; print(webshocket.__version__, webshocket.__file__)"
    for version, python in (("0.5.2", venv_052), ("0.5.0", venv_050)):
        out = subprocess.run(
            [str(python), "-c", code],
            capture_output=True,
            text=True,
            env=venvs.clean_env(),
            cwd=str(INTEROP),
            check=True,
        ).stdout.split()
        assert out[0] == version
        assert str(python.parent.parent) in out[1]  # their package, not ours
    assert Path(webshocket.__file__).resolve().parent == Path(__file__).resolve().parents[1] / "webshocket"


# --------------------------------------------------------------------------- a) their client, our server


class OurHandler(Adder):
    """The handler ``interop/their_client.py`` talks to."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Packet[Any]] = []

    async def on_receive(self, connection: ClientConnection[Any], packet: Packet[Any]) -> None:
        self.received.append(packet)
        connection.send({"echo": packet.data, "source": int(packet.source)})

    @rpc_method()
    async def count(self, connection: ClientConnection[Any], n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @rpc_method()
    async def broken_stream(self, connection: ClientConnection[Any]) -> AsyncIterator[int]:
        yield 1
        raise ValueError("boom")

    @rpc_method()
    async def fail(self, connection: ClientConnection[Any]) -> None:
        raise RPCError("nope")

    @rpc_method()
    async def join(self, connection: ClientConnection[Any], channel: str) -> str:
        connection.subscribe(channel)
        return "joined"

    @rpc_method()
    async def shout(self, connection: ClientConnection[Any], channel: str, data: Any) -> str:
        self.publish(channel, data)
        return "published"

    @rpc_method()
    async def announce(self, connection: ClientConnection[Any], message: Any) -> str:
        self.broadcast(message)
        return "sent"

    @rpc_method()
    async def echo(self, connection: ClientConnection[Any], value: Any) -> Any:
        return value


@dataclass
class ClientRun:
    version: str
    summary: dict[str, Any]
    received: list[Packet[Any]]


def _their_client_run(version: str, **server_options: Any) -> ClientRun:
    venvs.venv_python(version)  # build outside the event loop

    async def main() -> ClientRun:
        async with running_server(OurHandler, **server_options) as server:
            proc = await asyncio.create_subprocess_exec(
                str(venvs.venv_python(version)),
                str(INTEROP / "their_client.py"),
                f"ws://{HOST}:{server.port}",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=venvs.clean_env(),
                cwd=str(INTEROP),
            )
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, f"their_client.py ({version}) failed:\n{err.decode()[-4000:]}"
            return ClientRun(version, json.loads(out), list(server.handler.received))

    return asyncio.run(main())


@pytest.fixture(scope="module")
def client_052() -> ClientRun:
    return _their_client_run("0.5.2")


@pytest.fixture(scope="module")
def client_050() -> ClientRun:
    return _their_client_run("0.5.0")


@pytest.fixture(scope="module")
def client_052_recovery() -> ClientRun:
    """0.5.2's client against a server with recovery on (channel pushes carry offset and epoch)."""
    return _their_client_run("0.5.2", recovery=True)


@pytest.fixture(params=["0.5.2", "0.5.0", "0.5.2-recovery"])
def their_client(request: pytest.FixtureRequest) -> ClientRun:
    return request.getfixturevalue(  # type: ignore[no-any-return]
        "client_" + request.param.replace(".", "").replace("-", "_")
    )


def _ok(entry: Any) -> dict[str, Any]:
    assert isinstance(entry, (dict, list)), entry
    assert not (isinstance(entry, dict) and "exception" in entry), entry
    return entry  # type: ignore[return-value]


def test_their_client_runs_their_release(their_client: ClientRun) -> None:
    assert their_client.summary["version"] == their_client.version
    assert "/webshocket-" + their_client.version + "/" in their_client.summary["module"]
    assert their_client.summary["connected_state"] == int(webshocket.ConnectionState.CONNECTED)
    assert their_client.summary["closed_state"] == int(webshocket.ConnectionState.CLOSED)


def test_their_client_rpc_add(their_client: ClientRun) -> None:
    add = _ok(their_client.summary["add"])
    assert (add["response"], add["error"]) == (30, None)
    kwargs = _ok(their_client.summary["add_kwargs"])
    assert (kwargs["response"], kwargs["error"]) == (3, None)
    if their_client.version == "0.5.0":  # 0.5.0 returns the Packet; .data is the result
        assert (add["returned"], add["data"]) == ("Packet", 30)
    else:  # 0.5.2 returns the RPCResponse (.response)
        assert add["returned"] == "RPCResponse"
        assert (add["is_stream"], add["is_end"]) == (False, False)


def test_their_client_rpc_error_codes(their_client: ClientRun) -> None:
    fail = _ok(their_client.summary["fail"])
    assert (fail["error"], fail["response"]) == (int(RPCErrorCode.APPLICATION_ERROR), "nope")
    missing = _ok(their_client.summary["missing"])
    assert missing["error"] == int(RPCErrorCode.METHOD_NOT_FOUND)
    assert "no_such_method" in missing["response"]
    bad = _ok(their_client.summary["bad_params"])
    assert bad["error"] == int(RPCErrorCode.INVALID_PARAMS)


def test_their_client_stream_rpc(client_052: ClientRun) -> None:
    chunks = _ok(client_052.summary["stream"])
    assert [c["response"] for c in chunks] == [0, 1, 2, 3]
    assert all(c["error"] is None and c["is_stream"] and not c["is_end"] for c in chunks)


def test_their_client_stream_error(client_052: ClientRun) -> None:
    chunks = _ok(client_052.summary["stream_error"])
    assert chunks[0]["response"] == 1
    last = chunks[-1]
    assert len(chunks) == 2
    assert last["error"] == int(RPCErrorCode.INTERNAL_SERVER_ERROR)
    assert "Stream aborted: boom" in last["response"]
    assert (last["is_stream"], last["is_end"]) == (True, True)


def test_their_client_receives_publish(their_client: ClientRun) -> None:
    publish = _ok(their_client.summary["publish"])
    assert publish["join"]["response"] == "joined"
    assert publish["shout"]["response"] == "published"
    assert publish["packet"] == {
        "source": int(PacketSource.CHANNEL),
        "data": {"msg": "héllo", "n": [1, 2.5]},
        "channel": "room-1",
    }


def test_their_client_receives_broadcast(their_client: ClientRun) -> None:
    broadcast = _ok(their_client.summary["broadcast"])
    assert broadcast["reply"]["response"] == "sent"
    assert broadcast["packet"] == {"source": int(PacketSource.BROADCAST), "data": "to everyone", "channel": None}


def test_their_client_custom_packet_reaches_on_receive(their_client: ClientRun) -> None:
    blob = {"b64": base64.b64encode(b"\x00\x01").decode()}
    assert len(their_client.received) == 1, their_client.received
    packet = their_client.received[0]
    assert packet.source == PacketSource.CUSTOM, f"{their_client.version} client's custom packet decoded as {packet!r}"
    assert packet.data == {"kind": "custom", "n": 7, "blob": b"\x00\x01"}
    echoed = _ok(their_client.summary["custom"])
    assert echoed == {
        "source": int(PacketSource.CUSTOM),
        "data": {"echo": {"kind": "custom", "n": 7, "blob": blob}, "source": int(PacketSource.CUSTOM)},
        "channel": None,
    }


def test_their_client_big_fragmented_echo(their_client: ClientRun) -> None:
    big = _ok(their_client.summary["big_echo"])
    assert big == {"sent": len(BIG), "received": len(BIG), "equal": True}


# --------------------------------------------------------------------------- b) our client, their server


def free_port() -> int:
    """A port that was free a moment ago (0.5.x servers do not report the port they bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _their_server(version: str) -> Iterator[str]:
    python = venvs.venv_python(version)
    port = free_port()
    proc = subprocess.Popen(
        [str(python), str(INTEROP / "their_server.py"), str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=venvs.clean_env(),
        cwd=str(INTEROP),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            proc.kill()
            _out, err = proc.communicate(timeout=10)
            raise AssertionError(f"their_server.py ({version}) did not start: {line!r}\n{err[-4000:]}")
        assert line.split() == ["READY", version]
        yield f"ws://{HOST}:{port}"
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server_052() -> Iterator[str]:
    yield from _their_server("0.5.2")


@pytest.fixture(scope="module")
def server_050() -> Iterator[str]:
    yield from _their_server("0.5.0")


@pytest.fixture(params=["0.5.2", "0.5.0"])
def their_server(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("server_" + request.param.replace(".", ""))  # type: ignore[no-any-return]


async def test_our_client_rpc_against_their_server(their_server: str) -> None:
    async with WebSocketClient(their_server) as client:
        result = await client.send_rpc("add", 10, 20)
        assert isinstance(result, RPCResponse)
        assert (result.data, result.response, result.error) == (30, 30, None)
        assert (await client.send_rpc("add", a=2, b=3)).data == 5
        echoed = await client.send_rpc("echo", {"nested": [1, 2.5, None, "ü", b"\x00"], "n": -(2**40)})
        assert echoed.data == {"nested": [1, 2.5, None, "ü", b"\x00"], "n": -(2**40)}


async def test_our_client_error_codes_against_their_server(their_server: str) -> None:
    async with WebSocketClient(their_server) as client:
        failed = await client.send_rpc("fail")
        assert (failed.error, failed.response) == (RPCErrorCode.APPLICATION_ERROR, "nope")
        missing = await client.send_rpc("no_such_method")
        assert missing.error == RPCErrorCode.METHOD_NOT_FOUND
        bad = await client.send_rpc("add", 1)
        assert bad.error == RPCErrorCode.INVALID_PARAMS
        assert (await client.send_rpc("add", 1, 1)).data == 2  # still usable


async def test_our_client_stream_against_their_server(server_052: str) -> None:
    async with WebSocketClient(server_052) as client:
        chunks = [chunk async for chunk in client.stream_rpc("count", 5)]
        assert [c.data for c in chunks] == [0, 1, 2, 3, 4]
        assert all(c.is_stream and not c.is_end and c.error is None for c in chunks)
        broken = [chunk async for chunk in client.stream_rpc("broken_stream")]
        assert broken[0].data == 1
        assert broken[-1].error == RPCErrorCode.INTERNAL_SERVER_ERROR
        assert "Stream aborted: boom" in broken[-1].response
        async for chunk in client.stream_rpc("count", 1000):  # leaving early sends __abort__
            assert chunk.data == 0
            break
        assert (await client.send_rpc("add", 2, 2)).data == 4


async def test_our_client_receives_publish_from_their_server(their_server: str) -> None:
    async with WebSocketClient(their_server) as client:
        assert (await client.send_rpc("join", "room-9")).data == "joined"
        packet = await client.recv(5)
        assert (packet.source, packet.channel, packet.data) == (PacketSource.CHANNEL, "room-9", {"joined": "room-9"})


async def test_our_client_receives_broadcast_from_their_server(their_server: str) -> None:
    async with WebSocketClient(their_server) as first, WebSocketClient(their_server) as second:
        assert (await first.send_rpc("announce", {"all": True})).data == "sent"
        for client in (first, second):
            packet = await client.recv(5)
            assert (packet.source, packet.channel, packet.data) == (PacketSource.BROADCAST, None, {"all": True})


async def test_our_client_custom_packet_to_their_server(their_server: str) -> None:
    async with WebSocketClient(their_server) as client:
        client.send({"hello": "their on_receive", "raw": b"\xff"})
        packet = await client.recv(5)
        assert packet.source == PacketSource.CUSTOM
        assert packet.data == {
            "echo": {"hello": "their on_receive", "raw": b"\xff"},
            "source": int(PacketSource.CUSTOM),
        }


async def test_our_client_big_fragmented_echo_with_their_server(their_server: str) -> None:
    async with WebSocketClient(their_server) as client:
        result = await client.send_rpc("echo", BIG)
        assert result.error is None
        assert result.data == BIG


# --------------------------------------------------------------------------- c) codec byte-compatibility

CASES = samples.all_cases()
CASE_IDS = [case["name"] for case in CASES]
PLAIN = {case["name"] for case in samples.cases()}
DIALECTS = [("msgpack", False), ("json", True)]


def _our_rpc(fields: dict[str, Any]) -> RPCRequest | RPCResponse:
    if fields["type"] == "request":
        return RPCRequest(fields["method"], fields["args"], fields["kwargs"], fields["call_id"])
    error = None if fields["error"] is None else RPCErrorCode(fields["error"])
    return RPCResponse(fields["call_id"], fields["response"], error, fields["is_stream"], fields["is_end"])


def as_packet(case: dict[str, Any]) -> Packet[Any]:
    """The case as one of our Packet objects."""
    kind = case["kind"]
    if kind == "push":
        return Packet(PacketSource(case["source"]), case["data"], None, case["channel"])
    if kind in ("request", "response"):
        return Packet(PacketSource.RPC, rpc=_our_rpc({"type": kind, **case}))
    rpc = None if case["rpc"] is None else _our_rpc(case["rpc"])
    return Packet(
        PacketSource(case["source"]), case["data"], rpc, case["channel"], case["timestamp"], case["correlation_id"]
    )


def encode_direct(case: dict[str, Any], as_json: bool) -> bytes:
    """The case through the encoder the server uses for it (encode_push/request/response)."""
    kind = case["kind"]
    if kind == "push":
        return encode_push(case["source"], case["data"], case["channel"], as_json)
    if kind == "request":
        return encode_request(case["method"], case["args"], case["kwargs"], case["call_id"], as_json)
    if kind == "response":
        error = case["error"]
        return encode_response(case["call_id"], case["response"], error, case["is_stream"], case["is_end"], as_json)
    return encode_packet(as_packet(case), as_json)


def _try(fn: Any, *args: Any) -> bytes | str:
    try:
        return fn(*args)  # type: ignore[no-any-return]
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@dataclass
class CodecRun:
    version: str
    ours: dict[str, dict[str, bytes | str]]  # case -> {"msgpack", "json", "msgpack_packet", "json_packet"}
    theirs: dict[str, dict[str, Any]]


def _codec_run(version: str) -> CodecRun:
    ours: dict[str, dict[str, bytes | str]] = {}
    for case in CASES:
        entry: dict[str, bytes | str] = {}
        for dialect, as_json in DIALECTS:
            entry[dialect] = _try(encode_direct, case, as_json)
            entry[dialect + "_packet"] = _try(lambda c, j: encode_packet(as_packet(c), j), case, as_json)
        ours[case["name"]] = entry
    request = {
        name: {d: (v.hex() if isinstance(v, bytes) else None) for d, v in entry.items() if d in ("msgpack", "json")}
        for name, entry in ours.items()
    }
    out = json.loads(run_script(version, "their_codec.py", stdin=json.dumps({"ours": request})))
    assert out["version"] == version
    return CodecRun(version, ours, out["results"])


@pytest.fixture(scope="module")
def codec_052() -> CodecRun:
    return _codec_run("0.5.2")


@pytest.fixture(scope="module")
def codec_050() -> CodecRun:
    return _codec_run("0.5.0")


@pytest.fixture(params=["0.5.2", "0.5.0"])
def codec(request: pytest.FixtureRequest) -> CodecRun:
    return request.getfixturevalue("codec_" + request.param.replace(".", ""))  # type: ignore[no-any-return]


def _theirs(run: CodecRun, name: str, dialect: str) -> bytes:
    entry = run.theirs[name]
    assert entry["encode_error"] is None, entry["encode_error"]
    return bytes.fromhex(entry[dialect])


@pytest.mark.parametrize(("dialect", "as_json"), DIALECTS, ids=[d for d, _ in DIALECTS])
@pytest.mark.parametrize("name", CASE_IDS)
def test_bytes_identical_to_052(codec_052: CodecRun, name: str, dialect: str, as_json: bool) -> None:
    theirs = _theirs(codec_052, name, dialect)
    ours = codec_052.ours[name]
    assert ours[dialect] == theirs, f"{name} ({dialect}) direct encoder: ours {ours[dialect]!r} != 0.5.2 {theirs!r}"
    packet_path = ours[dialect + "_packet"]
    assert packet_path == theirs, f"{name} ({dialect}) encode_packet: ours {packet_path!r} != 0.5.2 {theirs!r}"


@pytest.mark.parametrize("dialect", ["msgpack", "json"])
@pytest.mark.parametrize("name", CASE_IDS)
def test_their_decoder_reads_our_bytes(codec: CodecRun, name: str, dialect: str) -> None:
    verdict = codec.theirs[name]["decode_ours_" + dialect]
    assert verdict == "equal", f"{name} ({dialect}): their decoder on our bytes: {verdict}"


@pytest.mark.parametrize(("dialect", "as_json"), DIALECTS, ids=[d for d, _ in DIALECTS])
@pytest.mark.parametrize("name", CASE_IDS)
def test_our_decoder_reads_their_bytes(codec: CodecRun, name: str, dialect: str, as_json: bool) -> None:
    """Our decoder and theirs, both reading THEIR bytes, produce the same values (types included)."""
    theirs = _theirs(codec, name, dialect)
    decoded = decode_packet(theirs, as_json)
    assert decoded.source != PacketSource.UNKNOWN or name == "packet_unknown_bytes", (
        f"{name} ({dialect}): our decoder rejected their bytes {theirs[:300]!r}"
    )
    mine = samples.tagged_packet(decoded)
    reference = codec.theirs[name]["their_decode_" + dialect]
    if mine["rpc"] is not None and mine["rpc"]["type"] == "response" and "is_stream" not in reference["rpc"]:
        # 0.5.0's RPCResponse has no is_stream/is_end: ours reads their absence as False
        assert (mine["rpc"].pop("is_stream"), mine["rpc"].pop("is_end")) == (False, False)
    assert mine == reference
    if name in PLAIN and not as_json and codec.version == "0.5.2":
        assert decoded == as_packet(next(c for c in CASES if c["name"] == name))


def test_050_writes_null_keys_that_we_accept(codec_050: CodecRun) -> None:
    """0.5.0 writes every Packet key (nulls included): a custom packet from its client still decodes."""
    theirs = _theirs(codec_050, "custom_str", "msgpack")
    assert b"\xa3rpc\xc0" in theirs and b"\xa7channel\xc0" in theirs  # explicit nils, as 0.5.0 sends them
    assert decode_packet(theirs, False) == Packet(PacketSource.CUSTOM, "hello")


@pytest.mark.parametrize("key", ["rpc", "channel", "timestamp", "correlation_id", "data"])
@pytest.mark.parametrize(("dialect", "as_json"), DIALECTS, ids=[d for d, _ in DIALECTS])
def test_null_valued_keys_are_accepted(key: str, dialect: str, as_json: bool) -> None:
    """docs/protocol.md: readers accept keys present with null."""
    obj = {"source": 4, "data": {"x": 1}, key: None}
    raw = json.dumps(obj).encode() if as_json else _msgpack_map(obj)
    expected = Packet(PacketSource.CUSTOM, None if key == "data" else {"x": 1})
    assert decode_packet(raw, as_json) == expected


def _msgpack_map(obj: dict[str, Any]) -> bytes:
    """Tiny msgpack writer for str keys and None/int/small-map values (independent of the codec under test)."""

    def enc(value: Any) -> bytes:
        if value is None:
            return b"\xc0"
        if isinstance(value, int) and 0 <= value < 128:
            return bytes([value])
        if isinstance(value, str):
            data = value.encode()
            assert len(data) < 32
            return bytes([0xA0 | len(data)]) + data
        if isinstance(value, dict):
            assert len(value) < 16
            return bytes([0x80 | len(value)]) + b"".join(enc(k) + enc(v) for k, v in value.items())
        raise TypeError(value)

    return enc(obj)
