"""Presence: who is subscribed to a channel, on this node and on every node of a backplane.

Off by default. ``WebSocketServer(..., presence=Presence(fields=("nick",)))`` (or
``presence=True``) turns it on; then ``await handler.presence(channel)`` lists the
connections subscribed to ``channel``, each as ``{"client": <connection uid, hex>,
"info": {<field>: <session value>, ...}}``, and with ``events=`` the channel's
subscribers get a push when somebody joins or leaves it.

What counts as a member: a connection subscribed to the channel by its name (exact, or
``literal=True``, or any pattern that matches that one name only, as ``room[1]`` matches
``room1``). A pattern that can match several channels (``chat.*``) makes nobody a member
of anything: a moderator watching every room is in none of them.

Where it lives:

- each node keeps its own members in memory: at most ``max_members`` per channel (more
  subscribers wait, in the order they joined, and are listed as soon as one leaves), each
  entry's ``info`` at most ``max_info_bytes`` (msgpack-encoded; a field that does not fit,
  or cannot be encoded, is left out and counted in ``stats["info_truncated"]``);
- with the Redis backplane, each node also writes its members to Redis (sharded: to the
  channel's shard): per channel, one hash of its own (``<prefix>presence:<node>:<channel>``:
  client -> info) and its entry in the channel's sorted set of nodes
  (``<prefix>presence:nodes:<channel>``, scored by expiry time). Both expire ``ttl`` seconds
  after the node last refreshed them (it does every ``refresh`` seconds), so the members of a
  node that died without shutting down vanish after at most ``ttl``; a node that shuts down
  cleanly removes its own at once. Node clocks must agree to well within ``ttl`` (NTP);
- with the in-process :class:`~webshocket.backplane.MemoryBackplane`, the nodes sharing a
  :class:`~webshocket.backplane.MemoryHub` read each other's members directly; with any other
  backplane, or none, presence covers this node only.

Cost, only when on: a subscribe or unsubscribe of a presence channel does a few dict
operations, reads the entry's fields and encodes them once (msgpack); with Redis, one
pipelined write per batch of changes (``HSET``/``HDEL`` of the entry and the node's expiry),
and every ``refresh`` seconds three commands per channel that has local members.
``presence()`` costs two round trips to Redis plus the entries. Publishing is not touched.

Events (``events=True``, or patterns of the channels that send them) are CHANNEL packets
published on the channel itself, to its subscribers on every node, the member excluded::

    {"source": 2, "channel": CHANNEL, "data": {"presence": "join", "client": ID, "info": {...}}}
    {"source": 2, "channel": CHANNEL, "data": {"presence": "leave", "client": ID, "info": {...}}}

No new packet type: a 0.5.x client receives them as ordinary channel messages, and only
channels the application opted in send them. A member that vanished with a killed node
gets no leave event (its entry expires).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack

from .backplane import Backplane, MemoryBackplane, MemoryHub
from .channels import ChannelIndex, literal_name
from .exceptions import ConnectionError as BackplaneConnectionError
from .utils import gather_all, optional_config

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Presence", "PresenceTracker", "start_presence"]

_logger = logging.getLogger("webshocket.presence")

Entry = dict[str, Any]
"""One member of a channel: ``{"client": str, "info": dict}``."""
Publish = Callable[[str, Any, Any], None]
"""``publish(channel, data, connection_to_exclude)``: how the tracker sends its events."""


@dataclass(frozen=True)
class Presence:
    """Presence options (``WebSocketServer(presence=Presence(...))``); every limit has a default.

    Attributes:
        channels: glob patterns (or names) of the channels that keep presence; ``("*",)``: all.
        fields: session fields (``connection.<field>``) copied into each member's ``info``,
            as they are when it joins the channel.
        events: join/leave pushes to the channel's subscribers: False (none), True (every
            presence channel) or glob patterns of the channels that send them.
        max_members: members one node lists per channel; more subscribers wait their turn.
        max_info_bytes: largest ``info`` of one member, msgpack-encoded.
        ttl: seconds (Redis) a node's members outlive its last refresh: how long the members of
            a dead node stay listed.
        refresh: seconds between a node's refreshes of its members in Redis (None: ``ttl / 3``).
    """

    channels: Sequence[str] = ("*",)  # (made a tuple: a str is one pattern)
    fields: Sequence[str] = ()
    events: bool | Sequence[str] = False
    max_members: int = 1000
    max_info_bytes: int = 512
    ttl: float = 60.0
    refresh: float | None = None

    def __post_init__(self) -> None:
        for name in ("channels", "fields"):
            value = getattr(self, name)
            names = (value,) if isinstance(value, str) else tuple(value)
            if not all(isinstance(item, str) for item in names):
                raise TypeError(f"Presence.{name} must be strings")
            object.__setattr__(self, name, names)
        if not isinstance(self.events, bool):
            events = (self.events,) if isinstance(self.events, str) else tuple(self.events)
            if not all(isinstance(item, str) for item in events):
                raise TypeError("Presence.events must be True, False or glob patterns")
            object.__setattr__(self, "events", events)
        if self.max_members < 1:
            raise ValueError("Presence.max_members must be at least 1")
        if self.max_info_bytes < 1:
            raise ValueError("Presence.max_info_bytes must be at least 1")
        if not self.ttl > 0:
            raise ValueError("Presence.ttl must be positive")
        if self.refresh is not None and not 0 < self.refresh < self.ttl:
            raise ValueError("Presence.refresh must be positive and below ttl (None: ttl / 3)")

    @property
    def refresh_interval(self) -> float:
        """Seconds between refreshes in Redis."""
        return self.refresh if self.refresh is not None else self.ttl / 3

    @staticmethod
    def of(value: bool | Presence | None) -> Presence | None:
        """The server option ``presence``: True (defaults), a :class:`Presence`, or off."""
        return optional_config(value, Presence, "presence")


def _matcher(patterns: Iterable[str]) -> ChannelIndex:
    index = ChannelIndex()
    for pattern in patterns:
        index.add(True, pattern)
    return index


class _Member:
    """One listed member of one channel."""

    __slots__ = ("client", "packed")

    def __init__(self, client: str, packed: bytes) -> None:
        self.client = client  # the connection's uid, hex
        self.packed = packed  # its info, msgpack

    def entry(self) -> Entry:
        return {"client": self.client, "info": msgpack.unpackb(self.packed, raw=False)}


# --------------------------------------------------------------------------- the node's tracker


class PresenceTracker:
    """This node's members of each presence channel (the hub calls it as subscriptions change)."""

    def __init__(self, options: Presence, publish: Publish) -> None:
        self.options = options
        self.node = secrets.token_hex(8)
        self.store: PresenceStore = PresenceStore()
        self._publish = publish
        self._channels = _matcher(options.channels)
        events = options.events
        self._events: ChannelIndex | bool = events if isinstance(events, bool) else _matcher(events)
        self.members: dict[str, dict[Any, _Member]] = {}  # channel -> connection -> listed member
        self._waiting: dict[str, dict[Any, None]] = {}  # channel -> connections over the cap, in join order
        self._joined: dict[Any, dict[str, str]] = {}  # connection -> subscription name -> its channel
        self.stats: dict[str, int] = dict.fromkeys(("joins", "leaves", "waiting", "info_truncated"), 0)

    def covers(self, channel: str) -> bool:
        """Does ``channel`` keep presence?"""
        return bool(self._channels.subscribers(channel))

    # ------------------------------------------------------------------ hub hooks

    def joined(self, client: Any, names: list[str]) -> None:
        """``client`` subscribed to ``names`` (some perhaps again)."""
        own = self._joined.get(client)
        for name in names:
            if own is not None and name in own:
                continue
            channel = literal_name(name)
            if channel is None or not self.covers(channel):
                continue
            if own is None:
                own = self._joined[client] = {}
            member = channel in own.values()
            own[name] = channel
            if not member:
                self._enter(client, channel)

    def left(self, client: Any, names: list[str]) -> None:
        """``client`` unsubscribed from ``names``."""
        own = self._joined.get(client)
        if not own:
            return
        for name in names:
            channel = own.pop(name, None)
            if channel is not None and channel not in own.values():
                self._exit(client, channel)
        if not own:
            del self._joined[client]

    def gone(self, client: Any) -> None:
        """``client`` has no subscription any more (it went away)."""
        own = self._joined.pop(client, None)
        if own:
            for channel in dict.fromkeys(own.values()):
                self._exit(client, channel)

    # ------------------------------------------------------------------ members

    def _enter(self, client: Any, channel: str) -> None:
        members = self.members.get(channel)
        if members is None:
            members = self.members[channel] = {}
        if len(members) >= self.options.max_members:
            self._waiting.setdefault(channel, {})[client] = None
            self.stats["waiting"] += 1
            return
        member = members[client] = _Member(client.uid.hex, self._info(client))
        self.stats["joins"] += 1
        self.store.joined(channel, member)
        self._event(channel, "join", member, client)

    def _exit(self, client: Any, channel: str) -> None:
        waiting = self._waiting.get(channel)
        if waiting and client in waiting:
            del waiting[client]
            if not waiting:
                del self._waiting[channel]
            return
        members = self.members.get(channel)
        member = members.pop(client, None) if members is not None else None
        if member is None:
            return
        self.stats["leaves"] += 1
        emptied = not members
        if emptied:
            del self.members[channel]
        self.store.left(channel, member, emptied)
        self._event(channel, "leave", member, client)
        if waiting:  # room for the first one waiting
            first = next(iter(waiting))
            del waiting[first]
            if not waiting:
                del self._waiting[channel]
            self._enter(first, channel)

    def _info(self, client: Any) -> bytes:
        """The fields of ``client``'s session state that fit in ``max_info_bytes``, msgpack-encoded."""
        state = client.session_state
        info: dict[str, Any] = {}
        size = 1
        budget = self.options.max_info_bytes
        for name in self.options.fields:
            if name not in state:
                continue
            try:
                cost = len(msgpack.packb(name)) + len(msgpack.packb(state[name], use_bin_type=True))
            except Exception:  # not encodable
                self.stats["info_truncated"] += 1
                continue
            if size + cost > budget:
                self.stats["info_truncated"] += 1
                continue
            info[name] = state[name]
            size += cost
        packed: bytes = msgpack.packb(info, use_bin_type=True)
        return packed

    def _event(self, channel: str, kind: str, member: _Member, client: Any) -> None:
        events = self._events
        if not events if isinstance(events, bool) else not events.subscribers(channel):
            return
        try:
            self._publish(channel, {"presence": kind, **member.entry()}, client)
        except Exception:  # an event must never break a subscribe or a disconnect
            _logger.exception("Presence: sending a %s event on %r failed", kind, channel)

    # ------------------------------------------------------------------ reading

    def local(self, channel: str) -> list[Entry]:
        """This node's members of ``channel``, in the order they joined."""
        members = self.members.get(channel)
        return [member.entry() for member in members.values()] if members else []

    async def members_of(self, channel: str) -> list[Entry]:
        """Members of ``channel`` on every node (this node's first, in the order they joined).

        Raises:
            TypeError: ``channel`` is not a str.
            ValueError: ``channel`` keeps no presence (``Presence.channels``).
            webshocket.ConnectionError: Redis cannot be read.
        """
        if not isinstance(channel, str):
            raise TypeError(f"channel names must be str, got {type(channel).__name__}")
        if not self.covers(channel):
            raise ValueError(f"channel {channel!r} keeps no presence (see Presence.channels)")
        return self.local(channel) + await self.store.remote(channel)

    async def close(self) -> None:
        """Remove this node's members from the shared store and stop."""
        await self.store.close()


