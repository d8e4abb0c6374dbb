"""The JavaScript client (``clients/js``) in Node, against our server over real sockets.

Each ``clients/js/test/*.test.mjs`` file runs as ``node --test`` while this process serves a
*control* server (``Control``, a Webshocket server the Node tests reach with the client under
test, never proxied or restarted). Through it a Node test starts servers of its own (the ``App``
handler, with or without recovery, behind a TCP proxy or not; the ``AuthApp`` handler of
``examples/auth.py``), restarts them on the same port, drops their links, publishes, and reads
what the server saw. ``npm ci`` runs first when ``clients/js/node_modules`` is missing or stale.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import HOST, NO_EXTENSIONS, REPO

from webshocket import (
    ClientConnection,
    Is,
    Packet,
    Recovery,
    RPCError,
    WebSocketHandler,
    WebSocketServer,
    rate_limit,
    rpc_method,
)

Conn = ClientConnection[Any]
JS = REPO / "clients" / "js"
NODE_TESTS = sorted(path.name for path in (JS / "test").glob("*.test.mjs"))
#: Test files that also run over Node's own WebSocket (global, experimental in Node 20) instead of ``ws``.
GLOBAL_WEBSOCKET_TESTS = ["rpc.test.mjs", "push.test.mjs", "session.test.mjs"]
NODE_TIMEOUT = 180.0


# ---------------------------------------------------------------------------- Node and npm


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("Node.js is required: install `node` and `npm` (scripts/install.sh dev does)", pytrace=False)
    return found


def node_version() -> tuple[int, int]:
    out = subprocess.run([node(), "--version"], capture_output=True, text=True, check=True).stdout
    major, minor, *_ = out.strip().lstrip("v").split(".")
    return int(major), int(minor)


def npm_ci() -> None:
    """``npm ci`` in clients/js unless node_modules matches package-lock.json already."""
    if not (JS / "package.json").exists():
        pytest.fail(f"{JS} is missing: these tests need the JavaScript client next to tests/", pytrace=False)
    installed = JS / "node_modules" / ".package-lock.json"  # npm's record of what it installed
    lock = JS / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            "npm is required to install the JS client's dev dependencies (`npm ci` in clients/js)", pytrace=False
        )
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"`npm ci` in {JS} failed:\n{done.stdout}\n{done.stderr}", pytrace=False)


@pytest.fixture(scope="module")
def node_modules() -> None:
    npm_ci()


# ---------------------------------------------------------------------------- the servers under test


class App(WebSocketHandler[Any]):
    """What the Node tests call: RPCs of every outcome, streams, pushes, session state."""

    def __init__(self) -> None:
        super().__init__()
        self.connects = 0
        self.events: list[str] = []

    async def on_connect(self, connection: Conn) -> None:
        self.connects += 1
        connection.user = f"user-{self.connects}"

    async def on_receive(self, connection: Conn, packet: Packet[Any]) -> None:
        connection.send({"echo": packet.data})  # a custom packet comes back as one

    @rpc_method()
    async def add(self, connection: Conn, a: int, b: int) -> int:
        return a + b

    @rpc_method()
    async def echo(self, connection: Conn, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"args": list(args), "kwargs": kwargs}

    @rpc_method()
    async def slow(self, connection: Conn, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @rpc_method()
    async def ticks(self, connection: Conn, count: int, interval: float = 0.0) -> Any:
        for i in range(count):
            yield i
            if interval:
                await asyncio.sleep(interval)

    @rpc_method()
    async def forever(self, connection: Conn, tag: str) -> Any:
        """Yields every 20 ms until cancelled; notes the cancel (what ``__abort__`` does)."""
        i = 0
        try:
            while True:
                yield i
                i += 1
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            self.events.append(f"cancelled {tag}")
            raise

    @rpc_method()
    async def broken(self, connection: Conn) -> Any:
        yield 1
        raise ValueError("the generator broke")

    @rpc_method()
    async def fail(self, connection: Conn, message: str) -> None:
        raise RPCError(message)

    @rpc_method()
    async def crash(self, connection: Conn) -> None:
        raise ValueError("unexpected")

    @rpc_method()
    @rate_limit(limit=1, period="60s")
    async def limited(self, connection: Conn) -> str:
        return "ok"

    @rpc_method(requires=Is("admin"))
    async def secret(self, connection: Conn) -> str:
        return "secret"

    @rpc_method()
    async def join(self, connection: Conn, channel: str) -> list[str]:
        connection.subscribe(channel)
        return sorted(connection.subscribed_channel)

    @rpc_method()
    async def push(self, connection: Conn, data: Any) -> None:
        connection.send(data)

    @rpc_method()
    async def shout(self, connection: Conn, data: Any) -> None:
        self.broadcast(data)

    @rpc_method(alias_name="publish")
    async def publish_rpc(self, connection: Conn, channel: str, data: Any) -> None:
        self.publish(channel, data)

    @rpc_method()
    async def whoami(self, connection: Conn) -> Any:
        return connection.user

    @rpc_method()
    async def remember(self, connection: Conn, key: str, value: Any) -> None:
        connection[key] = value

    @rpc_method()
    async def recall(self, connection: Conn, key: str) -> Any:
        return connection.session_state.get(key)

    @rpc_method()
    async def close_me(self, connection: Conn, code: int) -> str:
        """Replies, then closes the connection with ``code``."""
        asyncio.get_running_loop().call_later(0.05, connection.close, code, b"bye")
        return "closing"


@functools.cache
def auth_module() -> Any:
    """examples/auth.py as a module, loaded once: its SECRET signs and checks the tokens."""
    spec = importlib.util.spec_from_file_location("examples_auth_js", REPO / "examples" / "auth.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def auth_example() -> Any:
    """examples/auth.py (needs PyJWT, the jwt extra: the test skips without it)."""
    pytest.importorskip("jwt", reason="PyJWT is the jwt extra: pip install '.[jwt]'")
    return auth_module()


def auth_handler() -> type[WebSocketHandler[Any]]:
    auth = auth_example()

    class AuthApp(auth.AuthHandler):  # type: ignore[misc,name-defined]
        """examples/auth.py's handler (token at the handshake, 4401 at expiry), with a channel."""

        @rpc_method()
        async def join(self, connection: Conn, channel: str) -> list[str]:
            connection.subscribe(channel)
            return sorted(connection.subscribed_channel)

    return AuthApp


