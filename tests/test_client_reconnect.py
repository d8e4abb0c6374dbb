"""Automatic reconnect of a ``connect(retry=True)`` client, over real sockets.

The server runs in another process (``interop/our_server.py``, via ``ServerProcess``) where
it has to die without a close handshake (SIGKILL) and come back on the same port; in this
process where the test needs a particular close code.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from helpers import HOST, Adder, Proxy, wait_until
from test_reconnect import ServerProcess, closed_port

from webshocket import (
    ClientConnection,
    ConnectionClosedError,
    ConnectionFailedError,
    ConnectionState,
    Packet,
    RPCTimeoutError,
    WebSocketClient,
    WebSocketServer,
    rpc_method,
)
from webshocket.client import NO_RECONNECT_CLOSE_CODES

SENTENCE = "All connection attempts failed after multiple retries."
#: Fast retries, and enough of them to outlast a Python process starting up.
PATIENT: dict[str, Any] = {"retry": True, "max_retry_attempt": 200, "retry_interval": 0.05, "max_retry_interval": 0.2}


class Handler(Adder):
    @rpc_method()
    async def close_me(self, connection: ClientConnection[Any], code: int) -> str:
        """Replies, then closes the connection with ``code``."""
        asyncio.get_running_loop().call_later(0.05, connection.close, code, b"bye")
        return "closing"

    @rpc_method()
    async def push(self, connection: ClientConnection[Any], data: Any) -> None:
        connection.send(data)


class Events:
    """Records the client's callbacks (the sync and the async kind alike)."""

    def __init__(self) -> None:
        self.disconnects: list[int | None] = []
        self.reconnects: list[bool] = []

    def on_disconnect(self, code: int | None) -> None:
        self.disconnects.append(code)

    async def on_reconnect(self, recovered: bool) -> None:
        await asyncio.sleep(0)
        self.reconnects.append(recovered)

    def client(self, port: int, **kwargs: Any) -> WebSocketClient:
        return WebSocketClient(
            f"ws://{HOST}:{port}", on_disconnect=self.on_disconnect, on_reconnect=self.on_reconnect, **kwargs
        )


async def start_process(port: int = 0) -> ServerProcess:
    return await asyncio.get_running_loop().run_in_executor(None, ServerProcess, port)


async def stop_process(server: ServerProcess | None) -> None:
    if server is not None:
        await asyncio.get_running_loop().run_in_executor(None, server.stop)


@asynccontextmanager
async def process_and_client(
    events: Events | None = None, **connect: Any
) -> AsyncIterator[tuple[ServerProcess, WebSocketClient]]:
    """A server process and a client connected to it (closed, and stopped, afterwards)."""
    server = await start_process()
    client = (events or Events()).client(server.port)
    try:
        await client.connect(**(connect or PATIENT))
        yield server, client
    finally:
        await client.close()
        await stop_process(server)


async def down(client: WebSocketClient) -> None:
    await wait_until(lambda: client.state is not ConnectionState.CONNECTED, timeout=10)


async def up(client: WebSocketClient) -> None:
    await wait_until(lambda: client.state is ConnectionState.CONNECTED, timeout=30)


async def still_waiting(call: Awaitable[Any]) -> asyncio.Future[Any]:
    """Start ``call``; it must still be waiting a moment later (not failed at once)."""
    future = asyncio.ensure_future(call)
    await asyncio.sleep(0.2)
    assert not future.done(), future.exception() if not future.cancelled() else "cancelled"
    return future


# --------------------------------------------------------------------------- killed and restarted


async def test_killed_server_restarted_on_same_port_reconnects_by_itself() -> None:
    events = Events()
    second: ServerProcess | None = None
    async with process_and_client(events) as (first, client):
        try:
            assert (await client.send_rpc("pid")).data == first.proc.pid
            first.kill()  # no close frame: an abnormal drop
            await down(client)
            assert client.reconnecting
            assert client.state in (ConnectionState.DISCONNECTED, ConnectionState.CONNECTING)
            assert client.close_code is None
            second = await start_process(first.port)
            await up(client)
            assert not client.reconnecting
            assert (await client.send_rpc("pid")).data == second.proc.pid
            assert (await client.send_rpc("add", 2, 3)).data == 5
            await wait_until(lambda: events.reconnects == [False])
            assert events.disconnects == [None]
        finally:
            await stop_process(second)


