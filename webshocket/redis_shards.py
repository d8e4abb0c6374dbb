"""Sharded Redis backplane: the channels spread over several Redis servers.

``WebSocketServer(..., backplane=["redis://a:6379/0", "redis://b:6379/0"])``, or the string
``"redis://a:6379/0,redis://b:6379/0"`` (which ``--backplane`` and ``WEBSHOCKET_BACKPLANE`` take
too), uses it. One Redis server spends CPU on every ``PUBLISH`` and on every node subscribed to
its channel; past what one core carries, each channel is given to one of several servers:

* every shard is a :class:`~webshocket.redis_backplane.RedisBackplane` of its own (two
  connections, batched subscriptions, reconnection with backoff, ``stats``), all with the same
  options and channel prefix;
* channel ``C`` lives on shard ``zlib.crc32(P + "c:" + C) % N``, the CRC-32 of its Redis
  channel (:func:`shard_of`): the same on every node and every run, **provided every node lists
  the same shards in the same order** (another order or number of shards splits the cluster);
* a publish goes to its channel's shard; an exact or literal subscription is made on its
  channel's shard only, a pattern subscription on every shard (its channels may be anywhere);
* a broadcast goes through shard 0 (each node is subscribed to broadcasts on every shard), or,
  while this node is disconnected from shard 0, through the next shard it is connected to.

Order: a node's publishes to one channel arrive in order (one shard, one connection), but
publishes to channels of different shards travel on different connections and may overtake
each other. The bridge therefore tells repeats by origin *and* shard: each shard delivers
with its index as the ``lane`` (:class:`~webshocket.backplane.Deliver`).

Failures are per shard: when a shard's Redis is unreachable, publishes to its channels are
dropped (counted in its ``stats``) until it reconnects; the other shards' channels, and pattern
subscriptions on them, keep flowing. ``stats`` sums the shards' counters, ``shards[i].stats``
has one shard's.

Each shard must be a different Redis server: pub/sub ignores the database number, so two
URLs of one server (``/0`` and ``/1``) would deliver broadcasts and pattern matches twice.
Two URLs naming the same host and port are refused.

With ``recovery=``, :class:`~webshocket.redis_recovery.RedisStore` keeps a channel's history
on the channel's shard (see there for what that means to the order of missed messages), and
presence keeps a channel's members on the channel's shard.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from urllib.parse import urlsplit

from .backplane import Backplane, Deliver
from .channels import is_pattern, literal_name
from .redis_backplane import RedisBackplane, _safe_url

__all__ = ["ShardedRedisBackplane", "shard_of"]


def shard_of(key: bytes, count: int) -> int:
    """The shard (0 to ``count - 1``) of Redis channel or key ``key``: ``zlib.crc32(key) % count``."""
    return zlib.crc32(key) % count


def _server(url: str) -> str:
    """The Redis server ``url`` names (host and port, or socket path), whatever its database."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return "unix:" + parts.path
        return f"{(parts.hostname or 'localhost').lower()}:{parts.port or 6379}"
    except ValueError:  # reported by the shard when it starts
        return url


def _on_lane(deliver: Deliver, index: int) -> Deliver:
    """``deliver`` with every envelope marked as arriving through lane ``index``."""
    if not index:
        return deliver

    def deliver_on_lane(envelope: bytes, lane: int = index) -> None:
        deliver(envelope, index)

    return deliver_on_lane


