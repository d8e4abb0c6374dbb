"""Application logic lives in a :class:`WebSocketHandler` subclass."""

from __future__ import annotations

import inspect
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._fanout import Outgoing, fan_out
from .backplane import predicate_spec
from .channels import ChannelIndex, is_pattern
from .connection import channel_names
from .enum import ConnectionState, PacketSource
from .exceptions import PacketError
from .packets import Packet
from .rpc import never_suspends
from .typing import RPC_Function, RPC_Predicate, RPCMethod, SessionState

if TYPE_CHECKING:
    from .backplane import BackplaneBridge
    from .connection import ClientConnection

__all__ = ["STAT_NAMES", "DefaultWebSocketHandler", "WebSocketHandler"]

STAT_NAMES = (
    "connections_opened",
    "connections_closed",
    "rpc_calls",
    "rpc_errors",
    "rate_limited",
    "publishes",
    "broadcasts",
    "deliveries",
    "dropped",
    "slow_consumer_disconnects",
)
"""Counters a server keeps (``server.stats``; ``server.metrics()`` adds gauges)."""

TState = TypeVar("TState", bound=SessionState)
_CHANNEL = int(PacketSource.CHANNEL)
_BROADCAST = int(PacketSource.BROADCAST)


def _rpc_method_of(func: Any) -> RPCMethod:
    return RPCMethod(
        func=func,
        rate_limit=getattr(func, "_rate_limit", None),
        restricted=getattr(func, "_restricted", None),
        is_stream=getattr(func, "_is_stream", False),
        inline=never_suspends(func),
    )


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

    def __init__(self) -> None:
        self.clients: set[ClientConnection[Any]] = set()
        self._index = ChannelIndex()
        self.channels: dict[str, set[ClientConnection[Any]]] = self._index.channels
        self.patterns: dict[str, set[ClientConnection[Any]]] = self._index.patterns
        self._rpc_methods: dict[str, RPCMethod] = {}
        self._bridge: BackplaneBridge | None = None  # set by the server when it has a backplane
        self._stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)  # the server's counters once started
        for name, func in inspect.getmembers(type(self)):
            if getattr(func, "_is_rpc_method", False):
                bound = getattr(self, name)
                self._rpc_methods[getattr(func, "_rpc_alias_name", name)] = _rpc_method_of(bound)

    # ------------------------------------------------------------------ hooks

    async def on_connect(self, connection: ClientConnection[TState]) -> None:
        """Called once a client has connected, before any of its messages is handled."""

    async def on_disconnect(self, connection: ClientConnection[TState]) -> None:
        """Called after a client has gone (its subscriptions are already removed)."""

    async def on_receive(self, connection: ClientConnection[TState], packet: Packet[Any]) -> None:
        """Called, in order, for each non-RPC packet a client sends."""

    # ------------------------------------------------------------------ RPC

    def register_rpc_method(self, func: RPC_Function, alias_name: str | None = None) -> None:
        """Register a function marked with ``@rpc_method`` at run time.

        The function receives ``(connection, *args, **kwargs)``.

        Raises:
            ValueError: ``func`` is not marked with ``@rpc_method``.
        """
        if not getattr(func, "_is_rpc_method", False):
            raise ValueError("Function is a non-RPC method.")
        name = str(alias_name or getattr(func, "_rpc_alias_name", None) or getattr(func, "__name__", repr(func)))
        self._rpc_methods[name] = _rpc_method_of(func)

    # ------------------------------------------------------------------ channels

    def subscribe(self, client: ClientConnection[Any], channel: str | Iterable[str]) -> None:
        """Subscribe ``client`` to one or more channels or glob patterns.

        Raises:
            SubscriptionLimitError: that would exceed the client's ``max_subscribed_channels``.
        """
        names = channel_names(channel)
        client._check_subscription_limit(names)
        if client.connection_state is not ConnectionState.CONNECTED:
            return
        own = client._subscribed_channels
        index = self._index
        bridge = self._bridge
        for name in names:
            if bridge is not None and not self._has_subscribers(name):
                bridge.subscribed(name)
            index.add(client, name)
            own.add(name)

    def unsubscribe(self, client: ClientConnection[Any], channel: str | Iterable[str]) -> None:
        """Unsubscribe ``client`` from one or more channels or patterns."""
        own = client._subscribed_channels
        for name in channel_names(channel):
            self._discard(client, name)
            own.discard(name)

    def _unsubscribe_all(self, client: ClientConnection[Any]) -> None:
        own = client._subscribed_channels
        for name in own:
            self._discard(client, name)
        own.clear()

    def _discard(self, client: ClientConnection[Any], name: str) -> None:
        if self._index.discard(client, name) and self._bridge is not None and not self._has_subscribers(name):
            self._bridge.unsubscribed(name)

    def _has_subscribers(self, name: str) -> bool:
        return name in (self._index.patterns if is_pattern(name) else self._index.channels)

    async def sync_subscriptions(self, timeout: float | None = 5.0) -> bool:
        """Wait until the backplane carries this node's subscriptions made so far.

        With Redis, a subscription is applied shortly after ``subscribe()`` returns;
        await this to be sure publishes from other nodes already reach it. Without a
        backplane it returns True at once.
        """
        if self._bridge is None:
            return True
        return await self._bridge.backplane.sync(timeout)

    def subscribers(self, channel: str) -> Collection[ClientConnection[Any]]:
        """Clients subscribed to ``channel`` exactly or by pattern, each once (do not mutate)."""
        return self._index.subscribers(channel)

    # ------------------------------------------------------------------ fan-out

    def publish(
        self,
        channel: str | Iterable[str],
        data: Any,
        exclude: Iterable[ClientConnection[Any]] | None = None,
        predicate: RPC_Predicate | None = None,
    ) -> None:
        """Send ``data`` to every subscriber of ``channel`` (or of each channel given).

        A client subscribed both exactly and by pattern gets one copy. The packet
        is encoded once per dialect. With a backplane, subscribers on every node get it.

        Args:
            channel: a channel name or an iterable of names.
            data: the payload, or a CHANNEL :class:`Packet` sent as is.
            exclude: clients (of this node) not to send to.
            predicate: only clients for which it returns True get it.
        """
        packet = data if isinstance(data, Packet) else None
        if packet is not None and packet.source != PacketSource.CHANNEL:
            raise PacketError("Cannot publish non-channel packet.")
        excluded = _as_set(exclude)
        bridge = self._bridge
        spec = predicate_spec(predicate) if bridge is not None else None  # fails before sending anything
        for name in dict.fromkeys(channel_names(channel)):
            out = Outgoing(_CHANNEL, data, name, packet)
            recipients = self._index.subscribers(name)
            if recipients:
                self._stats["deliveries"] += fan_out(recipients, out, excluded, predicate)
            self._stats["publishes"] += 1
            if bridge is not None:
                bridge.publish(name, out.encoded(False), spec)

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
        packet = data if isinstance(data, Packet) else None
        if packet is None and kwargs:
            packet = Packet(PacketSource.BROADCAST, data, **kwargs)
        if packet is not None and packet.source != PacketSource.BROADCAST:
            raise PacketError("Cannot broadcast non-broadcast packet.")
        bridge = self._bridge
        spec = predicate_spec(predicate) if bridge is not None else None  # fails before sending anything
        out = Outgoing(_BROADCAST, data, None, packet)
        if self.clients:
            self._stats["deliveries"] += fan_out(self.clients, out, _as_set(exclude), predicate)
        self._stats["broadcasts"] += 1
        if bridge is not None:
            bridge.publish(None, out.encoded(False), spec)

    def _deliver_remote(
        self, broadcast: bool, channel: str | None, packet: bytes, predicate: RPC_Predicate | None
    ) -> None:
        """A publish or broadcast from another node (its msgpack packet) for this node's clients."""
        if broadcast:
            recipients: Collection[ClientConnection[Any]] = self.clients
        elif channel is not None:
            recipients = self._index.subscribers(channel)
        else:
            return
        if recipients:
            self._stats["deliveries"] += fan_out(recipients, Outgoing.from_msgpack(packet), (), predicate)


def _as_set(exclude: Iterable[Any] | None) -> Collection[Any]:
    if not exclude:
        return ()
    return exclude if isinstance(exclude, (set, frozenset)) else set(exclude)


class DefaultWebSocketHandler(WebSocketHandler[Any]):
    """Handler used when none is given: packets are queued for ``connection.recv()``
    and new connections for ``server.accept()``."""

    async def on_receive(self, connection: ClientConnection[Any], packet: Packet[Any]) -> None:
        connection._enqueue_packet(packet)
