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
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import picows
from picows import WSCloseCode

from . import _fanout
from ._codec import INVALID_REQUEST, decode_packet, frame, response_frame, salvage_call_id
from ._fanout import CLOSE_SLOW_CONSUMER, Flusher
from ._framing import write_message
from .connection import ClientConnection
from .constant import DEFAULT_CHUNK_SIZE
from .enum import ClientType, PacketSource, RPCErrorCode
from .exceptions import ConnectionClosedError, ReceiveTimeoutError, RPCError
from .handler import DefaultWebSocketHandler, WebSocketHandler
from .packets import Packet, RPCRequest
from .ratelimit import TokenBucket

if TYPE_CHECKING:
    from .config import ServerConfig
    from .hub import Hub


def _probe() -> None:
    """Its type tells whether this module runs as Python or compiled by Cython."""


if type(_probe).__name__ == "function":  # pure Python; compiled, the .pxd cimports MessageListener instead
    from ._framing import *  # noqa: F403

__all__ = ["ServerCore", "ServerListener"]

_logger = logging.getLogger("webshocket.server")
_RPC = PacketSource.RPC
_UNKNOWN = PacketSource.UNKNOWN

_NOT_FOUND = int(RPCErrorCode.METHOD_NOT_FOUND)
_INVALID_PARAMS = int(RPCErrorCode.INVALID_PARAMS)
_INTERNAL = int(RPCErrorCode.INTERNAL_SERVER_ERROR)
_RATE_LIMITED = int(RPCErrorCode.RATE_LIMIT_EXCEEDED)
_APPLICATION = int(RPCErrorCode.APPLICATION_ERROR)
_DENIED = int(RPCErrorCode.ACCESS_DENIED)

PAUSE_QUEUE = 1
"""Reading paused: the ``recv()`` queue is full."""
PAUSE_INFLIGHT = 2
"""Reading paused: too many RPCs of this connection in flight."""
PAUSE_SHUTDOWN = 4
"""Reading paused: the server is shutting down."""

_CLOSED = object()  # wakes recv() when the connection goes away


def _overrides(handler: WebSocketHandler[Any], name: str) -> bool:
    """True when the handler's class overrides hook ``name`` of WebSocketHandler."""
    return getattr(type(handler), name) is not getattr(WebSocketHandler, name)


def reply(
    engine: ServerListener, call_id: str, response: Any, error: int | None, is_stream: bool, is_end: bool
) -> None:
    """Send one RPC response on ``engine``'s connection (dropped when it has gone)."""
    sink = engine.sink
    if sink is not None and sink.open:
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

    __slots__ = ("call_id", "core", "engine", "is_stream")

    def __init__(self, core: ServerCore, engine: ServerListener, call_id: str, is_stream: bool) -> None:
        self.core = core
        self.engine = engine
        self.call_id = call_id
        self.is_stream = is_stream

    def __call__(self, task: asyncio.Task[Any]) -> None:
        self.core.done(self.engine, self.call_id, self.is_stream, task)


