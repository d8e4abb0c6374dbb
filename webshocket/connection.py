"""Server-side view of one connected client: the application's facade.

A :class:`ClientConnection` carries the connection's session state and the calls
an application makes (send, receive, subscribe, close). Everything the engine
keeps per connection (reading, RPCs in flight, queues, framing) belongs to the
connection's engine, which the server owns; the facade only asks it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar
from uuid import UUID, uuid4

from picows import WSCloseCode

from ._codec import encode_packet, encode_push
from ._fanout import Endpoint, Sink
from .constant import DEFAULT_CHUNK_SIZE
from .constant import DEFAULT_ENCODE_BUFFER_SIZE as DEFAULT_ENCODE_BUFFER_SIZE
from .enum import ClientType, ConnectionState, PacketSource
from .exceptions import ConnectionClosedError
from .exceptions import ReceiveTimeoutError as ReceiveTimeoutError
from .packets import Packet
from .packets import RPCResponse as RPCResponse
from .packets import deserialize as deserialize

# ``X as X`` imports re-export names 0.5.x's module had (it imported them): docs/migration.md 2.14.

if TYPE_CHECKING:
    from .request import Request

__all__ = ["ClientConnection", "Engine", "queue_for_recv"]

TState = TypeVar("TState")
_logger = logging.getLogger("webshocket.connection")
_CUSTOM = int(PacketSource.CUSTOM)
_CONNECTED = ConnectionState.CONNECTED
_CLOSED = ConnectionState.CLOSED


class Subscriptions(Protocol):
    """Who subscribes to what (the server's :class:`~webshocket.hub.Hub`), as a connection uses it."""

    clients: set[Any]

    def subscribe(
        self, client: Any, channel: str | Iterable[str], limited: bool = ..., literal: bool = ...
    ) -> None: ...

    def unsubscribe(self, client: Any, channel: str | Iterable[str], literal: bool = ...) -> None: ...

    def subscriptions_of(self, client: Any) -> set[str]: ...


class Engine(Protocol):
    """What a connection's engine (the server's per-connection state) offers its facade."""

    @property
    def client_type(self) -> ClientType: ...

    @property
    def is_open(self) -> bool: ...

    @property
    def hub(self) -> Subscriptions: ...

    @property
    def packet_qsize(self) -> int: ...

    @property
    def max_subscribed_channels(self) -> int | None: ...

    @property
    def transport(self) -> Any: ...

    def remote_address(self) -> tuple[str, int]: ...

    def upgrade_request(self) -> Request: ...

    def push(self, payload: bytes, chunk_size: int) -> bool: ...

    def close(self, code: WSCloseCode | int, reason: bytes) -> None: ...

    async def recv(self, timeout: float | None) -> Packet[Any]: ...

    def enqueue(self, packet: Packet[Any]) -> None: ...


class ClientConnection(Endpoint, Generic[TState]):
    """One connected client, as the server's handler sees it.

    Attribute and item access read and write the connection's session state,
    which lives as long as the connection::

        connection.username = "alice"
        connection["username"]        # "alice"
        connection.session_state      # {"username": "alice"}

    The attributes below are the connection's own and read-only: assigning to one
    raises :class:`AttributeError` (pick another name for a session value).

    Attributes:
        client_type: FRAMEWORK (msgpack) or GENERIC (JSON).
        connection_state: CONNECTED until the client goes away, then CLOSED.
        session_state: the per-connection state dict.
        uid: a unique id of this connection.
        max_subscribed_channels: subscription limit (0 or None: unlimited).
        request: the HTTP upgrade request (:class:`webshocket.Request`).
    """

    __slots__ = ("__dict__", "__weakref__", "_engine", "_uid")

    logger: ClassVar[logging.Logger] = _logger

    def __init__(self, engine: Engine, sink: Sink) -> None:
        super().__init__(sink)
        self._engine = engine
        self._uid: UUID | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN_NAMES:
            raise AttributeError(
                f"ClientConnection.{name} is read-only: it is the connection's own, not session state "
                f"(use another name, or connection[{name!r}] = ... to keep a session value of that name)"
            )
        super().__setattr__(name, value)

    # ------------------------------------------------------------------ info

    @property
    def session_state(self) -> dict[str, Any]:
        """The per-connection state: every attribute assigned to the connection."""
        return self.__dict__

    @property
    def client_type(self) -> ClientType:
        """FRAMEWORK (msgpack dialect) or GENERIC (JSON dialect)."""
        return self._engine.client_type

    @property
    def connection_state(self) -> ConnectionState:
        """CONNECTED until the connection closes, then CLOSED."""
        return _CONNECTED if self._engine.is_open else _CLOSED

    @property
    def is_connected(self) -> bool:
        """True until the connection is closed."""
        return self._engine.is_open

    @property
    def uid(self) -> UUID:
        """A unique id of this connection."""
        uid = self._uid
        if uid is None:
            uid = self._uid = uuid4()
        return uid

    @property
    def remote_address(self) -> tuple[str, int]:
        """``(host, port)`` of the client."""
        return self._engine.remote_address()

    @property
    def request(self) -> Request:
        """The HTTP upgrade request this connection was opened with: path, query parameters,
        headers, cookies, origin, subprotocols, remote address (see :class:`webshocket.Request`)."""
        return self._engine.upgrade_request()

    @property
    def max_subscribed_channels(self) -> int | None:
        """Channels and patterns this connection may subscribe to (0 or None: no limit)."""
        return self._engine.max_subscribed_channels

    @property
    def packet_qsize(self) -> int:
        """Packets queued for :meth:`recv` before the server stops reading from this client."""
        return self._engine.packet_qsize

    @property
    def subscribed_channel(self) -> set[str]:
        """A copy of the channels and patterns this connection is subscribed to."""
        return self._engine.hub.subscriptions_of(self)

    @property
    def dropped_packets(self) -> int:
        """Pushed packets dropped because this client read too slowly (policy ``"drop"``)."""
        return self._sink.dropped

    # ------------------------------------------------------------------ sending

    def send(self, data: Any, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        """Send ``data`` to this client as a CUSTOM packet (or send a :class:`Packet` as is).

        On a closed connection the data is dropped, as in 0.5.x, when the server closed it
        (:meth:`close`, a rate-limit or slow-consumer disconnect, shutdown) or while it is still
        in ``clients`` (it leaves them on the next event-loop iteration): a loop over ``clients``
        goes on past a connection that just closed.

        Raises:
            ConnectionClosedError: the client closed the connection (or it dropped), and it has
                left ``clients``: code that kept it across an ``await`` learns its client is gone.
        """
        engine = self._engine
        if not engine.is_open:
            if _closed_by_server(engine.transport) or self in engine.hub.clients:
                return
            raise ConnectionClosedError("Cannot send data: client is not connected.")
        as_json = self._sink.as_json
        if isinstance(data, Packet):
            payload = encode_packet(data, as_json)
        else:
            payload = encode_push(_CUSTOM, data, None, as_json)
        engine.push(payload, chunk_size)

    # ------------------------------------------------------------------ receiving

    async def recv(self, timeout: float | None = 30.0) -> Packet[Any]:
        """Next packet from this client (when the handler queues them: ``DefaultWebSocketHandler``).

        Raises:
            ConnectionClosedError: the connection is closed and nothing is queued.
            ReceiveTimeoutError: nothing arrived within ``timeout`` seconds.
        """
        return await self._engine.recv(timeout)

    async def __aiter__(self) -> AsyncIterator[Packet[Any]]:
        """Iterate over received packets until the connection closes."""
        while True:
            try:
                yield await self._engine.recv(None)
            except ConnectionClosedError:
                return

    # ------------------------------------------------------------------ channels

    def subscribe(self, channel: str | Iterable[str], *, literal: bool = False) -> bool:
        """Join one or more channels or glob patterns (``"news.*"``).

        A name containing ``*``, ``?`` or ``[`` is a glob pattern, as in 0.5.x. With
        ``literal=True`` every name is a channel name, wildcards included: **use it for any
        name built from client input**, so that ``room="*"`` joins the room named ``*``
        rather than every room (see :func:`webshocket.channels.escape`).

        Returns True. Raises :class:`SubscriptionLimitError` (and subscribes to
        none of them) when that would exceed ``max_subscribed_channels``.
        """
        self._engine.hub.subscribe(self, channel, literal=literal)
        return True

    def unsubscribe(self, channel: str | Iterable[str], *, literal: bool = False) -> None:
        """Leave one or more channels or patterns (``literal=True``: names joined with ``literal=True``)."""
        self._engine.hub.unsubscribe(self, channel, literal=literal)

    # ------------------------------------------------------------------ lifecycle

    def close(self, code: WSCloseCode | int = WSCloseCode.OK, reason: bytes | str = b"") -> None:
        """Close the connection with ``code`` (default 1000)."""
        self._engine.close(code, reason.encode() if isinstance(reason, str) else reason)

    # ------------------------------------------------------------------ session state

    def __getattr__(self, name: str) -> Any:
        # Only reached when the name is neither the connection's own nor in the session state.
        if name.startswith("__"):
            raise AttributeError(name)
        # 0.5.x looked the name up on the picows transport next (``connection.is_disconnected``, ...).
        value = getattr(self._engine.transport, name, _MISSING)
        if value is not _MISSING:
            return value
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        try:
            del self.__dict__[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setitem__(self, name: str, value: Any) -> None:
        self.__dict__[name] = value

    def __getitem__(self, name: str) -> Any:
        try:
            return self.__dict__[name]
        except KeyError:
            raise KeyError(name) from None

    def __delitem__(self, name: str) -> None:
        del self.__dict__[name]

    def __contains__(self, name: object) -> bool:
        return name in self.__dict__

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other

    def __repr__(self) -> str:
        return (  # as 0.5.x wrote it, quotes around the address tuple included
            f"<{type(self).__name__}(uid={self.uid}, remote_address='{self.remote_address}', "
            f"session_state={self.session_state!r})>"
        )


_MISSING = object()
_OWN_NAMES = frozenset(name for name in dir(ClientConnection) if not name.startswith("_"))
"""Public names of the class: assigning to one is a mistake, not session state."""


def _closed_by_server(transport: Any) -> bool:
    """Whether our close frame went first (picows records who started the closing handshake)."""
    handshake = getattr(transport, "close_handshake", None)
    return handshake is not None and handshake.sent is not None and not handshake.recv_then_sent


def queue_for_recv(connection: ClientConnection[Any], packet: Packet[Any]) -> None:
    """Queue ``packet`` for ``connection.recv()`` (what ``DefaultWebSocketHandler.on_receive`` does)."""
    connection._engine.enqueue(packet)


if not TYPE_CHECKING:  # hidden from type checkers, which would see an import cycle

    def __getattr__(name: str) -> Any:
        # Two names 0.5.x imported here, from modules that import this one.
        if name == "DefaultWebSocketHandler":
            from .handler import DefaultWebSocketHandler

            return DefaultWebSocketHandler
        if name == "Serializable":
            from .typing import Serializable

            return Serializable
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
