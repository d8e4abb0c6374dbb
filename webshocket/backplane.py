"""Scale-out: a backplane carries publishes and broadcasts between server nodes.

Each node delivers a publish to its own subscribers at once, and hands it to the
backplane encoded once (the msgpack packet, inside a small envelope). Other nodes
receive the envelope and fan it out to their subscribers through the same path as
a local publish; predicates travel as data and are evaluated by each receiving
node against its own connections.

A node tells the backplane which channels and patterns it has local subscribers
for (first subscriber in, last one out), so a node only receives what it needs.

Implementations: :class:`MemoryBackplane` (nodes in one process),
:class:`webshocket.redis_backplane.RedisBackplane` (``backplane="redis://..."``) and
:class:`webshocket.redis_shards.ShardedRedisBackplane` (several Redis servers, a channel on each).

Trust: the backplane is inside the trust boundary. Whoever can publish to it (to Redis)
can deliver any packet to any client, including replies that resolve a client's pending
call; protect Redis like the servers themselves (network, ``requirepass``/ACL, TLS). What
a forged or corrupt envelope cannot do is stop the node: invalid ones are dropped and
logged, the table of origins is bounded (``MAX_ORIGINS``), and a forged sequence number
silences nobody for more than one envelope (``REPLAY_WINDOW``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Protocol

import msgpack

from .predicate import predicate_from_spec, predicate_spec

if TYPE_CHECKING:
    from .typing import RPC_Predicate

__all__ = ["Backplane", "BackplaneBridge", "MemoryBackplane", "MemoryHub", "predicate_from_spec", "predicate_spec"]

_logger = logging.getLogger("webshocket.backplane")
ENVELOPE_VERSION = 1
RECORDED_ENVELOPE_VERSION = 2
"""An envelope Redis completes (recovery with the Redis backplane): the packet, last, carries the
offset and epoch Redis gave it; every node delivers it, the publishing node included."""
MAX_EXCLUDES = 1024
"""Own recorded publishes whose ``exclude`` set a node keeps until they come back from Redis."""
KIND_BROADCAST = 1
KIND_CHANNEL = 2
REPLAY_WINDOW = 4096
"""Sequence numbers of one origin this far below the last one seen are repeats (dropped)."""
MAX_ORIGINS = 4096
"""Origin nodes (per lane, see :class:`Deliver`) whose last sequence number a node remembers."""


class Deliver(Protocol):
    """What a backplane calls for each envelope it receives.

    ``lane`` says which ordered stream the envelope came through (say, which Redis server):
    the envelopes of one origin arrive in order within a lane, not across lanes. A backplane
    with one ordered stream leaves it at 0.
    """

    def __call__(self, envelope: bytes, lane: int = 0) -> None: ...


Origin = bytes | tuple[bytes, int]
"""Whose envelopes one sequence of numbers orders: a node's id (lane 0), or its id and a lane."""
DeliverRemote = Callable[[bool, "str | None", bytes, "RPC_Predicate | None", Any], None]


class Backplane(ABC):
    """Transport of envelopes between nodes.

    The server calls :meth:`start` once, then :meth:`subscribe` / :meth:`unsubscribe`
    as its local subscriptions come and go (exact names and fnmatch patterns),
    :meth:`publish` for every publish (``channel``) and broadcast (``None``), and
    :meth:`close` at shutdown. The backplane calls ``deliver(envelope)`` for every
    envelope published on any node (its own included) to a channel matching one of
    this node's subscriptions, and for every broadcast. A node may receive one
    envelope more than once (say, through an exact and a pattern subscription): the
    bridge drops repeats. A backplane that receives through several connections passes
    which one as ``deliver(envelope, lane)``, so that order is only assumed within a lane.
    """

    @abstractmethod
    async def start(self, deliver: Deliver) -> None:
        """Connect. Raise a clear error if the backplane cannot be reached."""

    @abstractmethod
    def subscribe(self, name: str) -> None:
        """This node has its first subscriber for channel or pattern ``name``."""

    @abstractmethod
    def unsubscribe(self, name: str) -> None:
        """This node's last subscriber for channel or pattern ``name`` left."""

    @abstractmethod
    def publish(self, channel: str | None, envelope: bytes) -> None:
        """Send ``envelope`` to the nodes subscribed to ``channel`` (``None``: to every node)."""

    @abstractmethod
    async def close(self) -> None:
        """Disconnect."""

    async def sync(self, timeout: float | None = 5.0) -> bool:
        """Wait until the subscribe/unsubscribe calls made so far are in effect; False if not."""
        return True


# --------------------------------------------------------------------------- the node's side


