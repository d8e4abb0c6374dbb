"""Hardening limits over real sockets: message size, slow consumers, in-flight RPCs, connections,
subscriptions and graceful shutdown with a deadline.

Every limit must hit only the connection that crossed it: the others keep getting answers.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
from helpers import connected_client, running_server, uri_of, wait_until
from rawws import (
    BINARY,
    CONTINUATION,
    FRAMEWORK,
    HandshakeRefused,
    RawWebSocket,
    frame_bytes,
    raw_websocket,
    request_map,
)

import webshocket
from webshocket import (
    ClientConnection,
    ConnectionClosedError,
    ConnectionFailedError,
    Packet,
    RPCErrorCode,
    ServerState,
    WebSocketClient,
    WebSocketHandler,
    WebSocketServer,
    rpc_method,
)
from webshocket._fanout import CLOSE_SLOW_CONSUMER
from webshocket._listener_py import PAUSE_BACKLOG
from webshocket.constant import DEFAULT_MAX_INFLIGHT_RPCS, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_SEND_BUFFER

Conn = ClientConnection[Any]
MiB = 1024 * 1024
PAYLOAD = b"\xab" * (64 * 1024)  # one published blob
PUBLISH_CAP = 30 * MiB  # give up flooding a slow consumer after this much


class LimitHandler(WebSocketHandler[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.started = 0
        self.finished = 0
        self.cancelled = 0
        self.slow_started = asyncio.Event()

    @rpc_method()
    async def ping(self, connection: Conn) -> str:
        return "pong"

    @rpc_method()
    async def size(self, connection: Conn, value: Any) -> int:
        return len(value)

    @rpc_method()
    async def blob(self, connection: Conn, n: int) -> bytes:
        return b"r" * n

    @rpc_method()
    async def sub(self, connection: Conn, names: list[str]) -> list[str]:
        connection.subscribe(names)
        return sorted(connection.subscribed_channel)

    @rpc_method()
    async def hold(self, connection: Conn, pad: str = "") -> int:
        """Runs until the test sets ``release``."""
        self.started += 1
        await self.release.wait()
        self.finished += 1
        return len(pad)

    @rpc_method()
    async def slow(self, connection: Conn, seconds: float) -> str:
        self.slow_started.set()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return "slept"

    @rpc_method()
    async def ticker(self, connection: Conn) -> AsyncIterator[int]:
        i = 0
        while True:
            yield i
            i += 1
            await asyncio.sleep(0.01)


def handler_of(server: WebSocketServer[Any]) -> LimitHandler:
    handler = server.handler
    assert isinstance(handler, LimitHandler)
    return handler


async def new_connection(server: WebSocketServer[Any], known: set[Conn]) -> Conn:
    """The server-side connection that appeared beside ``known``."""
    await wait_until(lambda: len(server.clients - known) == 1, timeout=2.0)
    (conn,) = server.clients - known
    return conn


async def raw_subscriber(
    server: WebSocketServer[Any], channel: str, rcvbuf: int | None = 4096
) -> tuple[RawWebSocket, Conn]:
    """A raw framework client subscribed to ``channel`` (with a small receive buffer)."""
    known = set(server.clients)
    ws = await RawWebSocket.connect(server.port, FRAMEWORK, rcvbuf=rcvbuf)
    conn = await new_connection(server, known)
    ws.send_packet(request_map("sub", [channel], call_id="sub"))
    rpc = await ws.read_reply("sub")
    assert rpc["response"] == [channel]
    return ws, conn


def exact_size_request(size: int, call_id: str) -> tuple[bytes, int]:
    """A msgpack ``size`` request of exactly ``size`` bytes, and the length of its argument."""
    overhead = len(msgpack.packb(request_map("size", b"", call_id=call_id), use_bin_type=True))
    body = size - overhead - 3  # bin32 header (5 bytes) instead of bin8 (2 bytes)
    message = msgpack.packb(request_map("size", b"\x00" * body, call_id=call_id), use_bin_type=True)
    assert len(message) == size
    return message, body


# ---------------------------------------------------------------------------- defaults


def test_defaults_are_documented_values() -> None:
    server = WebSocketServer("127.0.0.1", 0, clientHandler=LimitHandler)
    assert server.max_message_size == 1024 * 1024 == DEFAULT_MAX_MESSAGE_SIZE
    assert server.max_send_buffer == 1024 * 1024 == DEFAULT_MAX_SEND_BUFFER
    assert server.slow_consumer_policy == "disconnect"
    assert server.max_inflight_rpcs == 256 == DEFAULT_MAX_INFLIGHT_RPCS
    assert CLOSE_SLOW_CONSUMER == 4008
    assert set(server.stats) >= {"dropped", "slow_consumer_disconnects"}
    assert server.stats["dropped"] == server.stats["slow_consumer_disconnects"] == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_message_size": 0},
        {"max_send_buffer": 0},
        {"slow_consumer_policy": "block"},
        {"max_inflight_rpcs": 1},
        {"rpc_task_limit": -1},  # 0 is accepted: no limit, as in 0.5.x (tests/test_fidelity.py)
    ],
)
def test_invalid_limits_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        WebSocketServer("127.0.0.1", 0, clientHandler=LimitHandler, **kwargs)


# ---------------------------------------------------------------------------- max_message_size


async def test_single_frame_above_default_limit_closes_only_that_connection_1009() -> None:
    async with running_server(LimitHandler) as server, connected_client(server) as bystander:
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            limit = server.max_message_size
            message, body = exact_size_request(limit, "at-limit")
            ws.send_frame(BINARY, message)  # exactly the limit: fine
            rpc = await ws.read_reply("at-limit", timeout=5)
            assert (rpc["error"], rpc["response"]) == (None, body)
            ws.send_frame(BINARY, exact_size_request(limit + 1, "over")[0])
            assert await ws.close_code() == 1009
            await ws.wait_eof()
        assert (await bystander.send_rpc("ping", wait_timeout=2)).data == "pong"
        assert (await bystander.send_rpc("size", b"y" * 500_000, wait_timeout=2)).data == 500_000
        await wait_until(lambda: len(server.clients) == 1, timeout=2.0)


async def test_fragmented_message_above_limit_closes_1009_though_each_fragment_is_small() -> None:
    async with running_server(LimitHandler) as server, connected_client(server) as bystander:
        fragment = 256 * 1024
        limit = server.max_message_size
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            message, body = exact_size_request(limit, "frag-at-limit")  # 4 fragments, exactly the limit: fine
            for offset in range(0, len(message), fragment):
                opcode = BINARY if offset == 0 else CONTINUATION
                ws.send_frame(opcode, message[offset : offset + fragment], fin=offset + fragment >= len(message))
            rpc = await ws.read_reply("frag-at-limit")
            assert (rpc["error"], rpc["response"]) == (None, body)
            message, _ = exact_size_request(limit + fragment, "frag-over")  # 5 fragments of 256 KiB
            for offset in range(0, len(message), fragment):
                opcode = BINARY if offset == 0 else CONTINUATION
                ws.send_frame(opcode, message[offset : offset + fragment], fin=offset + fragment >= len(message))
            assert await ws.close_code() == 1009
            await ws.wait_eof()
        assert (await bystander.send_rpc("ping", wait_timeout=2)).data == "pong"
        await wait_until(lambda: len(server.clients) == 1, timeout=2.0)


async def test_our_client_sending_too_much_is_closed_1009_and_fails_fast() -> None:
    async with running_server(LimitHandler) as server, connected_client(server) as bystander:
        client = WebSocketClient(uri_of(server))
        await client.connect()
        try:
            with pytest.raises(ConnectionClosedError):
                await client.send_rpc("size", b"z" * (2 * MiB), wait_timeout=5)  # 64 KiB frames, 2 MiB message
            await wait_until(lambda: not client.is_connected, timeout=2.0)
            assert client.close_code == 1009
        finally:
            await client.close()
        assert (await bystander.send_rpc("size", b"z" * (MiB // 2), wait_timeout=2)).data == MiB // 2
        await wait_until(lambda: len(server.clients) == 1, timeout=2.0)


# ---------------------------------------------------------------------------- slow consumers


async def flood(
    server: WebSocketServer[Any], conn: Conn, channel: str, samples: list[int], cap: int = PUBLISH_CAP
) -> int:
    """Publish 64 KiB blobs to ``channel`` until ``conn`` is closed by the server or ``cap`` bytes went out.

    Samples the slow connection's outgoing bytes after every publish.
    Returns how many packets were published.
    """
    published = 0
    while conn.is_connected and published * len(PAYLOAD) < cap:
        server.publish(channel, {"seq": published, "blob": PAYLOAD})
        published += 1
        samples.append(buffered(conn))
        await asyncio.sleep(0)
    return published


def buffered(conn: Conn) -> int:
    """Bytes the server holds for ``conn``: the transport's write buffer plus frames queued for this iteration."""
    return conn._engine.sink.backlog()


