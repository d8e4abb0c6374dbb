"""Redis backplane: publishes and broadcasts cross server processes through Redis pub/sub.

``WebSocketServer(..., backplane="redis://host:6379/0")`` uses it (several URLs: one per shard,
see :mod:`webshocket.redis_shards`). Each node keeps two
connections to Redis: one sends ``PUBLISH`` commands (a single writer task, pipelined,
so a node's publishes reach Redis in the order they were made), the other is subscribed
to what the node's clients subscribe to.

Redis channels (``P`` is ``channel_prefix``, ``"webshocket:"`` by default):

* a publish to channel ``C`` goes to ``P + "c:" + C``; every character of ``C`` outside
  ASCII is sent as one DEL byte (0x7F), so each character is one byte, as Redis globs need;
* a broadcast goes to ``P + "broadcast"``, to which every node subscribes;
* an exact subscription ``C`` is ``SUBSCRIBE P + "c:" + C`` (folded the same way), and so is a
  pattern that matches one name only (a literal subscription, ``escape(C)``);
* a pattern (fnmatch: ``*``, ``?``, ``[...]``, ``[!...]``) is ``PSUBSCRIBE`` of its Redis glob
  translation (:func:`redis_glob`). The translation is exact for ASCII names (without DEL)
  and broader otherwise; a node only hands a message to clients whose own subscription
  matches, so receiving a little more than needed is harmless.

Subscription changes are batched: the node collects them and sends one ``SUBSCRIBE`` /
``UNSUBSCRIBE`` / ``PSUBSCRIBE`` / ``PUNSUBSCRIBE`` per loop iteration; a subscribe undone
before that flush sends nothing.

When the connection to Redis breaks, local clients keep being served; publishes made
meanwhile are not sent to other nodes (they are counted), the backplane reconnects with
exponential backoff, subscribes to everything again and logs at WARNING what the gap cost.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import re
from collections import deque
from collections.abc import Awaitable, Callable
from fnmatch import translate
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ResponseError

from .backplane import Backplane, Deliver
from .channels import is_pattern, literal_name
from .exceptions import ConnectionFailedError

__all__ = ["RedisBackplane", "fold_channel", "redis_glob"]

_logger = logging.getLogger("webshocket.backplane.redis")

_Key = tuple[bool, bytes]  # (is a pattern, Redis channel or glob)
_MAX_ARGS = 1000  # channels per (P)(UN)SUBSCRIBE command
_MAX_BATCH = 1024  # publishes per pipelined write
_MAX_BATCH_BYTES = 1 << 20
_GLOB_SPECIAL = frozenset(b"*?[]\\")
_ASCII = tuple(chr(i) for i in range(128))
_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HEALTH_PING = b"*2\r\n$4\r\nPING\r\n$2\r\nhc\r\n"
_PLACEHOLDER = "\x7f"  # what any non-ASCII character of a channel name becomes
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def fold_channel(channel: str) -> bytes:
    """The bytes a channel name is sent to Redis as: ASCII kept, any other character as one 0x7F byte."""
    if channel.isascii():
        return channel.encode("ascii")
    return _NON_ASCII.sub(_PLACEHOLDER, channel).encode("ascii")


def _escape(raw: bytes) -> bytes:
    """Escape Redis glob special characters so ``raw`` matches itself literally."""
    if _GLOB_SPECIAL.isdisjoint(raw):
        return raw
    return b"".join(b"\\" + bytes((c,)) if c in _GLOB_SPECIAL else bytes((c,)) for c in raw)


def _class_member(ch: str) -> str:
    return ch if ch in _ALNUM else "\\" + ch


def _redis_class(members: set[str]) -> str:
    """A Redis ``[...]`` class matching exactly the ASCII characters ``members``."""
    if len(members) > 64:  # shorter as a negation (bytes >= 0x80 never occur in folded names)
        return "[^" + _members_text(set(_ASCII) - members) + "]"
    return "[" + _members_text(members) + "]"


def _members_text(members: set[str]) -> str:
    codes = sorted(ord(c) for c in members)
    out: list[str] = []
    i = 0
    while i < len(codes):
        j = i
        while j + 1 < len(codes) and codes[j + 1] == codes[j] + 1:
            j += 1
        first, last = chr(codes[i]), chr(codes[j])
        if j - i >= 2 and first in _ALNUM and last in _ALNUM:
            out.append(f"{first}-{last}")  # alnum endpoints need no escape inside a range
        else:
            out.extend(_class_member(chr(c)) for c in codes[i : j + 1])
        i = j + 1
    return "".join(out)


def _bracket(text: str) -> str | None:
    """Redis glob for one fnmatch bracket expression ``text`` (``[...]``); None: it matches nothing.

    The ASCII members are found by running fnmatch's own regex on every ASCII character,
    so its quirks (``]`` first, ``-`` placement, reversed ranges) are reproduced exactly.
    Non-ASCII characters are folded to 0x7F, which joins the class when the bracket can
    match any of them.
    """
    match = re.compile(translate(text)).match
    members = {c for c in _ASCII if match(c)}
    if text[1:2] == "!" or not text.isascii():
        members.add(_PLACEHOLDER)
    if not members:
        return None
    if len(members) == len(_ASCII):
        return "?"
    return _redis_class(members)


@lru_cache(maxsize=4096)
def redis_glob(pattern: str) -> bytes | None:
    """Translate an fnmatch pattern to a Redis glob over :func:`fold_channel` names.

    Every channel the pattern matches (``fnmatchcase``) is matched by the result; for ASCII
    patterns and channel names (without 0x7F) exactly those are. None when the pattern can match nothing.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not out or out[-1] != "*":
                out.append("*")
        elif c == "?":
            out.append("?")
        elif c == "[":
            j = i  # find the closing bracket exactly as fnmatch.translate does
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append("\\[")  # no closing bracket: a literal "["
                continue
            cls = _bracket(pattern[i - 1 : j + 1])
            if cls is None:
                return None
            out.append(cls)
            i = j + 1
        elif c.isascii():
            out.append("\\" + c if c in "*?[]\\" else c)
        else:
            out.append(_PLACEHOLDER)  # a non-ASCII character is sent as 0x7F
    return "".join(out).encode("ascii")


