"""The handshake over real sockets: the upgrade request, the ``on_handshake`` hook, ``allowed_origins``
and the token authentication of ``examples/auth.py`` (issue 14, items 1-4)."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import HOST, Adder, raw_connect, running_server, uri_of, wait_until
from rawws import new_key, parse_response_head
from websockets.exceptions import ConnectionClosed, InvalidStatus

import webshocket
from webshocket import ClientConnection, Reject, Request, WebSocketClient, WebSocketServer, rpc_method
from webshocket._listener import ServerListener
from webshocket.cli import apply_environment, build_parser
from webshocket.request import OriginPolicy, normalize_origin

Conn = ClientConnection[Any]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def handshake(
    port: int, path: str = "/", headers: Iterable[tuple[str, str]] = ()
) -> tuple[int, dict[str, str], bytes]:
    """Send an upgrade request with exactly these extra header lines; the answer's status, headers and body."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {HOST}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {new_key()}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode("latin-1")
        status, answer = parse_response_head(head)
        body = b""
        if status != 101 and int(answer.get("content-length", "0") or 0):
            body = await asyncio.wait_for(reader.readexactly(int(answer["content-length"])), 5)
        return status, answer, body
    finally:
        writer.close()


class Recorder(Adder):
    """Records what on_connect sees of each connection's request."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []
        self.requests: list[Request] = []

    async def on_connect(self, connection: Conn) -> None:
        request = connection.request
        self.requests.append(request)
        self.seen.append(
            {
                "path": request.path,
                "query_string": request.query_string,
                "rooms": request.query_params.getall("room", []),
                "token": request.query_params.get("token"),
                "empty": request.query_params.get("empty"),
                "custom": request.headers.get("x-CUSTOM"),
                "cookies": dict(request.cookies),
                "origin": request.origin,
                "subprotocols": request.subprotocols,
                "remote": request.remote_address,
                "same_object": connection.request is request,
                "session": dict(connection.session_state),
            }
        )


class Hooked(Recorder):
    """Accepts and seeds the session, refuses on demand, breaks on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.hooked: list[Request] = []
        self.hook_remote: list[Any] = []

    def on_handshake(self, request: Request) -> Mapping[str, Any] | None:
        self.hooked.append(request)
        self.hook_remote.append(request.remote_address)
        action = request.query_params.get("do", "accept")
        if action == "seed":
            return {"user": request.query_params["user"], "role": "admin", "uid": "session value, not the uid"}
        if action == "reject":
            raise Reject(
                int(request.query_params["status"]), request.query_params.get("reason", ""), {"Retry-After": "7"}
            )
        if action == "boom":
            raise RuntimeError("secret database password in this message")
        if action == "list":
            return [("user", "x")]  # type: ignore[return-value]  # a wrong return type: refused with 500
        return None

    @rpc_method()
    async def whoami(self, connection: Conn) -> list[Any]:
        return [connection.user, connection.role, connection["uid"], connection.uid.hex != connection["uid"]]


async def call(ws: Any, method: str, *args: Any) -> Any:
    """Call an RPC over a generic (JSON) ``websockets`` connection; its ``rpc`` map (``response``, ``error``)."""
    request = {"type": "request", "method": method, "args": list(args), "kwargs": {}, "call_id": method}
    await ws.send(json.dumps({"source": 5, "rpc": request}))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))["rpc"]
    assert reply["call_id"] == method
    return reply


def live_objects(kind: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kind))


# ---------------------------------------------------------------------------- the request