def healthy_subscriber(server: WebSocketServer[Any], seen: list[int]) -> WebSocketClient:
    async def on_receive(packet: Packet[Any]) -> None:
        seen.append(packet.data["seq"])

    return WebSocketClient(uri_of(server), on_receive=on_receive)


async def test_slow_consumer_is_disconnected_with_bounded_buffer_while_others_get_everything() -> None:
    async with running_server(LimitHandler, slow_consumer_timeout=0) as server:  # 0: cut at max_send_buffer
        seen: list[int] = []
        healthy = healthy_subscriber(server, seen)
        await healthy.connect()
        try:
            assert (await healthy.send_rpc("sub", ["feed"])).data == ["feed"]
            slow, conn = await raw_subscriber(server, "feed", rcvbuf=4096)
            try:
                slow.pause_reading()  # handshake done, then never reads again
                samples: list[int] = []
                published = await flood(server, conn, "feed", samples)
                assert not conn.is_connected, f"still connected after {published * len(PAYLOAD)} bytes"
                assert server.stats["slow_consumer_disconnects"] >= 1
                bound = server.max_send_buffer + 2 * (len(PAYLOAD) + 64) + 64 * 1024
                assert max(samples) < bound, (max(samples), bound)
                assert max(samples) > server.max_send_buffer // 2  # it did fill up: the cap was what stopped it
                await wait_until(lambda: conn not in server.clients, timeout=5.0)
                assert conn not in server.subscribers("feed")
                # the healthy subscriber got every packet, in order
                await wait_until(lambda: len(seen) == published, timeout=5.0)
                assert seen == list(range(published))
                assert (await healthy.send_rpc("ping", wait_timeout=2)).data == "pong"
                assert server.stats["dropped"] == 0
            finally:
                await slow.close()
        finally:
            await healthy.close()


