"""Channel history and sessions in Redis: recovery across the nodes of a Redis backplane.

With ``recovery=`` and ``backplane="redis://..."`` each node keeps nothing of its own: a
publish runs one Lua script in Redis (queued in order with the node's other publishes,
one round trip, pipelined) that gives the message the channel's next offset, appends it
to the channel's history (a Redis Stream trimmed to ``history_size`` entries and
``history_ttl``) and publishes it to every node, the publishing node included, with its
position already in the packet. All nodes therefore see one order per channel.

Sessions are kept under a key per token with a time-to-live of ``session_ttl``: a node
writes a snapshot of each of its session connections every ``snapshot_interval``
seconds and when one ends, so a client whose node died (even by SIGKILL) resumes on
another node with its state as of the last snapshot. Session values must be msgpack
serializable to survive a move between nodes (others are left out, with a warning). A
resume takes the snapshot atomically (``GETDEL``) and leaves a tombstone, so a token
resumes once.

Keys (``P`` is the backplane's channel prefix, ``C`` the channel):
``P h:C`` the stream, ``P m:C`` its offset, epoch and last times, ``P seq`` the
publish sequence, ``P s:TOKEN`` a session, ``P t:TOKEN`` a resumed session's tombstone.

On a sharded backplane (:class:`~webshocket.redis_shards.ShardedRedisBackplane`) each
channel's keys, publish script and history reads go to the channel's shard, each session's
keys to the shard ``zlib.crc32(TOKEN) % N``, and a pattern's channels are found by scanning
every shard. ``P seq`` is then one counter per shard, so the missed messages a resume
delivers are in publish order per channel and among the channels of one shard, but not
across shards: the shards' lists are interleaved by the time each entry got from its own
Redis (each list's order kept), which is only as close to publish order as the servers'
clocks agree. A subscription's start is read from the clocks of all shards and the earliest
is taken, so a clock that is ahead replays a little more, never less.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import secrets
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import msgpack
from redis.asyncio import Redis

from ._codec import decode_packet
from ._fanout import Outgoing
from .packets import Packet
from .recovery import Recovery, Snapshot, split_subscriptions
from .utils import gather_all

if TYPE_CHECKING:
    from .redis_backplane import RedisBackplane
    from .redis_shards import ShardedRedisBackplane

__all__ = ["RedisStore"]

_logger = logging.getLogger("webshocket.recovery")

PUBLISH_SCRIPT = b"""
local m = redis.call('HMGET', KEYS[1], 'e', 't', 'x')
local epoch = m[1] or ARGV[5]
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
local seq = redis.call('INCR', KEYS[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[7])
local body = ARGV[3] .. cmsgpack.pack(offset) .. ARGV[4] .. cmsgpack.pack(epoch)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[6], '*', 'o', offset, 's', seq, 'p', m[2] or '0', 'b', body)
if not m[3] or now - tonumber(m[3]) > ttl / 10 then
  redis.call('HSET', KEYS[1], 't', now, 'e', epoch, 'x', now)
  redis.call('XTRIM', KEYS[2], 'MINID', now - ttl)
  redis.call('PEXPIRE', KEYS[1], ttl + ttl / 10)
  redis.call('PEXPIRE', KEYS[2], ttl + ttl / 10)
else
  redis.call('HSET', KEYS[1], 't', now)
