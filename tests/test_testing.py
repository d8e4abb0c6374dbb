"""``webshocket.testing``, the test kit for users: servers, clients, push helpers and the pytest plugin.

Everything over real sockets on 127.0.0.1. The last tests run pytest in a subprocess on a
user's project (the example test file, and a project in pytest-asyncio's strict mode) to
prove the plugin works where it is meant to: outside this repository's test suite.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, Adder

import webshocket
from webshocket import ClientConnection, ConnectionClosedError, ConnectionFailedError, PacketSource, rpc_method
from webshocket.testing import (
    HOST,
    JSONTestClient,
    TestClient,
    TestServer,
    assert_silent,
    connect,
    connect_json,
    expect_push,
    serve,
    wait_until,
)

pytest_plugins = ["webshocket.testing"]  # the fixtures, as a user enables them

EXAMPLE = REPO / "examples" / "test_with_webshocket.py"
README = REPO / "README.md"

Conn = ClientConnection[Any]


class Hub(Adder):
    """RPCs that make the server push, stream and close; what clients send lands in ``received``."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Any] = []
        self.cancelled = asyncio.Event()

    async def on_receive(self, connection: Conn, packet: webshocket.Packet[Any]) -> None:
        self.received.append(packet.data)

    @rpc_method()
    async def follow(self, connection: Conn, channel: str) -> None:
        connection.subscribe(channel)

    @rpc_method()
    async def tell(self, connection: Conn, data: Any) -> None:
        connection.send(data)

    @rpc_method()
    async def kick(self, connection: Conn, code: int) -> None:
        asyncio.get_running_loop().call_later(0.05, connection.close, code)  # after the reply

    @rpc_method()
    async def count(self, connection: Conn, n: int, delay: float = 0.0) -> Any:
        try:
            for i in range(n):
                yield i
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


# ---------------------------------------------------------------------------- serve() and clients


async def test_serve_runs_the_handler_on_a_free_port_of_localhost_and_closes_it() -> None:
    async with serve(Hub) as server, serve(Hub) as other:
        assert isinstance(server, TestServer) and isinstance(server.handler, Hub)
        assert server.host == HOST and server.port != 0 and server.port != other.port
        assert server.uri == f"ws://127.0.0.1:{server.port}"
        async with server.client() as client:
            assert (await client.send_rpc("add", 2, 3)).data == 5
    assert server.state is webshocket.ServerState.CLOSED
    with pytest.raises(ConnectionFailedError):
        async with connect(server):
            pass


async def test_serve_passes_server_options() -> None:
    async with serve(Hub, max_connection=1, recovery=True) as server:
        assert server.config.recovery is not None
        async with server.client() as first:
            assert first.recovered is False  # a session was opened: the server has recovery on
            with pytest.raises(ConnectionFailedError):  # max_connection=1: HTTP 503
                async with server.client():
                    pass


async def test_serve_without_a_handler_accepts_connections() -> None:
    async with serve() as server, server.client() as client:
        connection = await asyncio.wait_for(server.accept(), 5)
        connection.send("hello")
        assert (await client.next_push(source=PacketSource.CUSTOM)).data == "hello"


async def test_client_is_connected_inside_and_closed_afterwards() -> None:
    async with serve(Hub) as server:
        async with server.client() as client:
            assert isinstance(client, TestClient)
            assert client.state is webshocket.ConnectionState.CONNECTED
            await wait_until(lambda: len(server.clients) == 1)
        assert client.state is webshocket.ConnectionState.CLOSED
        await wait_until(lambda: not server.clients)


async def test_connect_passes_client_options_and_connect_options() -> None:
    reconnected: list[bool] = []
    async with serve(Hub, recovery=True) as server:
        async with connect(server.uri, session=False) as plain:
            assert plain.recovered is None  # session=False reached the client: no session asked for
        async with connect(
            server,
            on_reconnect=reconnected.append,
            connect_options={"retry": True, "max_retry_attempt": 3, "retry_interval": 0.05},
        ) as client:
            await client.send_rpc("kick", 1012)  # service restart: a retry=True client comes back
            await wait_until(lambda: bool(reconnected))
            assert reconnected == [False]  # a new session: the server's close() ended the old one
            assert (await client.send_rpc("add", 1, 1)).data == 2


# ---------------------------------------------------------------------------- waiting for pushes


async def test_next_push_matches_and_holds_what_does_not() -> None:
    async with serve(Hub) as server, server.client() as client:
        await client.send_rpc("follow", "a")
        await client.send_rpc("follow", "b")
        server.publish("a", 1)
        server.publish("b", 2)
        server.broadcast(3)
        await client.send_rpc("tell", 4)
        server.publish("a", 5)
        assert (await client.next_push(channel="b")).data == 2
        assert (await client.next_push(source=PacketSource.BROADCAST)).data == 3
        assert (await client.next_push(data=4)).source == PacketSource.CUSTOM
        assert (await client.next_push(where=lambda p: p.data == 5)).channel == "a"
        held = await client.recv(timeout=1)  # what next_push skipped comes first, in order
        assert (held.channel, held.data) == ("a", 1)
        await client.assert_silent(0.1)