# --------------------------------------------------------------------------- stores


class PresenceStore:
    """Where other nodes' members are read from; this base class: nowhere (presence of one node)."""

    async def start(self, tracker: PresenceTracker) -> None:
        """Connect (and register ``tracker``)."""

    def joined(self, channel: str, member: _Member) -> None:
        """This node listed ``member`` in ``channel``."""

    def left(self, channel: str, member: _Member, emptied: bool) -> None:
        """This node's ``member`` left ``channel`` (``emptied``: its last one there)."""

    async def remote(self, channel: str) -> list[Entry]:
        """The members of ``channel`` on the other nodes."""
        return []

    async def close(self) -> None:
        """Remove this node's members; disconnect."""


_MEMORY_NODES: weakref.WeakKeyDictionary[MemoryHub, set[PresenceTracker]] = weakref.WeakKeyDictionary()


class MemoryPresenceStore(PresenceStore):
    """Nodes of one process sharing a :class:`~webshocket.backplane.MemoryHub` read each other's members."""

    def __init__(self, hub: MemoryHub) -> None:
        self.hub = hub
        self.tracker: PresenceTracker | None = None

    async def start(self, tracker: PresenceTracker) -> None:
        self.tracker = tracker
        _MEMORY_NODES.setdefault(self.hub, set()).add(tracker)

    async def remote(self, channel: str) -> list[Entry]:
        nodes = sorted(_MEMORY_NODES.get(self.hub, ()), key=lambda node: node.node)
        return [entry for node in nodes if node is not self.tracker for entry in node.local(channel)]

    async def close(self) -> None:
        if self.tracker is not None:
            _MEMORY_NODES.get(self.hub, set()).discard(self.tracker)