async def test_slow_consumer_that_reads_late_sees_its_data_then_close_4008() -> None:
    async with running_server(LimitHandler, max_send_buffer=256 * 1024, slow_consumer_timeout=0) as server:
        slow, conn = await raw_subscriber(server, "feed", rcvbuf=4096)
        try:
            slow.pause_reading()
            published = await flood(server, conn, "feed", [])
            assert not conn.is_connected
            slow.resume_reading()  # within the grace period: everything buffered, then the close frame
            seqs: list[int] = []
            while True:
                frames, control = await slow.read_message(timeout=5)
                if control and control[-1].opcode == 0x8:
                    close = control[-1]
                    break
                packet = msgpack.unpackb(b"".join(f.payload for f in frames), raw=False)
                assert packet["source"] == 2 and packet["channel"] == "feed"
                assert packet["data"]["blob"] == PAYLOAD
                seqs.append(packet["data"]["seq"])
            assert close.close_code == CLOSE_SLOW_CONSUMER == 4008
            # nothing was dropped before the close: the packet that found the buffer full closed it
            assert seqs == list(range(published - 1))
            await slow.wait_eof()
            await wait_until(lambda: conn not in server.clients, timeout=2.0)
            assert server.stats["slow_consumer_disconnects"] == 1
        finally:
            await slow.close()


