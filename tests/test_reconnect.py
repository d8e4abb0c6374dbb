"""Client connection failures, retry with backoff, server restarts, RPC timeouts and bad URIs."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import HOST, Adder, connected_client, running_server, uri_of, wait_until

import webshocket
from webshocket import (
    ClientConnection,
    ConnectionClosedError,
    ConnectionFailedError,
    ConnectionState,
    InvalidURIError,
    RPCTimeoutError,
    WebSocketClient,
    WebSocketServer,
    rpc_method,
)

OUR_SERVER = Path(__file__).resolve().parent / "interop" / "our_server.py"


class Handler(Adder):
    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    @rpc_method()
    async def sleepy(self, connection: ClientConnection[Any]) -> str:
        """Sleeps 2 s (or until the test releases it)."""
        self.started.set()
        try:
            await asyncio.wait_for(self.release.wait(), 2.0)
        except asyncio.TimeoutError:
            pass
        return "late"

    @rpc_method()
    async def kick(self, connection: ClientConnection[Any]) -> str:
        asyncio.get_running_loop().call_later(0.05, connection.close)
        return "bye"


async def closed_port() -> int:
    """A port that nothing listens on: bound on port 0 by a server that is then closed."""
    server = WebSocketServer(HOST, 0, clientHandler=Handler)
    await server.start()
    port = server.port
    await server.close(timeout=1.0)
    return port


@asynccontextmanager
async def counting_tcp_server(reply: bytes) -> AsyncIterator[tuple[int, list[int]]]:
    """A raw TCP server that writes ``reply`` to each connection and closes it; counts connections."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            if reply:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                writer.write(reply)
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1], connections
    finally:
        server.close()
        await server.wait_closed()


def retry_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "webshocket.client" and ("retry" in r.getMessage().lower() or "attempt" in r.getMessage().lower())
    ]


# --------------------------------------------------------------------------- retry


async def test_retry_until_server_starts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="webshocket.client")
    port = await closed_port()
    late = WebSocketServer(HOST, port, clientHandler=Handler)

    async def start_later() -> None:
        await asyncio.sleep(0.3)
        await late.start()

    starter = asyncio.create_task(start_later())
    client = WebSocketClient(f"ws://{HOST}:{port}")
    try:
        await asyncio.wait_for(client.connect(retry=True, max_retry_attempt=5, retry_interval=0.1), 20)
        assert starter.done()
        assert client.state is ConnectionState.CONNECTED
        assert (await client.send_rpc("add", 1, 2)).data == 3
        assert len(retry_logs(caplog)) >= 1  # the first attempt(s), before the server was up, failed
    finally:
        await client.close()
        await starter
        await late.close(timeout=1.0)


async def test_retry_gives_up_after_max_attempts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="webshocket.client")
    port = await closed_port()
    client = WebSocketClient(f"ws://{HOST}:{port}")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConnectionFailedError):
        await asyncio.wait_for(client.connect(retry=True, max_retry_attempt=3, retry_interval=0.05), 20)
    elapsed = loop.time() - started
    assert elapsed >= 0.05 + 0.1  # backoff lower bound: interval * (2**0 + 2**1) between the 3 attempts
    assert len(retry_logs(caplog)) == 2  # a retry after attempts 1 and 2, none after the last
    assert client.state is not ConnectionState.CONNECTED
    with pytest.raises(ConnectionClosedError):
        await client.send_rpc("add", 1, 2)


async def test_retry_makes_exactly_max_attempts() -> None:
    """Each attempt is one TCP connection; the server refuses the upgrade with HTTP 503."""
    reply = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nfull"
    async with counting_tcp_server(reply) as (port, connections):
        client = WebSocketClient(f"ws://{HOST}:{port}")
        with pytest.raises(ConnectionFailedError):
            await asyncio.wait_for(client.connect(retry=True, max_retry_attempt=4, retry_interval=0.01), 30)
        assert len(connections) == 4
        with pytest.raises(ConnectionFailedError):
            await asyncio.wait_for(client.connect(), 10)  # no retry: one more attempt
        assert len(connections) == 5


async def test_connect_without_retry_fails_once() -> None:
    port = await closed_port()
    client = WebSocketClient(f"ws://{HOST}:{port}")
    with pytest.raises(ConnectionFailedError):
        await asyncio.wait_for(client.connect(), 10)
    assert client.state is ConnectionState.DISCONNECTED


async def test_server_closing_before_handshake_fails_connect() -> None:
    """A peer that accepts TCP and hangs up without a 101 is a failed connection, not a connected one."""
    async with counting_tcp_server(b"") as (port, connections):
        client = WebSocketClient(f"ws://{HOST}:{port}")
        with pytest.raises(ConnectionFailedError):
            await asyncio.wait_for(client.connect(), 10)
        assert len(connections) == 1
        assert client.state is not ConnectionState.CONNECTED
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(client.send_rpc("add", 1, 2, wait_timeout=5), 10)


# --------------------------------------------------------------------------- server restarts


