"""RPC over real sockets: calls, error codes, streaming, rate limits, concurrency bounds."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import connected_client, raw_connect, running_server, uri_of, wait_until
from websockets.asyncio.client import ClientConnection as RawConnection
from websockets.exceptions import ConnectionClosed

import webshocket
from webshocket import (
    ClientConnection,
    ConnectionState,
    Is,
    PacketSource,
    RPCError,
    RPCErrorCode,
    WebSocketHandler,
    rate_limit,
    rpc_method,
)

Conn = ClientConnection[Any]


def json_request(method: str, *args: Any, call_id: str | None = None, **kwargs: Any) -> str:
    rpc: dict[str, Any] = {"type": "request", "method": method, "args": list(args), "kwargs": kwargs}
    if call_id is not None:
        rpc["call_id"] = call_id
    return json.dumps({"source": 5, "rpc": rpc})


async def recv_json(ws: RawConnection, timeout: float = 2.0) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(message, bytes), "the server must send binary messages"
    decoded = json.loads(message)
    assert isinstance(decoded, dict)
    return decoded


class RPCHandler(WebSocketHandler[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.stream_closed = asyncio.Event()
        self.stream_items_sent = 0
        self.gate = asyncio.Event()
        self.running = 0
        self.max_running = 0

    # -- plain calls
    @rpc_method()
    async def echo(self, connection: Conn, a: Any, b: Any = 0, *, c: Any = None) -> dict[str, Any]:
        return {"a": a, "b": b, "c": c}

    @rpc_method(alias_name="sum")
    async def _add_implementation(self, connection: Conn, a: int, b: int) -> int:
        return a + b

    async def helper(self, connection: Conn) -> str:  # deliberately NOT an RPC method
        return "should not be callable"

    @rpc_method()
    async def sleepy(self, connection: Conn, delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    @rpc_method()
    async def double(self, connection: Conn, x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    # -- errors
    @rpc_method()
    async def explode(self, connection: Conn) -> None:
        raise ValueError("kaboom")

    @rpc_method()
    async def refuse(self, connection: Conn) -> None:
        raise RPCError("you shall not pass")

    @rpc_method(requires=Is("admin"))
    async def admin_only(self, connection: Conn) -> str:
        return "secret"

    @rpc_method()
    async def become_admin(self, connection: Conn) -> bool:
        connection.admin = True
        return True

    # -- rate limits
    @rate_limit(limit=3, period="1m")
    @rpc_method()
    async def limited_above(self, connection: Conn) -> str:
        return "above"

    @rpc_method()
    @rate_limit(limit=3, period="1m")
    async def limited_below(self, connection: Conn) -> str:
        return "below"

    @rate_limit(limit=2, period="1s")
    @rpc_method()
    async def refilling(self, connection: Conn) -> str:
        return "ok"

    @rate_limit(limit=1, period="1m", disconnect_on_limit_exceeded=True)
    @rpc_method()
    async def strict(self, connection: Conn) -> str:
        return "once"

    # -- streaming
    @rpc_method()
    async def count(self, connection: Conn, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @rpc_method()
    async def broken_stream(self, connection: Conn) -> AsyncIterator[int]:
        yield 1
        yield 2
        raise ValueError("stream went wrong")

    @rpc_method()
    async def endless(self, connection: Conn) -> AsyncIterator[int]:
        i = 0
        try:
            while True:
                yield i
                self.stream_items_sent += 1
                i += 1
                await asyncio.sleep(0.01)
        finally:
            self.stream_closed.set()

    @rpc_method(requires=Is("admin"))
    async def admin_stream(self, connection: Conn) -> AsyncIterator[str]:
        yield "classified"

    @rate_limit(limit=1, period="1m")
    @rpc_method()
    async def limited_stream(self, connection: Conn) -> AsyncIterator[str]:
        yield "s"

    # -- task limit
    @rpc_method()
    async def gated(self, connection: Conn, x: int) -> int:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        return x


def handler_of(server: webshocket.WebSocketServer[Any]) -> RPCHandler:
    handler = server.handler
    assert isinstance(handler, RPCHandler)
    return handler


# ---------------------------------------------------------------------------- plain calls


async def test_positional_and_keyword_arguments() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        assert (await client.send_rpc("echo", 1)).data == {"a": 1, "b": 0, "c": None}
        assert (await client.send_rpc("echo", 1, 2)).data == {"a": 1, "b": 2, "c": None}
        assert (await client.send_rpc("echo", "x", b=[1, 2], c={"k": "v"})).data == {
            "a": "x",
            "b": [1, 2],
            "c": {"k": "v"},
        }
        assert (await client.send_rpc("echo", a=5, c=7)).data == {"a": 5, "b": 0, "c": 7}


async def test_alias_name_is_the_only_public_name() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        result = await client.send_rpc("sum", 10, 20)
        assert result.error is None
        assert result.data == 30
        by_original = await client.send_rpc("_add_implementation", 10, 20)
        assert by_original.error == RPCErrorCode.METHOD_NOT_FOUND
        assert by_original.response == "RPC method '_add_implementation' not found."


async def test_plain_handler_methods_are_not_callable() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        for name in ("helper", "on_connect", "on_receive", "publish", "broadcast", "__init__"):
            result = await client.send_rpc(name)
            assert result.error == RPCErrorCode.METHOD_NOT_FOUND, name
            assert int(result.error) == -32601
            assert result.response == f"RPC method '{name}' not found."


async def test_response_object_offers_packet_like_accessors() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        result = await client.send_rpc("sum", 2, 3)
        assert result.data == 5
        assert result.response == 5
        assert result.error is None
        assert result.rpc.response == 5
        assert result.rpc is result
        assert result.source == PacketSource.RPC
        assert result.is_stream is False
        assert isinstance(result.call_id, str) and result.call_id


# ---------------------------------------------------------------------------- error codes


async def test_method_not_found() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        result = await client.send_rpc("x")
        assert result.error == RPCErrorCode.METHOD_NOT_FOUND
        assert result.response == "RPC method 'x' not found."
        assert result.is_end is True


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1, 2, 3), {}), ((1,), {"nope": 1}), ((1,), {"a": 2})],
    ids=["missing", "too-many", "unknown-kwarg", "duplicate"],
)
async def test_invalid_params(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        result = await client.send_rpc("echo", *args, **kwargs)
        assert result.error == RPCErrorCode.INVALID_PARAMS
        assert int(result.error) == -32602
        assert isinstance(result.response, str)
        assert result.response.startswith("Server error (TypeError)")
        assert (await client.send_rpc("echo", 1)).data == {"a": 1, "b": 0, "c": None}


async def test_internal_error_is_reported_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="webshocket.server")
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        result = await client.send_rpc("explode")
        assert result.error == RPCErrorCode.INTERNAL_SERVER_ERROR
        assert int(result.error) == -32603
        assert result.response == "Server error (ValueError): kaboom"
    records = [r for r in caplog.records if r.name == "webshocket.server" and r.exc_info is not None]
    assert records, "the server must log the traceback of a failing RPC method"
    exc_type, exc, _tb = records[0].exc_info  # type: ignore[misc]
    assert exc_type is ValueError
    assert str(exc) == "kaboom"
    assert "Traceback" in caplog.text


async def test_application_error() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        result = await client.send_rpc("refuse")
        assert result.error == RPCErrorCode.APPLICATION_ERROR
        assert int(result.error) == -32001
        assert result.response == "you shall not pass"


async def test_rate_limited_error_code() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        results = [await client.send_rpc("limited_above") for _ in range(4)]
        assert [r.error for r in results] == [None, None, None, RPCErrorCode.RATE_LIMIT_EXCEEDED]
        assert int(results[-1].error) == -32000  # type: ignore[arg-type]
        assert results[-1].response == "Rate limit exceeded for RPC method 'limited_above'."
        assert results[-1].is_end is True


async def test_access_denied_until_predicate_holds() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        denied = await client.send_rpc("admin_only")
        assert denied.error == RPCErrorCode.ACCESS_DENIED
        assert int(denied.error) == -32002
        assert denied.response == "Access denied for RPC method 'admin_only'."
        assert denied.is_end is True
        assert (await client.send_rpc("become_admin")).data is True
        allowed = await client.send_rpc("admin_only")
        assert allowed.error is None
        assert allowed.data == "secret"
        async with connected_client(server) as other:
            assert (await other.send_rpc("admin_only")).error == RPCErrorCode.ACCESS_DENIED


def test_error_code_aliases() -> None:
    assert RPCErrorCode.RPC_RATE_LIMITED == RPCErrorCode.RATE_LIMIT_EXCEEDED == -32000
    assert RPCErrorCode.RPC_ACCESS_DENIED == RPCErrorCode.ACCESS_DENIED == -32002
    assert RPCErrorCode.RPC_RATE_LIMITED is RPCErrorCode.RATE_LIMIT_EXCEEDED
    assert RPCErrorCode.RPC_ACCESS_DENIED is RPCErrorCode.ACCESS_DENIED
    assert int(RPCErrorCode.METHOD_NOT_FOUND) == -32601
    assert int(RPCErrorCode.INVALID_PARAMS) == -32602
    assert int(RPCErrorCode.INTERNAL_SERVER_ERROR) == -32603
    assert int(RPCErrorCode.APPLICATION_ERROR) == -32001


async def test_failing_rpcs_never_close_the_connection() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        codes = [
            (await client.send_rpc("missing")).error,
            (await client.send_rpc("echo")).error,
            (await client.send_rpc("explode")).error,
            (await client.send_rpc("refuse")).error,
            (await client.send_rpc("admin_only")).error,
        ]
        codes += [(await client.send_rpc("limited_below")).error for _ in range(4)]
        assert codes == [
            RPCErrorCode.METHOD_NOT_FOUND,
            RPCErrorCode.INVALID_PARAMS,
            RPCErrorCode.INTERNAL_SERVER_ERROR,
            RPCErrorCode.APPLICATION_ERROR,
            RPCErrorCode.ACCESS_DENIED,
            None,
            None,
            None,
            RPCErrorCode.RATE_LIMIT_EXCEEDED,
        ]
        assert client.state is ConnectionState.CONNECTED
        assert len(server.clients) == 1
        assert (await client.send_rpc("sum", 1, 1)).data == 2


# ---------------------------------------------------------------------------- concurrency


async def test_concurrent_calls_complete_out_of_order() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        completed: list[float] = []

        async def call(delay: float) -> float:
            result = await client.send_rpc("sleepy", delay)
            completed.append(result.data)
            return result.data  # type: ignore[no-any-return]

        delays = [0.3, 0.1, 0.2]
        results = await asyncio.gather(*(call(d) for d in delays))
        assert results == delays
        assert completed == [0.1, 0.2, 0.3]
        assert completed != delays


async def test_rpc_task_limit_bounds_running_calls() -> None:
    # one task of the connection's own reserve, one of the shared pool: two at once
    options = {"rpc_task_limit": 1, "rpc_task_reserve": 1, "rpc_task_share": 1}
    async with running_server(RPCHandler, **options) as server, connected_client(server) as client:
        handler = handler_of(server)
        calls = [asyncio.ensure_future(client.send_rpc("gated", i)) for i in range(10)]
        await wait_until(lambda: handler.running == 2, timeout=2.0)
        await asyncio.sleep(0.1)  # give extra calls a chance to (wrongly) start
        assert handler.running == 2
        assert handler.max_running == 2
        assert not any(call.done() for call in calls)
        handler.gate.set()
        results = await asyncio.wait_for(asyncio.gather(*calls), 2.0)
        assert [r.data for r in results] == list(range(10))
        assert all(r.error is None for r in results)
        assert handler.max_running == 2
        assert handler.running == 0


async def test_burst_of_raw_requests_each_answered_exactly_once() -> None:
    total = 3000
    async with running_server(RPCHandler, rpc_task_limit=16) as server:
        async with raw_connect(uri_of(server), max_queue=None) as ws:
            for i in range(total):
                await ws.send(json_request("double", i, call_id=f"c{i}"))
            answers: dict[str, list[Any]] = {}
            for _ in range(total):
                packet = await recv_json(ws, timeout=5.0)
                rpc = packet["rpc"]
                assert rpc["error"] is None, rpc
                answers.setdefault(rpc["call_id"], []).append(rpc["response"])
            assert set(answers) == {f"c{i}" for i in range(total)}
            assert all(answers[f"c{i}"] == [2 * i] for i in range(total))
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.2)


async def test_burst_of_client_calls_each_answered() -> None:
    async with running_server(RPCHandler, rpc_task_limit=16) as server, connected_client(server) as client:
        results = await asyncio.wait_for(asyncio.gather(*(client.send_rpc("double", i) for i in range(3000))), 10.0)
        assert [r.data for r in results] == [2 * i for i in range(3000)]
        assert len({r.call_id for r in results}) == 3000


# ---------------------------------------------------------------------------- streaming


async def test_stream_yields_each_item() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        chunks = [chunk async for chunk in client.stream_rpc("count", 5)]
        assert [chunk.data for chunk in chunks] == [0, 1, 2, 3, 4]
        assert all(chunk.error is None and chunk.is_stream and not chunk.is_end for chunk in chunks)
        assert len({chunk.call_id for chunk in chunks}) == 1
        assert [chunk.data async for chunk in client.stream_rpc("count", 0)] == []
        assert (await client.send_rpc("sum", 1, 2)).data == 3


async def test_stream_that_raises_ends_with_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="webshocket.server")
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        chunks = [chunk async for chunk in client.stream_rpc("broken_stream")]
        assert [chunk.data for chunk in chunks[:-1]] == [1, 2]
        last = chunks[-1]
        assert last.error == RPCErrorCode.INTERNAL_SERVER_ERROR
        assert "Stream aborted: stream went wrong" in last.response
        assert last.is_stream is True
        assert last.is_end is True
        assert (await client.send_rpc("sum", 2, 2)).data == 4
    assert any(r.exc_info is not None for r in caplog.records if r.name == "webshocket.server")


async def test_breaking_out_of_a_stream_cancels_the_server_generator() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        handler = handler_of(server)
        received: list[int] = []
        async for chunk in client.stream_rpc("endless"):
            received.append(chunk.data)
            if len(received) == 3:
                break
        assert received == [0, 1, 2]
        await wait_until(handler.stream_closed.is_set, timeout=2.0)
        sent = handler.stream_items_sent
        await asyncio.sleep(0.1)
        assert handler.stream_items_sent == sent, "the generator kept running after __abort__"
        assert client.state is ConnectionState.CONNECTED
        assert (await client.send_rpc("sum", 3, 4)).data == 7
        assert [c.data async for c in client.stream_rpc("count", 2)] == [0, 1]


async def collect_stream(client: webshocket.WebSocketClient, method: str, **kwargs: Any) -> list[Any]:
    async def run() -> list[Any]:
        return [chunk async for chunk in client.stream_rpc(method, **kwargs)]

    return await asyncio.wait_for(run(), 2.0)


async def test_stream_errors_before_start_end_the_iteration() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        denied = await collect_stream(client, "admin_stream")
        assert len(denied) == 1
        assert denied[0].error == RPCErrorCode.ACCESS_DENIED
        assert denied[0].is_end is True
        assert [c.data for c in await collect_stream(client, "limited_stream", raise_on_rate_limit=False)] == ["s"]
        limited = await collect_stream(client, "limited_stream", raise_on_rate_limit=False)
        assert len(limited) == 1
        assert limited[0].error == RPCErrorCode.RATE_LIMIT_EXCEEDED
        assert limited[0].is_end is True
        with pytest.raises(webshocket.RateLimitError):
            await collect_stream(client, "limited_stream")
        assert (await client.send_rpc("sum", 1, 2)).data == 3


async def test_stream_with_invalid_params() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        chunks = await collect_stream(client, "count", bogus=1)
        assert len(chunks) == 1
        assert chunks[0].error == RPCErrorCode.INVALID_PARAMS
        assert chunks[0].response.startswith("Server error (TypeError)")
        assert chunks[0].is_end is True
        assert [c.data for c in await collect_stream(client, "count", n=2)] == [0, 1]


async def test_stream_of_unknown_method_ends_with_not_found() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        chunks = await collect_stream(client, "no_such_stream")
        assert len(chunks) == 1
        assert chunks[0].error == RPCErrorCode.METHOD_NOT_FOUND
        assert chunks[0].response == "RPC method 'no_such_stream' not found."
        assert chunks[0].is_end is True


# ---------------------------------------------------------------------------- rate limiting


@pytest.mark.parametrize("method", ["limited_above", "limited_below"])
async def test_rate_limit_in_both_decorator_orders(method: str) -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        results = [await client.send_rpc(method) for _ in range(4)]
        assert [r.error for r in results] == [None, None, None, RPCErrorCode.RPC_RATE_LIMITED]
        assert [r.data for r in results[:3]] == [method.split("_")[1]] * 3
        # the limit is per connection: a second client has its own bucket
        async with connected_client(server) as other:
            assert (await other.send_rpc(method)).error is None
        # and per method: another limited method is unaffected
        other_method = "limited_below" if method == "limited_above" else "limited_above"
        assert (await client.send_rpc(other_method)).error is None


async def test_raise_on_rate_limit() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        for _ in range(3):
            assert (await client.send_rpc("limited_above", raise_on_rate_limit=True)).error is None
        with pytest.raises(webshocket.RateLimitError):
            await client.send_rpc("limited_above", raise_on_rate_limit=True)
        assert (await client.send_rpc("limited_above")).error == RPCErrorCode.RATE_LIMIT_EXCEEDED
        assert client.is_connected


async def test_disconnect_on_limit_exceeded_client_view() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        assert (await client.send_rpc("strict")).data == "once"
        try:
            over = await client.send_rpc("strict", wait_timeout=2.0)
        except webshocket.ConnectionClosedError:
            pass  # the close may overtake the reply on the client side
        else:
            assert over.error == RPCErrorCode.RATE_LIMIT_EXCEEDED
        await wait_until(lambda: client.state is not ConnectionState.CONNECTED, timeout=2.0)
        with pytest.raises(webshocket.ConnectionClosedError):
            await client.send_rpc("sum", 1, 2, wait_timeout=1.0)
        await wait_until(lambda: not server.clients, timeout=2.0)


async def test_disconnect_on_limit_exceeded_sends_1013() -> None:
    async with running_server(RPCHandler) as server, raw_connect(uri_of(server)) as ws:
        await ws.send(json_request("strict", call_id="first"))
        first = await recv_json(ws)
        assert first["rpc"]["call_id"] == "first"
        assert first["rpc"]["response"] == "once"
        await ws.send(json_request("strict", call_id="second"))
        second = await recv_json(ws)
        assert second["rpc"]["call_id"] == "second"
        assert second["rpc"]["error"] == -32000
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 2.0)
        assert ws.close_code == 1013
        await wait_until(lambda: not server.clients, timeout=2.0)


async def test_token_bucket_refills_continuously() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        errors = [(await client.send_rpc("refilling")).error for _ in range(3)]
        assert errors == [None, None, RPCErrorCode.RATE_LIMIT_EXCEEDED]
        await asyncio.sleep(0.6)  # 2 tokens per second: more than one token is back
        assert (await client.send_rpc("refilling")).error is None
        assert (await client.send_rpc("refilling")).error == RPCErrorCode.RATE_LIMIT_EXCEEDED


# ---------------------------------------------------------------------------- registration


@rpc_method()
async def triple(connection: Conn, x: int) -> int:
    return 3 * x


@rpc_method(alias_name="shout")
async def make_loud(connection: Conn, text: str) -> str:
    return text.upper() + "!"


async def not_an_rpc(connection: Conn) -> None:
    return None


async def test_register_rpc_method_at_runtime() -> None:
    async with running_server(RPCHandler) as server, connected_client(server) as client:
        assert (await client.send_rpc("triple", 2)).error == RPCErrorCode.METHOD_NOT_FOUND
        server.register_rpc_method(triple)
        assert (await client.send_rpc("triple", 2)).data == 6
        server.register_rpc_method(make_loud)
        assert (await client.send_rpc("shout", "hi")).data == "HI!"
        assert (await client.send_rpc("make_loud", "hi")).error == RPCErrorCode.METHOD_NOT_FOUND
        server.register_rpc_method(triple, alias_name="thrice")
        assert (await client.send_rpc("thrice", x=5)).data == 15
        with pytest.raises(ValueError):
            server.register_rpc_method(not_an_rpc)  # type: ignore[arg-type]
        assert (await client.send_rpc("not_an_rpc")).error == RPCErrorCode.METHOD_NOT_FOUND