class DropProxy:
    """A TCP proxy to ``port``; :meth:`drop` closes every connection it carries at once (no close
    frame reaches either side: an abnormal drop, 1006), later connections pass."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    def drop(self) -> int:
        links = list(self.links)
        self.links.clear()
        for down, up in links:
            down.transport.abort()
            up.transport.abort()
        return len(links)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
        except OSError:
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.port)
        except OSError:
            writer.transport.abort()
            return
        link = (writer, up_writer)
        self.links.add(link)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        self.links.discard(link)

    async def close(self) -> None:
        self.drop()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@dataclass
class Served:
    """One server a Node test started, and how it was made (to restart it alike)."""

    handler: type[WebSocketHandler[Any]]
    kwargs: dict[str, Any]
    server: WebSocketServer[Any] | None
    port: int
    proxy: DropProxy | None = None
    proxy_port: int | None = None
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def live(self) -> WebSocketServer[Any]:
        if self.server is None:
            raise RPCError("the server is down (restarting)")
        return self.server

    def urls(self, served_id: str) -> dict[str, Any]:
        direct = f"ws://{HOST}:{self.port}"
        url = f"ws://{HOST}:{self.proxy_port}" if self.proxy_port is not None else direct
        return {"id": served_id, "url": url, "direct": direct, "port": self.port}


class Harness:
    """The servers the Node tests asked for."""

    def __init__(self) -> None:
        self.served: dict[str, Served] = {}
        self.count = 0

    async def start(self, kind: str, recovery: Any, proxy: bool) -> dict[str, Any]:
        handler: type[WebSocketHandler[Any]] = auth_handler() if kind == "auth" else App
        kwargs: dict[str, Any] = {}
        if recovery is True:
            kwargs["recovery"] = True
        elif isinstance(recovery, dict):
            kwargs["recovery"] = Recovery(**recovery)
        server = WebSocketServer(HOST, 0, clientHandler=handler, **kwargs)
        await server.start()
        served = Served(handler, kwargs, server, server.port)
        if proxy:
            served.proxy = DropProxy(server.port)
            served.proxy_port = await served.proxy.start()
        self.count += 1
        served_id = f"s{self.count}"
        self.served[served_id] = served
        return served.urls(served_id)

    def get(self, served_id: str) -> Served:
        served = self.served.get(served_id)
        if served is None:
            raise RPCError(f"no server {served_id!r}")
        return served

    async def restart(self, served_id: str, down: float) -> None:
        """Shut the server down at once (running calls are not waited for: 1001), start it again
        on the same port ``down`` seconds later."""
        served = self.get(served_id)
        server = served.live()
        served.server = None
        await server.close(timeout=0)

        async def later() -> None:
            await asyncio.sleep(down)
            again = WebSocketServer(HOST, served.port, clientHandler=served.handler, **served.kwargs)
            await again.start()
            served.server = again

        task = asyncio.ensure_future(later())
        served.background.add(task)
        task.add_done_callback(served.background.discard)

    async def close(self) -> None:
        for served in self.served.values():
            for task in served.background:
                task.cancel()
            if served.proxy is not None:
                await served.proxy.close()
            if served.server is not None:
                await served.server.close(timeout=1.0)
        self.served.clear()


class Control(WebSocketHandler[Any]):
    """The Node tests' remote control of the servers under test (a plain JSON-dialect server)."""

    harness: Harness  # set once the control server has started

    @rpc_method()
    async def start(self, connection: Conn, kind: str = "app", recovery: Any = None, proxy: bool = False) -> Any:
        return await self.harness.start(kind, recovery, proxy)

    @rpc_method()
    async def restart(self, connection: Conn, served_id: str, down: float = 0.3) -> None:
        await self.harness.restart(served_id, down)

    @rpc_method()
    async def drop(self, connection: Conn, served_id: str) -> int:
        """Cut every link through the server's proxy; how many there were."""
        proxy = self.harness.get(served_id).proxy
        if proxy is None:
            raise RPCError("that server has no proxy")
        return proxy.drop()

    @rpc_method(alias_name="publish")
    async def publish_values(
        self,
        connection: Conn,
        served_id: str,
        channel: str,
        values: list[Any],
        pause: float = 0.0,
        drop_at: list[int] | None = None,
    ) -> int:
        """Publish ``values`` one by one, ``pause`` seconds apart; cut the proxied links before
        the values at the indices ``drop_at``. Returns once all are published."""
        served = self.harness.get(served_id)
        for index, value in enumerate(values):
            if drop_at and index in drop_at and served.proxy is not None:
                served.proxy.drop()
            served.live().publish(channel, value)
            if pause:
                await asyncio.sleep(pause)
        return len(values)

    @rpc_method()
    async def server_state(self, connection: Conn, served_id: str) -> dict[str, Any]:
        """What the server saw: its handler's events and connects, its clients, its stats."""
        server = self.harness.get(served_id).live()
        handler = server.handler
        return {
            "events": list(getattr(handler, "events", [])),
            "connects": getattr(handler, "connects", None),
            "clients": len(server.clients),
            "sessions_resumed": server.stats.get("sessions_resumed"),
        }

    @rpc_method()
    async def issue_token(self, connection: Conn, user: str, lifetime: float, forged: bool = False) -> str:
        auth = auth_example()
        key = os.urandom(32) if forged else auth.SECRET
        token: str = auth.issue_token(user, lifetime, key)
        return token

    @rpc_method()
    async def stop(self, connection: Conn, served_id: str) -> None:
        served = self.harness.served.pop(served_id, None)
        if served is not None:
            if served.proxy is not None:
                await served.proxy.close()
            if served.server is not None:
                await served.server.close(timeout=1.0)


