"""Server-side view of one connected client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from uuid import UUID, uuid4

from picows import WSCloseCode, WSMsgType, WSTransport

from ._codec import encode_packet, encode_push, frame
from ._fanout import CLOSE_SLOW_CONSUMER, Sink
from .constant import DEFAULT_CHUNK_SIZE
from .enum import ClientType, ConnectionState, PacketSource
from .exceptions import ConnectionClosedError, ReceiveTimeoutError, SubscriptionLimitError
from .packets import Packet

if TYPE_CHECKING:
    from .handler import WebSocketHandler
    from .ratelimit import TokenBucket

__all__ = ["ClientConnection"]

TState = TypeVar("TState")
_MISSING = object()
_CLOSED = object()  # wakes recv() when the connection goes away
_logger = logging.getLogger("webshocket.connection")
_CUSTOM = int(PacketSource.CUSTOM)
_PAUSE_QUEUE = 1  # reading paused: recv() queue full
PAUSE_SHUTDOWN = 4  # reading paused: the server is shutting down
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION


def write_message(transport: WSTransport, payload: bytes | bytearray, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
    """Send ``payload`` as one binary message, fragmented into ``chunk_size`` frames."""
    size = len(payload)
    if size <= chunk_size:
        transport.send(_BINARY, payload)
        return
    view = memoryview(payload)
    transport.send(_BINARY, view[:chunk_size], False)
    offset = chunk_size
    while size - offset > chunk_size:
        transport.send(_CONTINUATION, view[offset : offset + chunk_size], False)
        offset += chunk_size
    transport.send(_CONTINUATION, view[offset:], True)


def channel_names(channel: str | Iterable[str]) -> list[str]:
    """Normalise a channel argument (a name or an iterable of names) to a list."""
    if isinstance(channel, str):
        return [channel]
    names = list(channel)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"channel names must be str, got {type(name).__name__}")
    return names


class ClientConnection(Generic[TState]):
    """One connected client, as the server's handler sees it.

    Attribute and item access read and write the connection's session state,
    which lives as long as the connection::

        connection.username = "alice"
        connection["username"]        # "alice"
        connection.session_state      # {"username": "alice"}

    Attributes:
        client_type: FRAMEWORK (msgpack) or GENERIC (JSON).
        connection_state: CONNECTED until the client goes away, then CLOSED.
        session_state: the per-connection state dict.
        uid: a unique id of this connection.
        max_subscribed_channels: subscription limit (0 or None: unlimited).
    """

    __slots__ = (
        "__weakref__",
        "_active_stream",
        "_handler",
        "_inbox",
        "_inflight",
        "_json",
        "_packet_queue",
        "_paused",
        "_protocol",
        "_rate_buckets",
        "_receiving",
        "_remote_address",
        "_sink",
        "_subscribed_channels",
        "client_type",
        "connection_state",
        "logger",
        "max_subscribed_channels",
        "packet_qsize",
        "session_state",
        "uid",
    )

    if TYPE_CHECKING:
        _protocol: WSTransport
        _handler: WebSocketHandler[Any]
        _json: bool
        _active_stream: dict[str, asyncio.Task[Any]]
        _rate_buckets: dict[str, TokenBucket]
        _subscribed_channels: set[str]
        _packet_queue: asyncio.Queue[Any]
        _inbox: list[Packet[Any]]
        _receiving: bool
        _paused: int
        _inflight: int
        _sink: Sink
        client_type: ClientType
        connection_state: ConnectionState
        session_state: dict[str, Any]
        uid: UUID
        logger: logging.Logger
        max_subscribed_channels: int | None
        packet_qsize: int

    def __init__(
        self,
        websocket_protocol: WSTransport,
        handler: WebSocketHandler[Any],
        client_type: ClientType = ClientType.FRAMEWORK,
        packet_qsize: int = 512,
        max_subscribed_channels: int | None = 5,
    ) -> None:
        init = object.__setattr__
        init(self, "_protocol", websocket_protocol)
        init(self, "_handler", handler)
        init(self, "_json", client_type is ClientType.GENERIC)
        init(self, "_active_stream", {})
        init(self, "_rate_buckets", {})
        init(self, "_subscribed_channels", set())
        init(self, "_packet_queue", None)
        init(self, "_inbox", [])
        init(self, "_receiving", False)
        init(self, "_paused", 0)  # bit set of reasons reading is paused
        init(self, "_inflight", 0)  # RPCs of this connection running or queued
        sink = Sink(websocket_protocol, client_type is ClientType.GENERIC)
        sink.on_slow = self._close_slow_consumer
        init(self, "_sink", sink)  # the outgoing side: write coalescing, slow-consumer policy
        init(self, "client_type", client_type)
        init(self, "connection_state", ConnectionState.CONNECTED)
        init(self, "session_state", {})
        init(self, "uid", uuid4())
        init(self, "logger", _logger)
        init(self, "max_subscribed_channels", max_subscribed_channels)
        init(self, "packet_qsize", packet_qsize)

    # ------------------------------------------------------------------ info

    @property
    def remote_address(self) -> tuple[str, int]:
        """``(host, port)`` of the client."""
        try:
            return self._remote_address  # type: ignore[no-any-return]
        except AttributeError:
            address = self._protocol.underlying_transport.get_extra_info("peername")
            object.__setattr__(self, "_remote_address", address)
            return address  # type: ignore[no-any-return]

    @property
    def subscribed_channel(self) -> set[str]:
        """A copy of the channels and patterns this connection is subscribed to."""
        return set(self._subscribed_channels)

    @property
    def dropped_packets(self) -> int:
        """Pushed packets dropped because this client read too slowly (policy ``"drop"``)."""
        return self._sink.dropped

    @property
    def is_connected(self) -> bool:
        """True until the connection is closed."""
        return self.connection_state is ConnectionState.CONNECTED

    # ------------------------------------------------------------------ sending

    def _push(self, payload: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE) -> bool:
        """Send an encoded pushed packet (``send``); False if the slow-consumer policy refused it."""
        if chunk_size == DEFAULT_CHUNK_SIZE:
            return self._sink.push(frame(payload))
        if not self._sink.admit(len(payload)):
            return False
        self._sink.flush()
        write_message(self._protocol, payload, chunk_size)
        return True

    def _close_slow_consumer(self) -> None:
        self.close(CLOSE_SLOW_CONSUMER, b"Slow consumer: outgoing buffer full")

    def _mark_closed(self) -> None:
        """No more sending: the connection is closing or gone."""
        object.__setattr__(self, "connection_state", ConnectionState.CLOSED)
        self._sink.open = False

    def _pause_reading(self, reason: int) -> None:
        paused = self._paused
        object.__setattr__(self, "_paused", paused | reason)
        if not paused and self.connection_state is ConnectionState.CONNECTED:
            self._protocol.underlying_transport.pause_reading()

    def _resume_reading(self, reason: int) -> None:
        paused = self._paused
        if not paused & reason:
            return
        object.__setattr__(self, "_paused", paused & ~reason)
        if paused == reason and self.connection_state is ConnectionState.CONNECTED:
            self._protocol.underlying_transport.resume_reading()

    def send(self, data: Any, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        """Send ``data`` to this client as a CUSTOM packet (or send a :class:`Packet` as is).

        Raises:
            ConnectionClosedError: the connection is closed.
        """
        if self.connection_state is not ConnectionState.CONNECTED:
            raise ConnectionClosedError("Cannot send data: client is not connected.")
        if isinstance(data, Packet):
            payload = encode_packet(data, self._json)
        else:
            payload = encode_push(_CUSTOM, data, None, self._json)
        if self._push(payload, chunk_size):
            self._sink.stats["deliveries"] += 1

    # ------------------------------------------------------------------ receiving

    def _queue(self) -> asyncio.Queue[Any]:
        queue = self._packet_queue
        if queue is None:
            queue = asyncio.Queue()
            object.__setattr__(self, "_packet_queue", queue)
        return queue

    def _enqueue_packet(self, packet: Any) -> None:
        """Queue a packet for :meth:`recv`; pause reading while the queue is full."""
        queue = self._queue()
        queue.put_nowait(packet)
        if queue.qsize() >= self.packet_qsize and packet is not _CLOSED:
            self._pause_reading(_PAUSE_QUEUE)

    async def recv(self, timeout: float | None = 30.0) -> Packet[Any]:
        """Next packet from this client (when the handler queues them: ``DefaultWebSocketHandler``).

        Raises:
            ConnectionClosedError: the connection is closed and nothing is queued.
            ReceiveTimeoutError: nothing arrived within ``timeout`` seconds.
        """
        queue = self._queue()
        if queue.empty() and self.connection_state is not ConnectionState.CONNECTED:
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
        if self._paused & _PAUSE_QUEUE and queue.qsize() <= self.packet_qsize // 2:
            self._resume_reading(_PAUSE_QUEUE)
        return packet  # type: ignore[no-any-return]

    async def __aiter__(self) -> AsyncIterator[Packet[Any]]:
        """Iterate over received packets until the connection closes."""
        while True:
            try:
                yield await self.recv(timeout=None)
            except ConnectionClosedError:
                return

    # ------------------------------------------------------------------ channels

    def subscribe(self, channel: str | Iterable[str]) -> bool:
        """Join one or more channels or glob patterns (``"news.*"``).

        Returns True. Raises :class:`SubscriptionLimitError` (and subscribes to
        none of them) when that would exceed ``max_subscribed_channels``.
        """
        self._handler.subscribe(self, channel)
        return True

    def unsubscribe(self, channel: str | Iterable[str]) -> None:
        """Leave one or more channels or patterns."""
        self._handler.unsubscribe(self, channel)

    def _check_subscription_limit(self, names: list[str]) -> None:
        limit = self.max_subscribed_channels
        if not limit:
            return
        new = {name for name in names if name not in self._subscribed_channels}
        if len(self._subscribed_channels) + len(new) > limit:
            raise SubscriptionLimitError(
                f"Subscription limit reached: a connection may subscribe to at most {limit} channels "
                f"(has {len(self._subscribed_channels)}, asked for {len(new)} more)."
            )

    # ------------------------------------------------------------------ lifecycle

    def close(self, code: WSCloseCode | int = WSCloseCode.OK, reason: bytes | str = b"") -> None:
        """Close the connection with ``code`` (default 1000)."""
        if self.connection_state is not ConnectionState.CONNECTED:
            return
        self._sink.flush()
        self._mark_closed()
        transport = self._protocol
        if isinstance(reason, str):
            reason = reason.encode()
        if not transport.is_close_frame_sent:
            transport.send_close(WSCloseCode(code) if isinstance(code, int) else code, reason)
        transport.disconnect()

    # ------------------------------------------------------------------ session state

    def __setattr__(self, name: str, value: Any) -> None:
        self.session_state[name] = value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = self.session_state.get(name, _MISSING)
        if value is not _MISSING:
            return value
        value = getattr(self._protocol, name, _MISSING)
        if value is not _MISSING:
            return value
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        try:
            del self.session_state[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setitem__(self, name: str, value: Any) -> None:
        self.session_state[name] = value

    def __getitem__(self, name: str) -> Any:
        try:
            return self.session_state[name]
        except KeyError:
            raise KeyError(name) from None

    def __delitem__(self, name: str) -> None:
        del self.session_state[name]

    def __contains__(self, name: object) -> bool:
        return name in self.session_state

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__}(uid={self.uid}, remote_address={self.remote_address!r}, "
            f"session_state={self.session_state!r})>"
        )