Command = tuple[Any, ...]


def _one_shard(channel: str) -> int:
    return 0


@dataclass
class _RedisState:
    queue: deque[tuple[int, Command]] = field(default_factory=deque)  # (shard, command) to send, in order
    resync: bool = False  # a write failed: rewrite every channel at the next chance
    failing: bool = False  # the last attempt failed (warn once per outage)


class RedisPresenceStore(PresenceStore):
    """Members of every node in Redis: a hash per node and channel, expiring unless refreshed.

    One task writes, in order: the joins and leaves, batched in pipelines, and every
    ``refresh`` seconds the refresh of each channel with local members (a channel whose
    hash is gone, e.g. after Redis restarted, is written again in full). After a failed
    write the next one rewrites every channel, so Redis converges to this node's state.

    With several Redis servers (a sharded backplane: ``urls`` and its ``shard_index``), a
    channel's keys live on the channel's shard, each written and read there.
    """

    MAX_QUEUED = 10_000
    """Commands waiting for Redis beyond which they are dropped for a full rewrite."""
    CHUNK = 500
    """Channels per pipeline when refreshing."""

    def __init__(
        self,
        urls: Sequence[str],
        prefix: str,
        options: Presence,
        shard_index: Callable[[str], int] = _one_shard,
    ) -> None:
        self.urls = tuple(urls)
        self.shard_index = shard_index
        self.prefix = prefix.encode("utf-8", "surrogatepass") + b"presence:"
        self.ttl_ms = max(1, int(options.ttl * 1000))
        self.refresh = options.refresh_interval
        self.tracker: PresenceTracker | None = None
        self.clients: list[Redis] = []  # one per URL (empty until started)
        self._state = _RedisState()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False  # close() asked the writer to stop after what it is writing
        self._node = b""

    def nodes_key(self, channel: str) -> bytes:
        """The sorted set of the nodes with members in ``channel`` (score: when they expire, ms)."""
        return self.prefix + b"nodes:" + channel.encode("utf-8", "surrogatepass")

    def members_key(self, node: bytes, channel: str) -> bytes:
        """The hash of ``node``'s members of ``channel`` (client -> msgpack info)."""
        return self.prefix + node + b":" + channel.encode("utf-8", "surrogatepass")

    async def start(self, tracker: PresenceTracker) -> None:
        from redis.asyncio import Redis

        from .exceptions import ConnectionFailedError

        self.tracker = tracker
        self._node = tracker.node.encode()
        clients: list[Redis] = [
            Redis.from_url(
                url, socket_connect_timeout=5.0, socket_timeout=5.0, client_name="webshocket-presence", protocol=2
            )
            for url in self.urls
        ]
        try:
            await gather_all(*(redis.ping() for redis in clients))
        except Exception as exc:
            for redis in clients:
                await redis.aclose()
            raise ConnectionFailedError(f"presence cannot reach Redis: {exc}") from exc
        self.clients = clients
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _by_shard(self, channels: Iterable[str]) -> dict[int, list[str]]:
        """``channels`` grouped by the index of their shard."""
        groups: dict[int, list[str]] = {}
        for channel in channels:
            groups.setdefault(self.shard_index(channel), []).append(channel)
        return groups

    # ------------------------------------------------------------------ writes

    def _expiry(self) -> float:
        return time.time() * 1000 + self.ttl_ms

    def joined(self, channel: str, member: _Member) -> None:
        key = self.members_key(self._node, channel)
        nodes = self.nodes_key(channel)
        self._send(
            channel,
            ("HSET", key, member.client, member.packed),
            ("PEXPIRE", key, self.ttl_ms),
            ("ZADD", nodes, self._expiry(), self._node),
            ("PEXPIRE", nodes, self.ttl_ms),
        )

    def left(self, channel: str, member: _Member, emptied: bool) -> None:
        key = self.members_key(self._node, channel)
        if emptied:
            self._send(channel, ("DEL", key), ("ZREM", self.nodes_key(channel), self._node))
        else:
            self._send(channel, ("HDEL", key, member.client))

    def _send(self, channel: str, *commands: Command) -> None:
        state = self._state
        if self._task is None:
            return
        if len(state.queue) + len(commands) > self.MAX_QUEUED:
            state.queue.clear()  # Redis is behind: a full rewrite replaces all of it
            state.resync = True
        else:
            shard = self.shard_index(channel)
            state.queue.extend((shard, command) for command in commands)
        self._wake.set()

    async def _run(self) -> None:
        """The writer: queued commands, refreshes, and rewrites after a failure."""
        loop = asyncio.get_running_loop()
        state = self._state
        next_refresh = loop.time() + self.refresh
        backoff = 0.1
        while True:
            if not state.queue and not state.resync and not self._closing:
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_refresh - loop.time()))
                except (asyncio.TimeoutError, TimeoutError):
                    pass
            self._wake.clear()
            try:
                if state.resync and not self._closing:
                    state.queue.clear()  # the rewrite takes the state as it is now
                    await self._rewrite(list(self._local_channels()))
                    state.resync = False
                await self._flush()
                if self._closing:
                    return  # nothing of ours is in flight: close() removes this node's members next
                if loop.time() >= next_refresh:
                    next_refresh = loop.time() + self.refresh
                    await self._refresh()
                if state.failing:
                    state.failing = False
                    _logger.warning("Presence: Redis is reachable again; this node's members are written again")
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not state.failing:
                    _logger.warning("Presence: writing to Redis failed (%s: %s); retrying", type(exc).__name__, exc)
                state.failing = True
                state.resync = True
                if self._closing:
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.refresh)

    async def _flush(self) -> None:
        queue = self._state.queue
        while queue:
            pipes: dict[int, Any] = {}
            for _ in range(min(len(queue), 1000)):
                shard, command = queue.popleft()
                pipe = pipes.get(shard)
                if pipe is None:
                    pipe = pipes[shard] = self.clients[shard].pipeline(transaction=False)
                pipe.execute_command(*command)
            await gather_all(*(pipe.execute() for pipe in pipes.values()))

    def _local_channels(self) -> Iterable[str]:
        return list(self.tracker.members) if self.tracker is not None else []

    async def _refresh(self) -> None:
        """Extend the life of this node's entries; write again those Redis lost."""
        groups = self._by_shard(self._local_channels())
        await gather_all(*(self._refresh_on(self.clients[shard], group) for shard, group in groups.items()))

    async def _refresh_on(self, redis: Redis, channels: list[str]) -> None:
        for i in range(0, len(channels), self.CHUNK):
            chunk = channels[i : i + self.CHUNK]
            pipe = redis.pipeline(transaction=False)
            expiry = self._expiry()
            for channel in chunk:
                nodes = self.nodes_key(channel)
                pipe.pexpire(self.members_key(self._node, channel), self.ttl_ms)
                pipe.zadd(nodes, {self._node: expiry})
                pipe.pexpire(nodes, self.ttl_ms)
            results = await pipe.execute()
            lost = [channel for k, channel in enumerate(chunk) if not results[3 * k]]
            if lost:
                await self._rewrite_on(redis, lost)

    async def _rewrite(self, channels: list[str]) -> None:
        """Write this node's members of ``channels`` in full, replacing what Redis holds."""
        groups = self._by_shard(channels)
        await gather_all(*(self._rewrite_on(self.clients[shard], group) for shard, group in groups.items()))

    async def _rewrite_on(self, redis: Redis, channels: list[str]) -> None:
        tracker = self.tracker
        if tracker is None:
            return
        for i in range(0, len(channels), self.CHUNK):
            pipe = redis.pipeline(transaction=True)
            expiry = self._expiry()
            for channel in channels[i : i + self.CHUNK]:
                members = tracker.members.get(channel)
                if not members:
                    continue
                key = self.members_key(self._node, channel)
                nodes = self.nodes_key(channel)
                pipe.delete(key)
                pipe.hset(key, mapping={m.client: m.packed for m in members.values()})
                pipe.pexpire(key, self.ttl_ms)
                pipe.zadd(nodes, {self._node: expiry})
                pipe.pexpire(nodes, self.ttl_ms)
            await pipe.execute()

    # ------------------------------------------------------------------ reads

    async def remote(self, channel: str) -> list[Entry]:
        if not self.clients:
            return []
        redis = self.clients[self.shard_index(channel)]
        nodes_key = self.nodes_key(channel)
        now = time.time() * 1000
        limit = self.tracker.options.max_members if self.tracker is not None else 0
        try:
            pipe = redis.pipeline(transaction=False)
            pipe.zremrangebyscore(nodes_key, "-inf", now)  # nodes that stopped refreshing
            pipe.zrangebyscore(nodes_key, now, "+inf")
            _, nodes = await pipe.execute()
            nodes = sorted(node for node in nodes if node != self._node)
            if not nodes:
                return []
            pipe = redis.pipeline(transaction=False)
            for node in nodes:
                pipe.hgetall(self.members_key(node, channel))
            tables = await pipe.execute()
        except Exception as exc:
            raise BackplaneConnectionError(f"presence cannot read Redis: {type(exc).__name__}: {exc}") from exc
        entries: list[Entry] = []
        for table in tables:
            for count, (client, packed) in enumerate(table.items()):
                if count >= limit:  # a node lists at most max_members
                    break
                try:
                    info = msgpack.unpackb(packed, raw=False)
                    if not isinstance(info, dict):
                        raise ValueError("info is not a map")
                    entries.append({"client": client.decode("utf-8", "replace"), "info": info})
                except Exception as exc:  # a foreign or corrupt entry
                    _logger.warning("Presence: ignored an invalid entry in Redis: %s", exc)
        return entries

    # ------------------------------------------------------------------ shutdown

    async def close(self) -> None:
        """Write what is queued (up to 2 s), remove this node's remaining members, disconnect."""
        task, self._task = self._task, None  # (no new commands are queued from now on)
        if task is not None:
            # The writer writes what is queued and stops between two writes: stopped in the middle
            # of one (a refresh), its commands could reach Redis after the removal below.
            self._closing = True
            self._wake.set()
            done, _ = await asyncio.wait([task], timeout=2.0)
            if not done:  # Redis is that slow: what is still queued is dropped (the entries expire)
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        clients, self.clients = self.clients, []
        if not clients:
            return
        try:
            groups = self._by_shard(self._local_channels())
            await gather_all(*(self._remove_on(clients[shard], group) for shard, group in groups.items()))
        except Exception as exc:
            _logger.warning("Presence: could not remove this node's members from Redis (%s); they expire", exc)
        finally:
            for redis in clients:
                await redis.aclose()

    async def _remove_on(self, redis: Redis, channels: list[str]) -> None:
        pipe = redis.pipeline(transaction=False)
        for channel in channels:
            pipe.delete(self.members_key(self._node, channel))
            pipe.zrem(self.nodes_key(channel), self._node)
        await pipe.execute()