@pytest.mark.parametrize("hooked", [False, True], ids=["parsed-lazily", "parsed-at-handshake"])
async def test_request_fields_in_on_connect(hooked: bool) -> None:
    handler = Hooked if hooked else Recorder
    async with running_server(handler) as server:
        path = "/chat/r%C3%A9sum%C3%A9?room=a&room=b&token=x%2By+z&empty="
        headers = {"Cookie": 'session=abc123; theme="dark"; flag', "X-Custom": "yes"}
        async with raw_connect(
            uri_of(server) + path,
            origin="https://app.example.com",
            additional_headers=headers,
            subprotocols=["webshocket.json", "bearer.tok"],
        ) as ws:
            assert ws.subprotocol == "webshocket.json"  # the JSON dialect named, echoed; never the token
            assert "bearer.tok" not in str(ws.response.headers)
            await wait_until(lambda: len(server.handler.seen) == 1)
            assert server.handler.seen[0] == {
                "path": "/chat/résumé",
                "query_string": "room=a&room=b&token=x%2By+z&empty=",
                "rooms": ["a", "b"],
                "token": "x+y z",
                "empty": "",
                "custom": "yes",
                "cookies": {"session": "abc123", "theme": "dark"},
                "origin": "https://app.example.com",
                "subprotocols": ("webshocket.json", "bearer.tok"),
                "remote": ws.local_address[:2],
                "same_object": True,
                "session": {},
            }
            assert (await call(ws, "add", 1, 2))["response"] == 3
        request = server.handler.requests[0]
        if hooked:
            assert server.handler.hooked == [request]  # the hook's request is the connection's
            assert server.handler.hook_remote == [None]  # no socket at the handshake (documented)
        with pytest.raises(AttributeError):
            request.path = "/elsewhere"
        with pytest.raises(AttributeError):
            request.anything = 1
        with pytest.raises(TypeError):
            request.headers["X-Custom"] = "no"
        assert "token" not in repr(request) and "abc123" not in repr(request)  # no secrets in logs


async def test_request_of_the_python_client_and_read_only_property() -> None:
    async with running_server(Recorder) as server:
        client = WebSocketClient(uri_of(server) + "/feed?v=2")
        await client.connect(extra_headers={"Cookie": "a=1"})
        try:
            await wait_until(lambda: len(server.handler.seen) == 1)
            seen = server.handler.seen[0]
            assert (seen["path"], seen["query_string"], seen["cookies"]) == ("/feed", "v=2", {"a": "1"})
            assert seen["origin"] is None  # not a browser
            assert "webshocket.v1" in seen["subprotocols"]
            [connection] = server.clients
            with pytest.raises(AttributeError, match="read-only"):
                connection.request = "mine"  # type: ignore[misc,assignment]
            assert connection.request.raw.path == b"/feed?v=2"  # picows's request, as 0.5.x exposed it
        finally:
            await client.close()


def test_request_build_for_unit_tests() -> None:
    request = Request.build("/ws?token=abc&token=def", {"origin": "https://a.example", "cookie": "x=1; y=2"})
    assert (request.path, request.query_params.getall("token"), request.origin) == (
        "/ws",
        ["abc", "def"],
        "https://a.example",
    )
    assert request.cookies == {"x": "1", "y": "2"} and request.remote_address is None
    assert request.query_params["token"] == "abc"
    assert Request.build("/").query_params.get("token") is None


async def test_no_request_is_parsed_unless_asked() -> None:
    """Default path: no hook, no origin check: the engine keeps nothing until connection.request is read."""
    async with running_server(Adder) as server:
        async with raw_connect(uri_of(server) + "/x?y=1"):
            await wait_until(lambda: len(server.clients) == 1)
            [engine] = server._core.engines
            assert engine.request is None
            [connection] = server.clients
            assert connection.request.path == "/x"
            assert engine.request is connection.request


# ---------------------------------------------------------------------------- the hook


async def test_hook_accepts_and_seeds_the_session_before_on_connect() -> None:
    async with running_server(Hooked) as server:
        async with raw_connect(uri_of(server) + "/?do=seed&user=alice") as ws:
            await wait_until(lambda: len(server.handler.seen) == 1)
            assert server.handler.seen[0]["session"] == {
                "user": "alice",
                "role": "admin",
                "uid": "session value, not the uid",
            }
            assert (await call(ws, "whoami"))["response"] == ["alice", "admin", "session value, not the uid", True]