async def test_calls_during_the_outage_wait_and_succeed() -> None:
    second: ServerProcess | None = None
    async with process_and_client() as (first, client):
        try:
            first.kill()
            await down(client)
            rpc = await still_waiting(client.send_rpc("add", 20, 22, wait_timeout=60))
            stream = client.stream_rpc("ticks", wait_timeout=60)
            first_chunk = await still_waiting(stream.__anext__())
            with pytest.raises(ConnectionClosedError, match="not connected"):
                client.send("fire and forget")  # not buffered while disconnected
            second = await start_process(first.port)
            assert (await asyncio.wait_for(rpc, 30)).data == 42
            assert (await asyncio.wait_for(first_chunk, 30)).data == 0
            assert (await asyncio.wait_for(stream.__anext__(), 5)).data == 1
            await stream.aclose()
        finally:
            await stop_process(second)


async def test_in_flight_calls_fail_unless_idempotent() -> None:
    second: ServerProcess | None = None
    async with process_and_client() as (first, client):
        try:
            plain = asyncio.ensure_future(client.send_rpc("slow", 30, wait_timeout=60))
            safe = asyncio.ensure_future(client.send_rpc("slow", 0.2, wait_timeout=60, idempotent=True))
            stream = client.stream_rpc("ticks")
            assert (await asyncio.wait_for(stream.__anext__(), 5)).data == 0
            assert (await client.send_rpc("add", 1, 1)).data == 2  # the slow calls have reached the server
            first.kill()
            with pytest.raises(ConnectionClosedError, match="may have run"):
                await asyncio.wait_for(plain, 10)
            with pytest.raises(ConnectionClosedError):
                while True:  # chunks already received may still be read, then the stream fails
                    await asyncio.wait_for(stream.__anext__(), 5)
            assert not safe.done()
            second = await start_process(first.port)
            assert (await asyncio.wait_for(safe, 30)).data == "done"  # re-sent to the new server
        finally:
            await stop_process(second)


async def test_rpc_waiting_for_the_connection_times_out() -> None:
    async with process_and_client() as (server, client):
        server.kill()
        await down(client)
        with pytest.raises(RPCTimeoutError):
            await client.send_rpc("add", 1, 2, wait_timeout=0.3)
        with pytest.raises(RPCTimeoutError):
            await client.stream_rpc("ticks", wait_timeout=0.3).__anext__()
        assert client.reconnecting  # the timeouts ended the calls, not the reconnect


async def test_gives_up_after_max_attempts_and_closes() -> None:
    events = Events()
    async with process_and_client(events, retry=True, max_retry_attempt=3, retry_interval=0.05) as (server, client):
        server.kill()  # never comes back
        await down(client)
        waiting = [
            asyncio.ensure_future(client.send_rpc("add", 1, 2, wait_timeout=None)),
            asyncio.ensure_future(client.send_rpc("add", 1, 2, wait_timeout=60, idempotent=True)),
        ]
        stream = asyncio.ensure_future(client.stream_rpc("ticks", wait_timeout=60).__anext__())
        receiving = asyncio.ensure_future(client.recv(timeout=60))
        for call in [*waiting, stream]:
            with pytest.raises(ConnectionFailedError, match=SENTENCE):
                await asyncio.wait_for(call, 30)
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(receiving, 30)
        assert client.state is ConnectionState.CLOSED
        assert not client.reconnecting
        with pytest.raises(ConnectionClosedError):
            await client.send_rpc("add", 1, 2)
        with pytest.raises(ConnectionClosedError):
            await client.recv(1)
        assert events.disconnects == [None]
        assert events.reconnects == []