# ---------------------------------------------------------------------------- running node --test


async def run_node(args: list[str], env: dict[str, str], cwd: Path = JS) -> tuple[int, str]:
    """Run node with ``args``; (exit code, its output)."""
    proc = await asyncio.create_subprocess_exec(
        node(), *args, cwd=cwd, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT)
    except (asyncio.TimeoutError, TimeoutError):
        proc.kill()
        out, _ = await proc.communicate()
        return -1, f"node timed out after {NODE_TIMEOUT} s\n{out.decode(errors='replace')}"
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def node_test_file(name: str, flags: list[str], env: dict[str, str]) -> str:
    """Run one test file under ``node --test`` against a fresh harness; fails with Node's report."""
    harness = Harness()
    control = WebSocketServer(HOST, 0, clientHandler=Control)
    await control.start()
    control.handler.harness = harness
    try:
        code, output = await run_node(
            [*flags, "--test", "--test-reporter=spec", f"test/{name}"],
            {"WEBSHOCKET_CONTROL_URL": f"ws://{HOST}:{control.port}", **env},
        )
    finally:
        await harness.close()
        await control.close(timeout=1.0)
    assert code == 0, f"node --test test/{name} failed (exit {code}):\n{output}"
    passed = re.search(r"^\S+ pass (\d+)$", output, re.M)
    assert passed is not None and int(passed.group(1)) > 0, f"no test passed:\n{output}"
    assert re.search(r"^\S+ fail 0$", output, re.M), output
    assert "needs our Python server" not in output, output  # no suite skipped for want of the control server
    return output


