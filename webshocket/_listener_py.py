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
import select
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, cast
from uuid import uuid4

import picows
from picows import WSCloseCode

from . import _fanout
from ._codec import INVALID_REQUEST, decode_packet, encode_packet, frame, response_frame, salvage_call_id
from ._fanout import CLOSE_SLOW_CONSUMER, Flusher
from ._framing import write_message
from .connection import ClientConnection
from .constant import DEFAULT_CHUNK_SIZE
from .enum import ClientType, PacketSource, RPCErrorCode
from .exceptions import ConnectionClosedError, ReceiveTimeoutError, RPCError
from .handler import DefaultWebSocketHandler, WebSocketHandler
from .limits import KeyedBuckets
from .packets import Packet, RPCRequest
from .ratelimit import TokenBucket
from .recovery import Snapshot, new_token, parse_hello
from .request import Request, bind_remote_address, take_session

if TYPE_CHECKING:
    from .config import ServerConfig
    from .hub import Hub
    from .recovery import MemoryStore
    from .redis_recovery import RedisStore
    from .typing import RateLimitConfig


def _probe() -> None:
    """Its type tells whether this module runs as Python or compiled by Cython."""


if type(_probe).__name__ == "function":  # pure Python; compiled, the .pxd cimports MessageListener instead
    from ._framing import *  # noqa: F403

__all__ = ["CLOSE_SESSION_TAKEN", "ServerCore", "ServerListener"]

_logger = logging.getLogger("webshocket.server")
_RPC = PacketSource.RPC
_UNKNOWN = PacketSource.UNKNOWN
_SESSION = PacketSource.SESSION
_CLOSE_OK = WSCloseCode.OK

_NOT_FOUND = int(RPCErrorCode.METHOD_NOT_FOUND)
_INVALID_PARAMS = int(RPCErrorCode.INVALID_PARAMS)
_INTERNAL = int(RPCErrorCode.INTERNAL_SERVER_ERROR)
_RATE_LIMITED = int(RPCErrorCode.RATE_LIMIT_EXCEEDED)
_APPLICATION = int(RPCErrorCode.APPLICATION_ERROR)
_DENIED = int(RPCErrorCode.ACCESS_DENIED)

PAUSE_QUEUE = 1
"""Reading paused: the ``recv()`` queue or the ``on_receive`` inbox is full (``packet_qsize``)."""
PAUSE_INFLIGHT = 2
"""Reading paused: too many RPCs of this connection in flight (``max_inflight_rpcs``)."""
CLOSE_SESSION_TAKEN = 4009
"""Close code for a connection whose session a new connection resumed (its client had gone quiet)."""
PAUSE_SHUTDOWN = 4
"""Reading paused: the server is shutting down."""
PAUSE_BACKLOG = 8
"""Reading paused: more than ``max_send_buffer`` bytes wait to be written to this client."""
PAUSE_CONNECTING = 16
"""Reading paused: ``packet_qsize`` messages arrived while ``on_connect`` still runs."""
PAUSE_HELD_BYTES = 32
"""Reading paused: messages read but not yet handled hold more than ``max_queued_bytes``."""

STREAM_YIELD_EVERY = 16
"""A stream gives the event loop a turn after this many chunks, even if its generator never waits."""
SWEEP_INTERVAL = 0.25
"""Seconds between checks of paused and backlogged connections (gone? slow consumer? over budget?)."""
KEEPALIVE_TICKS = 4
"""Keep-alive checks per ping timeout (the shorter of idle and reply): a ping leaves, and an
unresponsive client is closed, at most a quarter of that timeout late."""
CLOSE_UNRESPONSIVE = b"No pong to the keep-alive ping"
UNRESPONSIVE_GRACE = 0.01
"""Seconds an unresponsive client's close frame gets before the connection is aborted (as picows)."""

_CLOSED = object()  # wakes recv() when the connection goes away
_INF = float("inf")
_GONE = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)


def conflicts(seeded: dict[str, Any], parked: dict[str, Any], identity: tuple[str, ...]) -> bool:
    """Did the handshake hook seed an identity key (``Recovery.identity``, e.g. the authenticated
    user) that the parked session holds with another value? Then the token is not this client's."""
    for key in identity:
        if key in seeded and key in parked and parked[key] != seeded[key]:
            return True
    return False


def _pong_received(transport: picows.WSTransport) -> None:
    transport.notify_user_specific_pong_received()


def _abort(transport: picows.WSTransport) -> None:
    if not transport.is_disconnected:
        transport.disconnect(False)


def _overrides(handler: WebSocketHandler[Any], name: str) -> bool:
    """True when the handler's class overrides hook ``name`` of WebSocketHandler."""
    return getattr(type(handler), name) is not getattr(WebSocketHandler, name)


def reply(
    engine: ServerListener, call_id: str, response: Any, error: int | None, is_stream: bool, is_end: bool
) -> bool:
    """Send one RPC response on ``engine``'s connection; False when it could not be encoded
    (an error reply went instead) or the connection has gone."""
    sink = engine.sink
    if sink is None or not sink.open:
        return False
    try:
        frames = response_frame(call_id, response, error, is_stream, is_end, sink.as_json)
    except Exception as exc:  # unserializable, too deep (RecursionError), ...
        _logger.error("Cannot encode the result of call %s: %s: %s", call_id, type(exc).__name__, exc)
        engine.core.stats["encode_errors"] += 1
        frames = response_frame(
            call_id,
            f"Server error (unserializable result): {type(exc).__name__}: {exc}",
            _INTERNAL,
            is_stream,
            True,
            sink.as_json,
        )
        sink.send(frames)
        return False
    sink.send(frames)
    return True