async def test_drop_policy_keeps_the_connection_counts_drops_and_never_drops_rpc_replies() -> None:
    async with running_server(LimitHandler, max_send_buffer=64 * 1024, slow_consumer_policy="drop") as server:
        async with connected_client(server) as bystander:
            assert (await bystander.send_rpc("sub", ["feed"])).data == ["feed"]
            slow, conn = await raw_subscriber(server, "feed", rcvbuf=4096)
            try:
                # small kernel buffers on both ends, so the replies pile up in the server's own buffer
                sock = conn._engine.transport.underlying_transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
                slow.pause_reading()
                calls = 60
                published = 0
                for i in range(calls):  # RPC replies of 64 KiB each, interleaved with publishes
                    slow.send_packet(request_map("blob", 64 * 1024, call_id=f"c{i}"))
                    await slow.writer.drain()
                    server.publish("feed", {"seq": published, "blob": b"p" * 1024})
                    published += 1
                    await asyncio.sleep(0)
                engine = conn._engine
                # replies past the cap stop the server reading this client (the rest of the calls wait)
                await wait_until(lambda: engine.paused & PAUSE_BACKLOG and engine.inflight == 0, timeout=5)
                assert buffered(conn) > server.max_send_buffer  # every reply was kept, beyond the cap
                for _ in range(20):  # the buffer now holds megabytes of replies: these are dropped
                    server.publish("feed", {"seq": published, "blob": b"p" * 1024})
                    published += 1
                assert conn.is_connected
                assert conn.dropped_packets > 0
                assert server.stats["dropped"] == sum(c.dropped_packets for c in server.clients)
                assert server.stats["slow_consumer_disconnects"] == 0
                dropped = conn.dropped_packets
                slow.resume_reading()
                slow.send_packet(request_map("ping", call_id="last"))
                replies: dict[str, int] = {}
                seqs: list[int] = []
                while "last" not in replies:
                    packet = await slow.read_packet(timeout=5)
                    if packet["source"] == 5:
                        rpc = packet["rpc"]
                        assert rpc["call_id"] not in replies, f"duplicate reply {rpc['call_id']}"
                        assert rpc["error"] is None
                        replies[rpc["call_id"]] = len(rpc["response"]) if rpc["call_id"] != "last" else -1
                    else:
                        seqs.append(packet["data"]["seq"])
                assert replies == {**{f"c{i}": 64 * 1024 for i in range(calls)}, "last": -1}
                assert seqs == sorted(seqs)
                assert len(seqs) + dropped == published
                # drained: pushes flow again, and the bystander never missed one
                server.publish("feed", {"seq": published, "blob": b"again"})
                packet = await slow.read_packet(timeout=5)
                assert packet["data"] == {"seq": published, "blob": b"again"}
                assert conn.dropped_packets == dropped
                for seq in range(published + 1):
                    assert (await bystander.recv(timeout=2)).data["seq"] == seq
            finally:
                await slow.close()


# ---------------------------------------------------------------------------- in-flight RPCs