@pytest.mark.parametrize("name", NODE_TESTS)
async def test_node(name: str, node_modules: None) -> None:
    if name == "auth.test.mjs":
        auth_example()  # skips without PyJWT
    await node_test_file(name, [], {"WEBSHOCKET_JS_WEBSOCKET": "ws"})


@pytest.mark.parametrize("name", GLOBAL_WEBSOCKET_TESTS)
async def test_node_builtin_websocket(name: str, node_modules: None) -> None:
    """The same client over Node's own WebSocket (undici's: Blob or ArrayBuffer messages)."""
    version = node_version()
    if version < (20, 10):
        pytest.skip(f"Node {version[0]}.{version[1]} has no built-in WebSocket (Node >= 20.10, experimental before 22)")
    flags = ["--experimental-websocket"] if version < (22, 0) else []
    await node_test_file(name, flags, {"WEBSHOCKET_JS_WEBSOCKET": "global"})


# ---------------------------------------------------------------------------- types and packaging

#: No server runs in these: the compiled run checks them, the pure run (the suite's second) need not again.
JS_ONLY = pytest.mark.skipif(NO_EXTENSIONS, reason="JavaScript only, no server: checked in the compiled run")


@JS_ONLY
def test_typescript_types_check(node_modules: None) -> None:
    """``npm run typecheck``: the JS against its JSDoc, and a TypeScript file using the API against index.d.ts."""
    tsc = JS / "node_modules" / "typescript" / "bin" / "tsc"
    done = subprocess.run(
        [node(), str(tsc), "-p", "tsconfig.json"], cwd=JS, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


@JS_ONLY
def test_npm_pack_makes_a_tarball_of_the_sources(tmp_path: Path, node_modules: None) -> None:
    npm = shutil.which("npm")
    assert npm is not None, "npm is required"
    done = subprocess.run(
        [npm, "pack", "--json", "--pack-destination", str(tmp_path)],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (report,) = json.loads(done.stdout)
    files = {entry["path"] for entry in report["files"]}
    package = json.loads((JS / "package.json").read_text())
    assert report["name"] == "webshocket-client" and report["version"] == package["version"]
    assert {"package.json", "README.md", "src/index.js", "src/index.d.ts", "src/client.js"} <= files
    assert not any(name.startswith(("test/", "node_modules/")) for name in files), files
    assert (tmp_path / report["filename"]).stat().st_size > 0
    assert "dependencies" not in package, package["dependencies"]  # no runtime dependency
