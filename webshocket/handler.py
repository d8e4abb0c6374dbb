"""Application logic lives in a :class:`WebSocketHandler` subclass."""

from __future__ import annotations

import inspect
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .connection import queue_for_recv
from .enum import ClientType as ClientType
from .enum import PacketSource as PacketSource
from .exceptions import PacketError as PacketError
from .hub import STAT_NAMES, Hub
from .packets import Packet
from .packets import serialize as serialize
from .rpc import never_suspends
from .typing import RPC_Function, RPC_Predicate, RPCMethod, SessionState
from .typing import Serializable as Serializable

# ``X as X`` imports re-export names 0.5.x's module had (it imported them): docs/migration.md 2.14.

if TYPE_CHECKING:
    from .connection import ClientConnection
    from .request import Request

__all__ = ["STAT_NAMES", "DefaultWebSocketHandler", "WebSocketHandler", "hub_of"]

TState = TypeVar("TState", bound=SessionState)


def _rpc_method_of(func: Any) -> RPCMethod:
    return RPCMethod(
        func=func,
        rate_limit=getattr(func, "_rate_limit", None),
        restricted=getattr(func, "_restricted", None),
        is_stream=getattr(func, "_is_stream", False),
        inline=never_suspends(func),
    )


class Subscribers(Mapping[str, "set[ClientConnection[Any]]"]):
    """A read-only view of name -> subscribers; a name without subscribers gives an empty set."""

    __slots__ = ("_table",)

    def __init__(self, table: dict[str, set[ClientConnection[Any]]]) -> None:
        self._table = table

    def __getitem__(self, name: str) -> set[ClientConnection[Any]]:
        found = self._table.get(name)
        return set() if found is None else found

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return repr(self._table)


def _rpc_names(cls: type) -> dict[str, str]:
    """Public RPC name -> attribute name of each ``@rpc_method`` of ``cls``.

    Raises:
        TypeError: two methods have the same public name (one would silently replace the other).
    """
    names: dict[str, str] = {}
    for attribute, func in inspect.getmembers(cls):
        if getattr(func, "_is_rpc_method", False):
            public = getattr(func, "_rpc_alias_name", attribute)
            if public in names:
                raise TypeError(
                    f"{cls.__qualname__}: RPC methods {names[public]!r} and {attribute!r} are both named "
                    f"{public!r}; give one of them another alias_name"
                )
            names[public] = attribute
    return names


def hub_of(handler: WebSocketHandler[Any]) -> Hub:
    """The :class:`~webshocket.hub.Hub` a handler works through (for the server that runs it)."""
    return handler._hub


