# cython: annotation_typing=False
"""Pure-Python connection listener and RPC dispatch (twin of the compiled ``_listener_c``).

One :class:`ServerListener` per connection receives picows frames, reassembles
fragmented messages, decodes packets and dispatches them: RPC requests to
:class:`ServerCore`, everything else to the handler's ``on_receive`` (in order).
:class:`ServerCore` holds the hot state shared by all connections of a server:
the RPC method table and the bound on RPCs running at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import picows
from picows import WSCloseCode, WSMsgType

from ._codec import INVALID_REQUEST, decode_packet, response_frame, salvage_call_id
from ._fanout import Flusher
from .connection import _CLOSED, ClientConnection
from .enum import ClientType, ConnectionState, PacketSource, RPCErrorCode
from .exceptions import RPCError
from .handler import DefaultWebSocketHandler, WebSocketHandler
from .packets import Packet, RPCRequest
from .ratelimit import TokenBucket

if TYPE_CHECKING:
    from .server import WebSocketServer


def _probe() -> None:
    """Its type tells whether this module runs as Python or compiled by Cython."""


if type(_probe).__name__ == "function":  # pure Python; compiled, the .pxd cimports WSListener instead
    from picows import *  # noqa: F403

__all__ = ["ServerCore", "ServerListener"]

_logger = logging.getLogger("webshocket.server")
_RPC = PacketSource.RPC
_UNKNOWN = PacketSource.UNKNOWN
_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE
_PING = WSMsgType.PING
_CONNECTED = ConnectionState.CONNECTED
_CLOSED_STATE = ConnectionState.CLOSED

_NOT_FOUND = int(RPCErrorCode.METHOD_NOT_FOUND)
_INVALID_PARAMS = int(RPCErrorCode.INVALID_PARAMS)
_INTERNAL = int(RPCErrorCode.INTERNAL_SERVER_ERROR)
_RATE_LIMITED = int(RPCErrorCode.RATE_LIMIT_EXCEEDED)
_APPLICATION = int(RPCErrorCode.APPLICATION_ERROR)
_DENIED = int(RPCErrorCode.ACCESS_DENIED)
_PAUSE_INFLIGHT = 2  # reading paused: too many RPCs of this connection in flight


def _overrides(handler: WebSocketHandler[Any], name: str) -> bool:
    """True when the handler's class overrides hook ``name`` of WebSocketHandler."""
    return getattr(type(handler), name) is not getattr(WebSocketHandler, name)


def reply(
    conn: ClientConnection[Any], call_id: str, response: Any, error: int | None, is_stream: bool, is_end: bool
) -> None:
    """Send one RPC response to ``conn`` (dropped when it has gone)."""
    sink = conn._sink
    if sink.open:
        try:
            frames = response_frame(call_id, response, error, is_stream, is_end, sink.as_json)
        except (TypeError, ValueError, OverflowError) as exc:
            _logger.error("Cannot encode the result of call %s: %s", call_id, exc)
            frames = response_frame(
                call_id, f"Server error (unserializable result): {exc}", _INTERNAL, is_stream, True, sink.as_json
            )
        sink.send(frames)


class _Done:
    """Done-callback of an RPC's task (a small object instead of a closure)."""

    __slots__ = ("call_id", "conn", "core", "is_stream")

    def __init__(self, core: ServerCore, conn: ClientConnection[Any], call_id: str, is_stream: bool) -> None:
        self.core = core
        self.conn = conn
        self.call_id = call_id
        self.is_stream = is_stream

    def __call__(self, task: asyncio.Task[Any]) -> None:
        self.core.done(self.conn, self.call_id, self.is_stream, task)


