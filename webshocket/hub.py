"""What one server knows about its connections, owned in one place.

The :class:`Hub` holds who is connected, who subscribes to which channels and
patterns (the channel index, and each connection's own list), the RPC method
table, the counters and the backplane bridge. The handler's public API
(``publish``, ``broadcast``, ``subscribe``, ``clients``, ``channels``, ...) and the
engine both work through it; nothing else writes this state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Hashable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, cast

from ._fanout import Outgoing, fan_out
from .channels import ChannelIndex, escape, is_pattern, literal_name
from .enum import PacketSource
from .exceptions import PacketError, SubscriptionLimitError
from .packets import Packet
from .predicate import predicate_spec

if TYPE_CHECKING:
    from typing import TypeAlias

    from .backplane import BackplaneBridge
    from .presence import PresenceTracker
    from .recovery import MemoryStore
    from .redis_recovery import RedisStore

    Store: TypeAlias = MemoryStore | RedisStore
    from .typing import RPC_Predicate, RPCMethod

__all__ = ["STAT_NAMES", "Hub", "Member", "channel_names"]

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
    "encode_errors",
    "sessions_started",
    "sessions_resumed",
)
"""Counters a server keeps (``server.stats``; ``server.metrics()`` adds gauges)."""

_logger = logging.getLogger("webshocket.server")
_CHANNEL = int(PacketSource.CHANNEL)
_BROADCAST = int(PacketSource.BROADCAST)


class Member(Hashable, Protocol):
    """A connection as the hub sees it (a :class:`~webshocket.ClientConnection`)."""

    @property
    def is_connected(self) -> bool: ...

    @property
    def max_subscribed_channels(self) -> int | None: ...


def channel_names(channel: str | Iterable[str], literal: bool = False) -> list[str]:
    """Normalise a channel argument (a name or an iterable of names) to a list.

    ``literal``: each name stands for itself, wildcards included (:func:`~webshocket.channels.escape`).
    """
    if isinstance(channel, str):
        return [escape(channel)] if literal else [channel]
    names = list(channel)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"channel names must be str, got {type(name).__name__}")
    return [escape(name) for name in names] if literal else names


def _as_set(exclude: Iterable[Any] | None) -> Collection[Any]:
    if not exclude:
        return ()
    return exclude if isinstance(exclude, (set, frozenset)) else set(exclude)


class Hub:
    """Connections, subscriptions, RPC methods and counters of one server."""

    __slots__ = (
        "bridge",
        "clients",
        "index",
        "json_clients",
        "methods",
        "presence",
        "starts",
        "stats",
        "store",
        "subscriptions",
        "tasks",
    )

    def __init__(self) -> None:
        self.clients: set[Any] = set()
        self.index = ChannelIndex()
        self.subscriptions: dict[Any, set[str]] = {}  # connection -> its channels and patterns
        self.methods: dict[str, RPCMethod] = {}
        self.stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        self.bridge: BackplaneBridge | None = None
        self.json_clients = 0  # connected clients of the JSON dialect (kept by the engine)
        self.presence: PresenceTracker | None = None  # who is in which channel (the ``presence`` option)
        # Recovery (off: None): channel history and sessions, and where each subscription
        # of a session connection started (connection -> name -> publish sequence number).
        self.store: Store | None = None
        self.starts: dict[Any, dict[str, int]] = {}
        self.tasks: set[asyncio.Future[Any]] = set()  # background work (latest messages read from Redis)

    # ------------------------------------------------------------------ subscriptions

    def subscribe(
        self, client: Member, channel: str | Iterable[str], limited: bool = True, literal: bool = False
    ) -> None:
        """Subscribe ``client`` to channels or patterns, all or none (``literal``: names, never patterns).

        Raises:
            SubscriptionLimitError: ``limited`` and that would exceed the client's
                ``max_subscribed_channels``.
        """
        names = channel_names(channel, literal)
        own = self.subscriptions.get(client)
        limit = client.max_subscribed_channels if limited else None
        if limit:
            have = 0 if own is None else len(own)
            new = {name for name in names if own is None or name not in own}
            if have + len(new) > limit:
                raise SubscriptionLimitError(
                    f"Subscription limit reached: a connection may subscribe to at most {limit} channels "
                    f"(has {have}, asked for {len(new)} more)."
                )
        if not client.is_connected or not names:
            return
        if own is None:
            own = self.subscriptions[client] = set()
        index = self.index
        bridge = self.bridge
        store = self.store
        if store is not None:
            self._subscribe_recorded(client, names, own, store)
        else:
            for name in names:
                if bridge is not None and not self._has_subscribers(name):
                    bridge.subscribed(name)
                index.add(client, name)
                own.add(name)
        if self.presence is not None:
            self.presence.joined(client, names)

    def _subscribe_recorded(self, client: Member, names: list[str], own: set[str], store: Store) -> None:
        """Subscribe with recovery on: note where each subscription starts; deliver the latest
        message of channels configured so."""
        starts = self.starts.get(client)
        bridge = self.bridge
        config = store.config
        for name in names:
            if bridge is not None and not self._has_subscribers(name):
                bridge.subscribed(name)
            self.index.add(client, name)
            if name in own:
                continue
            own.add(name)
            if starts is not None:
                starts[name] = store.seq
            concrete = literal_name(name) if config.deliver_latest else None  # the one channel it receives
            if concrete is not None and config.delivers_latest(concrete):
                if store.shared:  # from Redis: it follows (a client drops it if a newer one came first)
                    self._track(asyncio.ensure_future(self._deliver_latest(client, name, concrete, store)))
                else:
                    latest = cast("MemoryStore", store).history.latest(concrete)
                    if latest is not None:
                        self.stats["deliveries"] += fan_out((client,), latest, (), None)

    async def _deliver_latest(self, client: Member, name: str, channel: str, store: Store) -> None:
        latest = await cast("RedisStore", store).latest(channel)
        if latest is not None and client.is_connected and name in self.subscriptions.get(client, ()):
            self._encode(latest)
            self.stats["deliveries"] += fan_out((client,), latest, (), None)

    def _track(self, task: asyncio.Future[Any]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def history(self, channel: str, limit: int | None) -> list[Packet[Any]]:
        """The messages of ``channel`` still in its history (see ``WebSocketHandler.history``)."""
        if self.store is None:
            raise RuntimeError("No channel history: start the server with recovery=True (or a webshocket.Recovery)")
        return await self.store.recent(channel, limit)

    def enable_recovery(self, store: Store) -> None:
        """Keep channel history and sessions in ``store`` (the server's ``recovery`` option)."""
        self.store = store

    def track(self, client: Member) -> None:
        """Remember where ``client``'s subscriptions start (a connection with a session)."""
        self.starts.setdefault(client, {})

    def restore(self, client: Member, subscriptions: dict[str, int]) -> None:
        """Give a resumed session's connection its subscriptions back, with their starts."""
        self.subscribe(client, list(subscriptions), limited=False)
        starts = self.starts.get(client)
        if starts is not None:
            starts.update(subscriptions)

    def snapshot(self, client: Member) -> dict[str, int]:
        """``client``'s subscriptions, each with the publish sequence number it started at."""
        starts = self.starts.get(client, {})
        return {name: starts.get(name, 0) for name in self.subscriptions.get(client, ())}

    def unsubscribe(self, client: Member, channel: str | Iterable[str], literal: bool = False) -> None:
        """Unsubscribe ``client`` from channels or patterns (``literal``: as subscribed with ``literal=True``)."""
        own = self.subscriptions.get(client)
        starts = self.starts.get(client) if self.starts else None
        names = channel_names(channel, literal)
        for name in names:
            self._discard(client, name)
            if own is not None:
                own.discard(name)
            if starts is not None:
                starts.pop(name, None)
        if own is not None and not own:
            del self.subscriptions[client]
        if self.presence is not None:
            self.presence.left(client, names)

    def unsubscribe_all(self, client: Member) -> None:
        """Remove every subscription of ``client`` (it has gone)."""
        for name in self.subscriptions.pop(client, ()):
            self._discard(client, name)
        if self.presence is not None:
            self.presence.gone(client)
        if self.starts:
            self.starts.pop(client, None)

    def subscriptions_of(self, client: Member) -> set[str]:
        """A copy of the channels and patterns ``client`` is subscribed to."""
        return set(self.subscriptions.get(client, ()))

    def _discard(self, client: Member, name: str) -> None:
        if self.index.discard(client, name) and self.bridge is not None and not self._has_subscribers(name):
            self.bridge.unsubscribed(name)

    def _has_subscribers(self, name: str) -> bool:
        return name in (self.index.patterns if is_pattern(name) else self.index.channels)

    # ------------------------------------------------------------------ fan-out

    def publish(
        self,
        channel: str | Iterable[str],
        data: Any,
        exclude: Iterable[Any] | None,
        predicate: RPC_Predicate | None,
    ) -> None:
        """Send ``data`` to the subscribers of each channel (here and, with a backplane, on every node)."""
        packet = data if isinstance(data, Packet) else None
        if packet is not None and packet.source != PacketSource.CHANNEL:
            raise PacketError("Cannot publish non-channel packet.")
        excluded = _as_set(exclude)
        bridge = self.bridge
        spec = predicate_spec(predicate) if bridge is not None else None  # fails before sending anything
        stats = self.stats
        store = self.store
        for name in dict.fromkeys(channel_names(channel)):
            if store is None:
                out = Outgoing(_CHANNEL, data, name, packet)
                self._encode(out)  # all or nobody: a failure raises before anyone got it
            elif store.shared:  # history in Redis: Redis positions it and sends it to every node, this one too
                out = Outgoing(_CHANNEL, data, name, packet)
                self._encode(out)
                head = bridge.recorded_head(name, spec, excluded)  # type: ignore[union-attr]
                cast("RedisStore", store).publish(name, out.encoded(False), head)
                stats["publishes"] += 1
                continue
            else:
                out = cast("MemoryStore", store).record(name, data, packet, self._encode)  # kept in its history
            recipients = self.index.subscribers(name)
            if recipients:
                stats["deliveries"] += fan_out(recipients, out, excluded, predicate)
            stats["publishes"] += 1
            if bridge is not None:
                bridge.publish(name, out.encoded(False), spec)

    def broadcast(
        self, data: Any, exclude: Iterable[Any] | None, predicate: RPC_Predicate | None, **fields: Any
    ) -> None:
        """Send ``data`` to every client (here and, with a backplane, on every node)."""
        packet = data if isinstance(data, Packet) else None
        if packet is None and fields:
            packet = Packet(PacketSource.BROADCAST, data, **fields)
        if packet is not None and packet.source != PacketSource.BROADCAST:
            raise PacketError("Cannot broadcast non-broadcast packet.")
        bridge = self.bridge
        spec = predicate_spec(predicate) if bridge is not None else None  # fails before sending anything
        out = Outgoing(_BROADCAST, data, None, packet)
        self._encode(out)
        if self.clients:
            self.stats["deliveries"] += fan_out(self.clients, out, _as_set(exclude), predicate)
        self.stats["broadcasts"] += 1
        if bridge is not None:
            bridge.publish(None, out.encoded(False), spec)

    def deliver_remote(
        self,
        broadcast: bool,
        channel: str | None,
        packet: bytes,
        predicate: RPC_Predicate | None,
        excluded: Collection[Any] = (),
    ) -> None:
        """A publish or broadcast from another node (its msgpack packet) for this node's clients
        (or this node's own publish, back from Redis with its position: recovery with Redis)."""
        if broadcast:
            recipients: Collection[Any] = self.clients
        elif channel is not None:
            recipients = self.index.subscribers(channel)
        else:
            return
        if recipients:
            out = Outgoing.from_msgpack(packet)
            try:
                self._encode(out)
            except Exception as exc:
                _logger.error(
                    "Dropped a delivery from another node that cannot be encoded: %s: %s", type(exc).__name__, exc
                )
                self.stats["dropped"] += len(recipients)
                return
            self.stats["deliveries"] += fan_out(recipients, out, excluded, predicate)

    def _encode(self, out: Outgoing) -> None:
        """Frame ``out`` for every dialect connected now, so that fan-out cannot fail halfway."""
        try:
            out.frames(False)
            if self.json_clients:
                out.frames(True)
        except Exception:
            self.stats["encode_errors"] += 1
            raise
