"""Test your handlers: a real server on an ephemeral port, connected clients, and waiting for pushes.

.. code-block:: python

    from webshocket.testing import assert_silent, serve

    async def test_news_reaches_subscribers():
        async with serve(NewsHandler) as server, server.client() as client:
            await client.send_rpc("follow", "news")
            server.publish("news", {"headline": "hi"})
            packet = await client.next_push(channel="news")
            assert packet.data == {"headline": "hi"}
            await assert_silent(client)

Everything runs for real over 127.0.0.1 (no mocks): :func:`serve` starts a
:class:`TestServer` for a handler class with any server option and closes it afterwards;
:func:`connect` (or ``server.client()``) gives a :class:`TestClient`, the package's msgpack
client plus :meth:`~TestClient.next_push`, :meth:`~TestClient.drain` and
:meth:`~TestClient.assert_silent`; :func:`connect_json` (or ``server.json_client()``) gives a
:class:`JSONTestClient` speaking the JSON dialect, as a browser or another language does.

**pytest.** The fixtures :func:`webshocket_server`, :func:`webshocket_client` and
:func:`webshocket_json_client` (factories; whatever they start is closed after the test) are
enabled with one line in the project's top-level ``conftest.py``::

    pytest_plugins = ["webshocket.testing"]

(or ``pytest -p webshocket.testing``). They are function-scoped pytest-asyncio fixtures, so they
work in its ``auto`` and ``strict`` modes, in tests run on its default (function-scoped) event
loop. The plugin is not registered through an entry point on
purpose: pytest would then import it, and with it ``webshocket`` (which installs uvloop's
event loop policy and picks its compiled or pure modules at import), in every test run of
every project in the environment. The helpers need neither pytest nor pytest-asyncio; they
raise their own ``AssertionError`` messages, so pytest need not rewrite this module
(PYTEST_DONT_REWRITE: no warning when a test module imports it before the plugin loads).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar, overload

from picows import WSCloseCode, WSError, WSFrame, WSMsgType, WSTransport, ws_connect

from ._framing import MessageListener
from .client import WebSocketClient
from .constant import DEFAULT_CLIENT_MAX_MESSAGE_SIZE
from .enum import PacketSource
from .exceptions import ConnectionClosedError, ConnectionFailedError, ReceiveTimeoutError
from .handler import DefaultWebSocketHandler, WebSocketHandler
from .packets import Packet
from .server import JSON_SUBPROTOCOL, WebSocketServer
from .utils import generate_uuid

__all__ = [
    "HOST",
    "ClientFactory",
    "JSONClientFactory",
    "JSONTestClient",
    "ServerFactory",
    "TestClient",
    "TestServer",
    "assert_silent",
    "connect",
    "connect_json",
    "expect_push",
    "serve",
    "uri_of",
    "wait_until",
    "webshocket_client",
    "webshocket_json_client",
    "webshocket_server",
]

HOST = "127.0.0.1"
"""The address test servers listen on."""

DEFAULT_TIMEOUT = 5.0
"""Seconds :meth:`TestClient.next_push` and :func:`wait_until` wait by default."""

QUIET = 0.3
"""Seconds of silence :meth:`TestClient.assert_silent` and :meth:`TestClient.drain` wait by default."""

H = TypeVar("H", bound=WebSocketHandler[Any])
P = TypeVar("P")


class _Unset:
    def __repr__(self) -> str:
        return "<any>"


_ANY: Any = _Unset()  # ``data=`` not given: any payload matches


def _client_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return HOST
    return f"[{host}]" if ":" in host else host


def uri_of(server: WebSocketServer[Any]) -> str:
    """The ``ws://`` (``wss://`` with an ``ssl_context``) URI of a started server."""
    scheme = "ws" if server.ssl_context is None else "wss"
    return f"{scheme}://{_client_host(server.host)}:{server.port}"


def _describe(source: Any, channel: Any, data: Any) -> str:
    try:
        name = PacketSource(source).name
    except ValueError:
        name = repr(source)
    text = f"{name}" + (f" on {channel!r}" if channel is not None else "") + f": {data!r}"
    return text if len(text) <= 200 else text[:197] + "..."