async def test_give_up_error_is_also_the_lower_layers_class() -> None:
    port = await closed_port()
    server = WebSocketServer(HOST, port, clientHandler=Handler)
    await server.start()
    client = WebSocketClient(f"ws://{HOST}:{port}")
    try:
        await client.connect(retry=True, max_retry_attempt=2, retry_interval=0.05)
        await server.close(timeout=1.0)  # 1001, and then connections are refused
        with pytest.raises(ConnectionFailedError, match=SENTENCE) as info:
            await client.send_rpc("add", 1, 2, wait_timeout=30)
        assert isinstance(info.value, ConnectionRefusedError)  # as 0.5.x let it through
    finally:
        await client.close()
        await server.close(timeout=1.0)


# --------------------------------------------------------------------------- close codes


@asynccontextmanager
async def in_process_server(port: int = 0) -> AsyncIterator[WebSocketServer[Any]]:
    server = WebSocketServer(HOST, port, clientHandler=Handler)
    await server.start()
    try:
        yield server
    finally:
        await server.close(timeout=1.0)


@pytest.mark.parametrize("code", [1000, 1008, 4003])
async def test_deliberate_close_by_the_server_does_not_reconnect(code: int) -> None:
    assert code in NO_RECONNECT_CLOSE_CODES
    events = Events()
    async with in_process_server() as server:
        client = events.client(server.port)
        try:
            await client.connect(**PATIENT)
            assert (await client.send_rpc("close_me", code)).data == "closing"
            await down(client)
            assert client.close_code == code
            assert client.state is ConnectionState.DISCONNECTED
            assert not client.reconnecting
            with pytest.raises(ConnectionClosedError):
                await client.send_rpc("add", 1, 1)  # at once: nothing to wait for
            await asyncio.sleep(0.5)  # many retry intervals: no new connection
            assert not server.clients
            assert events.disconnects == [code]
            assert events.reconnects == []
        finally:
            await client.close()


@pytest.mark.parametrize("code", [1011, 1012, 1013, 4008])
async def test_other_close_codes_reconnect(code: int) -> None:
    assert code not in NO_RECONNECT_CLOSE_CODES
    events = Events()
    async with in_process_server() as server:
        client = events.client(server.port)
        try:
            await client.connect(**PATIENT)
            waiting = asyncio.ensure_future(client.recv(timeout=30))
            assert (await client.send_rpc("close_me", code)).data == "closing"
            await wait_until(lambda: bool(events.disconnects))
            assert events.disconnects == [code]
            await up(client)
            assert (await client.send_rpc("add", 4, 4)).data == 8
            await client.send_rpc("push", "after the reconnect")
            assert (await asyncio.wait_for(waiting, 10)).data == "after the reconnect"
            await wait_until(lambda: events.reconnects == [False])
        finally:
            await client.close()


async def test_server_shutdown_1001_then_restart_reconnects() -> None:
    events = Events()
    received: list[Any] = []

    async def on_receive(packet: Packet[Any]) -> None:
        received.append(packet.data)

    async with in_process_server() as server:
        port = server.port
        client = events.client(port, on_receive=on_receive)
        try:
            await client.connect(**PATIENT)
            await client.send_rpc("push", "before")
            await wait_until(lambda: received == ["before"])
            await server.close(timeout=1.0)
            await wait_until(lambda: events.disconnects == [1001])
            async with in_process_server(port) as again:
                await up(client)
                await client.send_rpc("push", "after")
                await wait_until(lambda: received == ["before", "after"])  # on_receive keeps working
                await wait_until(lambda: len(again.clients) == 1)
        finally:
            await client.close()


# --------------------------------------------------------------------------- what does not reconnect


async def test_client_close_never_reconnects() -> None:
    events = Events()
    async with in_process_server() as server:
        client = events.client(server.port)
        await client.connect(**PATIENT)
        await wait_until(lambda: len(server.clients) == 1)
        await client.close()
        assert client.state is ConnectionState.CLOSED
        await wait_until(lambda: not server.clients)
        await asyncio.sleep(0.5)  # many retry intervals
        assert not server.clients
        assert client.state is ConnectionState.CLOSED
        assert events.disconnects == [] and events.reconnects == []