@pytest.mark.parametrize(
    ("status", "reason", "body"),
    [(401, "bad token", b"bad token"), (429, "slow down", b"slow down"), (403, "", b"Forbidden")],
)
async def test_hook_refuses_with_status_and_reason(status: int, reason: str, body: bytes) -> None:
    async with running_server(Hooked) as server:
        with pytest.raises(InvalidStatus) as refused:
            async with raw_connect(uri_of(server) + f"/?do=reject&status={status}&reason={reason.replace(' ', '+')}"):
                pass
        response = refused.value.response
        assert (response.status_code, response.body) == (status, body)
        assert response.headers["Retry-After"] == "7"
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert server.handler.seen == [] and len(server.clients) == 0
        assert server.stats["connections_opened"] == 0


async def test_refused_connections_cost_no_handler_state() -> None:
    async with running_server(Hooked) as server:
        listeners, connections = live_objects(ServerListener), live_objects(ClientConnection)
        results = await asyncio.gather(*(handshake(server.port, "/?do=reject&status=401") for _ in range(50)))
        assert {status for status, _, _ in results} == {401}
        assert live_objects(ServerListener) == listeners and live_objects(ClientConnection) == connections
        assert len(server.handler.hooked) == 50 and server.handler.seen == []
        assert server.metrics()["connections"] == 0 and server.stats["connections_opened"] == 0


async def test_hook_exception_is_500_logged_and_the_server_keeps_serving(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="webshocket.server")
    async with running_server(Hooked) as server:
        async with raw_connect(uri_of(server)) as first:  # connected before, stays connected
            status, _, body = await handshake(server.port, "/?do=boom")
            assert (status, body) == (500, b"Internal server error.")  # nothing of the exception's message
            assert "on_handshake raised" in caplog.text and "secret database password" in caplog.text
            status, _, body = await handshake(server.port, "/?do=list")
            assert (status, body) == (500, b"Internal server error.")
            assert "on_handshake must return None or a mapping" in caplog.text
            async with raw_connect(uri_of(server)) as second:
                for ws in (first, second):
                    assert (await call(ws, "add", 2, 3))["response"] == 5
        assert server.stats["connections_opened"] == 2


def test_async_hook_is_refused_when_the_server_is_made() -> None:
    class AsyncHook(Adder):
        async def on_handshake(self, request: Request) -> None:  # type: ignore[override]
            return None

    with pytest.raises(TypeError, match="on_handshake must be a plain 'def'"):
        WebSocketServer(HOST, 0, clientHandler=AsyncHook)