class ShardedRedisBackplane(Backplane):
    """Backplane over several Redis servers, each channel on one of them.

    Args:
        urls: one Redis URL per shard (``redis://``, ``rediss://``, ``unix://``), in the same
            order on every node.
        channel_prefix, connect_timeout, health_check_interval, max_backoff, max_pending,
        flush_delay: as for :class:`~webshocket.redis_backplane.RedisBackplane`, each shard's.

    Raises:
        ValueError: no URL, or two URLs of the same Redis server.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        channel_prefix: str = "webshocket:",
        connect_timeout: float = 5.0,
        health_check_interval: float = 5.0,
        max_backoff: float = 2.0,
        max_pending: int = 100_000,
        flush_delay: float = 0.0,
    ) -> None:
        if isinstance(urls, str):
            raise TypeError("urls must be a list of Redis URLs, not one str")
        if not urls:
            raise ValueError("a sharded Redis backplane needs at least one Redis URL")
        servers: dict[str, str] = {}
        for url in urls:
            server = _server(url)
            if server in servers:
                raise ValueError(
                    f"Redis shards {_safe_url(servers[server])!r} and {_safe_url(url)!r} are one Redis server: "
                    "give each shard its own server (pub/sub ignores the database number)"
                )
            servers[server] = url
        self.urls = tuple(urls)
        self.channel_prefix = channel_prefix
        self.unreachable: str | None = None
        """The URL of the shard that made the last :meth:`start` fail (None: it did not fail)."""
        self.shards: tuple[RedisBackplane, ...] = tuple(
            RedisBackplane(
                url,
                channel_prefix=channel_prefix,
                connect_timeout=connect_timeout,
                health_check_interval=health_check_interval,
                max_backoff=max_backoff,
                max_pending=max_pending,
                flush_delay=flush_delay,
            )
            for url in urls
        )

    # ------------------------------------------------------------------ routing

    def shard_index(self, channel: str) -> int:
        """Index in :attr:`shards` of the Redis server that carries ``channel``."""
        return shard_of(self.shards[0].channel_key(channel), len(self.shards))

    def shard_for(self, channel: str) -> RedisBackplane:
        """The shard that carries ``channel``."""
        return self.shards[self.shard_index(channel)]

    def channel_key(self, channel: str) -> bytes:
        """The Redis channel a publish to ``channel`` goes to (on its shard)."""
        return self.shards[0].channel_key(channel)

    def _shards_of(self, name: str) -> Sequence[RedisBackplane]:
        """The shards a subscription to channel or pattern ``name`` is made on."""
        if is_pattern(name):
            single = literal_name(name)
            return self.shards if single is None else (self.shard_for(single),)
        return (self.shard_for(name),)

    # ------------------------------------------------------------------ Backplane interface

    @property
    def connected(self) -> bool:
        """True while every shard is connected."""
        return all(shard.connected for shard in self.shards)

    @property
    def stats(self) -> dict[str, int]:
        """The shards' counters (see ``RedisBackplane``), summed."""
        total = dict.fromkeys(self.shards[0].stats, 0)
        for shard in self.shards:
            for name, value in shard.stats.items():
                total[name] += value
        return total

    async def start(self, deliver: Deliver) -> None:
        """Connect to every shard (at once).

        Raises:
            ConnectionFailedError: a shard cannot be reached (the message names its URL); the
                shards that could be are disconnected again.
        """
        starts = (shard.start(_on_lane(deliver, lane)) for lane, shard in enumerate(self.shards))
        results = await asyncio.gather(*starts, return_exceptions=True)
        failed = [
            (shard, error)
            for shard, error in zip(self.shards, results, strict=True)
            if isinstance(error, BaseException)
        ]
        self.unreachable = failed[0][0].url if failed else None
        if failed:
            started = [shard for shard, result in zip(self.shards, results, strict=True) if result is None]
            await asyncio.gather(*(shard.close() for shard in started), return_exceptions=True)
            raise failed[0][1]

    def subscribe(self, name: str) -> None:
        for shard in self._shards_of(name):
            shard.subscribe(name)

    def unsubscribe(self, name: str) -> None:
        for shard in self._shards_of(name):
            shard.unsubscribe(name)

    def publish(self, channel: str | None, envelope: bytes) -> None:
        if channel is not None:
            self.shard_for(channel).publish(channel, envelope)
            return
        for shard in self.shards:  # a broadcast: shard 0, or the first one up
            if shard.connected:
                shard.publish(None, envelope)
                return
        self.shards[0].publish(None, envelope)  # none is up: counted as dropped there

    def load_script(self, script: bytes) -> bytes:
        """Have ``script`` loaded on every shard (see ``RedisBackplane.load_script``); returns its SHA1."""
        sha = b""
        for shard in self.shards:
            sha = shard.load_script(script)
        return sha

    async def sync(self, timeout: float | None = 5.0) -> bool:
        """Wait until every shard applied the subscription changes made so far; False if one did not."""
        return all(await asyncio.gather(*(shard.sync(timeout) for shard in self.shards)))

    async def close(self) -> None:
        """Send what each shard has queued (up to 2 s), then disconnect from all."""
        await asyncio.gather(*(shard.close() for shard in self.shards))
