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
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import msgpack
from redis.asyncio import Redis

from ._codec import decode_packet
from ._fanout import Outgoing
from .packets import Packet
from .recovery import Recovery, Snapshot, by_sequence, split_subscriptions

if TYPE_CHECKING:
    from .redis_backplane import RedisBackplane

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


def _packed(value: Any) -> bytes:
    return bytes(msgpack.packb(value, use_bin_type=True))


class RedisStore:
    """Channel history and sessions in Redis, shared by the nodes of one backplane."""

    shared = True

    def __init__(self, config: Recovery, backplane: RedisBackplane) -> None:
        self.config = config
        self.backplane = backplane
        prefix = backplane.channel_prefix.encode("utf-8", "surrogatepass")
        self.prefix = prefix
        self.redis: Redis | None = None
        self.clock_offset_ms = 0.0  # Redis's clock minus ours
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
        self.redis = Redis.from_url(self.backplane.url)
        seconds, micros = await self.redis.time()
        self.clock_offset_ms = seconds * 1000 + micros / 1000 - time.time() * 1000
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
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(self.config.snapshot_interval)
            try:
                await self.save_all()
            except Exception as exc:  # Redis down: the backplane reconnects; try again next time
                _logger.warning("Recovery: could not write session snapshots to Redis: %s", exc)

    async def save_all(self) -> None:
        """Write a snapshot of every session connection of this node (pipelined)."""
        if self.redis is None or self.sessions is None:
            return
        pipe = self.redis.pipeline(transaction=False)
        count = 0
        for token, snapshot in self.sessions():
            pipe.eval(SAVE_SCRIPT.decode(), 2, *self._keys(token), self._encode(snapshot), self.session_ms)
            count += 1
        if count:
            await pipe.execute()

    # ------------------------------------------------------------------ publishing

    @property
    def seq(self) -> int:
        """Where a subscription made now starts: Redis's time in ms (see :data:`CLOCK_MARGIN_MS`)."""
        return int(time.time() * 1000 + self.clock_offset_ms) - CLOCK_MARGIN_MS

    def publish(self, channel: str, packet: bytes, head: bytes) -> None:
        """Publish ``packet`` (msgpack, a CHANNEL packet without position) through Redis."""
        count = packet[0] & 0x0F  # a packet is a fixmap (at most 8 keys): 2 more for offset and epoch
        prefix = bytes((0x80 | (count + 2),)) + packet[1:] + _packed("offset")
        self.backplane.command(
            b"EVALSHA",
            self.publish_sha,
            b"3",
            self._key(b"m:", channel),
            self._key(b"h:", channel),
            self.prefix + b"seq",
            self.backplane.channel_key(channel),
            head,
            prefix,
            _packed("epoch"),
            secrets.token_hex(4).encode(),
            self.size,
            self.ttl_ms,
        )

    def _key(self, kind: bytes, channel: str) -> bytes:
        return self.prefix + kind + channel.encode("utf-8", "surrogatepass")

    # ------------------------------------------------------------------ history

    async def recent(self, channel: str, limit: int | None) -> list[Packet[Any]]:
        """The messages of ``channel`` still in its history, oldest first (at most the last ``limit``)."""
        assert self.redis is not None
        if limit is not None and limit <= 0:
            return []
        entries: Any
        if limit is None:
            entries = await self.redis.xrange(self._key(b"h:", channel))
        else:
            newest: Any = await self.redis.xrevrange(self._key(b"h:", channel), count=limit)
            entries = list(reversed(newest or []))
        return [decode_packet(fields[b"b"], False) for _id, fields in entries]

    async def latest(self, channel: str) -> Outgoing | None:
        """The last message of ``channel`` still in its history."""
        assert self.redis is not None
        entries: Any = await self.redis.xrevrange(self._key(b"h:", channel), count=1)
        return Outgoing.from_msgpack(entries[0][1][b"b"]) if entries else None

    async def missed(
        self, subscriptions: Mapping[str, int], positions: Mapping[str, tuple[str, int]]
    ) -> list[Outgoing] | None:
        """What a session with these subscriptions missed, in publish order; None if some may be lost."""
        assert self.redis is not None
        channels, patterns = split_subscriptions(subscriptions)
        for pattern, start in patterns.items():
            for name in await self._channels_matching(pattern):
                channels[name] = min(start, channels.get(name, start))
        if not channels:
            return []
        names = list(channels)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self._key(b"m:", name))
            pipe.xrange(self._key(b"h:", name))
        replies = await pipe.execute()
        found: list[tuple[int, Outgoing]] = []
        for i, name in enumerate(names):
            meta: dict[bytes, bytes] = replies[2 * i]
            entries: list[tuple[bytes, dict[bytes, bytes]]] = replies[2 * i + 1]
            picked = _missed_in(meta, entries, channels[name], positions.get(name))
            if picked is None:
                return None
            found.extend(picked)
        found.sort(key=by_sequence)
        return [out for _seq, out in found]

    async def _channels_matching(self, pattern: str) -> list[str]:
        """Channels with history that ``pattern`` matches (a SCAN of the history keys)."""
        assert self.redis is not None
        start = len(self.prefix) + 2
        names = []
        async for key in self.redis.scan_iter(match=self.prefix + b"h:*", count=1000):
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
        if self.redis is not None:
            self._write(self.redis.delete(self._keys(token)[0]))

    async def _save(self, token: str, snapshot: Snapshot) -> None:
        assert self.redis is not None
        await self.redis.eval(SAVE_SCRIPT.decode(), 2, *self._keys(token), self._encode(snapshot), self.session_ms)

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
        if self.redis is None or len(token) > 64:
            return None
        raw = await self.redis.eval(CLAIM_SCRIPT.decode(), 2, *self._keys(token), self.session_ms)
        if raw is None:
            return None
        try:
            state, subscriptions = msgpack.unpackb(raw, raw=False)
            return Snapshot(dict(state), {str(name): int(start) for name, start in subscriptions.items()})
        except Exception as exc:
            _logger.warning("Recovery: dropped an unreadable session snapshot: %s", exc)
            return None

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


def _missed_in(
    meta: dict[bytes, bytes],
    entries: list[tuple[bytes, dict[bytes, bytes]]],
    start: int,
    position: tuple[str, int] | None,
) -> list[tuple[int, Outgoing]] | None:
    """The entries of one channel a session missed (by publish sequence); None if some are lost."""
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
        return [(int(f[b"s"]), Outgoing.from_msgpack(f[b"b"])) for _id, f in entries if int(f[b"o"]) > seen]
    if entries:
        if int(entries[0][1][b"p"]) > start:
            return None  # an entry published after the subscription started was trimmed
    elif int(meta.get(b"t", 0)) > start:
        return None
    picked = []
    for entry_id, f in entries:
        if int(entry_id.split(b"-")[0]) > start:
            picked.append((int(f[b"s"]), Outgoing.from_msgpack(f[b"b"])))
    return picked