async def test_inflight_cap_pauses_reading_then_answers_every_call_exactly_once() -> None:
    async with running_server(LimitHandler, max_inflight_rpcs=16) as server, connected_client(server) as other:
        handler = handler_of(server)
        total = 2000
        known = set(server.clients)
        async with raw_websocket(server.port, FRAMEWORK) as ws:
            conn = await new_connection(server, known)
            pad = "p" * 1000  # 2000 requests of ~1 KiB: more than one socket read
            burst = b"".join(
                frame_bytes(BINARY, msgpack.packb(request_map("hold", pad, call_id=f"h{i}"), use_bin_type=True))
                for i in range(total)
            )
            ws.send_raw(burst)
            await wait_until(lambda: conn._engine.paused != 0, timeout=2.0)
            await asyncio.sleep(0.05)  # let the calls already read start
            assert conn._engine.inflight >= 16
            started = handler.started
            await asyncio.sleep(0.2)
            assert handler.started == started, "the server kept reading from a paused connection"
            assert 16 <= started < total
            assert conn._engine.inflight == started
            # another connection is not held up
            assert (await other.send_rpc("ping", wait_timeout=1)).data == "pong"
            handler.release.set()
            replies: dict[str, int] = {}
            while len(replies) < total:
                rpc = (await ws.read_packet(timeout=5))["rpc"]
                assert rpc["call_id"] not in replies, f"duplicate reply {rpc['call_id']}"
                assert (rpc["error"], rpc["response"]) == (None, len(pad))
                replies[rpc["call_id"]] = rpc["response"]
            assert set(replies) == {f"h{i}" for i in range(total)}
            assert handler.started == handler.finished == total
            await wait_until(lambda: conn._engine.inflight == 0 and conn._engine.paused == 0, timeout=2.0)
            ws.send_packet(request_map("ping", call_id="after"))
            assert (await ws.read_reply("after"))["response"] == "pong"


# ---------------------------------------------------------------------------- max_connection


async def test_max_connection_burst_refuses_extras_with_503_then_admits_after_a_leave() -> None:
    async with running_server(LimitHandler, max_connection=3) as server:
        results = await asyncio.gather(
            *(RawWebSocket.connect(server.port, FRAMEWORK) for _ in range(10)), return_exceptions=True
        )
        accepted = [r for r in results if isinstance(r, RawWebSocket)]
        refused = [r for r in results if not isinstance(r, RawWebSocket)]
        try:
            assert len(accepted) == 3, results
            assert all(isinstance(r, HandshakeRefused) and r.status == 503 for r in refused), refused
            await wait_until(lambda: len(server.clients) == 3, timeout=2.0)
            for i, ws in enumerate(accepted):
                ws.send_packet(request_map("ping", call_id=f"p{i}"))
                assert (await ws.read_reply(f"p{i}"))["response"] == "pong"
            assert server.state is ServerState.SERVING
            await accepted.pop().close()
            await wait_until(lambda: len(server.clients) == 2, timeout=2.0)
            async with connected_client(server) as newcomer:
                assert (await newcomer.send_rpc("ping", wait_timeout=2)).data == "pong"
        finally:
            for ws in accepted:
                await ws.close()


# ---------------------------------------------------------------------------- max_subscribed_channels


async def test_subscription_limit_counts_distinct_names_only() -> None:
    async with running_server(LimitHandler, max_subscribed_channels=2) as server, connected_client(server) as client:
        conn = await new_connection(server, set())
        assert (await client.send_rpc("sub", ["a", "a", "a"])).data == ["a"]  # duplicates take one slot
        assert (await client.send_rpc("sub", ["a", "b.*", "b.*"])).data == ["a", "b.*"]
        assert (await client.send_rpc("sub", ["b.*", "a"])).data == ["a", "b.*"]  # all already subscribed
        failed = await client.send_rpc("sub", ["a", "c"])
        assert failed.error == RPCErrorCode.APPLICATION_ERROR and int(failed.error) == -32001
        assert "limit" in failed.response.lower() and "2" in failed.response
        with pytest.raises(webshocket.SubscriptionLimitError):
            conn.subscribe(["c", "c"])
        assert conn.subscribed_channel == {"a", "b.*"}
        assert "c" not in server.channels
        server.publish("c", "nobody")
        server.publish("b.x", "by pattern")
        assert (await client.recv(timeout=2)).data == "by pattern"


