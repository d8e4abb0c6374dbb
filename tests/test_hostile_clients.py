"""Hardening II: no client, and no handful of clients, can exhaust the server or starve the others.

Each test runs an attack over real sockets against a real server while a well-behaved client
keeps calling, and checks that the attacker is bounded (tasks, bytes, queue entries, frames)
and that the well-behaved client is still answered.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
import trustme
from helpers import HOST, connected_client, running_server, wait_until
from rawws import BINARY, CLOSE, CONTINUATION, FRAMEWORK, RawWebSocket, frame_bytes, request_map

from webshocket import (
    ClientConnection,
    Packet,
    RPCErrorCode,
    WebSocketClient,
    WebSocketHandler,
    WebSocketServer,
    rate_limit,
    rpc_method,
)
from webshocket._fanout import CLOSE_SLOW_CONSUMER

Conn = ClientConnection[Any]
KiB = 1024
MiB = 1024 * KiB


class Handler(WebSocketHandler[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.forever = asyncio.Event()  # never set
        self.received: list[Packet[Any]] = []

    @rpc_method()
    async def ping(self, connection: Conn) -> str:
        await asyncio.sleep(0)  # a real task, not run inline
        return "pong"

    @rpc_method()
    async def wait(self, connection: Conn) -> None:
        await self.forever.wait()

    @rpc_method()
    async def waiting_stream(self, connection: Conn) -> AsyncIterator[int]:
        yield 0
        await self.forever.wait()

    @rpc_method()
    async def blob(self, connection: Conn, n: int) -> bytes:
        return b"r" * n

    @rpc_method()
    async def chunks(self, connection: Conn, count: int, size: int) -> AsyncIterator[bytes]:
        chunk = b"c" * size
        for _ in range(count):
            yield chunk

    @rpc_method()
    async def numbers(self, connection: Conn, count: int) -> AsyncIterator[int]:
        for i in range(count):  # never awaits
            yield i

    @rpc_method()
    async def deep(self, connection: Conn, depth: int) -> Any:
        value: Any = 0
        for _ in range(depth):
            value = [value]
        return value

    @rpc_method()
    async def sub(self, connection: Conn, channel: str) -> bool:
        connection.subscribe(channel)
        return True


class SlowReceiver(Handler):
    """on_receive that does not return until the test says so."""

    async def on_receive(self, connection: Conn, packet: Packet[Any]) -> None:
        self.received.append(packet)
        await self.forever.wait()


class SlowConnect(Handler):
    async def on_connect(self, connection: Conn) -> None:
        await self.forever.wait()


async def answered(client: WebSocketClient, timeout: float = 5.0) -> None:
    """The well-behaved client is answered (a real task on the server)."""
    assert (await client.send_rpc("ping", wait_timeout=timeout)).data == "pong"


def engine_of(conn: Conn) -> Any:
    return conn._engine


def backlog(conn: Conn) -> int:
    """Bytes the server holds for ``conn``, waiting to be written."""
    return int(engine_of(conn).sink.backlog())


async def new_connection(server: WebSocketServer[Any], known: set[Conn]) -> Conn:
    await wait_until(lambda: set(server.clients) - known != set(), timeout=5)
    (conn,) = set(server.clients) - known
    return conn


async def raw(server: WebSocketServer[Any], rcvbuf: int | None = None) -> tuple[RawWebSocket, Conn]:
    known = set(server.clients)
    ws = await RawWebSocket.connect(server.port, FRAMEWORK, rcvbuf=rcvbuf)
    return ws, await new_connection(server, known)


def rpc(method: str, *args: Any, call_id: str) -> bytes:
    return frame_bytes(BINARY, msgpack.packb(request_map(method, *args, call_id=call_id), use_bin_type=True))


# ---------------------------------------------------------------------------- 1. tasks


async def test_streams_reusing_one_call_id_run_once_and_end_with_their_connection() -> None:
    async with running_server(Handler) as server, connected_client(server) as good:
        ws, conn = await raw(server)
        ws.send_raw(b"".join(rpc("waiting_stream", call_id="same") for _ in range(600)))
        chunks = errors = 0
        while chunks + errors < 600:
            reply = await ws.read_reply("same")
            if reply["error"] is None:
                assert reply["response"] == 0  # the first one runs
                chunks += 1
            else:
                assert reply["error"] == RPCErrorCode.INVALID_PARAMS and "already in flight" in reply["response"]
                errors += 1
        assert (chunks, errors) == (1, 599)
        assert server.metrics()["rpc_running"] == 1
        await answered(good)
        ws.writer.transport.abort()  # gone, without a close frame
        await wait_until(lambda: server.metrics()["rpc_running"] == 0 and conn not in server.clients, timeout=5)
        await answered(good)


async def test_tasks_of_a_client_that_leaves_while_reading_is_paused_are_cancelled() -> None:
    async with running_server(Handler, max_inflight_rpcs=4) as server, connected_client(server) as good:
        ws, conn = await raw(server)
        ws.send_raw(b"".join(rpc("wait", call_id=f"w{i}") for i in range(50)))
        await wait_until(lambda: engine_of(conn).paused != 0, timeout=5)  # max_inflight_rpcs reached
        assert server.metrics()["rpc_running"] == 4
        ws.writer.close()  # FIN: the server is not reading, so only the sweep can see it
        await wait_until(lambda: server.metrics()["rpc_running"] == 0 and conn not in server.clients, timeout=5)
        await answered(good)


async def test_a_few_clients_cannot_take_the_task_budget() -> None:
    options = {"rpc_task_limit": 8, "rpc_task_reserve": 1, "rpc_task_share": 2, "max_inflight_rpcs": 64}
    async with running_server(Handler, **options) as server:
        attackers = []
        for a in range(6):  # 6 x (1 reserved + 2 shared) > 8 pooled: the pool is full, and more waits
            ws, _ = await raw(server)
            ws.send_raw(b"".join(rpc("wait", call_id=f"a{a}-{i}") for i in range(40)))
            attackers.append(ws)
        await wait_until(lambda: server.metrics()["rpc_running"] == 6 + 8, timeout=5)
        assert server.metrics()["rpc_queued"] > 0
        async with connected_client(server) as newcomer:  # its reserved slot answers it
            for _ in range(3):
                await answered(newcomer)
        assert server.metrics()["rpc_running"] == 14  # the attackers did not get more
        for ws in attackers:
            ws.writer.transport.abort()
        await wait_until(lambda: server.metrics()["rpc_running"] == 0 and server.metrics()["rpc_queued"] == 0)


# ---------------------------------------------------------------------------- 2. replies are bounded


async def test_replies_to_a_client_that_never_reads_are_bounded_then_it_is_cut() -> None:
    options = {"max_send_buffer": 256 * KiB, "slow_consumer_timeout": 1.0}
    async with running_server(Handler, **options) as server, connected_client(server) as good:
        ws, conn = await raw(server, rcvbuf=4096)
        ws.pause_reading()
        sock = engine_of(conn).transport.underlying_transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * KiB)
        ws.send_raw(b"".join(rpc("blob", 64 * KiB, call_id=f"b{i}") for i in range(3000)))
        await wait_until(lambda: engine_of(conn).paused != 0, timeout=5)
        peak = 0
        while conn.is_connected:
            peak = max(peak, backlog(conn))
            await answered(good)
            await asyncio.sleep(0.05)
        # below the transport's high-water mark, plus one batch of replies written at once
        # (at most max_send_buffer and one reply): then reading paused and nothing more was answered
        assert peak < 2 * 256 * KiB + 64 * KiB + 16 * KiB, peak
        assert server.stats["rpc_calls"] < 3000  # the rest was never read
        assert server.stats["slow_consumer_disconnects"] == 1
        await answered(good)
        ws.writer.transport.abort()


async def test_a_stream_to_a_client_that_never_reads_is_bounded() -> None:
    options = {"max_send_buffer": 128 * KiB, "slow_consumer_timeout": 1.0}
    async with running_server(Handler, **options) as server, connected_client(server) as good:
        ws, conn = await raw(server, rcvbuf=4096)
        ws.pause_reading()
        ws.send_raw(rpc("chunks", 20000, KiB, call_id="s"))
        peak = 0
        while conn.is_connected:
            peak = max(peak, backlog(conn))
            await answered(good)
            await asyncio.sleep(0.02)
        assert peak < 128 * KiB + 16 * KiB, peak  # the stream waited for the client instead
        # and ended with its connection (cancelled at the close; its task unwinds a moment later)
        await wait_until(lambda: server.metrics()["rpc_running"] == 0, timeout=5)
        ws.writer.transport.abort()


# ---------------------------------------------------------------------------- 3. queues are bounded


async def test_the_on_receive_inbox_is_bounded_and_reading_pauses() -> None:
    async with running_server(SlowReceiver, packet_qsize=16) as server, connected_client(server) as good:
        ws, conn = await raw(server)
        blob = msgpack.packb({"source": 1, "data": b"x" * 16 * KiB})
        for _ in range(300):
            ws.send_frame(BINARY, blob)
        await wait_until(lambda: engine_of(conn).paused != 0, timeout=5)
        await asyncio.sleep(0.3)
        engine = engine_of(conn)
        held = len(engine.inbox or ()) + len(engine.pending or ())
        assert held <= 16 + 300 * 0 + 64, held  # the bound, plus what one read brought in
        assert len(engine.inbox or ()) <= 16
        await answered(good)
        ws.writer.transport.abort()


async def test_the_inbox_is_bounded_in_bytes_too() -> None:
    async with running_server(SlowReceiver, max_queued_bytes=2 * MiB) as server, connected_client(server) as good:
        ws, conn = await raw(server)
        blob = msgpack.packb({"source": 1, "data": b"x" * (900 * KiB)})
        for _ in range(40):  # 36 MiB of packets for an on_receive that never returns
            ws.send_frame(BINARY, blob)
        await wait_until(lambda: engine_of(conn).paused != 0, timeout=5)
        await asyncio.sleep(0.3)
        assert engine_of(conn).held <= 2 * MiB + 2 * len(blob), engine_of(conn).held  # the bound, plus one read
        await answered(good)
        ws.writer.transport.abort()


async def test_messages_during_a_long_on_connect_are_bounded() -> None:
    async with running_server(SlowConnect, packet_qsize=8) as server:
        ws, conn = await raw(server)
        blob = msgpack.packb({"source": 1, "data": b"x" * 16 * KiB})
        for _ in range(300):
            ws.send_frame(BINARY, blob)
        await wait_until(lambda: engine_of(conn).paused != 0, timeout=5)
        await asyncio.sleep(0.3)
        assert len(engine_of(conn).pending or ()) < 8 + 64  # the bound, plus what one read brought in
        ws.writer.transport.abort()


# ---------------------------------------------------------------------------- 4. fragments


async def test_a_message_of_too_many_frames_is_closed_with_1009() -> None:
    async with running_server(Handler, max_message_frames=100) as server, connected_client(server) as good:
        ws, _conn = await raw(server)
        ws.send_frame(BINARY, b"", fin=False)
        ws.send_raw(b"".join(frame_bytes(CONTINUATION, b"", fin=False) for _ in range(200_000)))
        close = await ws.read_close(timeout=5)
        assert close.close_code == 1009
        await answered(good)


# ---------------------------------------------------------------------------- 5. streams yield


async def test_a_stream_that_never_awaits_lets_other_clients_be_answered() -> None:
    async with running_server(Handler) as server, connected_client(server) as good:
        async with connected_client(server) as streamer:
            received = 0

            async def consume() -> None:
                nonlocal received
                async for _chunk in streamer.stream_rpc("numbers", 100_000):
                    received += 1

            task = asyncio.ensure_future(consume())
            await wait_until(lambda: received > 0, timeout=5)
            await answered(good)
            assert received < 100_000  # answered while the stream was still going
            await asyncio.wait_for(task, 60)
            assert received == 100_000


# ---------------------------------------------------------------------------- 6. encoding errors


async def test_an_unencodable_reply_becomes_an_error_and_the_connection_goes_on() -> None:
    async with running_server(Handler) as server, connected_client(server) as client:
        response = await client.send_rpc("deep", 100_000)
        assert response.error == RPCErrorCode.INTERNAL_SERVER_ERROR
        assert "unserializable" in response.response
        await answered(client)
        assert server.stats["encode_errors"] == 1


async def test_an_unencodable_publish_reaches_nobody_and_raises() -> None:
    async with running_server(Handler) as server:
        seen: list[Any] = []

        async def on_receive(packet: Packet[Any]) -> None:
            seen.append(packet.data)

        async with connected_client(server, on_receive=on_receive) as a, connected_client(server) as b:
            assert (await a.send_rpc("sub", "news")).data is True
            assert (await b.send_rpc("sub", "news")).data is True
            value: Any = 0
            for _ in range(100_000):
                value = [value]
            with pytest.raises((RecursionError, ValueError, TypeError)):
                server.publish("news", value)
            server.publish("news", "after")
            await wait_until(lambda: seen == ["after"], timeout=5)
            assert (await b.recv(timeout=5)).data == "after"  # nothing of the failed one before it
            assert server.stats["encode_errors"] == 1


# ---------------------------------------------------------------------------- 7. slow consumers: time, not size


async def test_a_reading_subscriber_gets_a_whole_burst_while_a_stalled_one_is_cut() -> None:
    options = {"slow_consumer_timeout": 2.0}
    async with running_server(Handler, **options) as server:
        got: list[int] = []
        done = asyncio.Event()
        count = 3000

        async def on_receive(packet: Packet[Any]) -> None:
            got.append(packet.data[0])
            if len(got) == count:
                done.set()

        async with connected_client(server, on_receive=on_receive) as reader:
            assert (await reader.send_rpc("sub", "burst")).data is True
            stalled, stalled_conn = await raw(server, rcvbuf=4096)
            stalled.send_packet(request_map("sub", "burst", call_id="sub"))
            await stalled.read_reply("sub")
            stalled.pause_reading()
            blob = b"b" * 16 * KiB
            peak = 0
            for i in range(count):  # 48 MiB, as fast as the server takes it
                server.publish("burst", [i, blob])
                if i % 64 == 0:
                    peak = max(peak, backlog(stalled_conn) if stalled_conn.is_connected else 0)
                    await asyncio.sleep(0)
            await asyncio.wait_for(done.wait(), 60)
            assert got == list(range(count))  # every message, in order
            await wait_until(lambda: not stalled_conn.is_connected, timeout=10)
            assert server.stats["slow_consumer_disconnects"] == 1
            assert peak <= server.config.max_send_backlog + 64 * KiB
            close = await stalled_close(stalled)
            assert close in (CLOSE_SLOW_CONSUMER, None)


async def stalled_close(ws: RawWebSocket) -> int | None:
    """The close code a stalled client finds once it reads again (None if it was aborted first)."""
    ws.resume_reading()
    try:
        while True:
            frame = await ws.read_frame(timeout=5)
            if frame.opcode == CLOSE:
                return frame.close_code
    except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
        return None


# ---------------------------------------------------------------------------- 8. keep-alive under backpressure


async def test_a_paused_healthy_client_is_not_closed_for_missing_pongs() -> None:
    server = WebSocketServer(HOST, 0, clientHandler=Handler, max_inflight_rpcs=2)
    await server.start(auto_ping_idle_timeout=0.2, auto_ping_reply_timeout=0.2)
    try:
        async with WebSocketClient(f"ws://{HOST}:{server.port}") as client:
            (conn,) = server.clients
            calls = [asyncio.ensure_future(client.send_rpc("wait", wait_timeout=None)) for _ in range(4)]
            await wait_until(lambda: engine_of(conn).paused != 0, timeout=5)
            await asyncio.sleep(1.5)  # several ping periods while the server does not read
            assert conn.is_connected and client.is_connected
            for call in calls:
                call.cancel()
    finally:
        await server.close(timeout=1)


# ---------------------------------------------------------------------------- 9. handshake timeout


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_a_connection_that_never_handshakes_is_dropped(tls: bool) -> None:
    context = None
    if tls:
        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(HOST).configure_cert(context)
    async with running_server(Handler, ssl_context=context, handshake_timeout=0.5) as server:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        try:
            # sends nothing: no ClientHello, no upgrade request; the server hangs up (default: 60 s)
            await asyncio.wait_for(reader.read(), 10)
            assert reader.at_eof()
        finally:
            writer.close()


# ---------------------------------------------------------------------------- 11. quiet failure modes


async def test_assigning_to_a_connection_attribute_raises() -> None:
    async with running_server(Handler) as server, connected_client(server):
        (conn,) = server.clients
        with pytest.raises(AttributeError, match="max_subscribed_channels"):
            conn.max_subscribed_channels = 50  # type: ignore[misc]
        with pytest.raises(AttributeError, match="uid"):
            conn.uid = "x"  # type: ignore[misc]
        conn.user = "alice"  # session state as before
        assert conn.session_state == {"user": "alice"}


def test_two_rpc_methods_with_one_public_name_fail_where_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="'admin_reset' and 'reset' are both named 'reset'"):

        class Clash(WebSocketHandler[Any]):
            @rpc_method(requires=lambda c: bool(c.session_state.get("admin")))
            async def reset(self, connection: Conn) -> str:
                return "admin only"

            @rpc_method(alias_name="reset")
            async def admin_reset(self, connection: Conn) -> str:
                return "anyone"


async def test_registering_a_taken_name_needs_replace() -> None:
    async def other(connection: Conn) -> str:
        return "other"

    rpc_method(alias_name="ping")(other)
    async with running_server(Handler) as server, connected_client(server) as client:
        with pytest.raises(ValueError, match="'ping' is registered already"):
            server.register_rpc_method(other)
        await answered(client)
        server.register_rpc_method(other, replace=True)
        assert (await client.send_rpc("ping")).data == "other"


class Leaky(Handler):
    @rpc_method()
    async def connect_db(self, connection: Conn) -> None:
        raise RuntimeError("could not connect to postgres://app:s3cret@db/app")


@pytest.mark.parametrize("detail", ["full", "minimal"])
async def test_error_detail(detail: str, caplog: pytest.LogCaptureFixture) -> None:
    async with running_server(Leaky, error_detail=detail) as server, connected_client(server) as client:
        response = await client.send_rpc("connect_db")
        assert response.error == RPCErrorCode.INTERNAL_SERVER_ERROR
        if detail == "full":  # 0.5.x's format
            assert response.response == "Server error (RuntimeError): could not connect to postgres://app:s3cret@db/app"
        else:
            assert "s3cret" not in response.response and response.response.startswith(
                "Server error (RuntimeError) [ref "
            )
            ref = response.response.rsplit(" ", 1)[1].rstrip("]")
            logged = [r for r in caplog.records if ref in r.getMessage()]
            assert logged and "s3cret" in str(logged[0].exc_info[1])  # type: ignore[index]


# ---------------------------------------------------------------------------- 10. rate limits per key


class Limited(WebSocketHandler[Any]):
    @rpc_method()
    async def login(self, connection: Conn, user: str) -> None:
        connection.user = user

    @rate_limit(limit=2, period="1h", key="address")
    @rpc_method()
    async def by_address(self, connection: Conn) -> str:
        return "ok"

    @rate_limit(limit=2, period="1h", key=lambda c: c.session_state.get("user"))
    @rpc_method()
    async def by_user(self, connection: Conn) -> str:
        return "ok"

    @rate_limit(limit=2, period="1h")
    @rpc_method(requires=lambda c: False)
    async def forbidden(self, connection: Conn) -> str:
        return "never"


def refused(response: Any) -> bool:
    return bool(response.error == RPCErrorCode.RATE_LIMIT_EXCEEDED)


async def test_a_limit_by_address_survives_reconnecting() -> None:
    async with running_server(Limited) as server:
        async with connected_client(server) as first:
            assert (await first.send_rpc("by_address")).data == "ok"
        async with connected_client(server) as second, connected_client(server) as third:
            assert (await second.send_rpc("by_address")).data == "ok"
            assert refused(await third.send_rpc("by_address"))  # same address: the bucket is shared
            assert refused(await second.send_rpc("by_address"))


async def test_a_limit_by_user_is_shared_by_that_users_connections_only() -> None:
    async with running_server(Limited) as server:
        async with connected_client(server) as a1, connected_client(server) as a2, connected_client(server) as b:
            for client, user in ((a1, "alice"), (a2, "alice"), (b, "bob")):
                await client.send_rpc("login", user)
            assert (await a1.send_rpc("by_user")).data == "ok"
            assert (await a2.send_rpc("by_user")).data == "ok"
            assert refused(await a1.send_rpc("by_user"))
            assert refused(await a2.send_rpc("by_user"))
            assert (await b.send_rpc("by_user")).data == "ok"  # bob has his own bucket


async def test_calls_refused_by_requires_count_against_the_limit() -> None:
    async with running_server(Limited) as server, connected_client(server) as client:
        for _ in range(2):
            assert (await client.send_rpc("forbidden")).error == RPCErrorCode.ACCESS_DENIED
        assert refused(await client.send_rpc("forbidden"))
        assert server.stats["rate_limited"] == 1


def test_a_bad_rate_limit_key_fails_at_definition() -> None:
    with pytest.raises(ValueError, match="key"):
        rate_limit(limit=1, key="user")  # type: ignore[arg-type]