async def test_server_restart_on_same_port() -> None:
    server = WebSocketServer(HOST, 0, clientHandler=Handler)
    await server.start()
    port = server.port
    client = WebSocketClient(f"ws://{HOST}:{port}")
    await client.connect()
    restarted: WebSocketServer[Any] | None = None
    try:
        assert (await client.send_rpc("add", 2, 2)).data == 4
        in_flight = asyncio.create_task(client.send_rpc("sleepy", wait_timeout=30))
        await asyncio.wait_for(server.handler.started.wait(), 5)
        await server.close(timeout=0.1)  # the sleepy RPC is still running: clients are closed anyway
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(in_flight, 5)  # fails fast instead of hanging until its timeout
        await wait_until(lambda: client.state is not ConnectionState.CONNECTED)
        assert not client.is_connected
        with pytest.raises(ConnectionClosedError):
            await client.send_rpc("add", 1, 1)
        with pytest.raises(ConnectionClosedError):
            await client.recv(1)

        restarted = WebSocketServer(HOST, port, clientHandler=Handler)
        await restarted.start()
        assert restarted.port == port
        await asyncio.wait_for(client.connect(retry=True, max_retry_attempt=5, retry_interval=0.05), 20)
        assert client.state is ConnectionState.CONNECTED
        assert (await client.send_rpc("add", 20, 22)).data == 42
        await wait_until(lambda: len(restarted.clients) == 1)
    finally:
        await client.close()
        await server.close(timeout=0.1)
        if restarted is not None:
            await restarted.close(timeout=1.0)


class ServerProcess:
    """OUR server in a child process, so that it can be killed without a close handshake."""

    def __init__(self, port: int = 0) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.proc = subprocess.Popen(
            [sys.executable, str(OUR_SERVER), str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.proc.kill()
            raise AssertionError(f"our_server.py did not start: {line!r} {self.proc.communicate(timeout=10)[1]}")
        self.port = int(line.split()[1])

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


async def test_server_killed_then_restarted_in_another_process() -> None:
    loop = asyncio.get_running_loop()
    first = await loop.run_in_executor(None, ServerProcess)
    second: ServerProcess | None = None
    client = WebSocketClient(f"ws://{HOST}:{first.port}")
    try:
        await client.connect()
        first_pid = (await client.send_rpc("pid")).data
        assert first_pid == first.proc.pid
        in_flight = asyncio.create_task(client.send_rpc("slow", 30, wait_timeout=60))
        stream = client.stream_rpc("ticks")
        assert (await asyncio.wait_for(stream.__anext__(), 5)).data == 0
        first.kill()  # no close frame: the socket just dies
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(in_flight, 5)
        with pytest.raises(ConnectionClosedError):
            while True:  # chunks already received may still be read, then the stream fails
                await asyncio.wait_for(stream.__anext__(), 5)
        await wait_until(lambda: client.state is not ConnectionState.CONNECTED)
        with pytest.raises(ConnectionClosedError):
            await client.send_rpc("add", 1, 1)

        second = await loop.run_in_executor(None, ServerProcess, first.port)
        assert second.port == first.port
        await asyncio.wait_for(client.connect(retry=True, max_retry_attempt=5, retry_interval=0.05), 20)
        assert (await client.send_rpc("pid")).data == second.proc.pid
        assert (await client.send_rpc("add", 3, 4)).data == 7
    finally:
        await client.close()
        first.stop()
        if second is not None:
            await loop.run_in_executor(None, second.stop)


async def test_server_side_close_is_noticed() -> None:
    async with running_server(Handler) as server, connected_client(server) as client:
        assert (await client.send_rpc("kick")).data == "bye"
        await wait_until(lambda: client.state is not ConnectionState.CONNECTED)
        with pytest.raises(ConnectionClosedError):
            await client.recv(1)
        with pytest.raises(ConnectionClosedError):
            await client.send_rpc("add", 1, 1)
        with pytest.raises(ConnectionClosedError):
            client.send("anything")
        await client.connect()  # the same client object connects again
        assert (await client.send_rpc("add", 5, 5)).data == 10


async def test_close_then_connect_again() -> None:
    async with running_server(Handler) as server:
        client = WebSocketClient(uri_of(server))
        for round_ in range(3):
            await client.connect()
            assert (await client.send_rpc("add", round_, 1)).data == round_ + 1
            await client.close()
            assert client.state is ConnectionState.CLOSED
            await wait_until(lambda: not server.clients)


# --------------------------------------------------------------------------- timeouts and URIs


async def test_send_rpc_timeout() -> None:
    async with running_server(Handler) as server, connected_client(server) as client:
        started = asyncio.get_running_loop().time()
        with pytest.raises(RPCTimeoutError) as info:
            await client.send_rpc("sleepy", wait_timeout=0.2)
        assert asyncio.get_running_loop().time() - started < 1.9  # gave up before the method returned
        assert isinstance(info.value, webshocket.TimeoutError)
        assert client.state is ConnectionState.CONNECTED
        server.handler.release.set()  # the late reply arrives and must be ignored
        await asyncio.sleep(0.05)
        assert (await client.send_rpc("add", 1, 2)).data == 3
        assert (await client.send_rpc("sleepy", wait_timeout=5)).data == "late"


@pytest.mark.parametrize(
    "uri", ["http://x", "https://127.0.0.1:1", "ftp://x", "127.0.0.1:5000", "ws://", "wss://", "", "x"]
)
async def test_invalid_uri(uri: str) -> None:
    with pytest.raises(InvalidURIError) as info:
        client = WebSocketClient(uri)
        await client.connect()
    assert isinstance(info.value, webshocket.ConnectionError)


async def test_invalid_uri_with_retry_fails_immediately() -> None:
    with pytest.raises(InvalidURIError):
        client = WebSocketClient("http://x")
        await asyncio.wait_for(client.connect(retry=True, max_retry_attempt=5, retry_interval=1.0), 1.0)