class _Done:
    """Done-callback of an RPC's task (a small object instead of a closure)."""

    __slots__ = ("call_id", "core", "engine", "is_stream", "pooled")

    def __init__(self, core: ServerCore, engine: ServerListener, call_id: str, is_stream: bool, pooled: bool) -> None:
        self.core = core
        self.engine = engine
        self.call_id = call_id
        self.is_stream = is_stream
        self.pooled = pooled

    def __call__(self, task: asyncio.Task[Any]) -> None:
        self.core.done(self.engine, self.call_id, self.is_stream, self.pooled, task)


class ServerCore:
    """State shared by every connection of one server: the RPC method table, the task budget
    and who waits for it, the tasks it started, the write flusher, the sweep of paused and
    backlogged connections.

    Task budget: each connection may always run ``rpc_task_reserve`` RPC tasks of its own;
    beyond those, tasks come from a pool of ``rpc_task_limit`` shared by all connections, at
    most ``rpc_task_share`` per connection. Work that finds no slot waits in its connection's
    queue, and connections take turns (round robin) as pool slots free: a few connections
    cannot take the whole budget, and a newcomer is always answered.
    """

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
        self.task_limit = config.task_pool
        self.reserve = config.rpc_task_reserve
        self.share = config.task_share
        self.pool_used = 0  # tasks of the shared pool running
        self.ready: deque[ServerListener] = deque()  # connections with work waiting for a pool slot
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
        self.watched: set[ServerListener] = set()  # paused or backlogged: checked by the sweep
        self.sweeping: asyncio.TimerHandle | None = None
        self.on_open = on_open
        self.keyed = KeyedBuckets()  # rate limits shared by the connections of a key
        self.sessions: dict[str, ServerListener] = {}  # token -> connection, for sessions still connected
        self.tick_interval = 0.0  # keep-alive: seconds between checks (0: off)
        self.ping_after = 0  # checks without a frame before a ping
        self.close_after = 0  # checks without a frame before the client is closed as unresponsive
        self.ticking: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ dispatch

    def call(self, engine: ServerListener, request: RPCRequest) -> None:
        """Handle one RPC request of ``engine``'s connection."""
        name = request.method
        call_id = request.call_id
        stats = self.stats
        stats["rpc_calls"] += 1
        method = self.methods.get(name)
        if method is None:
            if name == "__abort__":
                self.abort(engine, request)
                return
            stats["rpc_errors"] += 1
            reply(engine, call_id, f"RPC method '{name}' not found.", _NOT_FOUND, False, True)
            return
        if (engine.calls and call_id in engine.calls) or (engine.streams and call_id in engine.streams):
            stats["rpc_errors"] += 1
            reply(
                engine,
                call_id,
                f"call_id {call_id!r} is already in flight on this connection.",
                _INVALID_PARAMS,
                method.is_stream,
                True,
            )
            return
        conn = engine.conn
        limit = method.rate_limit
        if limit is not None and not self.within_limit(engine, name, limit):  # before the access check
            stats["rpc_errors"] += 1
            stats["rate_limited"] += 1
            reply(
                engine, call_id, f"Rate limit exceeded for RPC method '{name}'.", _RATE_LIMITED, method.is_stream, True
            )
            if limit.disconnect_on_limit_exceeded:
                engine.close(WSCloseCode.TRY_AGAIN_LATER, b"Rate limit exceeded")
            return
        if method.restricted is not None:
            try:
                allowed = method.restricted(conn)
            except Exception as exc:
                stats["rpc_errors"] += 1
                text = self.error_text(exc, f"Access predicate of RPC method '{name}' raised")
                reply(engine, call_id, text, _INTERNAL, method.is_stream, True)
                return
            if not allowed:
                stats["rpc_errors"] += 1
                reply(engine, call_id, f"Access denied for RPC method '{name}'.", _DENIED, method.is_stream, True)
                return
        try:
            work = method.func(conn, *request.args, **request.kwargs)
        except TypeError as exc:
            stats["rpc_errors"] += 1
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
        is_stream = method.is_stream
        if is_stream:
            streams = engine.streams
            if streams is None:
                streams = engine.streams = {}
            streams[call_id] = None  # queued, not started
        else:
            calls = engine.calls
            if calls is None:
                calls = engine.calls = {}
            calls[call_id] = None
        engine.inflight += 1
        if engine.inflight == self.max_inflight:
            engine.pause_reading(PAUSE_INFLIGHT)
        if engine.running < self.reserve:
            self._start(engine, call_id, work, is_stream, False)
        elif self.pool_used < self.task_limit and engine.running < self.reserve + self.share:
            self._start(engine, call_id, work, is_stream, True)
        else:
            queued = engine.queued
            if queued is None:
                queued = engine.queued = deque()
            queued.append((call_id, work, is_stream))
            if not engine.in_ready and engine.running < self.reserve + self.share:
                engine.in_ready = True
                self.ready.append(engine)

    def within_limit(self, engine: ServerListener, name: str, limit: RateLimitConfig) -> bool:
        """Take a token for a call of ``name``: from the connection's bucket, or its key's."""
        if limit.limit <= 0:  # 0.5.x: a limit of 0 (or less) refuses every call
            return False
        if limit.period <= 0 or not limit.limit < _INF:  # 0.5.x: a window of no time, or no end, never fills
            return True
        key = limit.key
        if key is not None:
            if key == "address":
                value: Any = engine.remote_address()[0]
            else:
                try:
                    value = key(engine.conn)  # type: ignore[operator]
                except Exception:
                    _logger.exception("Rate-limit key of RPC method '%s' raised: the call is refused", name)
                    return False
            if value is not None:
                return self.keyed.allow(name, value, limit)
        buckets = engine.buckets
        if buckets is None:
            buckets = engine.buckets = {}
        bucket = buckets.get(name)
        if bucket is None:
            bucket = buckets[name] = TokenBucket(limit.limit, limit.period)
        return bucket.allow()

    def abort(self, engine: ServerListener, request: RPCRequest) -> None:
        """``__abort__``: cancel a running stream of the connection (no reply)."""
        if request.args:
            target = request.args[0]
            streams = engine.streams
            if streams and isinstance(target, str) and target in streams:
                task = streams.pop(target)
                if task is not None:
                    task.cancel()

    def _start(self, engine: ServerListener, call_id: str, work: Any, is_stream: bool, pooled: bool) -> None:
        engine.running += 1
        if pooled:
            self.pool_used += 1
        tasks = engine.streams if is_stream else engine.calls  # made by call(), which queued this work
        assert tasks is not None
        if is_stream:
            task = self.loop.create_task(self._stream(engine, call_id, work))
            self.stream_tasks.add(task)
        else:
            # The method's coroutine is the task itself: no wrapper frame, and a task
            # cancelled before it starts closes the coroutine cleanly.
            task = self.loop.create_task(work)
            self.rpc_tasks.add(task)
        tasks[call_id] = task
        task.add_done_callback(_Done(self, engine, call_id, is_stream, pooled))

    def _finish(self, engine: ServerListener) -> None:
        """One RPC of the connection is over (answered, or dropped with its connection)."""
        engine.inflight -= 1
        if engine.inflight == self.max_inflight // 2:
            engine.resume_reading(PAUSE_INFLIGHT)

    def done(
        self, engine: ServerListener, call_id: str, is_stream: bool, pooled: bool, task: asyncio.Task[Any]
    ) -> None:
        """An RPC's task ended: answer a plain call, then give its slot to waiting work."""
        engine.running -= 1
        if pooled:
            self.pool_used -= 1
        self._finish(engine)
        if is_stream:
            self.stream_tasks.discard(task)
        else:
            self.rpc_tasks.discard(task)
            if engine.calls is not None:
                engine.calls.pop(call_id, None)
            if not task.cancelled():
                self._answer(engine, call_id, task)
        if engine.queued and engine.is_open and engine.running < self.reserve:
            self._start_next(engine, False)  # its own reserved slot: its own next work
        self._serve_ready()

    def _start_next(self, engine: ServerListener, pooled: bool) -> bool:
        """Start the next queued RPC of ``engine`` that is still wanted; False if none was."""
        queued = engine.queued
        while queued:
            call_id, work, is_stream = queued.popleft()
            if is_stream and (engine.streams is None or call_id not in engine.streams):  # aborted while queued
                self._finish(engine)
                continue
            self._start(engine, call_id, work, is_stream, pooled)
            return True
        return False

    def _serve_ready(self) -> None:
        """Give free pool slots to connections waiting for one, in turn."""
        ready = self.ready
        limit = self.reserve + self.share
        while ready and self.pool_used < self.task_limit:
            engine = ready.popleft()
            engine.in_ready = False
            if not engine.is_open or not engine.queued or engine.running >= limit:
                continue
            self._start_next(engine, True)
            if engine.queued and engine.running < limit:
                engine.in_ready = True
                ready.append(engine)

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
            text = self.error_text(exc, f"RPC execution failed for call {call_id}")
            reply(engine, call_id, text, _INTERNAL, False, False)

    def error_text(self, exc: BaseException, what: str) -> str:
        """Log ``exc`` (with ``what`` happened) and say what the client is told about it.

        ``error_detail="full"`` (0.5.x): ``Server error (Type): message``. ``"minimal"``: the
        type and a reference id that the log line carries too, so that no secret in the
        message (a database URL, a path) reaches the client.
        """
        if self.config.error_detail == "full":
            _logger.error("%s", what, exc_info=exc)
            return f"Server error ({type(exc).__name__}): {exc}"
        ref = uuid4().hex[:12]
        _logger.error("%s [ref %s]", what, ref, exc_info=exc)
        return f"Server error ({type(exc).__name__}) [ref {ref}]"

    async def _stream(self, engine: ServerListener, call_id: str, agen: AsyncIterator[Any]) -> None:
        try:
            count = 0
            async for item in agen:
                if not engine.is_open or not reply(engine, call_id, item, None, True, False):
                    return
                if engine.paused & PAUSE_BACKLOG:  # the client reads slower than we produce: wait for it
                    await engine.writable()
                count += 1
                if count == STREAM_YIELD_EVERY:  # a generator that never waits must not hold the loop
                    count = 0
                    await asyncio.sleep(0)
            reply(engine, call_id, None, None, True, True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats["rpc_errors"] += 1
            text = self.error_text(exc, f"Streaming RPC failed midway (call {call_id})")
            detail = str(exc) if self.config.error_detail == "full" else text
            reply(engine, call_id, f"\nStream aborted: {detail}", _INTERNAL, True, True)
        finally:
            if engine.streams is not None:
                engine.streams.pop(call_id, None)
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    _logger.exception("Closing stream of call %s raised", call_id)

    # ------------------------------------------------------------------ non-RPC packets

    def receive(self, engine: ServerListener, packet: Any, size: int = 0) -> None:
        """Hand a non-RPC packet to the handler, preserving per-connection order (an RPC request
        that arrives while ``on_receive`` still runs waits in the same line, as in 0.5.x)."""
        if self.queue_packets:
            engine.enqueue(packet, size)
            return
        inbox = engine.inbox
        if inbox is None:
            inbox = engine.inbox = deque()
        inbox.append((packet, size))
        engine.hold(size)
        if len(inbox) >= engine.packet_qsize:
            engine.pause_reading(PAUSE_QUEUE)
        if not engine.receiving:
            engine.receiving = True
            self._track(self.loop.create_task(self._drain(engine)))

    async def _drain(self, engine: ServerListener) -> None:
        inbox = engine.inbox
        assert inbox is not None
        conn = engine.conn
        on_receive = self.handler.on_receive
        low = engine.packet_qsize // 2
        try:
            while inbox:
                packet, size = inbox.popleft()
                engine.unhold(size)
                if engine.paused & PAUSE_QUEUE and len(inbox) <= low:
                    engine.resume_reading(PAUSE_QUEUE)
                if type(packet) is RPCRequest:  # it came after packets that were still in on_receive
                    if engine.is_open:
                        self.call(engine, packet)
                    continue
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
        if self.tick_interval and self.ticking is None:
            self.ticking = self.loop.call_later(self.tick_interval, self.tick)
        if engine.client_type is ClientType.GENERIC:
            self.hub.json_clients += 1
        self.stats["connections_opened"] += 1
        if self.on_open is not None:
            self.on_open(conn)
        if engine.wants_session and self.hub.store is not None:
            engine.connect_task = task = self.loop.create_task(self._open_session(engine, conn))
            self._track(task)
        elif self.has_on_connect:
            engine.connect_task = task = self.loop.create_task(self._on_connect(engine, conn))
            self._track(task)
        else:
            engine.ready = True

    async def _on_connect(self, engine: ServerListener, conn: ClientConnection[Any]) -> None:
        try:
            await self.handler.on_connect(conn)
        except Exception:
            _logger.exception("on_connect raised for %s", engine.remote_address())
        self._opened(engine)

    def _opened(self, engine: ServerListener) -> None:
        """The connection is set up: messages held meanwhile are dispatched, in order."""
        engine.ready = True
        engine.wake_early()
        engine.resume_reading(PAUSE_CONNECTING)
        engine.release()

    async def _open_session(self, engine: ServerListener, conn: ClientConnection[Any]) -> None:
        """A connection that asked for a session (server with recovery): read the client's
        hello (its first message), resume its session if it can be, or start a new one.

        The reply (a SESSION packet with the next token and whether the session was
        recovered) goes first; a resumed session then gets its missed messages, in publish
        order, before anything new: from the claim to the last missed message nothing
        awaits, so no publish comes between. A new session runs ``on_connect``.
        """
        hub = self.hub
        store = hub.store
        recovery = self.config.recovery
        assert store is not None and recovery is not None
        hello = None
        try:
            payload = await engine.first_message(recovery.hello_timeout)
        except ConnectionClosedError:
            return
        if payload is not None:
            packet = decode_packet(payload, engine.sink.as_json)
            if packet.source is _SESSION:
                engine.take_first()
                hello = parse_hello(packet.data, recovery.max_positions)
        if not engine.is_open:
            return
        resume = None
        hub.track(conn)
        if hello is not None and hello[0] is not None:
            old = self.sessions.get(hello[0])
            if old is not None and old is not engine:  # the client is back before its old connection was seen to drop
                self._park(old)
                old.close(CLOSE_SESSION_TAKEN, b"Session resumed by another connection.")
                if store.shared:
                    await cast("RedisStore", store).settle()  # parked in Redis before it is claimed
            if store.shared:
                if await self._resume_shared(engine, hello[0], hello[1]):
                    return
            else:
                resume = cast("MemoryStore", store).claim(hello[0], hello[1])
                if resume is not None and conflicts(conn.session_state, resume.snapshot.state, recovery.identity):
                    resume = None
        if not engine.is_open:
            return
        token = self._new_session(engine)
        sink = engine.sink
        reply = Packet(_SESSION, {"token": token, "recovered": resume is not None})
        engine.push(encode_packet(reply, sink.as_json))
        if resume is None:
            self.stats["sessions_started"] += 1
            if self.has_on_connect:
                await self._on_connect(engine, conn)
            else:
                self._opened(engine)
            return
        self.stats["sessions_resumed"] += 1
        seeded = dict(conn.session_state)  # what the handshake hook set (a fresh token's expiry) wins
        conn.session_state.update(resume.snapshot.state)
        conn.session_state.update(seeded)
        hub.restore(conn, resume.snapshot.subscriptions)
        as_json = sink.as_json
        for out in resume.missed:
            if not sink.push(out.frames(as_json)):
                break  # the slow-consumer policy closed it (or drops): the client resumes again later
        self._opened(engine)

    def disconnected(self, engine: ServerListener) -> None:
        """A connection went away: cancel every task it started, wake its readers, forget it."""
        conn = engine.conn
        was_client = engine in self.engines
        engine.mark_closed()  # drops its work, if closing did not already
        self.watched.discard(engine)
        if engine.queue is not None:
            engine.queue.put_nowait(_CLOSED)
        # The engine is done with its facade, and its closed sink with it: without these two
        # references (the facade keeps its engine), nothing of the connection is in a reference
        # cycle, so it is freed as soon as nothing holds it, not by the garbage collector.
        engine.conn = None  # type: ignore[assignment]
        engine.sink.owner = None
        if not was_client:
            return
        self.engines.discard(engine)
        self.hub.clients.discard(conn)
        if engine.client_type is ClientType.GENERIC:
            self.hub.json_clients -= 1
        self.hub.unsubscribe_all(conn)
        self.stats["connections_closed"] += 1
        if self.has_on_disconnect:
            self._track(self.loop.create_task(self._on_disconnect(engine, conn)))

    def drop_work(self, engine: ServerListener) -> None:
        """The connection closes: it leaves ``clients`` and its channels at once (so nothing is
        sent to it any more), every task it started is cancelled, what it queued forgotten."""
        if engine.conn is not None:  # not now: a fan-out may be iterating those very sets
            if engine.session is not None:
                self.sessions.pop(engine.session, None)
                if engine.parkable:
                    self._park(engine)
                elif self.hub.store is not None:
                    self.hub.store.forget(engine.session)
            self.loop.call_soon(self._forget, engine.conn)
        for tasks in (engine.streams, engine.calls):
            if tasks:
                for task in tasks.values():
                    if task is not None:
                        task.cancel()
                tasks.clear()
        queued = engine.queued
        if queued:
            for _call_id, work, is_stream in queued:
                if not is_stream:
                    work.close()  # never started: close the coroutine
                self._finish(engine)
            queued.clear()
        engine.pending = None
        if engine.inbox:
            engine.inbox.clear()
        engine.held = 0
        engine.wake_writers()
        engine.wake_early()

    def _new_session(self, engine: ServerListener) -> str:
        engine.session = token = new_token()
        self.sessions[token] = engine
        return token

    async def _resume_shared(self, engine: ServerListener, token: str, positions: dict[str, tuple[str, int]]) -> bool:
        """Resume from Redis (the session may come from another node); False: start a new one.

        The session's subscriptions are restored first, with the connection's output corked;
        once Redis confirms them, its history is read: every message published since the
        client's positions is in it or arrives live, behind the cork. The reply and the
        missed messages then go first; live ones that the history had as well are repeats,
        which a client drops by their offset (see docs/protocol.md).
        """
        hub = self.hub
        store = cast("RedisStore", hub.store)
        conn = engine.conn
        sink = engine.sink
        try:
            snapshot = await store.claim(token)
        except Exception as exc:
            _logger.warning("Recovery: could not read a session from Redis: %s", exc)
            return False
        if snapshot is None or not engine.is_open:
            return False
        if conflicts(conn.session_state, snapshot.state, self.config.recovery.identity):  # type: ignore[union-attr]
            return False
        sink.corked = True
        missed = None
        try:
            hub.restore(conn, snapshot.subscriptions)
            bridge = hub.bridge
            if bridge is None or await bridge.backplane.sync():
                missed = await store.missed(snapshot.subscriptions, positions)
        except Exception as exc:
            _logger.warning("Recovery: could not read channel history from Redis: %s", exc)
        if missed is None or not engine.is_open:
            hub.unsubscribe_all(conn)
            hub.track(conn)
            sink.uncork([], False)
            return False
        seeded = dict(conn.session_state)  # what the handshake hook set wins
        conn.session_state.update(snapshot.state)
        conn.session_state.update(seeded)
        new = self._new_session(engine)
        as_json = sink.as_json
        reply = frame(encode_packet(Packet(_SESSION, {"token": new, "recovered": True}), as_json))
        frames = [reply]
        for out in missed:
            try:
                frames.append(out.frames(as_json))
            except Exception as exc:  # (JSON) a value another node wrote that this dialect cannot carry
                self.stats["encode_errors"] += 1
                _logger.error("Recovery: a missed message cannot be encoded for this client: %s", exc)
        sink.uncork(frames, True)
        self.stats["sessions_resumed"] += 1
        self._opened(engine)
        return True

    def session_snapshots(self) -> list[tuple[str, Snapshot]]:
        """A snapshot of every session connection (written to Redis periodically)."""
        hub = self.hub
        return [
            (token, Snapshot(dict(engine.conn.session_state), hub.snapshot(engine.conn)))
            for token, engine in self.sessions.items()
            if engine.is_open
        ]

    def _park(self, engine: ServerListener) -> None:
        """Keep the session of a connection that dropped, for its client to resume."""
        store = self.hub.store
        token = engine.session
        if store is not None and token is not None:
            conn = engine.conn
            store.park(token, Snapshot(dict(conn.session_state), self.hub.snapshot(conn)))

    def _forget(self, conn: ClientConnection[Any]) -> None:
        """A closing connection leaves ``clients`` and its channels."""
        self.hub.clients.discard(conn)
        self.hub.unsubscribe_all(conn)

    async def _on_disconnect(self, engine: ServerListener, conn: ClientConnection[Any]) -> None:
        connect_task = engine.connect_task
        if connect_task is not None and not connect_task.done():
            await asyncio.wait([connect_task])
        try:
            await self.handler.on_disconnect(conn)
        except Exception:
            _logger.exception("on_disconnect raised for %s", engine.remote_address())

    def queued_count(self) -> int:
        """RPCs waiting for a task slot, over all connections."""
        return sum(len(engine.queued) for engine in self.engines if engine.queued)

    # ------------------------------------------------------------------ keep-alive

    def keep_alive(self, idle: float, reply: float) -> None:
        """Ping each client that sent nothing for ``idle`` seconds; close it (1001) if it still
        sends nothing for ``reply`` seconds more (picows's ``auto_ping_*`` options, when-idle strategy).

        One timer for all connections, instead of a picows task per connection (~1.8 KiB each):
        it looks every ``min(idle, reply) / KEEPALIVE_TICKS`` seconds and counts, per connection,
        the looks that found no new frame. A ping may so leave up to one look late.
        """
        interval = min(idle, reply) / KEEPALIVE_TICKS
        self.tick_interval = interval
        self.ping_after = max(1, round(idle / interval))
        self.close_after = self.ping_after + max(1, round(reply / interval))

    def tick(self) -> None:
        """One look of the keep-alive at every connection (while there are connections)."""
        if not self.engines:
            self.ticking = None
            return
        self.ticking = self.loop.call_later(self.tick_interval, self.tick)
        ping_after = self.ping_after
        close_after = self.close_after
        unresponsive: list[ServerListener] = []
        for engine in self.engines:
            if engine.heard or engine.paused:  # paused: we do not read, so count the client as alive
                engine.heard = False
                engine.silent = 0
                continue
            engine.silent += 1
            if engine.silent == ping_after:
                if engine.is_open:
                    engine.transport.send_ping()
            elif engine.silent == close_after:
                unresponsive.append(engine)
        for engine in unresponsive:  # not while iterating: closing may change engines
            engine.unresponsive()

    # ------------------------------------------------------------------ the sweep

    def watch(self, engine: ServerListener) -> None:
        """Check ``engine`` on the next sweeps (it is paused or backlogged)."""
        self.watched.add(engine)
        if self.sweeping is None:
            self.sweeping = self.loop.call_later(SWEEP_INTERVAL, self.sweep)

    def sweep(self) -> None:
        """Every ``SWEEP_INTERVAL`` while some connection is paused or backlogged.

        A paused connection does not read, so the event loop would not notice its client
        leaving: ask the socket. A connection whose backlog stayed above ``max_send_buffer``
        for ``slow_consumer_timeout`` is closed as a slow consumer. When the backlogs of all
        connections together pass ``max_total_send_backlog``, the largest are closed first.
        """
        self.sweeping = None
        now = self.loop.time()
        timeout = self.config.slow_consumer_timeout
        backlogged: list[tuple[int, ServerListener]] = []
        total = 0
        for engine in list(self.watched):
            if not engine.is_open or not (engine.paused or engine.blocked_since):
                self.watched.discard(engine)
                continue
            if engine.paused and engine.peer_gone():
                engine.transport.disconnect(False)  # on_ws_disconnected cleans up
                self.watched.discard(engine)
                continue
            since = engine.blocked_since
            if since:
                sink = engine.sink
                if not sink.drop and now - since >= timeout:
                    sink.cut()
                    continue
                size = sink.backlog()
                total += size
                backlogged.append((size, engine))
        if total > self.config.max_total_send_backlog:
            backlogged.sort(key=lambda item: item[0], reverse=True)
            for size, engine in backlogged:
                if total <= self.config.max_total_send_backlog:
                    break
                _logger.warning(
                    "Closing %s: the send backlogs of all connections passed their budget", engine.remote_address()
                )
                engine.sink.cut()
                total -= size
        if self.watched:
            self.sweeping = self.loop.call_later(SWEEP_INTERVAL, self.sweep)

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
            engine.close(WSCloseCode.GOING_AWAY, b"Server is shutting down.")
            engine.resume_reading(PAUSE_SHUTDOWN)  # to read the clients' close frames
        if engines:
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            waits = [asyncio.ensure_future(e.transport.wait_disconnected()) for e in engines]
            _done, late = await asyncio.wait(waits, timeout=remaining if remaining else 1.0)
            for engine in engines:
                if not engine.transport.is_disconnected:
                    engine.transport.disconnect(False)
            for waiter in late:
                waiter.cancel()
        if self.sweeping is not None:
            self.sweeping.cancel()
            self.sweeping = None
        if self.ticking is not None:
            self.ticking.cancel()
            self.ticking = None
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

    Every queue has a bound, and at the bound reading pauses: RPCs in flight
    (``max_inflight_rpcs``), packets for ``recv()`` or ``on_receive`` and messages that
    arrive while ``on_connect`` runs (``packet_qsize``), bytes waiting to be written
    (``max_send_buffer``). While reading is paused, messages already read are held
    (``pending``, at most one read's worth) and dispatched in order once it resumes.
    """

    __slots__ = (
        "blocked_since",
        "buckets",
        "calls",
        "client_type",
        "conn",
        "connect_task",
        "core",
        "draining",
        "early",
        "held",
        "hub",
        "in_ready",
        "inbox",
        "inflight",
        "is_open",
        "max_held",
        "max_subscribed_channels",
        "packet_qsize",
        "parkable",
        "paused",
        "pending",
        "queue",
        "queued",
        "ready",
        "receiving",
        "remote",
        "request",
        "running",
        "session",
        "silent",
        "sink",
        "streams",
        "transport",
        "wants_session",
        "writers",
    )

    def __init__(
        self, core: ServerCore, client_type: ClientType, session: bool = False, request: Request | None = None
    ) -> None:
        config = core.config
        super().__init__(config.max_message_size, config.max_message_frames)
        self.core = core
        self.hub = core.hub
        self.client_type = client_type
        self.packet_qsize = config.queue_limit
        self.max_held = config.max_queued_bytes
        self.held = 0  # bytes of messages read and not yet handled (held, in the inbox or the recv() queue)
        self.max_subscribed_channels = config.max_subscribed_channels
        self.transport: Any = None  # picows WSTransport, once connected
        self.sink: _fanout.Sink = None  # type: ignore[assignment]  # made once connected, like conn
        # The facade, made once connected (the engine is never used before on_ws_connected).
        self.conn: ClientConnection[Any] = None  # type: ignore[assignment]
        self.is_open = False
        # Made on first use, like every structure an idle connection does not need:
        self.streams: dict[str, asyncio.Task[Any] | None] | None = None  # streaming RPCs: running, or queued (None)
        self.calls: dict[str, asyncio.Task[Any] | None] | None = None  # plain RPCs in tasks: running, or queued
        self.queued: deque[tuple[str, Any, bool]] | None = None  # RPCs waiting for a task slot
        self.running = 0  # tasks of this connection running
        self.in_ready = False  # in the core's round of connections waiting for a pool slot
        self.buckets: dict[str, TokenBucket] | None = None  # rate limits: method -> bucket
        self.inflight = 0  # RPCs running or queued
        self.paused = 0  # bit set of reasons reading is paused (PAUSE_*)
        self.blocked_since = 0.0  # loop time the backlog went above max_send_buffer (0: it is not)
        self.writers: list[asyncio.Future[None]] | None = None  # streams waiting for the backlog to drain
        self.inbox: deque[Any] | None = None  # packets (and RPC requests behind them) waiting for on_receive
        self.receiving = False  # an on_receive drain task is running
        self.queue: asyncio.Queue[Any] | None = None  # packets waiting for recv()
        self.remote: tuple[str, int] | None = None
        self.ready = False  # on_connect has returned: messages are dispatched
        self.pending: list[bytes] | None = None  # messages read but held (on_connect runs, or reading is paused)
        self.draining = False  # dispatching held messages
        self.early: asyncio.Future[None] | None = None  # a recv() in on_connect waits for a message
        self.connect_task: asyncio.Task[Any] | None = None
        self.wants_session = session  # the client asked for a session (server with recovery)
        self.session: str | None = None  # its token, once the session is set up
        self.parkable = True  # kept for a resume when it ends: not if the client or the server ended it on purpose
        self.silent = 0  # keep-alive looks in a row that found no new frame
        self.request = request  # the upgrade request, when the handshake hook or origin check parsed it

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
            self,  # closed through close_slow_consumer()
            config.max_send_backlog,
            config.slow_consumer_timeout > 0,
        )
        self.sink = sink
        self.is_open = True
        conn: ClientConnection[Any] = ClientConnection(self, sink)
        self.conn = conn
        request = self.request
        if request is not None:
            seeded = take_session(request)
            if seeded:  # what on_handshake returned: session state before on_connect
                conn.session_state.update(seeded)
        core.connected(self)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        if self.conn is not None:
            self.core.disconnected(self)

    def pause_writing(self) -> None:
        """The outgoing buffer went above ``max_send_buffer``: stop reading until it drains."""
        sink = self.sink
        if sink is not None:
            sink.blocked = True
            self.blocked_since = self.core.loop.time()
            self.pause_reading(PAUSE_BACKLOG)
            self.core.watch(self)

    def resume_writing(self) -> None:
        """The outgoing buffer drained below its low-water mark."""
        sink = self.sink
        if sink is not None:
            sink.blocked = False
            self.blocked_since = 0.0
            self.wake_writers()
            self.resume_reading(PAUSE_BACKLOG)

    def send_user_specific_ping(self, transport: picows.WSTransport) -> None:
        """Keep-alive: while we do not read (our own doing), the client's pong could not be
        seen; the sweep watches the socket instead, so count the client as alive."""
        if self.paused:  # the auto-ping loop waits for a pong once this returns: give it one then
            self.core.loop.call_soon(_pong_received, transport)
        else:
            transport.send_ping()

    # ------------------------------------------------------------------ for the facade

    def upgrade_request(self) -> Request:
        """The HTTP upgrade request this connection was opened with (parsed on first use)."""
        request = self.request
        if request is None:
            request = self.request = Request(self.transport.request, self.remote_address())
        else:
            bind_remote_address(request, self.remote_address())
        return request

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
        if code != WSCloseCode.GOING_AWAY and code != CLOSE_SLOW_CONSUMER:
            self.parkable = False  # closed on purpose (not a shutdown, not a slow link): no resume
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

    def unresponsive(self) -> None:
        """No frame (no pong either) since the keep-alive ping: close (1001), then abort at once."""
        _logger.info("Closing a connection that sent nothing, no pong either, since the keep-alive ping")
        if self.is_open:
            self.close(WSCloseCode.GOING_AWAY, CLOSE_UNRESPONSIVE)
        self.core.loop.call_later(UNRESPONSIVE_GRACE, _abort, self.transport)

    def mark_closed(self) -> None:
        """No more sending: the connection is closing or gone; the work it started is dropped."""
        was_open = self.is_open
        self.is_open = False
        if self.sink is not None:
            self.sink.open = False
        if was_open:
            self.core.drop_work(self)

    def pause_reading(self, reason: int) -> None:
        paused = self.paused
        self.paused = paused | reason
        if not paused and self.is_open:
            self.transport.underlying_transport.pause_reading()
            self.core.watch(self)

    def resume_reading(self, reason: int) -> None:
        paused = self.paused
        if not paused & reason:
            return
        self.paused = paused & ~reason
        if paused == reason and self.is_open:
            self.transport.underlying_transport.resume_reading()
            self.release()

    def peer_gone(self) -> bool:
        """Has the client closed or reset its side? (asked of the socket: we are not reading it)"""
        sock = self.transport.underlying_transport.get_extra_info("socket")
        if sock is None:
            return False
        try:
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN | _GONE)
            return any(events & _GONE for _fd, events in poller.poll(0))
        except (OSError, ValueError):
            return True

    async def writable(self) -> None:
        """Wait until the backlog is back under ``max_send_buffer`` (or the connection has gone)."""
        if not self.is_open or not self.paused & PAUSE_BACKLOG:
            return
        waiter: asyncio.Future[None] = self.core.loop.create_future()
        if self.writers is None:
            self.writers = []
        self.writers.append(waiter)
        await waiter

    def hold(self, size: int) -> None:
        """``size`` more bytes of messages read are waiting to be handled."""
        self.held += size
        if self.held > self.max_held:
            self.pause_reading(PAUSE_HELD_BYTES)

    def unhold(self, size: int) -> None:
        """``size`` bytes of waiting messages were handled."""
        self.held -= size
        if self.paused & PAUSE_HELD_BYTES and self.held <= self.max_held // 2:
            self.resume_reading(PAUSE_HELD_BYTES)

    def wake_writers(self) -> None:
        writers = self.writers
        if writers:
            self.writers = None
            for waiter in writers:
                if not waiter.done():
                    waiter.set_result(None)

    def enqueue(self, packet: Packet[Any], size: int = 0) -> None:
        """Queue a packet (of a ``size``-byte message) for ``recv()``; pause reading while the queue is full."""
        queue = self.queue
        if queue is None:
            queue = self.queue = asyncio.Queue()
        queue.put_nowait((packet, size))
        self.hold(size)
        if queue.qsize() >= self.packet_qsize:
            self.pause_reading(PAUSE_QUEUE)

    async def recv(self, timeout: float | None) -> Packet[Any]:
        """Next queued packet of this connection (see ``ClientConnection.recv``).

        While ``on_connect`` runs, messages are held back from dispatching; as in 0.5.x,
        ``recv()`` then takes the next of them (which is not dispatched again), so a handler
        can read a client's first message in ``on_connect``.
        """
        if not self.ready:
            early = await self.recv_early(timeout)
            if early is not None:
                return early
        queue = self.queue
        if queue is None:
            queue = self.queue = asyncio.Queue()
        if queue.empty() and not self.is_open:
            raise ConnectionClosedError("Cannot receive data: client is not connected.")
        try:
            if timeout is None:
                packet: Any = await queue.get()
            else:
                packet = await asyncio.wait_for(queue.get(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise ReceiveTimeoutError(f"Receive operation timed out after {timeout} seconds.") from None
        if packet is _CLOSED:
            queue.put_nowait(_CLOSED)  # keep waking later callers
            raise ConnectionClosedError("Connection closed.")
        packet, size = packet
        self.unhold(size)
        if self.paused & PAUSE_QUEUE and queue.qsize() <= self.packet_qsize // 2:
            self.resume_reading(PAUSE_QUEUE)
        return packet  # type: ignore[no-any-return]

    async def recv_early(self, timeout: float | None) -> Packet[Any] | None:
        """The next message held while ``on_connect`` runs (None once it has returned)."""
        loop = self.core.loop
        deadline = None if timeout is None else loop.time() + timeout
        while not self.ready:
            pending = self.pending
            if pending:
                payload = pending.pop(0)
                self.unhold(len(payload))
                if self.paused & PAUSE_CONNECTING and len(pending) <= self.packet_qsize // 2:
                    self.resume_reading(PAUSE_CONNECTING)
                return decode_packet(payload, self.sink.as_json)
            if not self.is_open:
                raise ConnectionClosedError("Cannot receive data: client is not connected.")
            waiter: asyncio.Future[None] = loop.create_future()
            self.early = waiter
            try:
                left = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait_for(waiter, left)
            except (asyncio.TimeoutError, TimeoutError):
                raise ReceiveTimeoutError(f"Receive operation timed out after {timeout} seconds.") from None
            finally:
                self.early = None
        return None

    async def first_message(self, timeout: float) -> bytes | None:
        """The first message held while the connection is set up, left in place (None: none came in time)."""
        loop = self.core.loop
        deadline = loop.time() + timeout
        pending = self.pending
        while not pending:
            if not self.is_open:
                raise ConnectionClosedError("Cannot receive data: client is not connected.")
            waiter: asyncio.Future[None] = loop.create_future()
            self.early = waiter
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except (asyncio.TimeoutError, TimeoutError):
                return None
            finally:
                self.early = None
            pending = self.pending
        return pending[0]

    def take_first(self) -> None:
        """Remove the first held message (the session hello: it is not dispatched)."""
        pending = self.pending
        assert pending, "first_message() found it"
        payload = pending.pop(0)
        self.unhold(len(payload))

    def wake_early(self) -> None:
        """A message arrived (or the connection went) while ``recv_early`` waits."""
        waiter = self.early
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ incoming messages

    def fail(self, transport: picows.WSTransport, code: WSCloseCode, reason: bytes) -> None:
        """The client broke the protocol: close with ``code`` (replies already queued go first)."""
        self.fragments = None
        self.pending = None
        if self.is_open:
            self.close(code, reason)
        else:
            MessageListener.fail(self, transport, code, reason)  # noqa: F405

    def on_close_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        """The client closes: replies already queued go before our close frame."""
        if self.sink is not None:
            self.sink.flush()
        if not frame.payload_size or frame.get_close_code() == _CLOSE_OK:
            self.parkable = False  # the client said goodbye (1000 or no code; 1001 and others may come back)
        self.mark_closed()
        MessageListener.on_close_frame(self, transport, frame)  # noqa: F405

    def on_message(self, payload: bytes) -> None:
        """One complete message arrived."""
        if not self.is_open:
            return  # closing: nothing after a close frame is processed
        if self.paused or not self.ready or self.pending:  # held, in order, until dispatching may go on
            pending = self.pending
            if pending is None:
                pending = self.pending = []
            pending.append(payload)
            self.hold(len(payload))
            if not self.ready:
                if len(pending) >= self.packet_qsize:
                    self.pause_reading(PAUSE_CONNECTING)
                if self.early is not None:
                    self.wake_early()
            elif not self.paused:
                self.release()
            return
        self.dispatch(payload)

    def release(self) -> None:
        """Dispatch held messages, in order, until there are none or reading pauses again."""
        if self.draining or not self.ready:
            return
        self.draining = True
        try:
            pending = self.pending
            while pending and not self.paused and self.is_open:
                payload = pending.pop(0)
                self.unhold(len(payload))
                self.dispatch(payload)
        finally:
            self.draining = False

    def dispatch(self, payload: bytes) -> None:
        sink = self.sink
        assert sink is not None
        as_json = sink.as_json
        packet = decode_packet(payload, as_json)
        rpc = packet.rpc
        if packet.source is _RPC and type(rpc) is RPCRequest:
            if self.receiving:  # on_receive still handles earlier packets: this call waits its turn (0.5.x order)
                self.core.receive(self, rpc, 0)
            else:
                self.core.call(self, rpc)
            return
        if packet.source is _SESSION:  # only a session connection's first message may be one (the hello)
            packet = Packet(_UNKNOWN, payload)
        if packet.data is payload and packet.source is _UNKNOWN:  # not a valid packet
            call_id = salvage_call_id(payload, as_json)
            if call_id is not None:  # a malformed RPC request: answer it
                reply(self, call_id, INVALID_REQUEST, _INVALID_PARAMS, False, True)
                return
            _logger.debug("Invalid packet from %s (%d bytes)", self.remote_address(), len(payload))
        self.core.receive(self, packet, len(payload))