async def test_next_push_fails_in_time_naming_what_came_instead() -> None:
    async with serve(Hub) as server, server.client() as client:
        await client.send_rpc("follow", "other")
        server.publish("other", {"not": "it"})
        started = time.monotonic()
        with pytest.raises(AssertionError) as failure:
            await client.next_push(channel="news", timeout=0.3)
        assert time.monotonic() - started < 2
        message = str(failure.value)
        assert "channel='news'" in message and "within 0.3 s" in message
        assert "CHANNEL on 'other': {'not': 'it'}" in message
        assert (await client.next_push(channel="other")).data == {"not": "it"}  # still there


async def test_next_push_raises_when_the_server_closes_the_connection() -> None:
    async with serve(Hub) as server, server.client() as client:
        await client.send_rpc("kick", 4401)
        with pytest.raises(ConnectionClosedError):
            await client.next_push(timeout=5)


async def test_assert_silent_passes_on_silence_and_fails_on_a_push() -> None:
    async with serve(Hub) as server, server.client() as one, server.client() as two:
        await one.send_rpc("follow", "news")
        started = time.monotonic()
        await assert_silent([one, two], 0.3)  # waits once, for both together
        assert 0.25 < time.monotonic() - started < 1.5
        server.publish("news", "breaking")
        await assert_silent(two, 0.2)
        with pytest.raises(
            AssertionError, match=re.escape("expected no push within 0.2 s, got: CHANNEL on 'news': 'breaking'")
        ):
            await assert_silent(one, 0.2)
        with pytest.raises(AssertionError, match="breaking"):  # the packet stays held: still not silent
            await one.assert_silent(0.05)
        assert (await one.next_push(channel="news")).data == "breaking"
        await one.assert_silent(0.05)


async def test_drain_returns_what_is_held_and_what_arrives() -> None:
    async with serve(Hub) as server, server.client() as client:
        await client.send_rpc("follow", "a")
        for i in range(3):
            server.publish("a", i)
        assert (await client.next_push(data=2)).data == 2  # 0 and 1 are held
        server.broadcast("b")
        assert [p.data for p in await client.drain(0.2)] == [0, 1, "b"]
        assert await client.drain(0.05) == []


async def test_expect_push_for_both_dialects() -> None:
    async with serve(Hub) as server, server.client() as client, server.json_client() as browser:
        await client.send_rpc("follow", "news")
        await browser.call("follow", "news")
        server.publish("news", [1, 2])
        packet = await expect_push(client, "news", data=[1, 2])
        assert packet.channel == "news"
        assert await expect_push(browser, "news") == {"source": 2, "data": [1, 2], "channel": "news"}


async def test_wait_until_takes_plain_and_async_predicates_and_times_out() -> None:
    flag = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, flag.set)
    await wait_until(flag.is_set)

    async def ready() -> bool:
        return flag.is_set()

    await wait_until(ready)
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"condition not reached within timeout \(0.2 s\)"):
        await wait_until(lambda: False, timeout=0.2)
    assert time.monotonic() - started < 2


# ---------------------------------------------------------------------------- the JSON client


async def test_json_client_negotiates_its_dialect() -> None:
    async with serve(Hub) as server:
        async with server.json_client() as named:
            assert isinstance(named, JSONTestClient) and named.connected
            assert named.subprotocol == "webshocket.json"
            assert (await named.call("add", 1, 2))["response"] == 3
        assert not named.connected
        async with connect_json(server.uri, subprotocol=None) as bare:
            assert bare.subprotocol is None
            assert (await bare.call("add", a=2, b=2))["response"] == 4


async def test_json_client_calls_streams_and_sees_errors() -> None:
    async with serve(Hub) as server, server.json_client() as client:
        missing = await client.call("nope")
        assert missing["error"] == -32601 and "nope" in missing["response"]
        assert [chunk["response"] async for chunk in client.stream("count", 4)] == [0, 1, 2, 3]
        denied = [chunk async for chunk in client.stream("nope")]
        assert len(denied) == 1 and denied[0]["error"] == -32601
        async for chunk in client.stream("count", 1000, 0.01):
            if chunk["response"] == 2:
                break  # leaving early aborts the stream on the server
        await asyncio.wait_for(server.handler.cancelled.wait(), 5)