class ServerCore:
    """State shared by every connection of one server: the RPC method table, the bound on
    RPCs running at once, the tasks it started, the write flusher."""

    def __init__(
        self,
        handler: WebSocketHandler[Any],
        hub: Hub,
        config: ServerConfig,
        on_open: Callable[[ClientConnection[Any]], None] | None = None,
    ) -> None:
        self.handler = handler
        self.hub = hub
        self.config = config
        self.methods = hub.methods
        self.loop = asyncio.get_running_loop()
        self.task_limit = config.rpc_task_limit
        self.running = 0
        self.waiting: deque[tuple[ServerListener, str, Any, bool]] = deque()
        self.max_message_size = config.max_message_size
        self.max_inflight = config.max_inflight_rpcs
        self.queue_packets = type(handler).on_receive is DefaultWebSocketHandler.on_receive
        self.has_on_connect = _overrides(handler, "on_connect")
        self.has_on_disconnect = _overrides(handler, "on_disconnect")
        self.lifecycle_tasks: set[asyncio.Task[Any]] = set()
        self.rpc_tasks: set[asyncio.Task[Any]] = set()  # plain RPCs running
        self.stream_tasks: set[asyncio.Task[Any]] = set()  # streaming RPCs running
        self.stats = hub.stats
        self.flusher = Flusher(self.loop)  # one write per connection per loop iteration
        self.engines: set[ServerListener] = set()  # connections open (accepted, not yet gone)
        self.on_open = on_open

    # ------------------------------------------------------------------ dispatch

    def call(self, engine: ServerListener, request: RPCRequest) -> None:
        """Handle one RPC request of ``engine``'s connection."""
        name = request.method
        call_id = request.call_id
        self.stats["rpc_calls"] += 1
        method = self.methods.get(name)
        if method is None:
            if name == "__abort__":
                self.abort(engine, request)
                return
            self.stats["rpc_errors"] += 1
            reply(engine, call_id, f"RPC method '{name}' not found.", _NOT_FOUND, False, True)
            return
        conn = engine.conn
        if method.restricted is not None:
            try:
                allowed = method.restricted(conn)
            except Exception as exc:
                _logger.exception("Access predicate of RPC method '%s' raised", name)
                self.stats["rpc_errors"] += 1
                reply(engine, call_id, f"Server error ({type(exc).__name__}): {exc}", _INTERNAL, method.is_stream, True)
                return
            if not allowed:
                self.stats["rpc_errors"] += 1
                reply(engine, call_id, f"Access denied for RPC method '{name}'.", _DENIED, method.is_stream, True)
                return
        limit = method.rate_limit
        if limit is not None:
            buckets = engine.buckets
            if buckets is None:
                buckets = engine.buckets = {}
            bucket = buckets.get(name)
            if bucket is None:
                bucket = buckets[name] = TokenBucket(limit.limit, limit.period)
            if not bucket.allow():
                self.stats["rpc_errors"] += 1
                self.stats["rate_limited"] += 1
                reply(
                    engine,
                    call_id,
                    f"Rate limit exceeded for RPC method '{name}'.",
                    _RATE_LIMITED,
                    method.is_stream,
                    True,
                )
                if limit.disconnect_on_limit_exceeded:
                    engine.close(WSCloseCode.TRY_AGAIN_LATER, b"Rate limit exceeded")
                return
        try:
            work = method.func(conn, *request.args, **request.kwargs)
        except TypeError as exc:
            self.stats["rpc_errors"] += 1
            reply(
                engine,
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
                reply(engine, call_id, stop.value, None, False, False)
            except Exception as exc:
                self._failed(engine, call_id, exc)
            else:  # pragma: no cover - cannot happen without an await
                work.close()
                self._failed(engine, call_id, RuntimeError("coroutine suspended"))
            return
        if method.is_stream:
            engine.streams[call_id] = None  # queued, not started
        engine.inflight += 1
        if engine.inflight == self.max_inflight:
            engine.pause_reading(PAUSE_INFLIGHT)
        if self.running < self.task_limit:
            self._start(engine, call_id, work, method.is_stream)
        else:
            self.waiting.append((engine, call_id, work, method.is_stream))

    def abort(self, engine: ServerListener, request: RPCRequest) -> None:
        """``__abort__``: cancel a running stream of the connection (no reply)."""
        if request.args:
            target = request.args[0]
            streams = engine.streams
            if isinstance(target, str) and target in streams:
                task = streams.pop(target)
                if task is not None:
                    task.cancel()

    def _start(self, engine: ServerListener, call_id: str, work: Any, is_stream: bool) -> None:
        self.running += 1
        if is_stream:
            task = self.loop.create_task(self._stream(engine, call_id, work))
            engine.streams[call_id] = task
            self.stream_tasks.add(task)
        else:
            # The method's coroutine is the task itself: no wrapper frame, and a task
            # cancelled before it starts closes the coroutine cleanly.
            task = self.loop.create_task(work)
            self.rpc_tasks.add(task)
        task.add_done_callback(_Done(self, engine, call_id, is_stream))

    def _finish(self, engine: ServerListener) -> None:
        """One RPC of the connection is over (answered, or dropped with its connection)."""
        engine.inflight -= 1
        if engine.inflight == self.max_inflight // 2:
            engine.resume_reading(PAUSE_INFLIGHT)

    def done(self, engine: ServerListener, call_id: str, is_stream: bool, task: asyncio.Task[Any]) -> None:
        """An RPC's task ended: answer a plain call, then start queued RPCs below the limit."""
        self.running -= 1
        self._finish(engine)
        if is_stream:
            self.stream_tasks.discard(task)
        else:
            self.rpc_tasks.discard(task)
            if not task.cancelled():
                self._answer(engine, call_id, task)
        waiting = self.waiting
        while waiting and self.running < self.task_limit:
            engine, call_id, work, is_stream = waiting.popleft()
            if not engine.is_open or (is_stream and call_id not in engine.streams):
                if not is_stream:
                    work.close()
                self._finish(engine)
                continue
            self._start(engine, call_id, work, is_stream)

    def _answer(self, engine: ServerListener, call_id: str, task: asyncio.Task[Any]) -> None:
        exc = task.exception()
        if exc is None:
            reply(engine, call_id, task.result(), None, False, False)
        else:
            self._failed(engine, call_id, exc)

    def _failed(self, engine: ServerListener, call_id: str, exc: BaseException) -> None:
        """A plain RPC raised ``exc``: answer with the matching error."""
        self.stats["rpc_errors"] += 1
        if isinstance(exc, RPCError):
            reply(engine, call_id, str(exc), _APPLICATION, False, False)
        else:
            _logger.error("RPC execution failed for call %s", call_id, exc_info=exc)
            reply(engine, call_id, f"Server error ({type(exc).__name__}): {exc}", _INTERNAL, False, False)

    async def _stream(self, engine: ServerListener, call_id: str, agen: AsyncIterator[Any]) -> None:
        try:
            async for item in agen:
                if not engine.is_open:
                    return
                reply(engine, call_id, item, None, True, False)
            reply(engine, call_id, None, None, True, True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats["rpc_errors"] += 1
            _logger.exception("Streaming RPC failed midway (call %s)", call_id)
            reply(engine, call_id, f"\nStream aborted: {exc}", _INTERNAL, True, True)
        finally:
            engine.streams.pop(call_id, None)
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    _logger.exception("Closing stream of call %s raised", call_id)

    # ------------------------------------------------------------------ non-RPC packets

    def receive(self, engine: ServerListener, packet: Packet[Any]) -> None:
        """Hand a non-RPC packet to the handler, preserving per-connection order."""
        if self.queue_packets:
            engine.enqueue(packet)
            return
        inbox = engine.inbox
        if inbox is None:
            inbox = engine.inbox = deque()
        inbox.append(packet)
        if not engine.receiving:
            engine.receiving = True
            self._track(self.loop.create_task(self._drain(engine)))

    async def _drain(self, engine: ServerListener) -> None:
        inbox = engine.inbox
        assert inbox is not None
        conn = engine.conn
        on_receive = self.handler.on_receive
        try:
            while inbox:
                packet = inbox.popleft()
                try:
                    await on_receive(conn, packet)
                except Exception:
                    _logger.exception("on_receive raised for %s", engine.remote_address())
        finally:
            engine.receiving = False

    # ------------------------------------------------------------------ lifecycle

    def _track(self, task: asyncio.Task[Any]) -> None:
        self.lifecycle_tasks.add(task)
        task.add_done_callback(self.lifecycle_tasks.discard)

    def connected(self, engine: ServerListener) -> None:
        """A connection was upgraded: admit it (or refuse it when the server is full)."""
        conn = engine.conn
        transport = engine.transport
        clients = self.hub.clients
        max_connection = self.config.max_connection
        if max_connection is not None and len(clients) >= max_connection:
            engine.ready = True
            engine.mark_closed()
            transport.send_close(WSCloseCode.TRY_AGAIN_LATER, b"Server is at maximum capacity.")
            transport.disconnect()
            return
        transport.underlying_transport.set_write_buffer_limits(high=self.config.max_send_buffer)
        clients.add(conn)
        self.engines.add(engine)
        self.stats["connections_opened"] += 1
        if self.on_open is not None:
            self.on_open(conn)
        if self.has_on_connect:
            engine.connect_task = task = self.loop.create_task(self._on_connect(engine))
            self._track(task)
        else:
            engine.ready = True

    async def _on_connect(self, engine: ServerListener) -> None:
        try:
            await self.handler.on_connect(engine.conn)
        except Exception:
            _logger.exception("on_connect raised for %s", engine.remote_address())
        engine.ready = True
        pending, engine.pending = engine.pending, []
        for payload in pending:
            if not engine.is_open:
                break
            engine.dispatch(payload)

    def disconnected(self, engine: ServerListener) -> None:
        """A connection went away: cancel its streams, wake its readers, forget it."""
        conn = engine.conn
        was_client = engine in self.engines
        engine.mark_closed()
        streams = engine.streams
        for task in streams.values():
            if task is not None:
                task.cancel()
        streams.clear()
        if engine.queue is not None:
            engine.queue.put_nowait(_CLOSED)
        if not was_client:
            return
        self.engines.discard(engine)
        self.hub.clients.discard(conn)
        self.hub.unsubscribe_all(conn)
        self.stats["connections_closed"] += 1
        if self.has_on_disconnect:
            self._track(self.loop.create_task(self._on_disconnect(engine)))

    async def _on_disconnect(self, engine: ServerListener) -> None:
        connect_task = engine.connect_task
        if connect_task is not None and not connect_task.done():
            await asyncio.wait([connect_task])
        try:
            await self.handler.on_disconnect(engine.conn)
        except Exception:
            _logger.exception("on_disconnect raised for %s", engine.remote_address())

    async def shutdown(self, timeout: float | None) -> None:
        """Close every connection gracefully (the server stopped accepting).

        Running RPCs get up to ``timeout`` seconds to finish while no new request is
        read; then every client gets 1001 (going away) and, once they are gone, the
        remaining tasks are cancelled and the lifecycle hooks awaited.
        """
        loop = self.loop
        deadline = None if timeout is None else loop.time() + timeout
        engines = list(self.engines)
        for engine in engines:  # no new work while running RPCs finish; requests wait unread
            engine.pause_reading(PAUSE_SHUTDOWN)
        if self.rpc_tasks:
            await asyncio.wait(list(self.rpc_tasks), timeout=timeout)
        for engine in engines:
            engine.resume_reading(PAUSE_SHUTDOWN)  # to read the clients' close frames
            engine.close(WSCloseCode.GOING_AWAY, b"Server is shutting down.")
        if engines:
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            waits = [asyncio.ensure_future(e.transport.wait_disconnected()) for e in engines]
            _done, late = await asyncio.wait(waits, timeout=remaining if remaining else 1.0)
            for engine in engines:
                if not engine.transport.is_disconnected:
                    engine.transport.disconnect(False)
            for waiter in late:
                waiter.cancel()
        cancelled = [*self.rpc_tasks, *self.stream_tasks]
        for task in cancelled:
            task.cancel()
        if cancelled:  # let them unwind (finally blocks, replies) before the loop may end
            await asyncio.wait(cancelled, timeout=5.0)
        lifecycle = list(self.lifecycle_tasks)
        if lifecycle:
            await asyncio.wait(lifecycle, timeout=5.0)


class ServerListener(MessageListener):  # noqa: F405
    """One server-side connection's engine: the picows listener and everything the server
    keeps for that connection (reading state, RPCs in flight, queues, outgoing side).

    It owns that state; its :class:`~webshocket.ClientConnection` (``conn``) is the
    application's facade and asks it through its methods.
    """

    __slots__ = (
        "buckets",
        "client_type",
        "conn",
        "connect_task",
        "core",
        "hub",
        "inbox",
        "inflight",
        "is_open",
        "max_subscribed_channels",
        "packet_qsize",
        "paused",
        "pending",
        "queue",
        "ready",
        "receiving",
        "remote",
        "sink",
        "streams",
        "transport",
    )

    def __init__(self, core: ServerCore, client_type: ClientType) -> None:
        config = core.config
        super().__init__(config.max_message_size)
        self.core = core
        self.hub = core.hub
        self.client_type = client_type
        self.packet_qsize = config.packet_qsize
        self.max_subscribed_channels = config.max_subscribed_channels
        self.transport: Any = None  # picows WSTransport, once connected
        self.sink: _fanout.Sink | None = None
        # The facade, made once connected (the engine is never used before on_ws_connected).
        self.conn: ClientConnection[Any] = None  # type: ignore[assignment]
        self.is_open = False
        self.streams: dict[str, asyncio.Task[Any] | None] = {}  # streaming RPCs: running, or queued (None)
        self.buckets: dict[str, TokenBucket] | None = None  # rate limits: method -> bucket
        self.inflight = 0  # RPCs running or queued
        self.paused = 0  # bit set of reasons reading is paused (PAUSE_*)
        self.inbox: deque[Packet[Any]] | None = None  # packets waiting for on_receive
        self.receiving = False  # an on_receive drain task is running
        self.queue: asyncio.Queue[Any] | None = None  # packets waiting for recv()
        self.remote: tuple[str, int] | None = None
        self.ready = False  # on_connect has returned: messages are dispatched
        self.pending: list[bytes] = []  # messages that arrived while on_connect ran
        self.connect_task: asyncio.Task[Any] | None = None

    # ------------------------------------------------------------------ picows callbacks

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        core = self.core
        config = core.config
        self.transport = transport
        sink = _fanout.Sink(
            transport,
            self.client_type is ClientType.GENERIC,
            config.max_send_buffer,
            config.slow_consumer_policy == "drop",
            core.flusher,
            core.stats,
            self.close_slow_consumer,
        )
        self.sink = sink
        self.is_open = True
        self.conn = ClientConnection(self, sink)
        core.connected(self)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        if self.conn is not None:
            self.core.disconnected(self)

    def pause_writing(self) -> None:
        """The outgoing buffer went above ``max_send_buffer``."""
        if self.sink is not None:
            self.sink.blocked = True

    def resume_writing(self) -> None:
        """The outgoing buffer drained below its low-water mark."""
        if self.sink is not None:
            self.sink.blocked = False

    # ------------------------------------------------------------------ for the facade

    def remote_address(self) -> tuple[str, int]:
        """``(host, port)`` of the client."""
        remote = self.remote
        if remote is None:
            remote = self.remote = self.transport.underlying_transport.get_extra_info("peername")
        return remote

    def push(self, payload: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE) -> bool:
        """Send an encoded pushed packet; False if the slow-consumer policy refused it."""
        sink = self.sink
        assert sink is not None
        if chunk_size == DEFAULT_CHUNK_SIZE:
            if not sink.push(frame(payload)):
                return False
        else:
            if not sink.admit(len(payload)):
                return False
            sink.flush()
            write_message(self.transport, payload, chunk_size)
        sink.stats["deliveries"] += 1
        return True

    def close(self, code: WSCloseCode | int = 1000, reason: bytes = b"") -> None:
        """Close the connection (queued replies go first)."""
        if not self.is_open:
            return
        sink = self.sink
        if sink is not None:
            sink.flush()
        self.mark_closed()
        transport = self.transport
        if not transport.is_close_frame_sent:
            transport.send_close(WSCloseCode(code), reason)
        transport.disconnect()

    def close_slow_consumer(self) -> None:
        self.close(CLOSE_SLOW_CONSUMER, b"Slow consumer: outgoing buffer full")

    def mark_closed(self) -> None:
        """No more sending: the connection is closing or gone."""
        self.is_open = False
        if self.sink is not None:
            self.sink.open = False

    def pause_reading(self, reason: int) -> None:
        paused = self.paused
        self.paused = paused | reason
        if not paused and self.is_open:
            self.transport.underlying_transport.pause_reading()

    def resume_reading(self, reason: int) -> None:
        paused = self.paused
        if not paused & reason:
            return
        self.paused = paused & ~reason
        if paused == reason and self.is_open:
            self.transport.underlying_transport.resume_reading()

    def enqueue(self, packet: Packet[Any]) -> None:
        """Queue a packet for ``recv()``; pause reading while the queue is full."""
        queue = self.queue
        if queue is None:
            queue = self.queue = asyncio.Queue()
        queue.put_nowait(packet)
        if queue.qsize() >= self.packet_qsize:
            self.pause_reading(PAUSE_QUEUE)

    async def recv(self, timeout: float | None) -> Packet[Any]:
        """Next queued packet of this connection (see ``ClientConnection.recv``)."""
        queue = self.queue
        if queue is None:
            queue = self.queue = asyncio.Queue()
        if queue.empty() and not self.is_open:
            raise ConnectionClosedError("Cannot receive data: client is not connected.")
        try:
            if timeout is None:
                packet = await queue.get()
            else:
                packet = await asyncio.wait_for(queue.get(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise ReceiveTimeoutError(f"Receive operation timed out after {timeout} seconds.") from None
        if packet is _CLOSED:
            queue.put_nowait(_CLOSED)  # keep waking later callers
            raise ConnectionClosedError("Connection closed.")
        if self.paused & PAUSE_QUEUE and queue.qsize() <= self.packet_qsize // 2:
            self.resume_reading(PAUSE_QUEUE)
        return packet  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ incoming frames

    def fail(self, transport: picows.WSTransport, code: WSCloseCode, reason: bytes) -> None:
        """The client broke the protocol: close with ``code`` (replies already queued go first)."""
        self.fragments = None
        self.pending = []
        if self.is_open:
            self.close(code, reason)
        else:
            MessageListener.fail(self, transport, code, reason)  # noqa: F405

    def on_close_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        """The client closes: replies already queued go before our close frame."""
        if self.sink is not None:
            self.sink.flush()
        self.mark_closed()
        MessageListener.on_close_frame(self, transport, frame)  # noqa: F405

    def on_message(self, payload: bytes) -> None:
        """One complete message arrived."""
        if not self.is_open:
            return  # closing: nothing after a close frame is processed
        if not self.ready:
            self.pending.append(payload)
            return
        self.dispatch(payload)

    def dispatch(self, payload: bytes) -> None:
        sink = self.sink
        assert sink is not None
        as_json = sink.as_json
        packet = decode_packet(payload, as_json)
        rpc = packet.rpc
        if packet.source is _RPC and type(rpc) is RPCRequest:
            self.core.call(self, rpc)
            return
        if packet.data is payload and packet.source is _UNKNOWN:  # not a valid packet
            call_id = salvage_call_id(payload, as_json)
            if call_id is not None:  # a malformed RPC request: answer it
                reply(self, call_id, INVALID_REQUEST, _INVALID_PARAMS, False, True)
                return
            _logger.debug("Invalid packet from %s (%d bytes)", self.remote_address(), len(payload))
        self.core.receive(self, packet)