class ServerCore:
    """State shared by every connection of one server."""

    def __init__(self, server: WebSocketServer[Any]) -> None:
        self.server = server
        self.handler = server.handler
        self.methods = self.handler._rpc_methods
        self.loop = asyncio.get_running_loop()
        self.task_limit = server._rpc_task_limit
        self.running = 0
        self.waiting: deque[tuple[ClientConnection[Any], str, Any, bool]] = deque()
        self.max_message_size = server.max_message_size
        self.max_inflight = server.max_inflight_rpcs
        self.queue_packets = type(self.handler).on_receive is DefaultWebSocketHandler.on_receive
        self.has_on_connect = _overrides(self.handler, "on_connect")
        self.has_on_disconnect = _overrides(self.handler, "on_disconnect")
        self.lifecycle_tasks: set[asyncio.Task[Any]] = set()
        self.rpc_tasks: set[asyncio.Task[Any]] = set()  # plain RPCs running
        self.stream_tasks: set[asyncio.Task[Any]] = set()  # streaming RPCs running
        self.stats = server.stats
        self.flusher = Flusher(self.loop)  # one write per connection per loop iteration

    # ------------------------------------------------------------------ dispatch

    def call(self, conn: ClientConnection[Any], request: RPCRequest) -> None:
        """Handle one RPC request of ``conn``."""
        name = request.method
        call_id = request.call_id
        self.stats["rpc_calls"] += 1
        method = self.methods.get(name)
        if method is None:
            if name == "__abort__":
                self.abort(conn, request)
                return
            self.stats["rpc_errors"] += 1
            reply(conn, call_id, f"RPC method '{name}' not found.", _NOT_FOUND, False, True)
            return
        if method.restricted is not None:
            try:
                allowed = method.restricted(conn)
            except Exception as exc:
                _logger.exception("Access predicate of RPC method '%s' raised", name)
                self.stats["rpc_errors"] += 1
                reply(conn, call_id, f"Server error ({type(exc).__name__}): {exc}", _INTERNAL, method.is_stream, True)
                return
            if not allowed:
                self.stats["rpc_errors"] += 1
                reply(conn, call_id, f"Access denied for RPC method '{name}'.", _DENIED, method.is_stream, True)
                return
        limit = method.rate_limit
        if limit is not None:
            bucket = conn._rate_buckets.get(name)
            if bucket is None:
                bucket = conn._rate_buckets[name] = TokenBucket(limit.limit, limit.period)
            if not bucket.allow():
                self.stats["rpc_errors"] += 1
                self.stats["rate_limited"] += 1
                reply(
                    conn,
                    call_id,
                    f"Rate limit exceeded for RPC method '{name}'.",
                    _RATE_LIMITED,
                    method.is_stream,
                    True,
                )
                if limit.disconnect_on_limit_exceeded:
                    conn.close(WSCloseCode.TRY_AGAIN_LATER, b"Rate limit exceeded")
                return
        try:
            work = method.func(conn, *request.args, **request.kwargs)
        except TypeError as exc:
            self.stats["rpc_errors"] += 1
            reply(
                conn,
                call_id,
                f"Server error ({type(exc).__name__}): {exc}",
                _INVALID_PARAMS,
                method.is_stream,
                method.is_stream,
            )
            return
        if method.inline:  # no await in its body: finishes now, no task needed
            try:
                work.send(None)
            except StopIteration as stop:
                reply(conn, call_id, stop.value, None, False, False)
            except Exception as exc:
                self._failed(conn, call_id, exc)
            else:  # pragma: no cover - cannot happen without an await
                work.close()
                self._failed(conn, call_id, RuntimeError("coroutine suspended"))
            return
        if method.is_stream:
            conn._active_stream[call_id] = None  # type: ignore[assignment]  # queued, not started
        inflight = conn._inflight + 1
        object.__setattr__(conn, "_inflight", inflight)
        if inflight == self.max_inflight:
            conn._pause_reading(_PAUSE_INFLIGHT)
        if self.running < self.task_limit:
            self._start(conn, call_id, work, method.is_stream)
        else:
            self.waiting.append((conn, call_id, work, method.is_stream))

    def abort(self, conn: ClientConnection[Any], request: RPCRequest) -> None:
        """``__abort__``: cancel a running stream of ``conn`` (no reply)."""
        if request.args:
            target = request.args[0]
            if isinstance(target, str) and target in conn._active_stream:
                task = conn._active_stream.pop(target)
                if task is not None:
                    task.cancel()

    def _start(self, conn: ClientConnection[Any], call_id: str, work: Any, is_stream: bool) -> None:
        self.running += 1
        if is_stream:
            task = self.loop.create_task(self._stream(conn, call_id, work))
            conn._active_stream[call_id] = task
            self.stream_tasks.add(task)
        else:
            # The method's coroutine is the task itself: no wrapper frame, and a task
            # cancelled before it starts closes the coroutine cleanly.
            task = self.loop.create_task(work)
            self.rpc_tasks.add(task)
        task.add_done_callback(_Done(self, conn, call_id, is_stream))

    def _finish(self, conn: ClientConnection[Any]) -> None:
        """One RPC of ``conn`` is over (answered, or dropped with its connection)."""
        inflight = conn._inflight - 1
        object.__setattr__(conn, "_inflight", inflight)
        if inflight == self.max_inflight // 2:
            conn._resume_reading(_PAUSE_INFLIGHT)

    def done(self, conn: ClientConnection[Any], call_id: str, is_stream: bool, task: asyncio.Task[Any]) -> None:
        """An RPC's task ended: answer a plain call, then start queued RPCs below the limit."""
        self.running -= 1
        self._finish(conn)
        if is_stream:
            self.stream_tasks.discard(task)
        else:
            self.rpc_tasks.discard(task)
            if not task.cancelled():
                self._answer(conn, call_id, task)
        waiting = self.waiting
        while waiting and self.running < self.task_limit:
            conn, call_id, work, is_stream = waiting.popleft()
            if conn.connection_state is not _CONNECTED or (is_stream and call_id not in conn._active_stream):
                if not is_stream:
                    work.close()
                self._finish(conn)
                continue
            self._start(conn, call_id, work, is_stream)

    def _answer(self, conn: ClientConnection[Any], call_id: str, task: asyncio.Task[Any]) -> None:
        exc = task.exception()
        if exc is None:
            reply(conn, call_id, task.result(), None, False, False)
        else:
            self._failed(conn, call_id, exc)

    def _failed(self, conn: ClientConnection[Any], call_id: str, exc: BaseException) -> None:
        """A plain RPC raised ``exc``: answer with the matching error."""
        if isinstance(exc, RPCError):
            self.stats["rpc_errors"] += 1
            reply(conn, call_id, str(exc), _APPLICATION, False, False)
        else:
            self.stats["rpc_errors"] += 1
            _logger.error("RPC execution failed for call %s", call_id, exc_info=exc)
            reply(conn, call_id, f"Server error ({type(exc).__name__}): {exc}", _INTERNAL, False, False)

    async def _stream(self, conn: ClientConnection[Any], call_id: str, agen: AsyncIterator[Any]) -> None:
        try:
            async for item in agen:
                if conn.connection_state is not _CONNECTED:
                    return
                reply(conn, call_id, item, None, True, False)
            reply(conn, call_id, None, None, True, True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats["rpc_errors"] += 1
            _logger.exception("Streaming RPC failed midway (call %s)", call_id)
            reply(conn, call_id, f"\nStream aborted: {exc}", _INTERNAL, True, True)
        finally:
            conn._active_stream.pop(call_id, None)
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    _logger.exception("Closing stream of call %s raised", call_id)

    # ------------------------------------------------------------------ non-RPC packets

    def receive(self, conn: ClientConnection[Any], packet: Packet[Any]) -> None:
        """Hand a non-RPC packet to the handler, preserving per-connection order."""
        if self.queue_packets:
            conn._enqueue_packet(packet)
            return
        conn._inbox.append(packet)
        if not conn._receiving:
            object.__setattr__(conn, "_receiving", True)
            self._track(self.loop.create_task(self._drain(conn)))

    async def _drain(self, conn: ClientConnection[Any]) -> None:
        inbox = conn._inbox
        on_receive = self.handler.on_receive
        try:
            while inbox:
                packet = inbox.pop(0)
                try:
                    await on_receive(conn, packet)
                except Exception:
                    _logger.exception("on_receive raised for %s", conn.remote_address)
        finally:
            object.__setattr__(conn, "_receiving", False)

    # ------------------------------------------------------------------ lifecycle

    def _track(self, task: asyncio.Task[Any]) -> None:
        self.lifecycle_tasks.add(task)
        task.add_done_callback(self.lifecycle_tasks.discard)

    def connected(self, listener: ServerListener, conn: ClientConnection[Any]) -> None:
        server = self.server
        max_connection = server.max_connection
        if max_connection is not None and len(self.handler.clients) >= max_connection:
            listener.ready = True
            conn._mark_closed()
            conn._protocol.send_close(WSCloseCode.TRY_AGAIN_LATER, b"Server is at maximum capacity.")
            conn._protocol.disconnect()
            return
        sink = conn._sink
        sink.drop = server.slow_consumer_policy == "drop"
        sink.stats = self.stats
        sink.flusher = self.flusher
        sink.max_out = server.max_send_buffer
        conn._protocol.underlying_transport.set_write_buffer_limits(high=server.max_send_buffer)
        self.handler.clients.add(conn)
        self.stats["connections_opened"] += 1
        server._on_new_connection(conn)
        if self.has_on_connect:
            listener.connect_task = task = self.loop.create_task(self._on_connect(listener, conn))
            self._track(task)
        else:
            listener.ready = True

    async def _on_connect(self, listener: ServerListener, conn: ClientConnection[Any]) -> None:
        try:
            await self.handler.on_connect(conn)
        except Exception:
            _logger.exception("on_connect raised for %s", conn.remote_address)
        listener.ready = True
        pending, listener.pending = listener.pending, []
        for payload in pending:
            if conn.connection_state is not _CONNECTED:
                break
            listener.dispatch(payload)

    def disconnected(self, listener: ServerListener, conn: ClientConnection[Any]) -> None:
        was_client = conn in self.handler.clients
        conn._mark_closed()
        streams = conn._active_stream
        for task in streams.values():
            if task is not None:
                task.cancel()
        streams.clear()
        if conn._packet_queue is not None:
            conn._enqueue_packet(_CLOSED)
        if not was_client:
            return
        self.handler.clients.discard(conn)
        self.handler._unsubscribe_all(conn)
        self.stats["connections_closed"] += 1
        if self.has_on_disconnect:
            self._track(self.loop.create_task(self._on_disconnect(listener, conn)))

    async def _on_disconnect(self, listener: ServerListener, conn: ClientConnection[Any]) -> None:
        connect_task = listener.connect_task
        if connect_task is not None and not connect_task.done():
            await asyncio.wait([connect_task])
        try:
            await self.handler.on_disconnect(conn)
        except Exception:
            _logger.exception("on_disconnect raised for %s", conn.remote_address)


class ServerListener(WSListener):  # noqa: F405
    """picows listener of one server-side connection."""

    __slots__ = (
        "_text",
        "client_type",
        "conn",
        "connect_task",
        "core",
        "fragments",
        "fragments_size",
        "pending",
        "ready",
    )

    def __init__(self, core: ServerCore, client_type: ClientType) -> None:
        self.core = core
        self.client_type = client_type
        self.conn: ClientConnection[Any] | None = None
        self.fragments: list[bytes] | None = None
        self.fragments_size = 0
        self.ready = False
        self.pending: list[bytes] = []
        self.connect_task: asyncio.Task[Any] | None = None
        self._text = False

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        server = self.core.server
        conn: ClientConnection[Any] = ClientConnection(
            transport,
            self.core.handler,
            self.client_type,
            server._packet_qsize,
            server._max_subscribed_channels,
        )
        self.conn = conn
        self.core.connected(self, conn)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        if self.conn is not None:
            self.core.disconnected(self, self.conn)

    def pause_writing(self) -> None:
        """The outgoing buffer went above ``max_send_buffer``."""
        if self.conn is not None:
            self.conn._sink.blocked = True

    def resume_writing(self) -> None:
        """The outgoing buffer drained below its low-water mark."""
        if self.conn is not None:
            self.conn._sink.blocked = False

    def _fail(self, transport: picows.WSTransport, code: WSCloseCode, reason: bytes) -> None:
        self.fragments = None
        self.pending = []
        if self.conn is not None:
            self.conn.close(code, reason)
        else:
            transport.send_close(code, reason)
            transport.disconnect()

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        msg_type = frame.msg_type
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            self._fail(transport, WSCloseCode.PROTOCOL_ERROR, b"Reserved bits set without a negotiated extension")
            return
        if msg_type is _BINARY or msg_type is _TEXT:
            if self.fragments is not None:
                self._fail(transport, WSCloseCode.PROTOCOL_ERROR, b"New message before the fragmented one ended")
                return
            if frame.fin:
                payload = frame.get_payload_as_bytes()
                if msg_type is _TEXT and not _valid_utf8(payload):
                    self._fail(transport, WSCloseCode.INVALID_TEXT, b"Invalid UTF-8 in a text message")
                    return
                self.message(payload)
            else:
                self.fragments = [frame.get_payload_as_bytes()]
                self.fragments_size = frame.payload_size
                self._text = msg_type is _TEXT
                self._check_size(transport)
        elif msg_type is _CONTINUATION:
            fragments = self.fragments
            if fragments is None:
                self._fail(transport, WSCloseCode.PROTOCOL_ERROR, b"Continuation frame without a message")
                return
            fragments.append(frame.get_payload_as_bytes())
            self.fragments_size += frame.payload_size
            if not self._check_size(transport):
                return
            if frame.fin:
                self.fragments = None
                payload = b"".join(fragments)
                if self._text and not _valid_utf8(payload):
                    self._fail(transport, WSCloseCode.INVALID_TEXT, b"Invalid UTF-8 in a text message")
                    return
                self.message(payload)
        elif msg_type is _PING:  # answered here (not by picows) so that its reserved bits were checked
            transport.send_pong(frame.get_payload_as_bytes())
        elif msg_type is _CLOSE:
            code, reason = close_reply(frame)
            if self.conn is not None:
                self.conn._sink.flush()  # replies already queued go before our close frame
                self.conn._mark_closed()
            if not transport.is_close_frame_sent:
                transport.send_close(code, reason)
            transport.disconnect()

    def _check_size(self, transport: picows.WSTransport) -> bool:
        if self.fragments_size > self.core.max_message_size:
            self._fail(transport, WSCloseCode.MESSAGE_TOO_BIG, b"Message too big")
            return False
        return True

    def message(self, payload: bytes) -> None:
        """One complete message arrived."""
        if self.conn is None or self.conn.connection_state is not _CONNECTED:
            return  # closing: nothing after a close frame is processed
        if not self.ready:
            self.pending.append(payload)
            return
        self.dispatch(payload)

    def dispatch(self, payload: bytes) -> None:
        conn = self.conn
        assert conn is not None
        packet = decode_packet(payload, conn._json)
        rpc = packet.rpc
        if packet.source is _RPC and type(rpc) is RPCRequest:
            self.core.call(conn, rpc)
            return
        if packet.data is payload and packet.source is _UNKNOWN:  # not a valid packet
            call_id = salvage_call_id(payload, conn._json)
            if call_id is not None:  # a malformed RPC request: answer it
                reply(conn, call_id, INVALID_REQUEST, _INVALID_PARAMS, False, True)
                return
            _logger.debug("Invalid packet from %s (%d bytes)", conn.remote_address, len(payload))
        self.core.receive(conn, packet)


def valid_close_code(code: int) -> bool:
    """A close code a peer may send (RFC 6455 7.4, with the registered 1012-1014)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def close_reply(frame: picows.WSFrame) -> tuple[WSCloseCode, bytes]:
    """The close frame that answers ``frame``: its code echoed, 1000 if it had none, 1002 if invalid."""
    if frame.payload_size == 0:
        return WSCloseCode.OK, b""
    code = frame.get_close_code()
    if not valid_close_code(code.value if isinstance(code, WSCloseCode) else int(code)):
        return WSCloseCode.PROTOCOL_ERROR, b"Invalid close code"
    return code, frame.get_close_message()


def _valid_utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