# --------------------------------------------------------------------------- wiring


def _redis_store(backplane: Backplane, options: Presence) -> RedisPresenceStore | None:
    """The presence store of a Redis backplane (one server or sharded); None for another kind."""
    try:
        from .redis_backplane import RedisBackplane
        from .redis_shards import ShardedRedisBackplane
    except ImportError:  # no redis client installed: it cannot be a Redis backplane
        return None
    if isinstance(backplane, ShardedRedisBackplane):
        return RedisPresenceStore(backplane.urls, backplane.channel_prefix, options, backplane.shard_index)
    if isinstance(backplane, RedisBackplane):
        return RedisPresenceStore((backplane.url,), backplane.channel_prefix, options)
    return None


async def start_presence(options: Presence, publish: Publish, backplane: Backplane | None) -> PresenceTracker:
    """A started tracker whose store matches the server's backplane."""
    tracker = PresenceTracker(options, publish)
    store: PresenceStore
    if backplane is None:
        store = PresenceStore()
    elif isinstance(backplane, MemoryBackplane):
        store = MemoryPresenceStore(backplane.hub)
    else:
        redis_store = _redis_store(backplane, options)
        if redis_store is None:
            _logger.warning("Presence covers this node only: %s has no presence store", type(backplane).__name__)
        store = redis_store or PresenceStore()
    await store.start(tracker)
    tracker.store = store
    return tracker