def test_reject_validates_its_arguments() -> None:
    assert (Reject(401).status, Reject(401).reason) == (401, "Unauthorized")
    for status in (200, 302, 499, 600, "401"):
        with pytest.raises(ValueError, match="Reject status"):
            Reject(status)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a valid HTTP header"):
        Reject(429, "x", {"Retry-After": "1\r\nSet-Cookie: a=b"})
    with pytest.raises(ValueError, match="not a valid HTTP header"):
        Reject(429, "x", {"Bad Name": "1"})
    with pytest.raises(TypeError, match="Reject reason must be a str"):
        Reject(401, b"bytes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- allowed_origins

ALLOWED = ["https://app.example.com", "https://*.example.org", "http://localhost:8080", "wss://[::1]:9000"]
ORIGINS = [
    ("https://app.example.com", True),
    ("HTTPS://APP.Example.COM", True),  # scheme and host compare case-insensitively
    ("https://app.example.com:443", True),  # the default port, written
    ("https://app.example.com:8443", False),
    ("http://app.example.com", False),  # another scheme
    ("https://evil.example.com", False),  # an exact origin is not a wildcard
    ("https://app.example.com.evil.com", False),
    ("https://a.example.org", True),
    ("https://a.b.example.org", True),  # one or more labels
    ("https://example.org", False),  # the wildcard needs at least one label
    ("https://evil.com/.example.org", False),  # a path
    ("https://example.org.evil.com", False),
    ("https://a.example.org.evil.com", False),
    ("https://evilexample.org", False),  # not a label boundary
    ("https://.example.org", False),  # an empty label
    ("https://a..example.org", False),
    ("https://a.example.org/", False),  # an origin has no path
    ("https://a.example.org.", False),  # a trailing dot
    ("https://user@a.example.org", False),
    ("https://a.example.org:444", False),
    ("http://a.example.org", False),
    ("https://a.example.org%2f.evil.com", False),
    ("null", False),  # sandboxed frames and file:// pages
    ("", False),
    ("http://localhost:8080", True),
    ("http://localhost", False),
    ("wss://[::1]:9000", True),
    ("wss://[::1]", False),
]


@pytest.mark.parametrize(("origin", "allowed"), ORIGINS)
async def test_allowed_origins_matrix(origin: str, allowed: bool) -> None:
    async with running_server(Hooked, allowed_origins=ALLOWED) as server:
        status, _, body = await handshake(server.port, "/", [("Origin", origin)])
        assert status == (101 if allowed else 403), (origin, status, body)
        if not allowed:
            assert body == b"Origin not allowed."
            assert server.handler.hooked == []  # checked before the hook


async def test_missing_and_repeated_origin_headers() -> None:
    async with running_server(Adder, allowed_origins=["https://app.example.com"]) as server:
        assert (await handshake(server.port))[0] == 101  # no Origin: not a browser, allowed by default
        repeated = [("Origin", "https://app.example.com"), ("Origin", "https://evil.example")]
        assert (await handshake(server.port, "/", repeated))[0] == 403
    async with running_server(Adder, allowed_origins="https://app.example.com", allow_missing_origin=False) as server:
        status, _, body = await handshake(server.port)
        assert (status, body) == (403, b"Origin not allowed.")
        assert (await handshake(server.port, "/", [("Origin", "https://app.example.com")]))[0] == 101
        assert server.config.allowed_origins == ("https://app.example.com",)


async def test_default_allows_every_origin_as_0_5_x() -> None:
    async with running_server(Recorder) as server:
        status, headers, _ = await handshake(server.port, "/", [("Origin", "https://evil.example"), ("Cookie", "s=1")])
        assert status == 101 and "sec-websocket-protocol" not in headers
        await wait_until(lambda: len(server.handler.seen) == 1)
        assert server.handler.seen[0]["origin"] == "https://evil.example"


async def test_origin_check_with_the_python_client() -> None:
    async with running_server(Adder, allowed_origins=["https://app.example.com"]) as server:
        async with WebSocketClient(uri_of(server)) as client:  # sends no Origin
            assert (await client.send_rpc("add", 1, 1)).data == 2
        client = WebSocketClient(uri_of(server))
        with pytest.raises(webshocket.ConnectionFailedError, match="403"):
            await client.connect(extra_headers={"Origin": "https://evil.example"})


@pytest.mark.parametrize(
    "pattern",
    ["https://example.com/", "example.com", "*.example.com", "https://ex*ample.com", "https://*example.com",
     "https://a.*.example.com", "null", "https://*.[::1]", "https://example.com:99999", "https://*", "*"],
)  # fmt: skip
def test_bad_allowed_origins_fail_when_the_server_is_made(pattern: str) -> None:
    with pytest.raises(ValueError, match="allowed_origins"):
        WebSocketServer(HOST, 0, allowed_origins=[pattern])


def test_origin_normalization() -> None:
    assert normalize_origin("HTTPS://Example.COM:443") == ("https", "example.com", None)
    assert normalize_origin("http://example.com:8080") == ("http", "example.com", 8080)
    assert normalize_origin("https://example.com/path") is None
    policy = OriginPolicy(["https://*.example.com"], allow_missing=False)
    assert policy.allows(["https://a.example.com"]) and not policy.allows([])
    for i in range(3000):  # verdicts are cached, within a bound whatever clients send
        assert not policy.allows([f"https://evil{i}.com"])
    assert len(policy._verdicts) <= 1024
    assert policy.allows(["https://a.example.com"]) and not policy.allows(["https://example.com"])


async def test_json_subprotocol_echo_and_preference() -> None:
    async with running_server(Adder) as server:
        async with raw_connect(uri_of(server), subprotocols=["chat", "webshocket.json"]) as ws:
            assert ws.subprotocol == "webshocket.json"
            assert (await call(ws, "add", 1, 2))["response"] == 3  # the JSON dialect
        async with raw_connect(uri_of(server), subprotocols=["webshocket.json", "webshocket.v1"]) as ws:
            assert ws.subprotocol == "webshocket.v1"  # msgpack wins when both are offered
        status, headers, _ = await handshake(server.port, "/", [("Sec-WebSocket-Protocol", "bearer.secret")])
        assert status == 101 and "sec-websocket-protocol" not in headers  # other entries are never echoed


async def test_cli_serve_with_allowed_origin_and_require_origin_from_the_environment() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBSHOCKET_") or k.endswith("EXTENSIONS")}
    env["WEBSHOCKET_REQUIRE_ORIGIN"] = "yes"
    env["WEBSHOCKET_ALLOWED_ORIGINS"] = "https://overridden.example"  # the command line wins
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webshocket", "serve", "examples.demo:DemoHandler", "--port", "0",
        "--allowed-origin", "https://app.example.com", "--allowed-origin", "https://*.example.org",
        cwd=EXAMPLES.parent, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        match = re.search(r"on ws://127\.0\.0\.1:(\d+)", line)
        assert match, line
        port = int(match.group(1))
        for origin, expected in [
            ("https://app.example.com", 101),
            ("https://a.example.org", 101),
            ("https://overridden.example", 403),
            ("https://evil.example", 403),
            (None, 403),  # WEBSHOCKET_REQUIRE_ORIGIN=yes
        ]:
            headers = [] if origin is None else [("Origin", origin)]
            assert (await handshake(port, "/", headers))[0] == expected, origin
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0 and b"Traceback" not in err, err.decode()


def test_cli_allowed_origin_flag() -> None:
    args = build_parser().parse_args(
        ["serve", "m:H", "--allowed-origin", "https://a.example.com", "--allowed-origin", "https://*.b.example.com"]
    )
    assert args.allowed_origins == ["https://a.example.com", "https://*.b.example.com"]
    assert build_parser().parse_args(["serve", "m:H"]).allowed_origins is None
    assert build_parser().parse_args(["serve", "m:H", "--require-origin"]).require_origin is True
    parser = build_parser()
    assert (
        apply_environment(parser, {"WEBSHOCKET_ALLOWED_ORIGINS": "https://a.example.com, https://*.b.example.com"})
        == []
    )
    assert parser.parse_args(["serve", "m:H"]).allowed_origins == ["https://a.example.com", "https://*.b.example.com"]
    [(_, error)] = apply_environment(build_parser(), {"WEBSHOCKET_ALLOWED_ORIGINS": "https://a.example.com/"})
    assert "WEBSHOCKET_ALLOWED_ORIGINS=https://a.example.com/: 'https://a.example.com/' is not an origin" in str(error)


# ---------------------------------------------------------------------------- JWT: examples/auth.py


@pytest.fixture(scope="module")
def auth() -> ModuleType:
    pytest.importorskip("jwt", reason="PyJWT is the jwt extra: pip install 'webshocket[jwt]'")
    spec = importlib.util.spec_from_file_location("examples_auth", EXAMPLES / "auth.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_jwt_valid_token_in_query_subprotocol_and_header(auth: ModuleType) -> None:
    async with running_server(auth.AuthHandler) as server:
        async with raw_connect(f"{uri_of(server)}/?token={auth.issue_token('alice', 60)}") as ws:
            assert (await call(ws, "whoami"))["response"] == "alice"
        protocols = ["webshocket.json", f"bearer.{auth.issue_token('bob', 60)}"]
        async with raw_connect(uri_of(server), subprotocols=protocols) as ws:
            assert ws.subprotocol == "webshocket.json"  # the token is never echoed
            assert "bearer" not in str(ws.response.headers)
            assert (await call(ws, "whoami"))["response"] == "bob"
        headers = {"Authorization": f"Bearer {auth.issue_token('carol', 60)}"}
        async with raw_connect(uri_of(server), additional_headers=headers) as ws:
            assert (await call(ws, "whoami"))["response"] == "carol"


@pytest.mark.parametrize("case", ["bad-signature", "expired", "missing", "garbage", "no-exp"])
async def test_jwt_refused_at_the_handshake(auth: ModuleType, case: str) -> None:
    import jwt

    tokens = {
        "bad-signature": auth.issue_token("eve", 60, key=b"k" * 32),
        "expired": auth.issue_token("alice", -5),
        "missing": "",
        "garbage": "not.a.jwt",
        "no-exp": jwt.encode({"sub": "alice"}, auth.SECRET, algorithm="HS256"),
    }
    expected = {"expired": b"Token expired.", "missing": b"A token is required"}.get(case, b"Invalid token.")
    async with running_server(auth.AuthHandler) as server:
        with pytest.raises(InvalidStatus) as refused:
            async with raw_connect(f"{uri_of(server)}/?token={tokens[case]}"):
                pass
        assert refused.value.response.status_code == 401
        assert refused.value.response.body.startswith(expected)
        assert len(server.clients) == 0 and server.stats["connections_opened"] == 0


async def test_jwt_expiry_mid_connection_closes_with_4401(auth: ModuleType) -> None:
    async with running_server(auth.AuthHandler) as server:
        start = time.time()
        token = auth.issue_token("dave", 2)  # expires 1 to 2 s from now
        async with raw_connect(f"{uri_of(server)}/?token={token}") as ws:
            assert (await call(ws, "whoami"))["response"] == "dave"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == auth.CLOSE_TOKEN_EXPIRED == 4401
            assert ws.close_reason == "token expired"
        assert time.time() - start < 3.5
        await wait_until(lambda: not server.clients and not server.handler.expiry)  # timer gone with the connection


async def test_jwt_refresh_keeps_the_connection_and_python_client_does_not_reconnect(auth: ModuleType) -> None:
    async with running_server(auth.AuthHandler) as server:
        erin = WebSocketClient(f"{uri_of(server)}/?token={auth.issue_token('erin', 2)}")
        codes: list[int | None] = []
        dave = WebSocketClient(f"{uri_of(server)}/?token={auth.issue_token('dave', 2)}", on_disconnect=codes.append)
        await erin.connect()
        await dave.connect(retry=True, retry_interval=0.1)
        try:
            assert (await erin.send_rpc("refresh", auth.issue_token("erin", 60))).error is None
            other = await erin.send_rpc("refresh", auth.issue_token("mallory", 60))
            assert other.error == webshocket.RPCErrorCode.APPLICATION_ERROR
            forged = await erin.send_rpc("refresh", auth.issue_token("erin", 60, key=b"k" * 32))
            assert forged.error == webshocket.RPCErrorCode.APPLICATION_ERROR
            await wait_until(lambda: codes == [4401], timeout=5)
            assert not dave.reconnecting  # an outage would start at the drop
            await asyncio.sleep(0.5)
            assert not dave.reconnecting and not dave.is_connected  # 4401: the client does not reconnect
            assert len(server.clients) == 1
            assert (await erin.send_rpc("whoami")).data == "erin"
        finally:
            await erin.close()
            await dave.close()
