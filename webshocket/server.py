"""The WebSocket server."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import signal
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from picows import (
    WSAutoPingStrategy,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from . import _listener
from ._loop import run as run_loop
from .backplane import Backplane, BackplaneBridge, MemoryBackplane
from .config import ServerConfig
from .connection import ClientConnection
from .constant import (
    DEFAULT_MAX_INFLIGHT_RPCS,
    DEFAULT_MAX_MESSAGE_FRAMES,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SEND_BUFFER,
    DEFAULT_READ_BUFFER_SIZE,
    DEFAULT_WEBSHOCKET_SUBPROTOCOL,
)
from .enum import ClientType, ServerState
from .exceptions import WebSocketError
from .handler import DefaultWebSocketHandler, Subscribers, WebSocketHandler, hub_of
from .presence import Presence, start_presence
from .recovery import SESSION_SUBPROTOCOLS, MemoryStore, Recovery
from .request import Reject, Request, seed_session, share_headers

if TYPE_CHECKING:
    from .hub import Store
    from .redis_recovery import RedisStore

__all__ = ["WebSocketServer", "make_backplane"]

H = TypeVar("H", bound=WebSocketHandler[Any])


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_URL_SEPARATOR = re.compile(r",(?![^/]*@)")  # a comma with "@" after it (before any "/") is in a password


def split_urls(text: str) -> list[str]:
    """The URLs of a str of comma-separated URLs (a password may hold commas: those before an ``@``)."""
    return [part.strip() for part in _URL_SEPARATOR.split(text)]


def redis_urls(backplane: str | Sequence[str]) -> list[str]:
    """The Redis URLs a ``backplane`` option names: one URL, a list, or a str of comma-separated URLs.

    Raises:
        ValueError: a part that is not a ``redis://``, ``rediss://`` or ``unix://`` URL (named), or none.
    """
    parts = split_urls(backplane) if isinstance(backplane, str) else backplane
    urls: list[str] = []
    for part in parts:
        url = part.strip() if isinstance(part, str) else part
        if not isinstance(url, str) or not url.startswith(REDIS_SCHEMES):
            whole = "" if url == backplane else f" (in {backplane!r})"
            raise ValueError(f"backplane must be a redis:// URL or a Backplane instance, got {url!r}{whole}")
        urls.append(url)
    if not urls:
        raise ValueError("backplane: an empty list of Redis URLs")
    return urls


def make_backplane(backplane: str | Sequence[str] | Backplane | None) -> Backplane | None:
    """The backplane a server option names: None, a Backplane, a ``redis://`` URL, or several
    (a list, or one str with commas) for a :class:`~webshocket.redis_shards.ShardedRedisBackplane`."""
    if backplane is None or isinstance(backplane, Backplane):
        return backplane
    if not isinstance(backplane, (str, list, tuple)):
        raise ValueError(f"backplane must be a redis:// URL or a Backplane instance, got {backplane!r}")
    urls = redis_urls(backplane)
    try:
        from .redis_backplane import RedisBackplane
    except ImportError as exc:
        raise ImportError(
            f"backplane={backplane!r} needs the redis client: pip install 'redis>=5.0.1,<9' ({exc})"
        ) from exc
    if len(urls) == 1:
        return RedisBackplane(urls[0])
    from .redis_shards import ShardedRedisBackplane

    return ShardedRedisBackplane(urls)


def offered_subprotocols(request: WSUpgradeRequest) -> list[str]:
    """The subprotocols an upgrade request offers, in its order (read once per upgrade)."""
    offered = request.headers.getall("Sec-WebSocket-Protocol", None)
    if offered is None:
        return []
    if len(offered) == 1 and "," not in offered[0]:  # the usual request: one header naming one
        return [offered[0].strip()]
    return [token.strip() for value in offered for token in value.split(",")]


def session_subprotocol(offered: list[str]) -> str | None:
    """The session subprotocol offered first (None: the request asks for no session)."""
    for token in offered:
        if token in SESSION_SUBPROTOCOLS:
            return token
    return None


def make_store(recovery: Recovery, backplane: Backplane | None) -> Store:
    """Where channel history and sessions live: in memory, or in Redis with the Redis backplane."""
    if backplane is None:
        return MemoryStore(recovery)
    if type(backplane).__name__ in ("RedisBackplane", "ShardedRedisBackplane"):  # redis is optional
        from .redis_backplane import RedisBackplane
        from .redis_recovery import RedisStore
        from .redis_shards import ShardedRedisBackplane

        if isinstance(backplane, (RedisBackplane, ShardedRedisBackplane)):
            return RedisStore(recovery, backplane)
    raise ValueError(
        "recovery with a backplane needs the history in the backplane: not supported by "
        f"{type(backplane).__name__} (use recovery on a single node)"
    )


JSON_SUBPROTOCOL = "webshocket.json"
"""Subprotocol a JSON client may ask for (and get echoed): the JSON dialect, as without a subprotocol."""


def _origins(origins: Iterable[str]) -> tuple[str, ...]:
    return (origins,) if isinstance(origins, str) else tuple(origins)


def _handshake_hook(handler: WebSocketHandler[Any]) -> Callable[[Request], Any] | None:
    """The handler's ``on_handshake``, if its class overrides it (else None: nothing runs at the upgrade).

    Raises:
        TypeError: it is a coroutine function (picows needs the upgrade response synchronously).
    """
    if type(handler).on_handshake is WebSocketHandler.on_handshake:
        return None
    hook = handler.on_handshake
    if inspect.iscoroutinefunction(hook) or inspect.isasyncgenfunction(hook):
        raise TypeError(
            f"{type(handler).__qualname__}.on_handshake must be a plain 'def', not 'async def': picows asks for "
            "the upgrade response synchronously (do I/O in on_connect and close the connection there)"
        )
    return hook


def refusal(status: int, reason: str, headers: Mapping[str, str] | None = None) -> WSUpgradeResponseWithListener:
    """An HTTP error answer to an upgrade request (``reason`` as a text/plain body): no connection is made."""
    extra = {"Content-Type": "text/plain; charset=utf-8"}
    if headers:
        extra.update(headers)
    return WSUpgradeResponseWithListener(
        WSUpgradeResponse.create_error_response(status, reason.encode("utf-8"), extra), None
    )


PING_IDLE_TIMEOUT = 20.0
"""Seconds of silence before a client is pinged (picows's ``auto_ping_idle_timeout`` default)."""
PING_REPLY_TIMEOUT = 20.0
"""Seconds a pinged client has to answer (picows's ``auto_ping_reply_timeout`` default)."""


class _PicowsLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The adapter picows logs through. picows asks it ``isEnabledFor`` twice per connection and
    logs two ``info`` lines per connection, usually below the logger's level: both go straight to
    the logger (the base class's ``info`` goes through ``log`` and the adapter's ``isEnabledFor``)."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})
        self.isEnabledFor = logger.isEnabledFor  # type: ignore[method-assign]

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self.log(logging.INFO, msg, *args, **kwargs)


_PICOWS_LOGGER = _PicowsLogger(logging.getLogger("webshocket.server.picows"))
"""picows's logger: an adapter, not a Logger, so that picows does not make a child logger per connection."""


def keep_alive(options: dict[str, Any]) -> tuple[float, float] | None:
    """Take picows's ``auto_ping_*`` options out of ``options`` when the server's own keep-alive
    does what they ask (ping when idle, one timer for all connections): its (idle, reply)
    timeouts, or None when it is off. The periodic strategy is left to picows."""
    if options.get("auto_ping_strategy", WSAutoPingStrategy.PING_WHEN_IDLE) != WSAutoPingStrategy.PING_WHEN_IDLE:
        options.setdefault("enable_auto_ping", True)
        return None
    enabled = options.pop("enable_auto_ping", True)
    idle = options.pop("auto_ping_idle_timeout", PING_IDLE_TIMEOUT)
    reply = options.pop("auto_ping_reply_timeout", PING_REPLY_TIMEOUT)
    options.pop("auto_ping_strategy", None)
    options["enable_auto_ping"] = False
    return (float(idle), float(reply)) if enabled else None


_RESPONSES: dict[str | None, WSUpgradeResponse] = {}  # subprotocol -> the 101 response the others copy
_ACCEPT = "Sec-WebSocket-Accept"


class SwitchingProtocols(WSUpgradeResponse):
    """A 101 response copied from a template (:func:`switching_protocols`). Its bytes are the
    template's, encoded once (``head``), and the ``Sec-WebSocket-Accept`` header picows adds for
    the connection: what ``WSUpgradeResponse.to_bytes`` writes, without encoding it all again."""

    __slots__ = ()
    head: ClassVar[bytes] = b""  # status line and the template's headers, then "Sec-WebSocket-Accept: "
    size: ClassVar[int] = -1  # headers of the template

    def to_bytes(self) -> bytearray:
        headers = self.headers
        if len(headers) == self.size + 1 and not self.body:  # the template's headers and one more:
            accept = headers.get(_ACCEPT)
            if accept is not None:  # picows's Sec-WebSocket-Accept (set last, so written last)
                return bytearray(b"%b%b\r\n\r\n" % (self.head, accept.encode()))
        return super().to_bytes()


_SWITCHING: dict[str | None, type[SwitchingProtocols]] = {}  # subprotocol -> the class of its 101 responses


def _switching_class(subprotocol: str | None) -> type[SwitchingProtocols]:
    extra = None if subprotocol is None else {"Sec-WebSocket-Protocol": subprotocol}
    template = _RESPONSES[subprotocol] = WSUpgradeResponse.create_101_response(extra_headers=extra)
    # As picows does with each response: multidict then keeps the names in the form its copies share.
    written = template.to_bytes()
    attributes = {"__slots__": (), "head": bytes(written[:-2]) + f"{_ACCEPT}: ".encode(), "size": len(template.headers)}
    made = type("SwitchingProtocols", (SwitchingProtocols,), attributes)
    _SWITCHING[subprotocol] = made
    return made


def switching_protocols(subprotocol: str | None) -> WSUpgradeResponse:
    """A 101 response (naming ``subprotocol``), its headers copied from one made once: the copies
    share the header names and values, which picows would make anew for each connection and keep
    as long as it lasts (~500 bytes each)."""
    made = _SWITCHING.get(subprotocol)
    if made is None:
        made = _switching_class(subprotocol)
    template = _RESPONSES[subprotocol]
    response = made()
    response.version = template.version
    response.status = template.status
    response.headers = template.headers.copy()
    response.body = None
    return response


class WebSocketServer(Generic[H]):
    """A WebSocket server running a :class:`WebSocketHandler`.

    .. code-block:: python

        server = WebSocketServer("0.0.0.0", 5000, clientHandler=MyHandler)
        async with server:
            await server.serve_forever()

    Args:
        host: address to bind.
        port: port to bind; 0 picks a free one (read ``server.port`` after ``start()``).
        clientHandler: the handler class; one instance serves every connection.
        ssl_context: a server-side SSL context for ``wss://``.
        max_connection: refuse clients beyond this many (HTTP 503 at upgrade).
        packet_qsize: packets queued per connection for ``recv()`` before reading pauses
            (0 or less: no bound on their number, as in 0.5.x; ``max_queued_bytes`` still applies).
        rpc_task_limit: RPCs running at once in this server; more are queued (0: no bound, as in 0.5.x).
        max_subscribed_channels: channels and patterns per connection (0 or None: no limit).
        max_message_size: largest message accepted; above it the connection is closed with 1009.
        max_send_buffer: outgoing bytes buffered per connection before it counts as a slow consumer.
        slow_consumer_policy: what a push to a slow consumer does: ``"disconnect"`` (close with
            4008) or ``"drop"`` (skip the packet and count it). RPC replies are never dropped.
        max_inflight_rpcs: RPCs of one connection running or queued; at this many, reading
            from that connection pauses until half of them are done.
        backplane: scale out over several processes or machines: ``"redis://host:port/db"``
            or a :class:`~webshocket.backplane.Backplane`. Publishes and broadcasts then
            reach the clients of every node. Several Redis servers, as a list of URLs or one
            string of comma-separated URLs, shard the channels: each channel lives on one
            server, chosen by a hash of its name, so every node must list the same servers in
            the same order (:class:`~webshocket.redis_shards.ShardedRedisBackplane`). None
            (default): this process only.
        workers: processes :meth:`run` starts, sharing the port (``SO_REUSEPORT``), each
            with its own event loop. Pub/sub crosses workers only through a backplane.
        rpc_task_reserve: RPC tasks each connection may always run, whatever the others do.
        rpc_task_share: tasks of the shared pool (``rpc_task_limit``) one connection may hold
            beyond its reserve (None: ``rpc_task_limit // 8``); work beyond waits its turn.
        slow_consumer_timeout: seconds a connection's send backlog may stay above
            ``max_send_buffer`` before it is closed as a slow consumer (0: at once).
        max_send_backlog: bytes held for one connection past which it is closed at once.
        max_total_send_backlog: bytes held for all connections together; above it, the
            largest backlogs are closed first.
        max_message_frames: frames one (fragmented) message may take; above it, close 1009.
        max_queued_bytes: bytes of messages read from one connection and not yet handled
            (held, waiting for ``on_receive`` or ``recv()``); above it reading pauses.
        handshake_timeout: seconds a new connection has to finish its TLS and WebSocket
            handshakes (None: no limit).
        error_detail: what a client learns of an unexpected exception in an RPC method:
            ``"full"`` (0.5.x: ``Server error (Type): message``) or ``"minimal"`` (the type
            and a reference id; the message is logged with the id).
        recovery: sessions that survive disconnection (off by default): True, or a
            :class:`~webshocket.Recovery` with history and session limits. Channels then keep
            a bounded history, and a client that asks for a session and reconnects in time
            gets its state, subscriptions and missed messages back (see README, "Reconnect
            and recovery"). With a Redis backplane, history and sessions live in Redis.
        presence: who is subscribed to which channel (off by default): True, or a
            :class:`~webshocket.Presence` (channels, session fields, join/leave events,
            limits); read it with ``await handler.presence(channel)``. With a Redis
            backplane it covers every node.
        allowed_origins: the browser origins that may connect, checked at the upgrade before
            ``on_handshake``: exact origins (``"https://app.example.com"``) and wildcards whose
            ``*.`` stands for one or more labels (``"https://*.example.com"``). Another origin is
            refused with HTTP 403. None (default, as 0.5.x): every origin; set it in production
            (cross-site WebSocket hijacking, see README "Security").
        allow_missing_origin: with ``allowed_origins`` set, whether a request without an
            ``Origin`` header (not a browser: scripts, servers, the Python client) may connect.

    Attributes other than these are looked up on the handler, so ``server.publish``,
    ``server.broadcast`` and ``server.register_rpc_method`` work.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        clientHandler: type[H] = DefaultWebSocketHandler,  # type: ignore[assignment]  # noqa: N803
        ssl_context: ssl.SSLContext | None = None,
        max_connection: int | None = None,
        packet_qsize: int = 512,
        rpc_task_limit: int = 1024,
        max_subscribed_channels: int | None = 5,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
        slow_consumer_policy: str = "disconnect",
        max_inflight_rpcs: int = DEFAULT_MAX_INFLIGHT_RPCS,
        backplane: str | Sequence[str] | Backplane | None = None,
        workers: int = 1,
        rpc_task_reserve: int = 4,
        rpc_task_share: int | None = None,
        slow_consumer_timeout: float = 5.0,
        max_send_backlog: int = 64 * DEFAULT_MAX_SEND_BUFFER,
        max_total_send_backlog: int = 256 * 1024 * 1024,
        max_message_frames: int = DEFAULT_MAX_MESSAGE_FRAMES,
        max_queued_bytes: int = 4 * DEFAULT_MAX_MESSAGE_SIZE,
        handshake_timeout: float | None = 5.0,
        error_detail: str = "full",
        recovery: bool | Recovery | None = None,
        presence: bool | Presence | None = None,
        allowed_origins: Iterable[str] | None = None,
        allow_missing_origin: bool = True,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.config = ServerConfig(
            max_connection=max_connection,
            packet_qsize=packet_qsize,
            rpc_task_limit=rpc_task_limit,
            max_subscribed_channels=max_subscribed_channels,
            max_message_size=max_message_size,
            max_send_buffer=max_send_buffer,
            slow_consumer_policy=slow_consumer_policy,
            max_inflight_rpcs=max_inflight_rpcs,
            rpc_task_reserve=rpc_task_reserve,
            rpc_task_share=rpc_task_share,
            slow_consumer_timeout=slow_consumer_timeout,
            max_send_backlog=max_send_backlog,
            max_total_send_backlog=max_total_send_backlog,
            max_message_frames=max_message_frames,
            max_queued_bytes=max_queued_bytes,
            handshake_timeout=handshake_timeout,
            error_detail=error_detail,
            recovery=Recovery.of(recovery),
            presence=Presence.of(presence),
            allowed_origins=None if allowed_origins is None else _origins(allowed_origins),
            allow_missing_origin=allow_missing_origin,
        )
        self.logger = logging.getLogger("webshocket.server")
        self.state = ServerState.CLOSED
        self.host = host
        self.port = port
        self.handler: H = clientHandler()
        self.ssl_context = ssl_context
        self.backplane = make_backplane(backplane)
        self.workers = workers
        self._hub = hub_of(self.handler)
        self._handshake_hook = _handshake_hook(self.handler)
        if self.config.recovery is not None:
            self._hub.enable_recovery(make_store(self.config.recovery, self.backplane))
        self._server: asyncio.Server | None = None
        self._serving: asyncio.Future[None] | None = None  # serve_forever() of the picows server, while awaited
        self._core: Any = None
        self._accept_queue: asyncio.Queue[ClientConnection[Any]] | None = None
        self.stats: dict[str, int] = self._hub.stats  # counters, see STAT_NAMES

    # ------------------------------------------------------------------ properties

    @property
    def max_connection(self) -> int | None:
        """Clients beyond this many are refused (None: no limit)."""
        return self.config.max_connection

    @max_connection.setter
    def max_connection(self, value: int | None) -> None:
        self._reconfigure(max_connection=value)

    @property
    def max_message_size(self) -> int:
        """Largest message accepted (bytes)."""
        return self.config.max_message_size

    @max_message_size.setter
    def max_message_size(self, value: int) -> None:
        self._reconfigure(max_message_size=value)

    @property
    def max_send_buffer(self) -> int:
        """Outgoing bytes buffered per connection before it counts as a slow consumer."""
        return self.config.max_send_buffer

    @max_send_buffer.setter
    def max_send_buffer(self, value: int) -> None:
        self._reconfigure(max_send_buffer=value)

    @property
    def slow_consumer_policy(self) -> str:
        """``"disconnect"`` or ``"drop"``."""
        return self.config.slow_consumer_policy

    @slow_consumer_policy.setter
    def slow_consumer_policy(self, value: str) -> None:
        self._reconfigure(slow_consumer_policy=value)

    @property
    def max_inflight_rpcs(self) -> int:
        """RPCs of one connection running or queued before reading from it pauses."""
        return self.config.max_inflight_rpcs

    @max_inflight_rpcs.setter
    def max_inflight_rpcs(self, value: int) -> None:
        self._reconfigure(max_inflight_rpcs=value)

    @property
    def clients(self) -> set[ClientConnection[Any]]:
        """Every connected client."""
        return self.handler.clients

    @property
    def channels(self) -> Subscribers:
        """Exact channel name -> subscribers (read-only)."""
        return self.handler.channels

    def _reconfigure(self, **changes: Any) -> None:
        """Change options (0.5.x let applications assign them); connections made after see them."""
        self.config = replace(self.config, **changes)
        if self._core is not None:
            self._core.config = self.config

    def metrics(self) -> dict[str, int]:
        """Counters (:data:`~webshocket.handler.STAT_NAMES`) and gauges, as a new dict.

        Gauges: ``connections`` (connected now), ``channels`` and ``patterns``
        (with subscribers), ``rpc_running`` and ``rpc_queued`` (in this server).
        """
        core = self._core
        return {
            **self.stats,
            "connections": len(self._hub.clients),
            "channels": len(self._hub.index.channels),
            "patterns": len(self._hub.index.patterns),
            "rpc_running": len(core.rpc_tasks) + len(core.stream_tasks) if core is not None else 0,
            "rpc_queued": core.queued_count() if core is not None else 0,
        }

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually bound."""
        return self.host, self.port

    # ------------------------------------------------------------------ lifecycle

    def _listener_factory(self, request: WSUpgradeRequest) -> Any:
        if self.state is not ServerState.SERVING:
            return WSUpgradeResponseWithListener(
                WSUpgradeResponse.create_error_response(503, b"Server is shutting down."), None
            )
        max_connection = self.config.max_connection
        if max_connection is not None and len(self._hub.clients) >= max_connection:
            return WSUpgradeResponseWithListener(
                WSUpgradeResponse.create_error_response(503, b"Server is full, try again later."), None
            )
        share_headers(request)  # picows keeps it as long as the connection: ~1.2 KiB less
        handshake: Request | None = None
        if self._handshake_hook is not None or self.config.origin_policy is not None:  # once per connection
            screened = self._screen(request)
            if isinstance(screened, WSUpgradeResponseWithListener):
                return screened  # refused
            handshake = screened
        offered = offered_subprotocols(request)
        if self.config.recovery is not None:
            session = session_subprotocol(offered)
            if session is not None:  # the client asks for a session: the subprotocol says which dialect
                return WSUpgradeResponseWithListener(
                    switching_protocols(session),
                    _listener.ServerListener(
                        self._core,
                        ClientType.FRAMEWORK if SESSION_SUBPROTOCOLS[session] else ClientType.GENERIC,
                        True,
                        handshake,
                    ),
                )
        if DEFAULT_WEBSHOCKET_SUBPROTOCOL in offered:
            return WSUpgradeResponseWithListener(
                switching_protocols(DEFAULT_WEBSHOCKET_SUBPROTOCOL),
                _listener.ServerListener(self._core, ClientType.FRAMEWORK, False, handshake),
            )
        if JSON_SUBPROTOCOL in offered:
            return WSUpgradeResponseWithListener(  # a JSON client that names its dialect (browsers need an echo)
                switching_protocols(JSON_SUBPROTOCOL),
                _listener.ServerListener(self._core, ClientType.GENERIC, False, handshake),
            )
        return WSUpgradeResponseWithListener(
            switching_protocols(None), _listener.ServerListener(self._core, ClientType.GENERIC, False, handshake)
        )

    def _screen(self, raw: WSUpgradeRequest) -> Request | WSUpgradeResponseWithListener | None:
        """``allowed_origins``, then ``on_handshake``: the refusal, or the request the hook saw (None: no hook)."""
        policy = self.config.origin_policy
        if policy is not None and not policy.allows(raw.headers.getall("Origin", [])):
            self.logger.debug("Refused origin %.200r: not in allowed_origins (HTTP 403)", raw.headers.get("Origin"))
            return refusal(403, "Origin not allowed.")
        hook = self._handshake_hook
        if hook is None:
            return None  # the connection parses its request if the application asks
        request = Request(raw)
        try:
            seeded = hook(request)
        except Reject as reject:
            return refusal(reject.status, reject.reason, reject.headers)
        except Exception:
            self.logger.exception("on_handshake raised: connection refused with HTTP 500 (%r)", request)
            return refusal(500, "Internal server error.")
        if seeded is not None:
            if not (type(seeded) is dict or isinstance(seeded, Mapping)) or not all(type(k) is str for k in seeded):
                if inspect.iscoroutine(seeded):
                    seeded.close()
                self.logger.error(
                    "on_handshake must return None or a mapping of str keys (session values), not %s: "
                    "connection refused with HTTP 500",
                    type(seeded).__name__,
                )
                return refusal(500, "Internal server error.")
            if seeded:
                seed_session(request, dict(seeded))
        return request

    def _presence_event(self, channel: str, data: Any, member: ClientConnection[Any]) -> None:
        self._hub.publish(channel, data, (member,), None)

    def _on_open(self, conn: ClientConnection[Any]) -> None:
        if self._accept_queue is not None:
            self._accept_queue.put_nowait(conn)
        if self.logger.isEnabledFor(logging.DEBUG):  # the address is looked up (and kept) only then
            self.logger.debug("New connection from %s", conn.remote_address)

    async def start(self, **kwargs: Any) -> WebSocketServer[H]:
        """Bind and start accepting connections (extra kwargs go to picows/asyncio).

        ``use_aiofastnet=False`` (picows 2.3+, which uses aiofastnet's transport when it is
        installed) takes uvloop's own: ~5 KiB less per connection, ~10-15% more server CPU per
        fan-out delivery (benchmarks/README.md, "Memory per connection").
        """
        if self._server is not None:
            return self
        self._core = _listener.ServerCore(self.handler, self._hub, self.config, self._on_open)
        if isinstance(self.handler, DefaultWebSocketHandler):
            self._accept_queue = asyncio.Queue()
        if self.backplane is not None and self._hub.bridge is None:
            bridge = BackplaneBridge(self._hub.deliver_remote, self.backplane)
            await bridge.start()  # fails clearly, before accepting anyone, if unreachable
            self._hub.bridge = bridge
        store = self._hub.store
        if store is not None and store.shared:
            await cast("RedisStore", store).start(self._core.session_snapshots)
        if self.config.presence is not None and self._hub.presence is None:
            try:
                self._hub.presence = await start_presence(self.config.presence, self._presence_event, self.backplane)
            except BaseException:
                started, self._hub.bridge = self._hub.bridge, None
                if started is not None:
                    await started.close()
                raise
        self.state = ServerState.SERVING
        kwargs.setdefault("read_buffer_init_size", DEFAULT_READ_BUFFER_SIZE)
        timeouts = keep_alive(kwargs)
        if timeouts is not None:
            self._core.keep_alive(*timeouts)
        kwargs.setdefault("websocket_handshake_timeout", self.config.handshake_timeout)
        if self.ssl_context is not None and self.config.handshake_timeout is not None:
            kwargs.setdefault("ssl_handshake_timeout", self.config.handshake_timeout)
        try:
            self._server = await ws_create_server(
                self._listener_factory,
                self.host,
                self.port,
                ssl=self.ssl_context,
                max_frame_size=self.config.max_message_size,
                enable_auto_pong=False,  # the listener answers pings after checking them
                logger_name=_PICOWS_LOGGER,
                **kwargs,
            )
        except BaseException:
            self.state = ServerState.CLOSED
            raise
        sockets = self._server.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self.logger.info("Server started on %s:%s", self.host, self.port)
        return self

    async def serve_forever(self, **kwargs: Any) -> None:
        """Start (if needed) and serve until :meth:`close` is called."""
        await self.start(**kwargs)
        server = self._server
        if server is None:
            return
        serving = self._serving = asyncio.ensure_future(server.serve_forever())
        try:
            await serving
        except asyncio.CancelledError:
            if self._server is None:  # closed by close(): a normal end
                return
            serving.cancel()  # our caller cancelled: stop accepting
            raise
        finally:
            self._serving = None

    def run(
        self,
        *,
        workers: int | None = None,
        on_ready: Callable[[int], None] | None = None,
        graceful_timeout: float = 10.0,
        **start_kwargs: Any,
    ) -> int:
        """Serve until SIGINT or SIGTERM, then shut down gracefully; blocks, returns an exit code.

        Call it with no event loop running (it makes its own, uvloop when installed).
        With ``workers`` > 1 (default: the ``workers`` option) it forks that many
        processes sharing the port. ``on_ready(port)`` is called once serving.
        """
        count = self.workers if workers is None else workers
        if count > 1:
            from .workers import serve_workers

            if self.backplane is None:
                self.logger.warning("%d workers without a backplane: pub/sub stays within each worker", count)
            elif isinstance(self.backplane, MemoryBackplane):
                raise ValueError("a MemoryBackplane cannot join worker processes; use a Redis backplane")
            return serve_workers(lambda: self, count, host=self.host, port=self.port, on_ready=on_ready, **start_kwargs)
        run_loop(self._run_until_signal(on_ready, graceful_timeout, start_kwargs))
        return 0

    async def _run_until_signal(
        self, on_ready: Callable[[int], None] | None, graceful_timeout: float, start_kwargs: dict[str, Any]
    ) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await self.start(**start_kwargs)
        try:
            if on_ready is not None:
                on_ready(self.port)
            await stop.wait()
        finally:
            await self.close(timeout=graceful_timeout)

    async def accept(self) -> ClientConnection[Any]:
        """Wait for the next client (only with the default handler)."""
        if not isinstance(self.handler, DefaultWebSocketHandler):
            raise TypeError("Cannot use manual accept() when handler callback is active.")
        if self._accept_queue is None:
            raise WebSocketError("Error getting client: server is not started")
        return await self._accept_queue.get()

    async def close(self, timeout: float | None = 10.0) -> None:
        """Shut down gracefully.

        Stop accepting, let running RPCs finish (up to ``timeout`` seconds), send
        1001 (going away) to every client and return once they are all gone and
        their ``on_disconnect`` hooks have run.
        """
        server = self._server
        if server is None:
            return
        self._server = None
        self.state = ServerState.CLOSED
        server.close()
        if self._serving is not None:  # uvloop's Server.close() does not end serve_forever(), asyncio's does
            self._serving.cancel()
        await self._core.shutdown(timeout)
        store = self._hub.store
        if store is not None and store.shared:  # after the clients left: their sessions are parked
            await cast("RedisStore", store).close()
        presence = self._hub.presence
        if presence is not None:  # after the clients left: their leaves are sent, this node's entries removed
            self._hub.presence = None
            await presence.close()
        bridge = self._hub.bridge
        if bridge is not None:
            self._hub.bridge = None
            await bridge.close()
        try:
            await asyncio.wait_for(server.wait_closed(), 5.0)
        except (asyncio.TimeoutError, TimeoutError):
            self.logger.warning("Server did not close within 5 s")
        self.logger.info("Server closed")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return getattr(self.handler, name)
        except AttributeError:
            raise AttributeError(f"'{type(self).__name__}' object and its handler have no attribute '{name}'") from None

    async def __aenter__(self) -> WebSocketServer[H]:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