class BackplaneBridge:
    """Connects one server to a backplane: envelopes out, deliveries in.

    ``deliver_remote(broadcast, channel, packet, predicate)`` fans out what arrives
    from other nodes to this node's clients (:meth:`webshocket.hub.Hub.deliver_remote`).
    """

    def __init__(self, deliver_remote: DeliverRemote, backplane: Backplane) -> None:
        self.deliver_remote = deliver_remote
        self.backplane = backplane
        self.node_id = os.urandom(8)
        self._seq = 0
        # origin node (lane 0) or (origin node, lane) -> last sequence number delivered; the least
        # recently heard from go first
        self._last_seen: OrderedDict[Origin, int] = OrderedDict()
        self.received = 0
        self.duplicates = 0
        self._excluded: OrderedDict[int, Any] = OrderedDict()  # own recorded publish -> its exclude set

    @property
    def origins(self) -> int:
        """Origin nodes (per lane) this node remembers the last sequence number of (at most ``MAX_ORIGINS``)."""
        return len(self._last_seen)

    async def start(self) -> None:
        await self.backplane.start(self.deliver)

    async def close(self) -> None:
        await self.backplane.close()

    def subscribed(self, name: str) -> None:
        self.backplane.subscribe(name)

    def unsubscribed(self, name: str) -> None:
        self.backplane.unsubscribe(name)

    def publish(self, channel: str | None, packet: bytes, spec: Any) -> None:
        """Send a packet (msgpack, as written to framework clients) to the other nodes.

        ``spec`` is the :func:`predicate_spec` of the publish's predicate.
        """
        self._seq += 1
        kind = KIND_BROADCAST if channel is None else KIND_CHANNEL
        envelope = msgpack.packb(
            [ENVELOPE_VERSION, self.node_id, self._seq, kind, channel, packet, spec], use_bin_type=True
        )
        self.backplane.publish(channel, envelope)

    def recorded_head(self, channel: str, spec: Any, excluded: Any) -> bytes:
        """The start of a recorded publish's envelope: Redis appends the packet (see
        :data:`RECORDED_ENVELOPE_VERSION`). ``excluded`` applies when it comes back here."""
        self._seq += 1
        if excluded:
            self._excluded[self._seq] = excluded
            if len(self._excluded) > MAX_EXCLUDES:
                self._excluded.popitem(last=False)
        fields = (RECORDED_ENVELOPE_VERSION, self.node_id, self._seq, KIND_CHANNEL, channel, spec)
        return b"\x97" + b"".join(msgpack.packb(field, use_bin_type=True) for field in fields)

    def deliver(self, envelope: bytes, lane: int = 0) -> None:
        """An envelope arrived from the backplane (through ``lane``): fan it out to this node's clients."""
        excluded: Any = ()
        try:
            fields = msgpack.unpackb(envelope, raw=False)
            if not isinstance(fields, list) or len(fields) != 7:
                raise ValueError("not an envelope")
            version, origin, seq, kind, channel = fields[:5]
            if version == ENVELOPE_VERSION:
                packet, spec = fields[5:]
                if origin == self.node_id:
                    return  # delivered locally when it was published
            elif version == RECORDED_ENVELOPE_VERSION:  # every node delivers it, this one too
                spec, packet = fields[5:]
                if origin == self.node_id:
                    excluded = self._excluded.pop(seq, ())
            else:
                raise ValueError(f"envelope version {version}")
            if not isinstance(seq, int) or not isinstance(origin, bytes):
                raise ValueError("bad origin or sequence number")
            if self._is_repeat(origin if not lane else (origin, lane), seq):  # (no tuple on one lane)
                self.duplicates += 1
                return
            predicate = predicate_from_spec(spec)
        except Exception as exc:  # a foreign or corrupt message on the backplane
            _logger.warning("Dropped an invalid backplane message (%d bytes): %s", len(envelope), exc)
            return
        self.received += 1
        self.deliver_remote(kind == KIND_BROADCAST, channel, packet, predicate, excluded)

    def _is_repeat(self, origin: Origin, seq: int) -> bool:
        """Has this node delivered envelope ``seq`` of ``origin`` already? (and remember it)

        A repeat is a sequence number at most ``REPLAY_WINDOW`` below the last one seen: a
        node can receive one envelope twice (an exact and a pattern subscription), never long
        after. A number far below the last one means the origin restarted, or the last one was
        forged: either way it is delivered and becomes the last one, so a forged far-future
        number silences an origin for one envelope at most. Origins are forgotten least
        recently heard first, beyond ``MAX_ORIGINS``.

        The last number is kept per lane (``origin`` is the node's id on lane 0, ``(id, lane)``
        on another): one origin's envelopes are in order within a lane only (sharded Redis: each
        shard is a connection of its own, read independently), so a lower number arriving on
        another lane after a higher one is new, not a repeat.
        """
        seen = self._last_seen
        last = seen.get(origin)
        if last is not None and last - REPLAY_WINDOW < seq <= last:
            return True
        seen[origin] = seq
        seen.move_to_end(origin)
        if len(seen) > MAX_ORIGINS:
            seen.popitem(last=False)
        return False


# --------------------------------------------------------------------------- in-process backplane


class MemoryHub:
    """Connects :class:`MemoryBackplane` nodes living in one process (tests, embedding)."""

    def __init__(self) -> None:
        self.nodes: list[MemoryBackplane] = []


class MemoryBackplane(Backplane):
    """A backplane between servers of one process, through a shared :class:`MemoryHub`.

    Deliveries are made on the next loop iteration, in publish order.
    """

    def __init__(self, hub: MemoryHub) -> None:
        self.hub = hub
        self.names: set[str] = set()
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self.hub.nodes.append(self)

    def subscribe(self, name: str) -> None:
        self.names.add(name)

    def unsubscribe(self, name: str) -> None:
        self.names.discard(name)

    def publish(self, channel: str | None, envelope: bytes) -> None:
        loop = asyncio.get_running_loop()
        for node in self.hub.nodes:
            deliver = node._deliver
            if deliver is None:
                continue
            if channel is None or any(fnmatchcase(channel, name) for name in node.names):
                loop.call_soon(deliver, envelope)

    async def close(self) -> None:
        if self in self.hub.nodes:
            self.hub.nodes.remove(self)
        self._deliver = None