async def test_client_close_during_the_outage_stops_reconnecting() -> None:
    async with in_process_server() as server:
        port = server.port
        client = WebSocketClient(f"ws://{HOST}:{port}")
        await client.connect(**PATIENT)
        await server.close(timeout=1.0)
        await down(client)
        assert client.reconnecting
        waiting = await still_waiting(client.send_rpc("add", 1, 2, wait_timeout=60))
        receiving = await still_waiting(client.recv(timeout=60))
        await client.close()
        assert client.state is ConnectionState.CLOSED and not client.reconnecting
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(receiving, 5)
        async with in_process_server(port) as again:
            await asyncio.sleep(0.5)
            assert not again.clients
            assert client.state is ConnectionState.CLOSED


async def test_without_retry_a_drop_leaves_the_client_closed() -> None:
    events = Events()
    second: ServerProcess | None = None
    async with process_and_client(events, retry=False) as (first, client):
        try:
            first.kill()
            await down(client)
            assert client.state is ConnectionState.DISCONNECTED
            assert not client.reconnecting
            second = await start_process(first.port)
            await asyncio.sleep(0.5)
            assert client.state is ConnectionState.DISCONNECTED
            with pytest.raises(ConnectionClosedError):
                await client.send_rpc("add", 1, 1)
            with pytest.raises(ConnectionClosedError):
                await client.recv(1)
            assert events.disconnects == [None] and events.reconnects == []
        finally:
            await stop_process(second)


# --------------------------------------------------------------------------- callbacks


async def test_failing_callbacks_are_logged_and_do_not_break_the_client(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="webshocket.client")

    def on_disconnect(code: int | None) -> None:
        raise RuntimeError("disconnect callback broke")

    async def on_reconnect(recovered: bool) -> None:
        raise RuntimeError("reconnect callback broke")

    async with in_process_server() as server:
        port = server.port
        client = WebSocketClient(f"ws://{HOST}:{port}", on_disconnect=on_disconnect, on_reconnect=on_reconnect)
        try:
            await client.connect(**PATIENT)
            await server.close(timeout=1.0)
            async with in_process_server(port):
                assert (await client.send_rpc("add", 1, 2, wait_timeout=30)).data == 3
                await wait_until(lambda: "reconnect callback broke" in caplog.text)
            assert "disconnect callback broke" in caplog.text
        finally:
            await client.close()


# --------------------------------------------------------------------------- network cut


async def test_network_cut_is_detected_by_ping_and_reconnects() -> None:
    events = Events()
    async with in_process_server() as server:
        proxy = Proxy(server.port)
        async with proxy.running() as port:
            client = events.client(port)
            try:
                # auto_ping_* go to picows: a cut is noticed after ~0.4 s of silence
                await client.connect(**PATIENT, auto_ping_idle_timeout=0.2, auto_ping_reply_timeout=0.2)
                assert (await client.send_rpc("add", 1, 1)).data == 2
                proxy.cut()
                lost = asyncio.ensure_future(client.send_rpc("add", 2, 2, wait_timeout=60))
                resent = asyncio.ensure_future(client.send_rpc("add", 3, 3, wait_timeout=60, idempotent=True))
                with pytest.raises(ConnectionClosedError, match="may have run"):
                    await asyncio.wait_for(lost, 30)
                assert (await asyncio.wait_for(resent, 30)).data == 6
                assert client.state is ConnectionState.CONNECTED
                assert (await client.send_rpc("add", 4, 4)).data == 8
                assert events.disconnects == [None]
                await wait_until(lambda: events.reconnects == [False])
            finally:
                await client.close()


async def test_close_frame_with_the_handshake_never_leaves_a_dead_connected_client() -> None:
    """A server that accepts the upgrade and closes at once (1013): the client does not stay CONNECTED."""
    from rawws import CLOSE
    from test_client_frames import raw_server

    async def script(ws: Any) -> None:
        ws.send_frame(CLOSE, struct.pack("!H", 1013) + b"try again later", mask=False)
        await ws.wait_eof()

    async with raw_server(script) as (port, _):
        client = WebSocketClient(f"ws://{HOST}:{port}")
        try:
            await client.connect()
        except ConnectionFailedError:
            pass  # usually: the close frame came with the 101
        await down(client)
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(client.send_rpc("add", 1, 2), 5)
        await client.close()
