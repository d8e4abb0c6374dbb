"""Sessions that survive disconnection: channel history, session tokens, resume.

A server made with ``recovery=True`` (or a :class:`Recovery`) keeps, for each channel,
the last messages published to it (its *history*), and gives every client that asks
for a session an unguessable *token*. Each channel push then carries its position in
the channel's history: an ``offset`` (1, 2, 3, ...) in an ``epoch`` (a random name of
that history; it changes when the history is lost, e.g. when the process restarts).

When a connection with a session ends, the server *parks* the session: its state
(``connection.<attr>``) and its subscriptions, for ``session_ttl`` seconds. A client
that reconnects within that time presents its token and the last position it saw in
each channel; the server then gives it back its state and subscriptions, without
running ``on_connect``, and sends every message published on its channels since,
exactly once and in publish order, before any new one. When that is impossible
(the session expired or never existed, or the history no longer reaches back far
enough) the connection starts a new session (``on_connect`` runs) and the client is
told it was not recovered.

This module keeps that state in memory (one node). With the Redis backplane, the
same state lives in Redis (:mod:`webshocket.redis_recovery`), so a client can resume
on another node.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from ._codec import decode_packet
from ._fanout import Outgoing
from .channels import literal_name
from .enum import PacketSource
from .packets import Packet
from .utils import optional_config

__all__ = [
    "SESSION_SUBPROTOCOLS",
    "History",
    "MemoryStore",
    "Recovery",
    "Resume",
    "Snapshot",
    "new_token",
    "parse_hello",
]

SESSION_SUBPROTOCOLS = {"webshocket.v1+session": True, "webshocket.json+session": False}
"""Subprotocols a client offers to ask for a session: msgpack (True) or JSON (False)."""
_CHANNEL = int(PacketSource.CHANNEL)
MAX_TOKEN_LENGTH = 64
"""Longest token the server reads (its own are 32 characters)."""


@dataclass(frozen=True)
class Recovery:
    """How long sessions and channel history are kept (``WebSocketServer(recovery=...)``).

    Attributes:
        history_size: messages kept per channel (the oldest go first).
        history_ttl: seconds a message stays in its channel's history (in Redis, up to a tenth
            longer: the age limit is applied there at most every tenth of it).
        session_ttl: seconds a disconnected session can be resumed.
        max_channels: channels with history at once; past it, the history of the channel
            published to least recently is dropped (its subscribers then resume "not
            recovered").
        max_sessions: disconnected sessions kept at once; past it, the oldest is dropped.
        max_positions: channel positions a client may present when it resumes.
        hello_timeout: seconds the server waits for a session client's first message.
        deliver_latest: glob patterns of channels whose latest message (if still in history)
            a connection gets as soon as it subscribes to one of them by name (e.g. prices).
        snapshot_interval: with Redis, seconds between snapshots of each node's session
            connections (what a client resuming on another node gets if its node died).
        identity: session keys that say who the client is. When the handshake hook
            (``on_handshake``) seeds one of them with another value than the parked session
            holds (another user presenting a stolen session token), the resume is refused and
            the connection starts a new session. Other keys the hook seeds (a fresh token's
            expiry) replace the parked values.
    """

    history_size: int = 100
    history_ttl: float = 300.0
    session_ttl: float = 120.0
    max_channels: int = 10_000
    max_sessions: int = 100_000
    max_positions: int = 1_000
    hello_timeout: float = 5.0
    deliver_latest: tuple[str, ...] = ()
    snapshot_interval: float = 5.0
    identity: tuple[str, ...] = ("user",)

    def __post_init__(self) -> None:
        for name in ("history_size", "max_channels", "max_sessions", "max_positions"):
            if getattr(self, name) < 1:
                raise ValueError(f"Recovery.{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("history_ttl", "session_ttl", "hello_timeout", "snapshot_interval"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Recovery.{name} must be positive, got {getattr(self, name)!r}")
        for name in ("deliver_latest", "identity"):
            if isinstance(getattr(self, name), str):
                raise TypeError(f"Recovery.{name} must be a tuple of strings, not one string")

    def delivers_latest(self, channel: str) -> bool:
        """Does a new subscriber of ``channel`` get its latest message?"""
        return any(fnmatchcase(channel, pattern) for pattern in self.deliver_latest)

    @staticmethod
    def of(value: bool | Recovery | None) -> Recovery | None:
        """The server option ``recovery``: True (defaults), a :class:`Recovery`, or off."""
        return optional_config(value, Recovery, "recovery")


def new_token() -> str:
    """An unguessable session token (192 random bits)."""
    return secrets.token_urlsafe(24)


@dataclass
class Snapshot:
    """A parked session: its state and subscriptions (name -> sequence number it started at)."""

    state: dict[str, Any]
    subscriptions: dict[str, int]


@dataclass
class Resume:
    """What a resume found: the session and the messages the client missed, in publish order."""

    snapshot: Snapshot
    missed: list[Outgoing]


def parse_hello(data: Any, max_positions: int) -> tuple[str | None, dict[str, tuple[str, int]]] | None:
    """Read a client's session hello (``{"token": ..., "positions": {channel: [epoch, offset]}}``).

    Returns ``(token, positions)``, or None when ``data`` is not a hello. Positions that
    are malformed are left out (the channel then counts as not seen).
    """
    if not isinstance(data, Mapping):
        return None
    token = data.get("token")
    if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH):
        token = None
    positions: dict[str, tuple[str, int]] = {}
    given = data.get("positions")
    if isinstance(given, Mapping):
        for channel, position in list(given.items())[:max_positions]:
            if (
                isinstance(channel, str)
                and isinstance(position, (list, tuple))
                and len(position) == 2
                and isinstance(position[0], str)
                and type(position[1]) is int
            ):
                positions[channel] = (position[0], position[1])
    return token, positions


class _Log:
    """One channel's history: the last messages, each with its offset, sequence number and time."""

    __slots__ = ("entries", "epoch", "next_offset", "trimmed_seq")

    def __init__(self, epoch: str) -> None:
        self.epoch = epoch
        self.next_offset = 1
        # (offset, seq, time, the packet as msgpack): only bytes are kept, shared with the publish
        self.entries: deque[tuple[int, int, float, bytes]] = deque()
        self.trimmed_seq = 0  # highest sequence number no longer in the history


class History:
    """Every channel's history on this node, bounded by :class:`Recovery`."""

    def __init__(self, config: Recovery) -> None:
        self.config = config
        self.logs: OrderedDict[str, _Log] = OrderedDict()  # least recently published first
        self.seq = 0  # publishes recorded so far, on every channel (their order)
        self.evicted_seq = 0  # highest sequence number of a history dropped for max_channels

    def record(
        self, channel: str, data: Any, packet: Packet[Any] | None, check: Callable[[Outgoing], None]
    ) -> Outgoing:
        """Give the next publish on ``channel`` its position and keep it; returns the packet to send.

        ``check`` (it encodes the packet) runs first: when it raises, nothing is recorded.
        """
        logs = self.logs
        log = logs.get(channel)
        epoch = log.epoch if log is not None else secrets.token_hex(4)
        offset = log.next_offset if log is not None else 1
        if packet is not None:
            positioned = Packet(
                packet.source, packet.data, None, channel, packet.timestamp, packet.correlation_id, offset, epoch
            )
        else:
            positioned = Packet(PacketSource.CHANNEL, data, None, channel, None, None, offset, epoch)
        out = Outgoing(_CHANNEL, data, channel, positioned)
        check(out)
        if log is None:
            if len(logs) >= self.config.max_channels:
                _name, dropped = logs.popitem(last=False)
                if dropped.entries:
                    self.evicted_seq = max(self.evicted_seq, dropped.entries[-1][1])
            log = logs[channel] = _Log(epoch)
        else:
            logs.move_to_end(channel)
        log.next_offset = offset + 1
        self.seq += 1
        now = time.monotonic()
        entries = log.entries
        entries.append((offset, self.seq, now, out.encoded(False)))
        if len(entries) > self.config.history_size:
            log.trimmed_seq = entries.popleft()[1]
        self._expire(log, now)
        return out

    def _expire(self, log: _Log, now: float) -> None:
        entries = log.entries
        oldest = now - self.config.history_ttl
        while entries and entries[0][2] < oldest:
            log.trimmed_seq = entries.popleft()[1]

    def recent(self, channel: str, limit: int | None = None) -> list[Packet[Any]]:
        """The messages of ``channel`` still in its history, oldest first (at most the last ``limit``)."""
        log = self.logs.get(channel)
        if log is None:
            return []
        self._expire(log, time.monotonic())
        entries = list(log.entries)
        if limit is not None:
            entries = entries[-limit:] if limit > 0 else []
        return [decode_packet(encoded, False) for _offset, _seq, _time, encoded in entries]

    def latest(self, channel: str) -> Outgoing | None:
        """The last message of ``channel`` still in its history."""
        log = self.logs.get(channel)
        if log is None:
            return None
        self._expire(log, time.monotonic())
        return Outgoing.from_msgpack(log.entries[-1][3]) if log.entries else None

    def missed(
        self, subscriptions: Mapping[str, int], positions: Mapping[str, tuple[str, int]]
    ) -> list[Outgoing] | None:
        """The messages a session with these subscriptions missed, in publish order; None if
        some may be lost (history trimmed, epoch changed, or a position the server never gave)."""
        now = time.monotonic()
        channels, patterns = split_subscriptions(subscriptions)
        if patterns:
            for name in self.logs:
                for pattern, start in patterns.items():
                    if fnmatchcase(name, pattern):
                        channels[name] = min(start, channels.get(name, start))
        found: list[tuple[int, bytes]] = []
        for channel, start in channels.items():
            position = positions.get(channel)
            log = self.logs.get(channel)
            if log is None:
                # Nothing published since the server has known it, or its history was dropped.
                if position is not None or start < self.evicted_seq:
                    return None
                continue
            self._expire(log, now)
            entries = log.entries
            if position is not None:
                epoch, seen = position
                if epoch != log.epoch or seen >= log.next_offset or seen < 0:
                    return None
                lowest = entries[0][0] if entries else log.next_offset
                if seen + 1 < lowest:
                    return None  # trimmed past what the client saw
                found.extend((seq, encoded) for offset, seq, _t, encoded in entries if offset > seen)
            else:
                if log.trimmed_seq > start or start < self.evicted_seq:
                    return None
                found.extend((seq, encoded) for _offset, seq, _t, encoded in entries if seq > start)
        found.sort(key=by_sequence)
        return [Outgoing.from_msgpack(encoded) for _seq, encoded in found]


def split_subscriptions(subscriptions: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Subscriptions (name -> start) as the one channel each receives, and the patterns left."""
    channels: dict[str, int] = {}
    patterns: dict[str, int] = {}
    for name, start in subscriptions.items():
        single = literal_name(name)  # a name, or a pattern that matches one name only (literal=True)
        if single is None:
            patterns[name] = start
        else:
            channels[single] = min(start, channels.get(single, start))
    return channels, patterns


def by_sequence(item: tuple[int, Any]) -> int:
    """Sort key of ``(publish sequence number, message)`` pairs."""
    return item[0]


class MemoryStore:
    """Channel history and parked sessions of one node (in memory)."""

    shared = False

    def __init__(self, config: Recovery) -> None:
        self.config = config
        self.history = History(config)
        self.sessions: OrderedDict[str, tuple[float, Snapshot]] = OrderedDict()  # token -> (expiry, snapshot)

    @property
    def seq(self) -> int:
        """Sequence number of the last publish recorded (a subscription starts after it)."""
        return self.history.seq

    def record(
        self, channel: str, data: Any, packet: Packet[Any] | None, check: Callable[[Outgoing], None]
    ) -> Outgoing:
        """See :meth:`History.record`."""
        return self.history.record(channel, data, packet, check)

    async def recent(self, channel: str, limit: int | None) -> list[Packet[Any]]:
        """See :meth:`History.recent`."""
        return self.history.recent(channel, limit)

    def forget(self, token: str) -> None:
        """A session that ended on purpose (nothing is kept of it in memory)."""

    def park(self, token: str, snapshot: Snapshot) -> None:
        """Keep a disconnected session for ``session_ttl`` seconds."""
        sessions = self.sessions
        now = time.monotonic()
        while sessions:  # expired ones first (oldest first), then the oldest past max_sessions
            oldest_token, (expiry, _snap) = next(iter(sessions.items()))
            if expiry > now and len(sessions) < self.config.max_sessions:
                break
            del sessions[oldest_token]
        sessions[token] = (now + self.config.session_ttl, snapshot)

    def claim(self, token: str | None, positions: Mapping[str, tuple[str, int]]) -> Resume | None:
        """Take the session of ``token`` (once) with what it missed; None if it cannot be resumed."""
        if token is None:
            return None
        parked = self.sessions.pop(token, None)
        if parked is None:
            return None
        expiry, snapshot = parked
        if expiry <= time.monotonic():
            return None
        missed = self.history.missed(snapshot.subscriptions, positions)
        if missed is None:
            return None
        return Resume(snapshot, missed)


def starts(names: Iterable[str], seq: int) -> dict[str, int]:
    """Subscriptions that start now (after publish number ``seq``)."""
    return dict.fromkeys(names, seq)