class WebSocketHandler(Generic[TState]):
    """Base class for server logic: lifecycle hooks, RPC methods, channels.

    .. code-block:: python

        class ChatHandler(WebSocketHandler):
            async def on_connect(self, connection):
                connection.subscribe("lobby")

            @rpc_method()
            async def say(self, connection, text: str):
                self.publish("lobby", {"from": connection.uid.hex, "text": text})

    Attributes:
        clients: every connected client.
        channels: exact channel name -> subscribers.
        patterns: glob pattern -> subscribers.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _rpc_names(cls)  # two methods under one public name fail here, where the class is defined

    def __init__(self) -> None:
        self._hub = hub = Hub()
        for public, attribute in _rpc_names(type(self)).items():
            hub.methods[public] = _rpc_method_of(getattr(self, attribute))

    @property
    def clients(self) -> set[ClientConnection[Any]]:
        """Every connected client (do not mutate)."""
        return self._hub.clients

    @property
    def channels(self) -> Subscribers:
        """Exact channel name -> subscribers (read-only; a name nobody subscribes to maps to an
        empty set, as with 0.5.x's ``defaultdict``)."""
        return Subscribers(self._hub.index.channels)

    @property
    def patterns(self) -> Subscribers:
        """Glob pattern -> subscribers (read-only, as :attr:`channels`)."""
        return Subscribers(self._hub.index.patterns)

    # ------------------------------------------------------------------ hooks

    def on_handshake(self, request: Request) -> Mapping[str, Any] | None:
        """Called with the HTTP upgrade request before the connection is accepted (if overridden).

        Return None to accept, or a mapping to accept and seed the session state (its items
        are the connection's attributes from ``on_connect`` on). Raise
        :class:`webshocket.Reject` ``(status, reason)`` to refuse with that HTTP status
        (401, 403, 429, ...): no connection is made. Any other exception refuses with 500
        and is logged. It runs after the ``allowed_origins`` check.

        It must be a plain ``def``, not ``async def``: picows asks for the response
        synchronously while it reads the request. Check what needs no I/O here (signed
        tokens, origins, headers); do slow lookups in ``on_connect`` and close the
        connection there (e.g. with 4401 or 4403).
        """
        return None

    async def on_connect(self, connection: ClientConnection[TState]) -> None:
        """Called once a client has connected, before any of its messages is handled."""

    async def on_disconnect(self, connection: ClientConnection[TState]) -> None:
        """Called after a client has gone (its subscriptions are already removed)."""

    async def on_receive(self, connection: ClientConnection[TState], packet: Packet[Any]) -> None:
        """Called, in order, for each non-RPC packet a client sends."""

    # ------------------------------------------------------------------ RPC

    def register_rpc_method(self, func: RPC_Function, alias_name: str | None = None, *, replace: bool = False) -> None:
        """Register a function marked with ``@rpc_method`` at run time.

        The function receives ``(connection, *args, **kwargs)``.

        Raises:
            ValueError: ``func`` is not marked with ``@rpc_method``, or a method of that
                name exists already (pass ``replace=True`` to replace it on purpose).
        """
        if not getattr(func, "_is_rpc_method", False):
            raise ValueError("Function is a non-RPC method.")
        name = str(alias_name or getattr(func, "_rpc_alias_name", None) or getattr(func, "__name__", repr(func)))
        methods = self._hub.methods
        if name in methods and methods[name].func == func:
            return  # the same function again: nothing to do
        if name in methods and not replace:
            raise ValueError(
                f"an RPC method named {name!r} is registered already ({methods[name]!r}); "
                "pass replace=True to replace it"
            )
        methods[name] = _rpc_method_of(func)

    # ------------------------------------------------------------------ channels

    def subscribe(self, client: ClientConnection[Any], channel: str | Iterable[str], *, literal: bool = False) -> None:
        """Subscribe ``client`` to one or more channels or glob patterns.

        The server's own call: as in 0.5.x, ``max_subscribed_channels`` limits only
        ``connection.subscribe`` (what a client's request makes the connection do).
        ``literal=True``: every name is a channel name, wildcards included (use it for
        names built from client input; see :meth:`ClientConnection.subscribe`).
        """
        self._hub.subscribe(client, channel, limited=False, literal=literal)

    def unsubscribe(
        self, client: ClientConnection[Any], channel: str | Iterable[str], *, literal: bool = False
    ) -> None:
        """Unsubscribe ``client`` from one or more channels or patterns (``literal`` as in :meth:`subscribe`)."""
        self._hub.unsubscribe(client, channel, literal=literal)

    async def sync_subscriptions(self, timeout: float | None = 5.0) -> bool:
        """Wait until the backplane carries this node's subscriptions made so far.

        With Redis, a subscription is applied shortly after ``subscribe()`` returns;
        await this to be sure publishes from other nodes already reach it. Without a
        backplane it returns True at once.
        """
        bridge = self._hub.bridge
        if bridge is None:
            return True
        return await bridge.backplane.sync(timeout)

    def subscribers(self, channel: str) -> Collection[ClientConnection[Any]]:
        """Clients subscribed to ``channel`` exactly or by pattern, each once (do not mutate)."""
        return self._hub.index.subscribers(channel)

    async def presence(self, channel: str) -> list[dict[str, Any]]:
        """Who is in ``channel`` (a name, as for :meth:`publish`): on every node with a Redis backplane.

        One entry per connection subscribed to that name (not by a wider pattern):
        ``{"client": <its uid, hex>, "info": {<field>: <value>}}`` with the session fields
        of the server's ``presence=Presence(fields=...)``, as they were when it joined.
        This node's members come first, in the order they joined.

        Raises:
            RuntimeError: presence is off (``WebSocketServer(..., presence=True)``), or the server is not started.
            ValueError: ``channel`` keeps no presence (``Presence(channels=...)``).
            webshocket.ConnectionError: Redis cannot be read.
        """
        tracker = self._hub.presence
        if tracker is None:
            raise RuntimeError(
                "presence is off: start the server with WebSocketServer(..., presence=True or webshocket.Presence(...))"
            )
        return await tracker.members_of(channel)

    # ------------------------------------------------------------------ fan-out

    def publish(
        self,
        channel: str | Iterable[str],
        data: Any,
        exclude: Iterable[ClientConnection[Any]] | None = None,
        predicate: RPC_Predicate | None = None,
    ) -> None:
        """Send ``data`` to every subscriber of ``channel`` (or of each channel given).

        ``channel`` is always a name, never a pattern: a publish to ``"room[1]"`` reaches
        who subscribed to that name literally and every pattern that matches it (``room*``),
        never ``room1``. A client subscribed both exactly and by pattern gets one copy. The packet
        is encoded once per dialect. With a backplane, subscribers on every node get it.

        Args:
            channel: a channel name or an iterable of names.
            data: the payload, or a CHANNEL :class:`Packet` sent as is.
            exclude: clients (of this node) not to send to.
            predicate: only clients for which it returns True get it.
        """
        self._hub.publish(channel, data, exclude, predicate)

    def broadcast(
        self,
        data: Any,
        exclude: Iterable[ClientConnection[Any]] | None = None,
        predicate: RPC_Predicate | None = None,
        **kwargs: Any,
    ) -> None:
        """Send ``data`` to every connected client as a BROADCAST packet.

        With a backplane, clients of every node get it.

        Args:
            data: the payload, or a BROADCAST :class:`Packet` sent as is.
            exclude: clients (of this node) not to send to.
            predicate: only clients for which it returns True get it.
            **kwargs: extra :class:`Packet` fields (``correlation_id``, ``timestamp``).
        """
        self._hub.broadcast(data, exclude, predicate, **kwargs)

    async def history(self, channel: str, limit: int | None = None) -> list[Packet[Any]]:
        """The recent messages of ``channel`` still in its history, oldest first (at most the
        last ``limit``); each carries its ``offset`` and ``epoch``.

        Raises:
            RuntimeError: the server keeps no history (``recovery`` is off).
        """
        return await self._hub.history(channel, limit)


class DefaultWebSocketHandler(WebSocketHandler[Any]):
    """Handler used when none is given: packets are queued for ``connection.recv()``
    and new connections for ``server.accept()``."""

    async def on_receive(self, connection: ClientConnection[Any], packet: Packet[Any]) -> None:
        queue_for_recv(connection, packet)