class _PushWaiter(Generic[P]):
    """Waiting for pushed packets that match, for both clients. Packets that do not match are
    held, in order, for the next call (and for ``recv()``)."""

    def __init__(self) -> None:
        self._held: deque[P] = deque()

    async def _receive(self, timeout: float | None) -> P:
        raise NotImplementedError

    def _fields(self, item: P) -> tuple[Any, Any, Any]:
        """``(source, channel, data)`` of a pushed packet."""
        raise NotImplementedError

    def _show(self, item: P) -> str:
        return _describe(*self._fields(item))

    def _matches(self, item: P, channel: str | None, source: int | None, data: Any, where: Any) -> bool:
        item_source, item_channel, item_data = self._fields(item)
        return (
            (channel is None or item_channel == channel)
            and (source is None or item_source == int(source))
            and (data is _ANY or item_data == data)
            and (where is None or bool(where(item)))
        )

    async def next_push(
        self,
        channel: str | None = None,
        *,
        source: PacketSource | int | None = None,
        data: Any = _ANY,
        where: Callable[[P], bool] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> P:
        """The next pushed packet that matches every criterion given, within ``timeout`` seconds.

        Args:
            channel: published on this channel (exactly this name).
            source: of this :class:`~webshocket.PacketSource` (``CHANNEL``, ``BROADCAST``, ``CUSTOM``).
            data: whose payload equals this.
            where: for which this predicate, given the packet, is true.
            timeout: seconds to wait (None: no limit).

        Packets that arrive meanwhile and do not match are kept, in order, for later calls.

        Raises:
            AssertionError: none arrived in time (the message lists what arrived instead).
            webshocket.ConnectionClosedError: the connection closed first.
        """
        for item in self._held:
            if self._matches(item, channel, source, data, where):
                self._held.remove(item)
                return item
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                break
            try:
                item = await self._receive(remaining)
            except ReceiveTimeoutError:
                break
            if self._matches(item, channel, source, data, where):
                return item
            self._held.append(item)
        wanted = ", ".join(
            f"{name}={value!r}"
            for name, value in (("channel", channel), ("source", source), ("data", data), ("where", where))
            if value is not None and value is not _ANY
        )
        seen = "; ".join(self._show(item) for item in self._held) or "nothing"
        raise AssertionError(f"no push matching ({wanted or 'any'}) within {timeout} s; received instead: {seen}")

    async def drain(self, quiet: float = QUIET) -> list[P]:
        """Every pushed packet held or arriving until none arrives for ``quiet`` seconds, in order."""
        items = list(self._held)
        self._held.clear()
        while True:
            try:
                items.append(await self._receive(quiet))
            except ReceiveTimeoutError:
                return items

    async def assert_silent(self, within: float = QUIET) -> None:
        """Assert that no pushed packet arrives within ``within`` seconds (and none is held unread).

        Raises:
            AssertionError: one is held, or one arrived (it stays held).
        """
        if not self._held:
            try:
                self._held.append(await self._receive(within))
            except ReceiveTimeoutError:
                return
        seen = "; ".join(self._show(item) for item in self._held)
        raise AssertionError(f"expected no push within {within} s, got: {seen}")


# ---------------------------------------------------------------------------- the msgpack client


class TestClient(WebSocketClient, _PushWaiter[Packet[Any]]):
    """The package's :class:`~webshocket.WebSocketClient` with helpers to wait for pushes.

    Read pushes with :meth:`next_push`, :meth:`drain`, :meth:`assert_silent` or ``recv()``
    (held packets first), not with an ``on_receive`` callback (which takes them all).
    """

    __test__ = False  # not a test class for pytest

    def __init__(self, uri: str, *args: Any, **kwargs: Any) -> None:
        WebSocketClient.__init__(self, uri, *args, **kwargs)
        _PushWaiter.__init__(self)

    async def _receive(self, timeout: float | None) -> Packet[Any]:
        return await WebSocketClient.recv(self, timeout)

    def _fields(self, item: Packet[Any]) -> tuple[Any, Any, Any]:
        return item.source, item.channel, item.data

    async def recv(self, timeout: float | None = 30) -> Packet[Any]:
        """Next pushed packet: first those :meth:`next_push` held, then as ``WebSocketClient.recv``."""
        if self._held:
            return self._held.popleft()
        return await WebSocketClient.recv(self, timeout)

    async def __aenter__(self) -> TestClient:
        await WebSocketClient.__aenter__(self)
        return self


# ---------------------------------------------------------------------------- the JSON client

_RPC = int(PacketSource.RPC)
_END = object()  # queued when the connection is gone


class _JSONListener(MessageListener):
    def __init__(self, client: JSONTestClient, max_message_size: int) -> None:
        super().__init__(max_message_size)
        self.client = client

    def on_message(self, payload: bytes) -> None:
        self.client._on_message(payload)

    def on_close_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.client.close_code = int(frame.get_close_code().value) if frame.payload_size else 1005
        super().on_close_frame(transport, frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.client._on_gone()


class JSONTestClient(_PushWaiter[dict[str, Any]]):
    """A client of the JSON dialect (as a browser or another language speaks it), packets as dicts.

    .. code-block:: python

        async with connect_json(server) as client:
            reply = await client.call("add", 1, 2)
            assert reply["response"] == 3 and reply["error"] is None
            push = await client.next_push(channel="news")  # {"source": 2, "channel": "news", "data": ...}

    Args:
        uri: ``ws://`` or ``wss://`` URI of the server.
        subprotocol: offered at the handshake (``"webshocket.json"``, as browsers should; None: none).
        headers: extra headers of the upgrade request (``Origin``, ``Authorization``, ...).
        ssl_context: client SSL context for ``wss://``.
        max_message_size: largest message accepted from the server.
    """

    __test__ = False  # not a test class for pytest

    def __init__(
        self,
        uri: str,
        *,
        subprotocol: str | None = JSON_SUBPROTOCOL,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int = DEFAULT_CLIENT_MAX_MESSAGE_SIZE,
    ) -> None:
        super().__init__()
        self.uri = uri
        self.offered = subprotocol
        self.headers = dict(headers or {})
        self.ssl_context = ssl_context
        self.max_message_size = max_message_size
        self.subprotocol: str | None = None
        """The subprotocol the server answered with (None: none)."""
        self.close_code: int | None = None
        """The close code the server sent (1005: a close frame without one; None: none yet)."""
        self._transport: WSTransport | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._calls: dict[str, asyncio.Queue[Any]] = {}

    async def connect(self, **options: Any) -> JSONTestClient:
        """Open the connection (``options`` go to ``picows.ws_connect``).

        Raises:
            webshocket.ConnectionFailedError: the server could not be reached or refused the upgrade.
        """
        headers = dict(self.headers)
        if self.offered is not None:
            headers["Sec-WebSocket-Protocol"] = self.offered
        try:
            transport, _ = await ws_connect(
                lambda: _JSONListener(self, self.max_message_size),
                self.uri,
                ssl_context=self.ssl_context,
                extra_headers=headers,
                max_frame_size=self.max_message_size,
                enable_auto_pong=False,  # the frame layer answers pings
                **options,
            )
        except (OSError, WSError, asyncio.TimeoutError, TimeoutError, EOFError) as exc:
            raise ConnectionFailedError(f"Could not connect to {self.uri}: {exc}") from exc
        if transport.is_disconnected:  # the server hung up at once (e.g. closed in the handshake)
            raise ConnectionFailedError(f"Could not connect to {self.uri}: the connection closed during the handshake")
        self._transport = transport
        self.subprotocol = transport.response.headers.get("Sec-WebSocket-Protocol")
        return self

    @property
    def connected(self) -> bool:
        """Whether the connection is open."""
        return self._transport is not None

    def _on_message(self, payload: bytes) -> None:
        try:
            packet = json.loads(payload)
        except ValueError:
            packet = {"source": None, "raw": payload}  # not JSON: kept as it came, for the test to see
        rpc = packet.get("rpc") if isinstance(packet, dict) else None
        if isinstance(rpc, dict) and packet.get("source") == _RPC:
            calls = self._calls.get(str(rpc.get("call_id")))
            if calls is not None:
                calls.put_nowait(rpc)
                return
        self._queue.put_nowait(packet)

    def _on_gone(self) -> None:
        self._transport = None
        self._queue.put_nowait(_END)
        for calls in self._calls.values():
            calls.put_nowait(_END)

    def _fields(self, item: dict[str, Any]) -> tuple[Any, Any, Any]:
        return item.get("source"), item.get("channel"), item.get("data")

    def _live(self) -> WSTransport:
        transport = self._transport
        if transport is None:
            raise ConnectionClosedError(f"Not connected to {self.uri}.")
        return transport

    def send(self, packet: Any) -> None:
        """Send ``packet`` (a dict such as ``{"source": 4, "data": ...}``) as a JSON text message.

        Raises:
            webshocket.ConnectionClosedError: not connected.
        """
        self._live().send(WSMsgType.TEXT, json.dumps(packet).encode())

    def send_raw(self, message: str | bytes) -> None:
        """Send ``message`` as it is: a ``str`` as a text message, ``bytes`` as a binary one."""
        if isinstance(message, str):
            self._live().send(WSMsgType.TEXT, message.encode())
        else:
            self._live().send(WSMsgType.BINARY, message)

    def _send_request(self, method: str, args: Iterable[Any], kwargs: Mapping[str, Any], call_id: str) -> None:
        request = {"type": "request", "method": method, "args": list(args), "kwargs": dict(kwargs), "call_id": call_id}
        self.send({"source": _RPC, "rpc": request})

    def _request(self, method: str, args: Iterable[Any], kwargs: Mapping[str, Any]) -> tuple[str, asyncio.Queue[Any]]:
        """Send an RPC request; its replies arrive in the queue returned (until the caller pops it)."""
        call_id = generate_uuid()
        replies: asyncio.Queue[Any] = asyncio.Queue()
        self._calls[call_id] = replies
        try:
            self._send_request(method, args, kwargs, call_id)
        except BaseException:
            del self._calls[call_id]
            raise
        return call_id, replies

    async def _reply(self, replies: asyncio.Queue[Any], method: str, timeout: float | None) -> dict[str, Any]:
        try:
            reply = await asyncio.wait_for(replies.get(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(f"no reply to RPC {method!r} within {timeout} s") from None
        if reply is _END:
            raise ConnectionClosedError(f"Connection to {self.uri} closed before the reply to RPC {method!r}.")
        result: dict[str, Any] = reply
        return result

    async def call(
        self, method: str, /, *args: Any, timeout: float | None = DEFAULT_TIMEOUT, **kwargs: Any
    ) -> dict[str, Any]:
        """Call ``method(*args, **kwargs)`` and return the reply's ``rpc`` map.

        ``reply["response"]`` is the result, or the message when ``reply["error"]`` holds an
        error code (-32601, ...).

        Raises:
            AssertionError: no reply within ``timeout`` seconds.
            webshocket.ConnectionClosedError: the connection closed first.
        """
        call_id, replies = self._request(method, args, kwargs)
        try:
            return await self._reply(replies, method, timeout)
        finally:
            self._calls.pop(call_id, None)

    async def stream(
        self, method: str, /, *args: Any, timeout: float | None = DEFAULT_TIMEOUT, **kwargs: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Call a streaming method and yield the ``rpc`` map of each chunk (``["response"]`` is the value).

        An error reply is yielded and ends the iteration; leaving the loop early aborts the
        stream on the server. ``timeout`` bounds the wait for each chunk.
        """
        call_id, replies = self._request(method, args, kwargs)
        finished = False
        try:
            while True:
                reply = await self._reply(replies, method, timeout)
                if reply.get("error") is not None or not reply.get("is_stream"):
                    finished = True
                    yield reply
                    return
                if reply.get("is_end"):
                    finished = True
                    return
                yield reply
        finally:
            self._calls.pop(call_id, None)
            if not finished and self._transport is not None:  # the server cancels it; no reply comes
                self._send_request("__abort__", (call_id,), {}, generate_uuid())

    async def _receive(self, timeout: float | None) -> dict[str, Any]:
        queue = self._queue
        if queue.empty() and self._transport is None:
            raise ConnectionClosedError(f"Not connected to {self.uri}.")
        try:
            item = await asyncio.wait_for(queue.get(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise ReceiveTimeoutError(f"Nothing received within {timeout} seconds.") from None
        if item is _END:
            raise ConnectionClosedError(f"Connection to {self.uri} closed.")
        packet: dict[str, Any] = item
        return packet

    async def recv(self, timeout: float | None = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The next packet that is not a reply to :meth:`call` or :meth:`stream` (held ones first).

        Raises:
            webshocket.ReceiveTimeoutError: nothing arrived within ``timeout`` seconds.
            webshocket.ConnectionClosedError: the connection is closed and nothing is left.
        """
        if self._held:
            return self._held.popleft()
        return await self._receive(timeout)

    async def wait_closed(self, timeout: float | None = DEFAULT_TIMEOUT) -> int | None:
        """Wait until the server has closed the connection; its close code (None: it sent none)."""
        transport = self._transport
        if transport is not None:
            try:
                await asyncio.wait_for(transport.wait_disconnected(), timeout)
            except (asyncio.TimeoutError, TimeoutError):
                raise AssertionError(f"the server did not close the connection within {timeout} s") from None
            except (WSError, OSError):
                pass
        return self.close_code

    async def close(self, code: int = 1000) -> None:
        """Close the connection with ``code`` and wait until it is down."""
        transport = self._transport
        if transport is None:
            return
        if not transport.is_close_frame_sent:
            transport.send_close(WSCloseCode(code))
        transport.disconnect()
        try:
            await asyncio.wait_for(transport.wait_disconnected(), 5.0)
        except (asyncio.TimeoutError, TimeoutError):
            transport.disconnect(False)
        except (WSError, OSError):
            pass

    async def __aenter__(self) -> JSONTestClient:
        if self._transport is None:
            await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


# ---------------------------------------------------------------------------- servers and clients


class TestServer(WebSocketServer[H]):
    """A :class:`~webshocket.WebSocketServer` that knows its URI and makes clients of itself."""

    __test__ = False  # not a test class for pytest

    @property
    def uri(self) -> str:
        """``ws://127.0.0.1:<port>`` (``wss://`` with an ``ssl_context``)."""
        return uri_of(self)

    def client(
        self, *, connect_options: Mapping[str, Any] | None = None, **options: Any
    ) -> AbstractAsyncContextManager[TestClient]:
        """A connected :class:`TestClient`, closed afterwards: ``async with server.client() as client``.

        ``options`` go to :class:`~webshocket.WebSocketClient`, ``connect_options`` to its
        ``connect()`` (``retry=True``, ...).
        """
        return connect(self, connect_options=connect_options, **options)

    def json_client(self, **options: Any) -> AbstractAsyncContextManager[JSONTestClient]:
        """A connected :class:`JSONTestClient`, closed afterwards (``options`` as for it)."""
        return connect_json(self, **options)


@asynccontextmanager
async def serve(
    handler: type[H] = DefaultWebSocketHandler,  # type: ignore[assignment]
    *,
    host: str = HOST,
    port: int = 0,
    close_timeout: float | None = 2.0,
    **options: Any,
) -> AsyncIterator[TestServer[H]]:
    """Run a server for ``handler`` on ``host`` (127.0.0.1), on a free port unless ``port`` is given.

    ``options`` are :class:`~webshocket.WebSocketServer`'s (``recovery=True``,
    ``presence=...``, ``max_connection=...``). On the way out the server closes, giving
    running RPCs ``close_timeout`` seconds.

    .. code-block:: python

        async with serve(MyHandler, recovery=True) as server:
            ...  # server.uri, server.client(), server.publish(...), server.handler
    """
    server: TestServer[H] = TestServer(host, port, clientHandler=handler, **options)
    await server.start()
    try:
        yield server
    finally:
        await server.close(timeout=close_timeout)


def _target_uri(target: WebSocketServer[Any] | str) -> str:
    return target if isinstance(target, str) else uri_of(target)


@asynccontextmanager
async def connect(
    target: WebSocketServer[Any] | str, *, connect_options: Mapping[str, Any] | None = None, **options: Any
) -> AsyncIterator[TestClient]:
    """A :class:`TestClient` connected to ``target`` (a started server, or a URI), closed afterwards.

    ``options`` go to :class:`~webshocket.WebSocketClient` (``session=False``,
    ``on_reconnect=...``), ``connect_options`` to its ``connect()`` (``retry=True``, ...).

    Raises:
        webshocket.ConnectionFailedError: the connection failed.
    """
    client = TestClient(_target_uri(target), **options)
    await client.connect(**dict(connect_options or {}))
    try:
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def connect_json(target: WebSocketServer[Any] | str, **options: Any) -> AsyncIterator[JSONTestClient]:
    """A :class:`JSONTestClient` connected to ``target`` (a started server, or a URI), closed afterwards.

    Raises:
        webshocket.ConnectionFailedError: the connection failed.
    """
    client = JSONTestClient(_target_uri(target), **options)
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


# ---------------------------------------------------------------------------- helpers


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = DEFAULT_TIMEOUT, interval: float = 0.01
) -> None:
    """Poll ``predicate`` (a plain or ``async`` function) every ``interval`` seconds until it is true.

    Raises:
        AssertionError: still false after ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            name = getattr(predicate, "__qualname__", repr(predicate))
            raise AssertionError(f"condition not reached within timeout ({timeout} s): {name}")
        await asyncio.sleep(interval)


@overload
async def expect_push(
    client: TestClient,
    channel: str | None = None,
    *,
    source: PacketSource | int | None = None,
    data: Any = _ANY,
    where: Callable[[Packet[Any]], bool] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> Packet[Any]: ...


@overload
async def expect_push(
    client: JSONTestClient,
    channel: str | None = None,
    *,
    source: PacketSource | int | None = None,
    data: Any = _ANY,
    where: Callable[[dict[str, Any]], bool] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> dict[str, Any]: ...


async def expect_push(
    client: TestClient | JSONTestClient,
    channel: str | None = None,
    *,
    source: PacketSource | int | None = None,
    data: Any = _ANY,
    where: Callable[[Any], bool] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> Packet[Any] | dict[str, Any]:
    """``client.next_push(...)``: the next push that matches (see :meth:`TestClient.next_push`).

    Raises:
        AssertionError: none arrived within ``timeout`` seconds.
    """
    return await client.next_push(channel, source=source, data=data, where=where, timeout=timeout)


async def assert_silent(
    clients: TestClient | JSONTestClient | Iterable[TestClient | JSONTestClient], within: float = QUIET
) -> None:
    """Assert that no push reaches any of ``clients`` (one client, or several) within ``within`` seconds.

    Raises:
        AssertionError: a client got one (or holds one unread).
    """
    group = [clients] if isinstance(clients, (TestClient, JSONTestClient)) else list(clients)
    await asyncio.gather(*(client.assert_silent(within) for client in group))


# ---------------------------------------------------------------------------- pytest fixtures


class ServerFactory(Protocol):
    """What the :func:`webshocket_server` fixture gives: ``await webshocket_server(MyHandler, **options)``."""

    async def __call__(self, handler: type[H], /, **options: Any) -> TestServer[H]: ...


class ClientFactory(Protocol):
    """What the :func:`webshocket_client` fixture gives: ``await webshocket_client(server, **options)``."""

    async def __call__(
        self, target: WebSocketServer[Any] | str, /, *, connect_options: Mapping[str, Any] | None = None, **options: Any
    ) -> TestClient: ...


class JSONClientFactory(Protocol):
    """What the :func:`webshocket_json_client` fixture gives: ``await webshocket_json_client(server, **options)``."""

    async def __call__(self, target: WebSocketServer[Any] | str, /, **options: Any) -> JSONTestClient: ...


try:
    import pytest_asyncio
except ImportError:  # the helpers above work without pytest; the fixtures need pytest-asyncio
    pass
else:

    @pytest_asyncio.fixture
    async def webshocket_server() -> AsyncIterator[ServerFactory]:
        """Start servers: ``server = await webshocket_server(MyHandler, **options)`` (a :class:`TestServer`).

        Each runs on 127.0.0.1 on a free port, with any :class:`~webshocket.WebSocketServer`
        option, and is closed after the test.
        """
        async with AsyncExitStack() as stack:

            async def start(handler: type[H], /, **options: Any) -> TestServer[H]:
                return await stack.enter_async_context(serve(handler, **options))

            yield start

    @pytest_asyncio.fixture
    async def webshocket_client(webshocket_server: ServerFactory) -> AsyncIterator[ClientFactory]:
        """Connect clients: ``client = await webshocket_client(server, **options)`` (a :class:`TestClient`).

        ``options`` go to :class:`~webshocket.WebSocketClient`, ``connect_options=`` to its
        ``connect()``. Each is closed after the test, before the servers of :func:`webshocket_server`.
        """
        async with AsyncExitStack() as stack:

            async def open_client(
                target: WebSocketServer[Any] | str,
                /,
                *,
                connect_options: Mapping[str, Any] | None = None,
                **options: Any,
            ) -> TestClient:
                return await stack.enter_async_context(connect(target, connect_options=connect_options, **options))

            yield open_client

    @pytest_asyncio.fixture
    async def webshocket_json_client(webshocket_server: ServerFactory) -> AsyncIterator[JSONClientFactory]:
        """Connect JSON-dialect clients: ``client = await webshocket_json_client(server)`` (a :class:`JSONTestClient`).

        Each is closed after the test, before the servers of :func:`webshocket_server`.
        """
        async with AsyncExitStack() as stack:

            async def open_client(target: WebSocketServer[Any] | str, /, **options: Any) -> JSONTestClient:
                return await stack.enter_async_context(connect_json(target, **options))

            yield open_client