def _command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


def _safe_url(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
    except ValueError:
        return "<redis url>"


# redis-py (5.x to 8.x) leaves ConnectionPool.make_connection() and AbstractConnection.connect()
# unannotated; mypy --strict refuses calls to them (no-untyped-call). These two helpers give them
# their documented types, which stays valid should redis-py annotate them one day.


def _new_connection(pool: ConnectionPool) -> AbstractConnection:
    """A new, not yet connected connection configured like the pool's."""
    make_connection: Callable[[], AbstractConnection] = pool.make_connection
    return make_connection()


def _connect(conn: AbstractConnection) -> Awaitable[None]:
    connect: Callable[[], Awaitable[None]] = conn.connect
    return connect()


class RedisBackplane(Backplane):
    """Backplane over Redis pub/sub (redis.asyncio).

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://...`` or ``unix:///path``.
        channel_prefix: prefix of every Redis channel used; nodes sharing a prefix form one cluster.
        connect_timeout: seconds to connect (and to get Redis's first answer) before giving up.
        health_check_interval: seconds without traffic on the subscriber connection after which
            it is pinged; no answer within as long again counts as a broken connection
            (0 disables the check; a closed socket is noticed at once either way).
        max_backoff: longest wait between reconnection attempts, in seconds.
        max_pending: publishes waiting to be written to Redis beyond which new ones are
            dropped (and counted in ``stats["dropped_queue_full"]``).
        flush_delay: seconds to wait, after the first subscription change, before sending
            the batch (0: at the next loop iteration).

    ``stats`` counts ``published`` (acknowledged by Redis), ``received`` (messages from
    Redis), ``dropped_while_disconnected``, ``dropped_queue_full``, ``reconnects``,
    ``subscribe_commands`` ((P)(UN)SUBSCRIBE commands sent) and ``errors`` (error replies).
    """

    def __init__(
        self,
        url: str,
        *,
        channel_prefix: str = "webshocket:",
        connect_timeout: float = 5.0,
        health_check_interval: float = 5.0,
        max_backoff: float = 2.0,
        max_pending: int = 100_000,
        flush_delay: float = 0.0,
    ) -> None:
        self.url = url
        self.channel_prefix = channel_prefix
        self.connect_timeout = connect_timeout
        self.health_check_interval = health_check_interval
        self.max_backoff = max_backoff
        self.max_pending = max_pending
        self.flush_delay = flush_delay
        prefix = channel_prefix.encode("utf-8", "surrogatepass")
        self.broadcast_channel = prefix + b"broadcast"
        self._channel_prefix = prefix + b"c:"
        self._glob_prefix = _escape(self._channel_prefix)
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "published",
                "received",
                "dropped_while_disconnected",
                "dropped_queue_full",
                "reconnects",
                "subscribe_commands",
                "errors",
            ),
            0,
        )
        self._deliver: Deliver | None = None
        self._pool: ConnectionPool | None = None
        self._pub: AbstractConnection | None = None
        self._sub: AbstractConnection | None = None
        self._connected = False
        self._tasks: list[asyncio.Task[None]] = []  # reader, flusher, writer of the current session
        self._supervisor: asyncio.Task[None] | None = None
        # subscriptions: name -> Redis key; key -> number of names; keys subscribed in Redis; keys changed
        self._names: dict[str, _Key | None] = {}
        self._refs: dict[_Key, int] = {}
        self._applied: set[_Key] = set()
        self._dirty: set[_Key] = set()
        self._flush_event: asyncio.Event | None = None
        # publishing
        self._queue: deque[tuple[bytes | None, bytes]] = deque()  # (channel, envelope) or (None, command)
        self._inflight = 0
        self._writer_waiter: asyncio.Future[None] | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []
        # PING tokens: sync() callers waiting for Redis to confirm earlier commands
        self._ping_seq = 0
        self._sync_pending: list[asyncio.Future[bool]] = []
        self._ping_waiters: dict[int, list[asyncio.Future[bool]]] = {}
        self._gap_dropped = 0
        self._scripts: list[bytes] = []  # Lua scripts loaded on each connection (see load_script)

    # ------------------------------------------------------------------ Backplane interface

    @property
    def connected(self) -> bool:
        """True while both connections to Redis are up."""
        return self._connected

    async def start(self, deliver: Deliver) -> None:
        """Connect and subscribe to broadcasts.

        Raises:
            ConnectionFailedError: Redis cannot be reached (or refused us) within ``connect_timeout``.
        """
        if self._supervisor is not None:
            raise RuntimeError("RedisBackplane is already started")
        self._deliver = deliver
        self._flush_event = asyncio.Event()
        options: dict[str, Any] = {
            "socket_timeout": None,
            "socket_connect_timeout": self.connect_timeout,
            "socket_keepalive": True,
            "client_name": "webshocket-backplane",
            "protocol": 2,  # pub/sub messages as plain replies
        }
        try:
            self._pool = ConnectionPool.from_url(self.url, **options)
        except ValueError as exc:
            raise ConnectionFailedError(f"invalid Redis URL {_safe_url(self.url)!r}: {exc}") from exc
        if str(self._pool.connection_kwargs.get("protocol")) != "2":
            url = _safe_url(self.url)
            raise ConnectionFailedError(f"the Redis backplane speaks RESP2: remove protocol= from {url!r}")
        try:
            await self._open_session()
        except Exception as exc:
            await self._end_session()
            raise ConnectionFailedError(f"cannot reach Redis at {_safe_url(self.url)}: {exc}") from exc
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    def subscribe(self, name: str) -> None:
        if name in self._names:
            return
        key = self._key(name)
        self._names[name] = key
        if key is None:
            return
        count = self._refs.get(key, 0)
        self._refs[key] = count + 1
        if not count:
            self._changed(key)

    def unsubscribe(self, name: str) -> None:
        if name not in self._names:
            return
        key = self._names.pop(name)
        if key is None:
            return
        count = self._refs[key] - 1
        if count:
            self._refs[key] = count
        else:
            del self._refs[key]
            self._changed(key)

    def load_script(self, script: bytes) -> bytes:
        """Have ``script`` loaded in Redis on every (re)connection; returns its SHA1 for :meth:`command`."""
        if script not in self._scripts:
            self._scripts.append(script)
        return hashlib.sha1(script).hexdigest().encode()

    def command(self, *args: bytes) -> None:
        """Queue a command (e.g. an EVALSHA that publishes) behind the publishes, in order."""
        self._enqueue(None, _command(*args))

    def channel_key(self, channel: str) -> bytes:
        """The Redis channel a publish to ``channel`` goes to."""
        return self._channel_prefix + fold_channel(channel)

    def publish(self, channel: str | None, envelope: bytes) -> None:
        key = self.broadcast_channel if channel is None else self._channel_prefix + fold_channel(channel)
        self._enqueue(key, envelope)

    def _enqueue(self, key: bytes | None, envelope: bytes) -> None:
        if not self._connected:
            self.stats["dropped_while_disconnected"] += 1
            self._gap_dropped += 1
            return
        queue = self._queue
        if len(queue) >= self.max_pending:
            self.stats["dropped_queue_full"] += 1
            return
        queue.append((key, envelope))
        waiter = self._writer_waiter
        if waiter is not None:
            self._writer_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def close(self) -> None:
        """Send what is queued (up to 2 s), then disconnect."""
        supervisor, self._supervisor = self._supervisor, None
        if self._connected and (self._queue or self._inflight):
            idle = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(idle)
            await asyncio.wait([idle, *self._tasks], timeout=2.0, return_when=asyncio.FIRST_COMPLETED)
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        await self._end_session()
        self._deliver = None
        self._names.clear()
        self._refs.clear()
        self._dirty.clear()

    # ------------------------------------------------------------------ extras

    async def sync(self, timeout: float | None = 5.0) -> bool:
        """Wait until Redis has applied every subscribe and unsubscribe made so far.

        Returns False when disconnected (or disconnected meanwhile, or on timeout).
        """
        if not self._connected or self._flush_event is None:
            return False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._sync_pending.append(future)
        self._flush_event.set()
        try:
            return await asyncio.wait_for(future, timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return False

    # ------------------------------------------------------------------ shards (one: this one)

    @property
    def shards(self) -> tuple[RedisBackplane, ...]:
        """The Redis servers channels are spread over: this one alone (see ``ShardedRedisBackplane``)."""
        return (self,)

    def shard_index(self, channel: str) -> int:
        """Index in :attr:`shards` of the Redis server that carries ``channel``: 0."""
        return 0

    def shard_for(self, channel: str) -> RedisBackplane:
        """The Redis server that carries ``channel``: this one."""
        return self

    def redis_channel(self, channel: str) -> bytes:
        """The Redis channel a publish to ``channel`` goes to."""
        return self._channel_prefix + fold_channel(channel)

    def redis_pattern(self, pattern: str) -> bytes | None:
        """The Redis glob a subscription to fnmatch ``pattern`` uses (None: it matches nothing)."""
        glob = redis_glob(pattern)
        return None if glob is None else self._glob_prefix + glob

    # ------------------------------------------------------------------ subscriptions

    def _key(self, name: str) -> _Key | None:
        if is_pattern(name):
            single = literal_name(name)  # a literal subscription (escape("room[1]")) matches one name:
            if single is not None:  # SUBSCRIBE it, O(1) per PUBLISH in Redis (a PSUBSCRIBE costs every PUBLISH)
                return (False, self.redis_channel(single))
            glob = self.redis_pattern(name)
            return None if glob is None else (True, glob)
        return (False, self.redis_channel(name))

    def _changed(self, key: _Key) -> None:
        self._dirty.add(key)
        if self._connected and self._flush_event is not None:
            self._flush_event.set()

    def _take_commands(self) -> list[bytes]:
        """The commands that bring Redis in line with the subscriptions (and PING for sync())."""
        lists: dict[bytes, list[bytes]] = {b"SUBSCRIBE": [], b"UNSUBSCRIBE": [], b"PSUBSCRIBE": [], b"PUNSUBSCRIBE": []}
        refs, applied = self._refs, self._applied
        for key in self._dirty:
            want, have = key in refs, key in applied
            if want == have:
                continue  # subscribed and unsubscribed again before the flush
            pattern, raw = key
            if want:
                lists[b"PSUBSCRIBE" if pattern else b"SUBSCRIBE"].append(raw)
                applied.add(key)
            else:
                lists[b"PUNSUBSCRIBE" if pattern else b"UNSUBSCRIBE"].append(raw)
                applied.discard(key)
        self._dirty.clear()
        commands = self._chunked(lists)
        if self._sync_pending:
            commands.append(self._ping_for(self._sync_pending))
            self._sync_pending = []
        return commands

    def _chunked(self, lists: dict[bytes, list[bytes]]) -> list[bytes]:
        commands = []
        for verb, names in lists.items():
            for i in range(0, len(names), _MAX_ARGS):
                commands.append(_command(verb, *names[i : i + _MAX_ARGS]))
        self.stats["subscribe_commands"] += len(commands)
        return commands

    def _ping_for(self, waiters: list[asyncio.Future[bool]]) -> bytes:
        self._ping_seq += 1
        self._ping_waiters[self._ping_seq] = waiters
        return _command(b"PING", b"%d" % self._ping_seq)

    def _pong(self, token: bytes) -> None:
        try:
            seq = int(token)
        except ValueError:
            return  # a health-check PING
        for done in [s for s in self._ping_waiters if s <= seq]:
            for future in self._ping_waiters.pop(done):
                if not future.done():
                    future.set_result(True)

    # ------------------------------------------------------------------ sessions

    async def _open_session(self) -> None:
        """Connect both connections, subscribe to everything and wait for Redis to confirm."""
        assert self._pool is not None
        loop = asyncio.get_running_loop()
        self._pub = pub = _new_connection(self._pool)
        self._sub = sub = _new_connection(self._pool)
        await asyncio.wait_for(_connect(pub), self.connect_timeout)
        await asyncio.wait_for(_connect(sub), self.connect_timeout)
        for script in self._scripts:
            await pub.send_packed_command(_command(b"SCRIPT", b"LOAD", script), check_health=False)
            await asyncio.wait_for(pub.read_response(), self.connect_timeout)
        ready: asyncio.Future[bool] = loop.create_future()
        self._applied = set(self._refs)
        self._dirty.clear()
        lists: dict[bytes, list[bytes]] = {b"SUBSCRIBE": [self.broadcast_channel], b"PSUBSCRIBE": []}
        for pattern, raw in self._applied:
            lists[b"PSUBSCRIBE" if pattern else b"SUBSCRIBE"].append(raw)
        commands = [*self._chunked(lists), self._ping_for([ready])]
        self._tasks = [loop.create_task(self._read_loop(sub)), loop.create_task(self._flush_loop(sub))]
        await sub.send_packed_command(commands, check_health=False)
        waited: list[asyncio.Future[Any]] = [ready, *self._tasks]
        done, _ = await asyncio.wait(waited, timeout=self.connect_timeout, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done or not ready.result():
            for task in self._tasks:
                error = task.exception() if task.done() and not task.cancelled() else None
                if error is not None:
                    raise error
            raise TimeoutError(f"no answer from Redis within {self.connect_timeout} s")
        self._connected = True
        self._tasks.append(loop.create_task(self._write_loop(pub)))
        if self._dirty and self._flush_event is not None:
            self._flush_event.set()

    async def _end_session(self) -> int:
        """Stop the session's tasks and close its connections; returns the publishes dropped."""
        self._connected = False
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for conn in (self._pub, self._sub):
            if conn is not None:
                try:
                    await conn.disconnect(nowait=True)
                except Exception as exc:  # the connection is broken already
                    _logger.debug("Redis backplane: closing a connection failed: %s", exc)
        self._pub = self._sub = None
        dropped = len(self._queue) + self._inflight
        self._queue.clear()
        self._inflight = 0
        self._applied.clear()
        waiters = [f for fs in self._ping_waiters.values() for f in fs] + self._sync_pending
        self._ping_waiters.clear()
        self._sync_pending = []
        for future in waiters + self._idle_waiters:
            if not future.done():
                future.set_result(False)  # type: ignore[arg-type]
        self._idle_waiters = []
        return dropped

    async def _supervise(self) -> None:
        """Watch the session; when it breaks, reconnect with backoff and report the gap."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                if not self._tasks:  # only after an unexpected error below
                    await self._reconnect()
                done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                reason: object = "session ended"
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        reason = task.exception()
                lost_at = loop.time()
                self._gap_dropped = 0
                dropped = await self._end_session()
                self.stats["dropped_while_disconnected"] += dropped
                self._gap_dropped += dropped
                _logger.warning(
                    "Redis backplane lost its connection to %s (%s); serving local clients only, reconnecting",
                    _safe_url(self.url),
                    reason,
                )
                await self._reconnect()
                self.stats["reconnects"] += 1
                _logger.warning(
                    "Redis backplane reconnected to %s after %.1f s; in that gap %d publishes of this node were "
                    "not sent to other nodes and publishes of other nodes were not received; subscribed again "
                    "to %d channels and patterns",
                    _safe_url(self.url),
                    loop.time() - lost_at,
                    self._gap_dropped,
                    len(self._refs) + 1,
                )
            except asyncio.CancelledError:
                raise
            except Exception:  # never expected: keep supervising rather than die silently
                _logger.exception("Redis backplane supervisor error")
                await self._end_session()
                await asyncio.sleep(self.max_backoff)

    async def _reconnect(self) -> None:
        delay = 0.1
        attempt = 0
        while True:
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            attempt += 1
            try:
                await self._open_session()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats["dropped_while_disconnected"] += await self._end_session()
                _logger.debug("Redis backplane: reconnection attempt %d failed: %s", attempt, exc)
                delay = min(delay * 2, self.max_backoff)

    # ------------------------------------------------------------------ session tasks

    async def _read_loop(self, sub: AbstractConnection) -> None:
        """Hand every message to the bridge; ping when quiet; return/raise when the connection breaks."""
        deliver = self._deliver
        stats = self.stats
        interval = self.health_check_interval or math.inf
        pinged = False
        while True:
            try:
                message: Any = await sub.read_response(timeout=interval, disconnect_on_error=False)
            except ResponseError as exc:
                stats["errors"] += 1
                _logger.warning("Redis backplane: Redis refused a subscription command: %s", exc)
                continue
            if message is None:  # nothing within the interval
                if pinged:
                    raise ConnectionError(f"Redis did not answer a PING within {interval} s")
                pinged = True
                await sub.send_packed_command(_HEALTH_PING, check_health=False)
                continue
            pinged = False
            if type(message) is not list or not message:
                continue
            kind = message[0]
            if kind == b"message":
                data = message[2]
            elif kind == b"pmessage":
                data = message[3]
            else:
                if kind == b"pong":
                    self._pong(message[1])
                continue  # (p)(un)subscribe confirmations
            stats["received"] += 1
            if deliver is not None:
                try:
                    deliver(data)
                except Exception:
                    _logger.exception("Delivering a backplane message failed")

    async def _flush_loop(self, sub: AbstractConnection) -> None:
        """Send the batched subscription changes, once per wake-up."""
        event = self._flush_event
        assert event is not None
        while True:
            await event.wait()
            event.clear()
            if self.flush_delay:
                await asyncio.sleep(self.flush_delay)
            commands = self._take_commands()
            if commands:
                await sub.send_packed_command(commands, check_health=False)

    async def _write_loop(self, pub: AbstractConnection) -> None:
        """Write queued publishes in order, pipelined in batches, and read their replies."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        stats = self.stats
        while True:
            if not queue:
                idle, self._idle_waiters = self._idle_waiters, []
                for future in idle:
                    if not future.done():
                        future.set_result(None)
                waiter = self._writer_waiter = loop.create_future()
                await waiter
                continue
            parts: list[bytes] = []
            count = size = 0
            while queue and count < _MAX_BATCH and size < _MAX_BATCH_BYTES:
                key, envelope = queue.popleft()
                if key is None:  # a whole command
                    parts.append(envelope)
                else:
                    parts.append(b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%b\r\n$%d\r\n" % (len(key), key, len(envelope)))
                    parts.append(envelope)
                    parts.append(b"\r\n")
                count += 1
                size += len(envelope)
            self._inflight = count
            await pub.send_packed_command(parts, check_health=False)
            errors = 0
            for _ in range(count):
                try:
                    await pub.read_response(disconnect_on_error=False)
                except ResponseError as exc:
                    errors += 1
                    last = exc
            self._inflight = 0
            stats["published"] += count - errors
            if errors:
                stats["errors"] += errors
                _logger.warning("Redis backplane: Redis refused %d publishes: %s", errors, last)