async def test_json_client_sends_packets_and_raw_messages() -> None:
    async with serve(Hub) as server, server.json_client() as client:
        client.send({"source": 4, "data": {"n": 1}})
        client.send_raw('{"source": 4, "data": "text"}')
        client.send_raw(b'{"source": 4, "data": "binary"}')
        await wait_until(lambda: len(server.handler.received) == 3)
        assert server.handler.received == [{"n": 1}, "text", "binary"]
        await client.call("tell", "back")
        assert await client.recv(timeout=2) == {"source": 4, "data": "back"}


async def test_json_client_sees_the_close_code_and_refusals() -> None:
    async with serve(Hub, allowed_origins=["https://app.example.com"]) as server:
        async with server.json_client(headers={"Origin": "https://app.example.com"}) as client:
            await client.call("kick", 4403)
            assert await client.wait_closed() == 4403
            with pytest.raises(ConnectionClosedError):
                await client.next_push(timeout=1)
            with pytest.raises(ConnectionClosedError):
                client.send({"source": 4})
        with pytest.raises(ConnectionFailedError, match="403"):
            async with server.json_client(headers={"Origin": "https://evil.example.com"}):
                pass


# ---------------------------------------------------------------------------- the pytest fixtures


async def test_fixtures_start_servers_and_connect_clients(
    webshocket_server: Any, webshocket_client: Any, webshocket_json_client: Any
) -> None:
    server = await webshocket_server(Hub, presence=True)
    assert isinstance(server, TestServer) and server.config.presence is not None
    client = await webshocket_client(server, session=False)
    browser = await webshocket_json_client(server.uri, subprotocol=None)
    assert isinstance(client, TestClient) and client.recovered is None
    assert (await client.send_rpc("add", 1, 2)).data == 3
    assert (await browser.call("add", 3, 4))["response"] == 7
    await wait_until(lambda: len(server.clients) == 2)


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest the way a user does, in ``project`` (its own configuration; this repository's is not used)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "COV_"))}
    env["PYTHONPATH"] = str(project)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error::pytest.PytestWarning", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def passed(proc: subprocess.CompletedProcess[str]) -> int:
    match = re.search(r"(\d+) passed", proc.stdout)
    return int(match.group(1)) if match else 0


def test_the_plugin_works_in_a_users_project(tmp_path: Path) -> None:
    """The example file plus a test of the teardown, in auto mode, the plugin enabled by conftest.py."""
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["webshocket.testing"]\n')
    (tmp_path / "test_example.py").write_text(EXAMPLE.read_text())
    (tmp_path / "test_teardown.py").write_text(
        textwrap.dedent(
            """
            import webshocket
            from webshocket.testing import TestClient, TestServer  # not collected as test classes

            made = {}


            async def test_uses_the_fixtures(webshocket_server, webshocket_client, webshocket_json_client):
                made["server"] = server = await webshocket_server(webshocket.DefaultWebSocketHandler)
                made["client"] = await webshocket_client(server)
                made["json"] = await webshocket_json_client(server)
                assert isinstance(server, TestServer) and isinstance(made["client"], TestClient)
                assert made["client"].state is webshocket.ConnectionState.CONNECTED and made["json"].connected


            def test_everything_was_closed_after_the_test():
                assert made["server"].state is webshocket.ServerState.CLOSED
                assert made["client"].state is webshocket.ConnectionState.CLOSED
                assert not made["json"].connected
            """
        )
    )
    proc = run_pytest(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert passed(proc) == 4, proc.stdout


def test_the_plugin_works_in_strict_mode(tmp_path: Path) -> None:
    """pytest-asyncio's strict mode, the plugin named on the command line (``-p webshocket.testing``)."""
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    (tmp_path / "test_strict.py").write_text(
        textwrap.dedent(
            """
            import pytest
            import webshocket
            from webshocket.testing import assert_silent


            class Echo(webshocket.WebSocketHandler):
                @webshocket.rpc_method()
                async def echo(self, connection, value):
                    connection.send(value)
                    return value


            @pytest.mark.asyncio
            async def test_echo(webshocket_server, webshocket_client):
                server = await webshocket_server(Echo)
                client = await webshocket_client(server)
                assert (await client.send_rpc("echo", 7)).data == 7
                assert (await client.next_push()).data == 7
                await assert_silent(client, 0.1)
            """
        )
    )
    proc = run_pytest(tmp_path, "-p", "webshocket.testing")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert passed(proc) == 1, proc.stdout


def test_the_readme_shows_the_example_file() -> None:
    """README "Testing your handlers" shows examples/test_with_webshocket.py as it is (minus its docstring)."""
    section = README.read_text().split("## Testing your handlers", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```py\n(.*?)```", section, re.S)
    assert blocks, "README: no ```py block in 'Testing your handlers'"
    code = EXAMPLE.read_text().split('"""', 2)[2].lstrip("\n")
    assert blocks[0] == code
