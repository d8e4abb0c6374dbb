"""The Python client: RPC, streaming RPC, pushed packets, reconnect with backoff."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from picows import WSCloseCode, WSError, WSFrame, WSTransport, ws_connect

from ._codec import decode_packet, encode_packet, encode_push, encode_request
from ._framing import MessageListener, write_message
from .constant import DEFAULT_CLIENT_MAX_MESSAGE_SIZE, DEFAULT_WEBSHOCKET_SUBPROTOCOL
from .enum import ConnectionState, PacketSource, RPCErrorCode
from .exceptions import (
    ConnectionClosedError,
    ConnectionFailedError,
    InvalidURIError,
    RateLimitError,
    ReceiveTimeoutError,
    RPCTimeoutError,
    connection_failed,
)
from .packets import Packet, RPCResponse
from .utils import generate_uuid

__all__ = [
    "DEFAULT_MAX_RETRY_INTERVAL",
    "NO_RECONNECT_CLOSE_CODES",
    "OnDisconnect",
    "OnReconnect",
    "WebSocketClient",
]

_logger = logging.getLogger("webshocket.client")
_CUSTOM = int(PacketSource.CUSTOM)
_RPC = PacketSource.RPC
_SESSION = PacketSource.SESSION
_CHANNEL = PacketSource.CHANNEL
_SESSION_SUBPROTOCOL = "webshocket.v1+session"
_CLOSED = object()
_T = TypeVar("_T")

NO_RECONNECT_CLOSE_CODES: frozenset[int] = frozenset(
    {1000, 1002, 1003, 1007, 1008, 1009, 1010, 4001, 4003, 4009, 4401, 4403}
)
"""Close codes after which a ``connect(retry=True)`` client does not reconnect: the server
meant it. 1000 normal (also a close frame without a code), 1008 policy violation, the
protocol errors 1002/1003/1007/1009/1010 (the same client would repeat them), and the
"unauthorized"/"forbidden" application codes 4001, 4003, 4401, 4403, and 4009 (another connection
resumed this client's session). Any other code
(1001 going away, 1011, 1012 service restart, 1013 try again later, 4008 slow consumer,
...) and a drop without a close frame reconnect."""

DEFAULT_MAX_RETRY_INTERVAL = 30.0
"""Default cap, in seconds, of the wait between two reconnect attempts."""

OnDisconnect = Callable[[int | None], Awaitable[None] | None]
"""``on_disconnect(code)``: the connection was lost; ``code`` is the server's close code (None: no close frame)."""

OnReconnect = Callable[[bool], Awaitable[None] | None]
"""``on_reconnect(recovered)``: reconnected; ``recovered``: the server gave back the session (its state,
subscriptions and every message missed on its channels). False: a new session (the server ran
``on_connect`` again; refetch what the application needs)."""

SESSION_REPLY_TIMEOUT = 10.0
"""Seconds a client waits for the server's answer to its session hello."""


@dataclass(frozen=True)
class _Retry:
    """How a ``connect(retry=True)`` client reconnects after a drop."""

    attempts: int
    interval: float
    max_interval: float
    options: dict[str, Any]  # connect()'s other keywords, for ws_connect

    def delay(self, attempt: int) -> float:
        """Seconds before reconnect attempt ``attempt`` (0-based): capped exponential backoff, equal jitter."""
        ceiling = max(0.0, min(self.max_interval, self.interval * 2.0 ** min(attempt, 64)))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class _ClientListener(MessageListener):
    """The client's side of one connection: checked messages in (the server's frame layer),
    the close code the server sent, the transport while connected, and reading paused or not."""

    def __init__(
        self,
        max_message_size: int,
        on_message: Callable[[bytes], None],
        on_gone: Callable[[_ClientListener], None],
    ) -> None:
        super().__init__(max_message_size)
        self.deliver = on_message
        self.gone = on_gone
        self.transport: WSTransport | None = None  # None before the handshake and once closing or closed
        self.close_code: WSCloseCode | int | None = None
        self.paused = False  # reading paused: recv()'s buffer is full

    def on_message(self, payload: bytes) -> None:
        self.deliver(payload)

    def on_close_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.close_code = frame.get_close_code() if frame.payload_size else WSCloseCode.OK
        super().on_close_frame(transport, frame)
        self._lost()  # closing: nothing more is written to it

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._lost()

    def _lost(self) -> None:
        if self.transport is not None:
            self.transport = None
            self.gone(self)

    def send_user_specific_ping(self, transport: WSTransport) -> None:
        """Keep-alive: while reading is paused (the application is behind) the server's pong
        could not be read, so the link counts as alive until reading resumes."""
        if self.paused:
            asyncio.get_running_loop().call_soon(transport.notify_user_specific_pong_received)
        else:
            transport.send_ping()

    def pause(self) -> None:
        """Stop reading the socket (the client's recv() buffer is full)."""
        transport = self.transport
        if not self.paused and transport is not None:
            self.paused = True
            transport.underlying_transport.pause_reading()

    def resume(self) -> None:
        """Read the socket again."""
        transport = self.transport
        if self.paused and transport is not None:
            self.paused = False
            transport.underlying_transport.resume_reading()


class WebSocketClient:
    """Client for a Webshocket server (speaks the msgpack dialect).

    .. code-block:: python

        async with WebSocketClient("ws://localhost:5000") as client:
            result = await client.send_rpc("add", 10, 20)
            print(result.data)  # 30

    Args:
        uri: ``ws://`` or ``wss://`` URI of the server.
        on_receive: coroutine called, in order, with each pushed packet (custom,
            channel, broadcast). Without it, pushed packets are read with :meth:`recv`.
        ssl_context: client SSL context for ``wss://``.
        max_packet_qsize: pushed packets buffered for :meth:`recv` before reading pauses.
        on_disconnect: called with the close code (None: no close frame) when the
            connection is lost, not after :meth:`close`. See :data:`OnDisconnect`.
        on_reconnect: called with ``recovered`` after an automatic reconnect. See :data:`OnReconnect`.
        session: ask the server for a session (used when the server has ``recovery`` on): after a
            reconnect the client gets back its session state, subscriptions and missed messages.
        max_positions: channels whose last position the client remembers for a resume.

    Both callbacks may be plain functions or coroutine functions (run as tasks); what
    they raise is logged. :attr:`no_reconnect_codes` holds the close codes that end a
    ``connect(retry=True)`` client instead of reconnecting it.
    """

    def __init__(
        self,
        uri: str,
        on_receive: Callable[[Packet[Any]], Awaitable[None]] | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_packet_qsize: int = 128,
        max_message_size: int = DEFAULT_CLIENT_MAX_MESSAGE_SIZE,
        on_disconnect: OnDisconnect | None = None,
        on_reconnect: OnReconnect | None = None,
        session: bool = True,
        max_positions: int = 1000,
    ) -> None:
        parts = urlsplit(uri)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise InvalidURIError(f"Invalid WebSocket URI {uri!r}: expected ws://host[:port][/path] or wss://...")
        self.uri = uri
        self.on_receive_callback = on_receive
        self.on_disconnect_callback = on_disconnect
        self.on_reconnect_callback = on_reconnect
        self.no_reconnect_codes: frozenset[int] = NO_RECONNECT_CLOSE_CODES
        self.ssl_context = ssl_context
        self.state = ConnectionState.DISCONNECTED
        self.logger = _logger
        self.max_packet_qsize = max_packet_qsize
        self.max_message_size = max_message_size
        self._listener: _ClientListener | None = None  # the current (or last) connection
        self._packet_queue: asyncio.Queue[Any] = asyncio.Queue()
        self._recv_closed = False  # the queue ends with _CLOSED: nothing more will arrive
        self._pending: dict[str, asyncio.Future[RPCResponse | None]] = {}  # None: lost in flight, reconnecting
        self._streams: dict[str, asyncio.Queue[Any]] = {}
        self._inbox: list[Packet[Any]] = []
        self._receiving = False
        self._receive_task: asyncio.Task[None] | None = None
        self._retry: _Retry | None = None  # set by a successful connect(retry=True)
        self._outage: asyncio.Future[None] | None = None  # while reconnecting: done when that ends
        self._reconnect_task: asyncio.Task[None] | None = None
        self._gave_up: tuple[str, BaseException | None] | None = None  # why reconnecting failed
        self._callback_tasks: set[asyncio.Future[None]] = set()
        self.session = session
        self.max_positions = max_positions
        self._token: str | None = None  # the server's session token (servers with recovery)
        self._positions: dict[str, tuple[str, int]] = {}  # channel -> (epoch, offset) last seen
        self._session_reply: asyncio.Future[Any] | None = None  # waits for the answer to the hello
        self.recovered: bool | None = None  # outcome of the last session set-up (None: no session)

    # ------------------------------------------------------------------ connecting

    async def _open(self, options: dict[str, Any]) -> _ClientListener:
        """One connection attempt; ``options`` are ws_connect's keywords."""
        offer = f"{_SESSION_SUBPROTOCOL}, {DEFAULT_WEBSHOCKET_SUBPROTOCOL}" if self.session else None
        headers = {"Sec-WebSocket-Protocol": offer or DEFAULT_WEBSHOCKET_SUBPROTOCOL}
        headers.update(options.pop("extra_headers", None) or {})
        options.setdefault("max_frame_size", self.max_message_size)
        try:
            transport, listener = await ws_connect(
                lambda: _ClientListener(self.max_message_size, self._on_message, self._on_gone),
                self.uri,
                ssl_context=self.ssl_context,
                extra_headers=headers,
                enable_auto_ping=True,
                enable_auto_pong=False,  # the frame layer answers pings after checking them
                logger_name="webshocket.client.picows",
                **options,
            )
        except (OSError, WSError, asyncio.TimeoutError, TimeoutError, EOFError) as exc:
            raise connection_failed(f"Could not connect to {self.uri}: {exc}", exc) from exc
        if transport.is_disconnected:  # the peer hung up during the handshake
            raise ConnectionFailedError(f"Could not connect to {self.uri}: connection closed during the handshake")
        assert isinstance(listener, _ClientListener)
        if listener.transport is None:  # a close frame came with the handshake (e.g. 1013: server full)
            raise ConnectionFailedError(
                f"Could not connect to {self.uri}: the server closed at once (code {listener.close_code})"
            )
        if transport.response.headers.get("Sec-WebSocket-Protocol") == _SESSION_SUBPROTOCOL:
            self.recovered = await self._hello(listener, transport)
        else:
            self.recovered = None
        return listener

    async def _hello(self, listener: _ClientListener, transport: WSTransport) -> bool:
        """Open or resume the session: send the token and positions, wait for the answer."""
        hello = {
            "token": self._token,
            "positions": {channel: [epoch, offset] for channel, (epoch, offset) in self._positions.items()},
        }
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._session_reply = reply
        try:
            write_message(transport, encode_packet(Packet(_SESSION, hello), False))
            done, _ = await asyncio.wait((reply,), timeout=SESSION_REPLY_TIMEOUT)
        finally:
            self._session_reply = None
        answer = reply.result() if done else None
        if not isinstance(answer, dict) or not isinstance(answer.get("token"), str):
            transport.disconnect()
            why = "no answer" if not done else "a malformed answer"
            raise ConnectionFailedError(f"Could not connect to {self.uri}: {why} to the session hello")
        self._token = answer["token"]
        return answer.get("recovered") is True

    async def _connect_once(self, **kwargs: Any) -> None:
        listener = self._listener
        if listener is not None and listener.transport is not None:
            await self.close()
        self.state = ConnectionState.CONNECTING
        if self._recv_closed:  # fresh buffer, before the first frame can arrive
            self._packet_queue = asyncio.Queue()
            self._recv_closed = False
        try:
            listener = await self._open(kwargs)
        except BaseException:
            self.state = ConnectionState.DISCONNECTED
            raise
        self._listener = listener
        self._gave_up = None
        self.state = ConnectionState.CONNECTED
        self.logger.info("Successfully connected to %s", self.uri)

    async def connect(
        self,
        retry: bool = False,
        max_retry_attempt: int = 3,
        retry_interval: float = 2,
        max_retry_interval: float = DEFAULT_MAX_RETRY_INTERVAL,
        **kwargs: Any,
    ) -> WebSocketClient:
        """Connect to the server.

        With ``retry=True``, failed attempts are retried up to ``max_retry_attempt``
        times, waiting ``retry_interval * 2**attempt`` seconds plus up to one second
        of random jitter between attempts. Once connected, the client also reconnects
        by itself when the connection drops (see the README, "Auto-retry"): up to
        ``max_retry_attempt`` attempts per outage, attempt *n* after a wait between half
        and all of ``min(max_retry_interval, retry_interval * 2**n)`` seconds.

        Raises:
            ConnectionFailedError: the connection (every attempt of it) failed.
        """
        await self._stop_reconnecting()  # this call takes over from an automatic reconnect
        self._retry = None
        try:
            if not retry:
                await self._connect_once(**kwargs)
                return self
            attempts = max(1, max_retry_attempt)
            last: Exception | None = None
            for attempt in range(attempts):
                try:
                    await self._connect_once(**dict(kwargs))
                    self._retry = _Retry(attempts, retry_interval, max_retry_interval, dict(kwargs))
                    return self
                except ConnectionFailedError as exc:
                    last = exc
                    if attempt + 1 < attempts:
                        delay = retry_interval * (2**attempt) + random.uniform(0, 1)
                        self.logger.info("Connection attempt %d failed, retrying in %.2fs", attempt + 1, delay)
                        await asyncio.sleep(delay)
            self.state = ConnectionState.DISCONNECTED
            raise connection_failed(
                "All connection attempts failed after multiple retries. "
                f"({attempts} attempts to {self.uri}; last: {last})",
                last,
            ) from last
        finally:
            self._end_outage()  # calls waiting on a reconnect see the outcome

    @property
    def close_code(self) -> WSCloseCode | int | None:
        """The close code the server sent when it closed the connection (None until then)."""
        listener = self._listener
        return None if listener is None else listener.close_code

    @property
    def is_connected(self) -> bool:
        """True while connected."""
        return self.state is ConnectionState.CONNECTED

    @property
    def reconnecting(self) -> bool:
        """True from a drop until the automatic reconnect succeeds or gives up."""
        return self._outage is not None

    def _live(self) -> tuple[_ClientListener, WSTransport] | None:
        listener = self._listener
        if listener is None or self.state is not ConnectionState.CONNECTED:
            return None
        transport = listener.transport
        return None if transport is None else (listener, transport)

    async def _wait_live(self, what: str, deadline: float | None) -> tuple[_ClientListener, WSTransport]:
        """The connection; while reconnecting, wait for it until ``deadline`` (loop time).

        Raises:
            ConnectionClosedError: not connected and not reconnecting.
            ConnectionFailedError: reconnecting gave up while this call waited.
            TimeoutError: the deadline passed first.
        """
        loop = asyncio.get_running_loop()
        waited = False
        while True:
            live = self._live()
            if live is not None:
                return live
            outage = self._outage
            if outage is None:
                if waited and self._gave_up is not None:
                    raise connection_failed(*self._gave_up)
                raise ConnectionClosedError(f"Cannot {what}: client is not connected.")
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError
            done, _ = await asyncio.wait((outage,), timeout=remaining)
            if not done:
                raise TimeoutError
            waited = True

    # ------------------------------------------------------------------ reconnecting

    def _on_gone(self, listener: _ClientListener) -> None:
        """The connection of ``listener`` went down: reconnect, or fail what waits on it."""
        if listener is not self._listener:
            return
        close_code = listener.close_code
        code = close_code.value if isinstance(close_code, WSCloseCode) else close_code
        if self.state is ConnectionState.CLOSED:  # our own close()
            self._shut_down(ConnectionClosedError(f"Connection to {self.uri} closed (code {code})."))
            return
        self.state = ConnectionState.DISCONNECTED
        retry = self._retry
        if retry is None or code in self.no_reconnect_codes:
            self._retry = None
            self._shut_down(
                ConnectionClosedError(
                    f"Connection to {self.uri} closed (code {code}); a call in flight may have run on the server."
                )
            )
        else:
            self.logger.warning("Connection to %s lost (close code %s): reconnecting", self.uri, code)
            loop = asyncio.get_running_loop()
            if self._outage is None:
                self._outage = loop.create_future()
            pending, self._pending = self._pending, {}
            for future in pending.values():
                if not future.done():
                    future.set_result(None)  # lost in flight: send_rpc decides (idempotent or not)
            for queue in self._streams.values():
                queue.put_nowait(_CLOSED)
            self._reconnect_task = loop.create_task(self._reconnect(retry))
        self._notify("on_disconnect", self.on_disconnect_callback, code)

    async def _reconnect(self, retry: _Retry) -> None:
        """Reconnect after a drop: up to ``retry.attempts`` attempts, then close for good."""
        last: BaseException | None = None
        for attempt in range(retry.attempts):
            delay = retry.delay(attempt)
            self.logger.info(
                "Reconnecting to %s in %.2fs (attempt %d of %d)", self.uri, delay, attempt + 1, retry.attempts
            )
            await asyncio.sleep(delay)
            self.state = ConnectionState.CONNECTING
            try:
                listener = await self._open(dict(retry.options))
            except Exception as exc:
                self.state = ConnectionState.DISCONNECTED
                last = exc
                self.logger.info("Reconnect attempt %d to %s failed: %s", attempt + 1, self.uri, exc)
                continue
            self._listener = listener
            self._reconnect_task = None
            self.state = ConnectionState.CONNECTED
            self.logger.info("Reconnected to %s (session recovered: %s)", self.uri, self.recovered)
            self._reconnected(self.recovered is True)
            return
        self._reconnect_task = None
        self._retry = None
        self.state = ConnectionState.CLOSED
        message = (
            f"All connection attempts failed after multiple retries. "
            f"({retry.attempts} reconnect attempts to {self.uri}; last: {last})"
        )
        self._gave_up = (message, last)
        self.logger.error("Gave up reconnecting to %s after %d attempts: %s", self.uri, retry.attempts, last)
        self._shut_down(connection_failed(message, last))

    def _reconnected(self, recovered: bool) -> None:
        """The connection is back: tell the application, then wake the calls that waited."""
        self._notify("on_reconnect", self.on_reconnect_callback, recovered)
        self._end_outage()

    async def _stop_reconnecting(self) -> None:
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait((task,))

    def _end_outage(self) -> None:
        outage, self._outage = self._outage, None
        if outage is not None and not outage.done():
            outage.set_result(None)

    def _shut_down(self, error: Exception) -> None:
        """No connection and none coming: fail calls and streams with ``error``, end recv()."""
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        for queue in self._streams.values():
            queue.put_nowait(_CLOSED)
        if not self._recv_closed:
            self._recv_closed = True
            self._packet_queue.put_nowait(_CLOSED)
        self._end_outage()

    def _notify(self, name: str, callback: Callable[[_T], Awaitable[None] | None] | None, arg: _T) -> None:
        """Call an application callback; a coroutine it returns runs as a task. Errors are logged."""
        if callback is None:
            return
        try:
            result = callback(arg)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._callback_tasks.add(task)
                task.add_done_callback(functools.partial(self._callback_done, name))
        except Exception:
            self.logger.exception("%s callback raised", name)

    def _callback_done(self, name: str, task: asyncio.Future[None]) -> None:
        self._callback_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.logger.error("%s callback raised", name, exc_info=task.exception())

    # ------------------------------------------------------------------ incoming

    def _on_message(self, payload: bytes) -> None:
        packet = decode_packet(payload, False)
        rpc = packet.rpc
        if packet.source is _RPC and type(rpc) is RPCResponse:
            call_id = rpc.call_id
            queue = self._streams.get(call_id)
            if queue is not None:  # a stream's chunk, or an error answered before it started
                queue.put_nowait(rpc)
                return
            future = self._pending.pop(call_id, None)
            if future is not None and not future.done():
                future.set_result(rpc)
            return
        if packet.offset is not None and packet.source is _CHANNEL and not self._seen(packet):
            return  # delivered already (a resume overlapping what had arrived)
        if packet.source is _SESSION:
            reply = self._session_reply
            if reply is not None and not reply.done():
                reply.set_result(packet.data)
            return
        if self.on_receive_callback is not None:
            self._inbox.append(packet)
            if not self._receiving:
                self._receiving = True
                self._receive_task = asyncio.get_running_loop().create_task(self._drain())
            return
        queue = self._packet_queue
        queue.put_nowait(packet)
        if queue.qsize() >= self.max_packet_qsize and self._listener is not None:
            self._listener.pause()

    def _seen(self, packet: Packet[Any]) -> bool:
        """Note a channel packet's position; False if it is one the client had already."""
        channel = packet.channel
        epoch = packet.epoch
        offset = packet.offset
        if channel is None or epoch is None or offset is None:
            return True
        positions = self._positions
        last = positions.pop(channel, None)  # re-inserted last: the least recently used go first
        if last is not None and last[0] == epoch and last[1] >= offset:
            positions[channel] = last
            return False
        positions[channel] = (epoch, offset)
        if len(positions) > self.max_positions:
            del positions[next(iter(positions))]
        return True

    async def _drain(self) -> None:
        callback = self.on_receive_callback
        try:
            while self._inbox and callback is not None:
                packet = self._inbox.pop(0)
                try:
                    await callback(packet)
                except Exception:
                    self.logger.exception("on_receive callback raised")
        finally:
            self._receiving = False

    # ------------------------------------------------------------------ outgoing

    def send(self, data: Any) -> None:
        """Send ``data`` as a CUSTOM packet (or a :class:`Packet` as is).

        Raises:
            ConnectionClosedError: not connected (also while reconnecting: nothing is buffered).
        """
        live = self._live()
        if live is None:
            raise ConnectionClosedError("Cannot send data: client is not connected.")
        payload = encode_packet(data, False) if isinstance(data, Packet) else encode_push(_CUSTOM, data, None, False)
        write_message(live[1], payload)

    async def send_rpc(
        self,
        method_name: str,
        /,
        *args: Any,
        raise_on_rate_limit: bool = False,
        wait_timeout: float | None = 30.0,
        idempotent: bool = False,
        **kwargs: Any,
    ) -> RPCResponse:
        """Call ``method_name(*args, **kwargs)`` on the server and wait for the reply.

        Returns the :class:`RPCResponse`: ``.data`` (or ``.response``) is the result;
        on failure ``.error`` holds the :class:`RPCErrorCode` and ``.response`` the
        message. ``raise_on_rate_limit``, ``wait_timeout`` (seconds the client waits for
        the reply, 30 as in 0.5.x; None: no limit) and ``idempotent`` are not sent to the
        server; every other keyword is, ``timeout`` included, as in 0.5.x. While the client
        reconnects, the call waits for the connection (within ``wait_timeout``).
        ``idempotent=True`` says the call is safe to repeat: if the connection drops before
        the reply, it is sent again after the reconnect.

        Raises:
            ConnectionClosedError: not connected (nor reconnecting), or the connection
                dropped before the reply (the call may have run on the server).
            ConnectionFailedError: the client gave up reconnecting while the call waited.
            RPCTimeoutError: no reply within ``wait_timeout`` seconds.
            RateLimitError: rate limited and ``raise_on_rate_limit`` is True.
        """
        loop = asyncio.get_running_loop()
        deadline = None if wait_timeout is None else loop.time() + wait_timeout
        call_id = generate_uuid()
        payload = encode_request(method_name, args, kwargs, call_id, False)
        resent = 0
        try:
            while True:
                live = self._live() or await self._wait_live("send RPC", deadline)
                future: asyncio.Future[RPCResponse | None] = loop.create_future()
                self._pending[call_id] = future
                write_message(live[1], payload)
                response = await asyncio.wait_for(future, None if deadline is None else deadline - loop.time())
                if response is not None:
                    break
                retry = self._retry
                if not idempotent or retry is None or resent >= retry.attempts:
                    raise ConnectionClosedError(
                        f"Connection to {self.uri} lost while RPC '{method_name}' was in flight; it may have run "
                        "on the server (pass idempotent=True to re-send calls that are safe to repeat)."
                    )
                resent += 1
                self.logger.info("Connection lost during RPC '%s' (idempotent): re-sending it", method_name)
        except (asyncio.TimeoutError, TimeoutError):
            raise RPCTimeoutError(f"RPC '{method_name}' got no response within {wait_timeout} seconds.") from None
        finally:
            self._pending.pop(call_id, None)
        if raise_on_rate_limit and response.error == RPCErrorCode.RATE_LIMIT_EXCEEDED:
            raise RateLimitError(f"RPC call rate limit exceeded. (method '{method_name}')")  # 0.5.x's sentence first
        return response

    async def stream_rpc(
        self,
        method_name: str,
        /,
        *args: Any,
        raise_on_rate_limit: bool = True,
        wait_timeout: float | None = 30.0,
        **kwargs: Any,
    ) -> AsyncGenerator[RPCResponse, None]:
        """Call a streaming RPC method and iterate over its chunks.

        Each item is an :class:`RPCResponse` whose ``.data`` is one yielded value.
        An error reply is yielded once and ends the iteration. Leaving the loop
        early sends ``__abort__`` and the server cancels the generator. While the
        client reconnects, the call waits up to ``wait_timeout`` seconds for the connection
        (not sent to the server, and not named ``timeout``: as in 0.5.x, a ``timeout`` keyword
        goes to the server's method; it does not limit the stream itself).

        Raises:
            ConnectionClosedError: not connected (nor reconnecting), or the connection dropped mid-stream.
            ConnectionFailedError: the client gave up reconnecting while the call waited.
            RPCTimeoutError: still reconnecting after ``wait_timeout`` seconds.
            RateLimitError: rate limited (unless ``raise_on_rate_limit=False``).
        """
        live = self._live()
        if live is None:
            deadline = None if wait_timeout is None else asyncio.get_running_loop().time() + wait_timeout
            try:
                live = await self._wait_live("send RPC", deadline)
            except (asyncio.TimeoutError, TimeoutError):
                raise RPCTimeoutError(
                    f"RPC '{method_name}' could not start within {wait_timeout} seconds: still reconnecting."
                ) from None
        listener, transport = live
        call_id = generate_uuid()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._streams[call_id] = queue
        finished = False
        try:
            write_message(transport, encode_request(method_name, args, kwargs, call_id, False))
            while True:
                item = await queue.get()
                if item is _CLOSED:
                    finished = True
                    raise ConnectionClosedError(f"Connection closed during stream '{method_name}'.")
                if item.error is not None or not item.is_stream:
                    finished = True
                    if item.error == RPCErrorCode.RATE_LIMIT_EXCEEDED and raise_on_rate_limit:
                        raise RateLimitError(f"Rate limit exceeded for method '{method_name}'")
                    yield item
                    return
                if item.is_end:
                    finished = True
                    return
                yield item
        finally:
            self._streams.pop(call_id, None)
            transport_now = listener.transport  # the stream's own connection, if still up
            if not finished and transport_now is not None and self.state is ConnectionState.CONNECTED:
                write_message(transport_now, encode_request("__abort__", (call_id,), {}, generate_uuid(), False))

    async def recv(self, timeout: float | None = 30) -> Packet[Any]:
        """Next pushed packet (custom, channel or broadcast).

        While the client reconnects, waits (within ``timeout``) for packets of the new connection.

        Raises:
            ConnectionClosedError: the connection is closed for good and nothing is buffered.
            ReceiveTimeoutError: nothing arrived within ``timeout`` seconds.
        """
        queue = self._packet_queue
        if queue.empty() and self.state is not ConnectionState.CONNECTED and self._outage is None:
            raise ConnectionClosedError("Cannot receive data: client is not connected.")
        try:
            item = await asyncio.wait_for(queue.get(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise ReceiveTimeoutError(f"Receive operation timed out after {timeout} seconds.") from None
        if item is _CLOSED:
            queue.put_nowait(_CLOSED)  # for the next reader too
            raise ConnectionClosedError("Connection closed.")
        listener = self._listener
        if listener is not None and listener.paused and queue.qsize() <= self.max_packet_qsize // 2:
            listener.resume()
        return item  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ closing

    async def close(self) -> None:
        """Close the connection (code 1000), stop any reconnect, and wait until it is down."""
        self.state = ConnectionState.CLOSED
        self._retry = None
        await self._stop_reconnecting()
        self.state = ConnectionState.CLOSED
        listener = self._listener
        transport = None if listener is None else listener.transport
        if transport is not None:
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode.OK, b"Client is closing the connection.")
            transport.disconnect()
            try:
                await asyncio.wait_for(transport.wait_disconnected(), 5.0)
            except (asyncio.TimeoutError, TimeoutError):
                transport.disconnect(False)
            except (WSError, OSError) as exc:  # it had failed on its own meanwhile (e.g. a protocol error)
                self.logger.debug("Connection to %s ended with %r", self.uri, exc)
        self._shut_down(ConnectionClosedError(f"Connection to {self.uri} closed by the client."))
        task = self._receive_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            await asyncio.wait([task], timeout=5.0)

    async def __aenter__(self) -> WebSocketClient:
        if self.state is not ConnectionState.CONNECTED:
            await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