async def test_subscription_limit_zero_means_unlimited() -> None:
    async with running_server(LimitHandler, max_subscribed_channels=0) as server, connected_client(server) as client:
        names = [f"ch{i}" for i in range(40)]
        assert (await client.send_rpc("sub", names)).data == sorted(names)


# ---------------------------------------------------------------------------- graceful shutdown


async def test_close_cancels_an_rpc_longer_than_the_timeout_and_returns_near_it() -> None:
    loop = asyncio.get_running_loop()
    async with running_server(LimitHandler) as server, connected_client(server) as client:
        handler = handler_of(server)
        call = asyncio.ensure_future(client.send_rpc("slow", 30, wait_timeout=10))
        await asyncio.wait_for(handler.slow_started.wait(), 2)
        started = loop.time()
        await asyncio.wait_for(server.close(timeout=0.5), 5)
        elapsed = loop.time() - started
        assert 0.45 <= elapsed < 2.5, elapsed  # waited for the RPC up to the timeout, not for its 30 s
        assert handler.cancelled == 1
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(call, 2)
        assert client.close_code == 1001
        assert server.clients == set()


async def test_new_connections_are_refused_while_close_waits_for_running_rpcs() -> None:
    async with running_server(LimitHandler) as server, connected_client(server) as client:
        handler = handler_of(server)
        call = asyncio.ensure_future(client.send_rpc("hold", "x", wait_timeout=5))
        await wait_until(lambda: handler.started == 1, timeout=2.0)
        closing = asyncio.ensure_future(server.close(timeout=3))
        await wait_until(lambda: server.state is ServerState.CLOSED, timeout=2.0)
        await asyncio.sleep(0.05)
        assert not closing.done()  # still waiting for "hold"
        with pytest.raises(ConnectionFailedError):
            await WebSocketClient(uri_of(server)).connect()
        with pytest.raises((OSError, HandshakeRefused)) as refused:
            await RawWebSocket.connect(server.port, FRAMEWORK)
        if isinstance(refused.value, HandshakeRefused):
            assert refused.value.status == 503
        handler.release.set()
        result = await asyncio.wait_for(call, 2)
        assert (result.error, result.data) == (None, 1)  # the running RPC still got its reply
        await asyncio.wait_for(closing, 3)
        await wait_until(lambda: not client.is_connected, timeout=2.0)
        assert client.close_code == 1001


@pytest.mark.parametrize("how", ["abort", "close-4000"])
async def test_client_calls_in_flight_fail_when_the_connection_drops(how: str) -> None:
    async with running_server(LimitHandler) as server:
        client = WebSocketClient(uri_of(server))
        await client.connect()
        try:
            conn = await new_connection(server, set())
            calls = [asyncio.ensure_future(client.send_rpc("hold", str(i), wait_timeout=30)) for i in range(5)]
            chunks: list[int] = []

            async def consume() -> None:
                async for chunk in client.stream_rpc("ticker"):
                    chunks.append(chunk.data)

            stream = asyncio.ensure_future(consume())
            await wait_until(lambda: handler_of(server).started == 5 and len(chunks) >= 2, timeout=2.0)
            if how == "abort":
                conn._engine.transport.disconnect(False)  # TCP reset, no close frame
            else:
                conn.close(4000, "go away")
            for call in calls:
                with pytest.raises(ConnectionClosedError):
                    await asyncio.wait_for(call, 2)
            with pytest.raises(ConnectionClosedError):
                await asyncio.wait_for(stream, 2)
            assert not client.is_connected
            if how != "abort":
                assert client.close_code == 4000
            with pytest.raises(ConnectionClosedError):
                await client.send_rpc("ping", wait_timeout=1)
        finally:
            handler_of(server).release.set()
            await client.close()