end
redis.call('PUBLISH', ARGV[1], ARGV[2] .. string.char(198) .. struct.pack('>I4', #body) .. body)
return offset
"""
"""KEYS: meta, stream, sequence. ARGV: Redis channel, envelope head, packet up to the offset's
value, the packed "epoch" key, an epoch for a new history, history size, history TTL (ms).

Seven Redis calls per publish. The age limit is applied (``XTRIM MINID``) and the keys'
time-to-live refreshed at most every tenth of ``history_ttl`` (field ``x`` of the meta hash),
with a time-to-live of 1.1 x ``history_ttl``: a message stays at least ``history_ttl``, and
at most a tenth longer. The size limit is exact on every publish."""

SAVE_SCRIPT = b"""
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
"""Park or refresh a session unless it was resumed (KEYS: session, tombstone)."""

CLAIM_SCRIPT = b"""
local value = redis.call('GET', KEYS[1])
if not value then return false end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return value
"""
"""Take a session once (KEYS: session, tombstone)."""

CLOCK_MARGIN_MS = 1000
"""A subscription counts as started this long before the node's reading of Redis's clock:
a message published on a channel just before the subscription may be replayed on resume,
none published after it is lost."""

SessionSource = Callable[[], Iterable[tuple[str, Snapshot]]]
Found = list[tuple[int, int, Outgoing]]
"""Missed messages of one shard: (publish sequence number, Redis time in ms, message)."""


def _packed(value: Any) -> bytes:
    return bytes(msgpack.packb(value, use_bin_type=True))


class RedisStore:
    """Channel history and sessions in Redis, shared by the nodes of one backplane."""

    shared = True

    def __init__(self, config: Recovery, backplane: RedisBackplane | ShardedRedisBackplane) -> None:
        self.config = config
        self.backplane = backplane
        shards = backplane.shards
        self.single = shards[0] if len(shards) == 1 else None  # one Redis: no routing per publish
        prefix = backplane.channel_prefix.encode("utf-8", "surrogatepass")
        self.prefix = prefix
        self.clients: list[Redis] = []  # one per shard, as backplane.shards (empty until started)
        self.clock_offset_ms = 0.0  # Redis's clock minus ours (the earliest clock of the shards)
        self.publish_sha = backplane.load_script(PUBLISH_SCRIPT)
        self.ttl_ms = b"%d" % max(1, int(config.history_ttl * 1000))
        self.size = b"%d" % config.history_size
        self.session_ms = max(1, int(config.session_ttl * 1000))
        self.sessions: SessionSource | None = None
        self.task: asyncio.Task[None] | None = None
        self.writes: set[asyncio.Task[Any]] = set()
        self.unserializable: set[str] = set()  # session keys already warned about

    # ------------------------------------------------------------------ lifecycle

    async def start(self, sessions: SessionSource) -> None:
        """Connect, read Redis's clock, and snapshot ``sessions()`` every ``snapshot_interval``."""
        self.clients = [Redis.from_url(shard.url) for shard in self.backplane.shards]
        clocks = await gather_all(*(client.time() for client in self.clients))
        now = time.time() * 1000
        self.clock_offset_ms = min(seconds * 1000 + micros / 1000 for seconds, micros in clocks) - now
        self.sessions = sessions
        self.task = asyncio.get_running_loop().create_task(self._snapshots())

    async def close(self) -> None:
        """Write the final snapshots and disconnect."""
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.writes:
            await asyncio.gather(*self.writes, return_exceptions=True)
        clients, self.clients = self.clients, []
        for client in clients:
            await client.aclose()

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(self.config.snapshot_interval)
            try:
                await self.save_all()
            except Exception as exc:  # Redis down: the backplane reconnects; try again next time
                _logger.warning("Recovery: could not write session snapshots to Redis: %s", exc)

    async def save_all(self) -> None:
        """Write a snapshot of every session connection of this node (pipelined)."""
        if not self.clients or self.sessions is None:
            return
        pipes = [client.pipeline(transaction=False) for client in self.clients]
        counts = [0] * len(pipes)
        for token, snapshot in self.sessions():
            shard = self._session_shard(token)
            pipes[shard].eval(SAVE_SCRIPT.decode(), 2, *self._keys(token), self._encode(snapshot), self.session_ms)
            counts[shard] += 1
        await gather_all(*(pipe.execute() for pipe, count in zip(pipes, counts, strict=True) if count))

    # ------------------------------------------------------------------ publishing

    @property
    def seq(self) -> int:
        """Where a subscription made now starts: Redis's time in ms (see :data:`CLOCK_MARGIN_MS`)."""
        return int(time.time() * 1000 + self.clock_offset_ms) - CLOCK_MARGIN_MS

    def publish(self, channel: str, packet: bytes, head: bytes) -> None:
        """Publish ``packet`` (msgpack, a CHANNEL packet without position) through Redis."""
        count = packet[0] & 0x0F  # a packet is a fixmap (at most 8 keys): 2 more for offset and epoch
        prefix = bytes((0x80 | (count + 2),)) + packet[1:] + _packed("offset")
        shard = self.single or self.backplane.shard_for(channel)
        shard.command(
            b"EVALSHA",
            self.publish_sha,
            b"3",
            self._key(b"m:", channel),
            self._key(b"h:", channel),
            self.prefix + b"seq",
            shard.channel_key(channel),
            head,
            prefix,
            _packed("epoch"),
            secrets.token_hex(4).encode(),
            self.size,
            self.ttl_ms,
        )

    def _key(self, kind: bytes, channel: str) -> bytes:
        return self.prefix + kind + channel.encode("utf-8", "surrogatepass")

    def _client(self, channel: str) -> Redis:
        """The Redis client of ``channel``'s shard."""
        return self.clients[self.backplane.shard_index(channel)]

    # ------------------------------------------------------------------ history

    async def recent(self, channel: str, limit: int | None) -> list[Packet[Any]]:
        """The messages of ``channel`` still in its history, oldest first (at most the last ``limit``)."""
        if limit is not None and limit <= 0:
            return []
        redis = self._client(channel)
        entries: Any
        if limit is None:
            entries = await redis.xrange(self._key(b"h:", channel))
        else:
            newest: Any = await redis.xrevrange(self._key(b"h:", channel), count=limit)
            entries = list(reversed(newest or []))
        return [decode_packet(fields[b"b"], False) for _id, fields in entries]

    async def latest(self, channel: str) -> Outgoing | None:
        """The last message of ``channel`` still in its history."""
        entries: Any = await self._client(channel).xrevrange(self._key(b"h:", channel), count=1)
        return Outgoing.from_msgpack(entries[0][1][b"b"]) if entries else None

    async def missed(
        self, subscriptions: Mapping[str, int], positions: Mapping[str, tuple[str, int]]
    ) -> list[Outgoing] | None:
        """What a session with these subscriptions missed, in publish order; None if some may be lost.

        With shards: in publish order per shard, the shards interleaved by Redis time (see above).
        """
        channels, patterns = split_subscriptions(subscriptions)
        for pattern, start in patterns.items():
            for name in await self._channels_matching(pattern):
                channels[name] = min(start, channels.get(name, start))
        if not channels:
            return []
        by_shard: dict[int, list[str]] = {}
        for name in channels:
            by_shard.setdefault(self.backplane.shard_index(name), []).append(name)
        reads = (self._missed_on(self.clients[shard], names, channels, positions) for shard, names in by_shard.items())
        found = await gather_all(*reads)
        if any(picked is None for picked in found):
            return None
        lists = [picked for picked in found if picked is not None]
        ordered = lists[0] if len(lists) == 1 else heapq.merge(*lists, key=_by_time)
        return [out for _seq, _ms, out in ordered]

    async def _missed_on(
        self, redis: Redis, names: list[str], starts: Mapping[str, int], positions: Mapping[str, tuple[str, int]]
    ) -> Found | None:
        """What was missed on channels ``names`` of one shard, by publish sequence; None if some are lost."""
        pipe = redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self._key(b"m:", name))
            pipe.xrange(self._key(b"h:", name))
        replies = await pipe.execute()
        found: Found = []
        for i, name in enumerate(names):
            meta: dict[bytes, bytes] = replies[2 * i]
            entries: list[tuple[bytes, dict[bytes, bytes]]] = replies[2 * i + 1]
            picked = _missed_in(meta, entries, starts[name], positions.get(name))
            if picked is None:
                return None
            found.extend(picked)
        found.sort(key=_by_sequence)
        return found

    async def _channels_matching(self, pattern: str) -> list[str]:
        """Channels with history that ``pattern`` matches (a SCAN of the history keys of every shard)."""
        names: list[str] = []
        for found in await gather_all(*(self._scan(client, pattern) for client in self.clients)):
            names.extend(found)
        return names

    async def _scan(self, redis: Redis, pattern: str) -> list[str]:
        start = len(self.prefix) + 2
        names = []
        async for key in redis.scan_iter(match=self.prefix + b"h:*", count=1000):
            name = key[start:].decode("utf-8", "surrogatepass")
            if fnmatchcase(name, pattern):
                names.append(name)
        return names

    # ------------------------------------------------------------------ sessions

    def park(self, token: str, snapshot: Snapshot) -> None:
        """Keep a session that ended for ``session_ttl`` (written in the background)."""
        self._write(self._save(token, snapshot))

    def forget(self, token: str) -> None:
        """A session that ended on purpose: it cannot be resumed."""
        if self.clients:
            self._write(self.clients[self._session_shard(token)].delete(self._keys(token)[0]))

    async def _save(self, token: str, snapshot: Snapshot) -> None:
        redis = self.clients[self._session_shard(token)]
        await redis.eval(SAVE_SCRIPT.decode(), 2, *self._keys(token), self._encode(snapshot), self.session_ms)

    async def settle(self) -> None:
        """Wait for the session writes under way (a takeover parks, then claims at once)."""
        if self.writes:
            await asyncio.gather(*self.writes, return_exceptions=True)

    def _write(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self.writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Future[Any]) -> None:
        self.writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _logger.warning("Recovery: a session write to Redis failed: %s", task.exception())

    async def claim(self, token: str) -> Snapshot | None:
        """Take the session of ``token`` (once); None if there is none."""
        if not self.clients or len(token) > 64:
            return None
        redis = self.clients[self._session_shard(token)]
        raw = await redis.eval(CLAIM_SCRIPT.decode(), 2, *self._keys(token), self.session_ms)
        if raw is None:
            return None
        try:
            state, subscriptions = msgpack.unpackb(raw, raw=False)
            return Snapshot(dict(state), {str(name): int(start) for name, start in subscriptions.items()})
        except Exception as exc:
            _logger.warning("Recovery: dropped an unreadable session snapshot: %s", exc)
            return None

    def _session_shard(self, token: str) -> int:
        """Index of the shard (client) that keeps the session of ``token``."""
        count = len(self.clients)
        return zlib.crc32(token.encode("utf-8", "surrogatepass")) % count if count > 1 else 0

    def _keys(self, token: str) -> tuple[bytes, bytes]:
        raw = token.encode("utf-8", "surrogatepass")
        return self.prefix + b"s:" + raw, self.prefix + b"t:" + raw

    def _encode(self, snapshot: Snapshot) -> bytes:
        state = {}
        for key, value in snapshot.state.items():
            try:
                _packed(value)
            except Exception:
                if key not in self.unserializable:
                    self.unserializable.add(key)
                    _logger.warning(
                        "Recovery: session value %r is not msgpack-serializable: it does not survive a move "
                        "to another node",
                        key,
                    )
                continue
            state[key] = value
        return _packed([state, snapshot.subscriptions])


def _by_sequence(item: tuple[int, int, Outgoing]) -> int:
    return item[0]


def _by_time(item: tuple[int, int, Outgoing]) -> int:
    return item[1]


def _entry_ms(entry_id: bytes) -> int:
    """The Redis time (ms) of a stream entry, from its ID."""
    return int(entry_id.split(b"-")[0])


def _missed_in(
    meta: dict[bytes, bytes],
    entries: list[tuple[bytes, dict[bytes, bytes]]],
    start: int,
    position: tuple[str, int] | None,
) -> Found | None:
    """The entries of one channel a session missed (sequence, time, message); None if some are lost."""
    if not meta:  # no history (none published, or it expired)
        return None if position is not None else []
    if position is not None:
        epoch, seen = position
        last = int(meta.get(b"o", 0))
        if epoch != meta.get(b"e", b"").decode() or seen > last or seen < 0:
            return None
        lowest = int(entries[0][1][b"o"]) if entries else last + 1
        if seen + 1 < lowest:
            return None  # trimmed past what the client saw
        return [(int(f[b"s"]), _entry_ms(i), Outgoing.from_msgpack(f[b"b"])) for i, f in entries if int(f[b"o"]) > seen]
    if entries:
        if int(entries[0][1][b"p"]) > start:
            return None  # an entry published after the subscription started was trimmed
    elif int(meta.get(b"t", 0)) > start:
        return None
    picked = []
    for entry_id, f in entries:
        ms = _entry_ms(entry_id)
        if ms > start:
            picked.append((int(f[b"s"]), ms, Outgoing.from_msgpack(f[b"b"])))
    return picked
