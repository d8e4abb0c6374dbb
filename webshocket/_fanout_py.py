# cython: annotation_typing=False
"""Pure-Python send path (twin of the compiled ``_fanout_c``, built from this file).

:class:`Sink` is a connection's outgoing side: frames queued during one loop
iteration leave in one write (:class:`Flusher` writes every dirty sink once the
iteration's work is done), and a push to a connection whose buffer is full goes
to the slow-consumer policy. :class:`Outgoing` is one packet encoded and framed
at most once per dialect; :func:`fan_out` sends it to many connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Any, Protocol

from ._codec import decode_packet, encode_packet, encode_push, frame
from .constant import DEFAULT_MAX_SEND_BUFFER

__all__ = [
    "CLOSE_SLOW_CONSUMER",
    "FLUSH_FRAMES",
    "SLOW_CONSUMER_GRACE",
    "Endpoint",
    "Flusher",
    "Outgoing",
    "Sink",
    "fan_out",
]

CLOSE_SLOW_CONSUMER = 4008
"""Close code for a client whose outgoing buffer was above ``max_send_buffer`` when a packet was pushed."""
SLOW_CONSUMER_GRACE = 2.0
"""Seconds a slow consumer gets to read its close frame before the connection is aborted."""
FLUSH_FRAMES = 16
"""RPC replies a connection queues before they are written without waiting for the end of
the loop iteration: a long batch of requests read at once starts answering while the rest is
still being handled, so the peer works in parallel instead of in lock-step (pipelining)."""


class Owner(Protocol):
    """The connection a sink belongs to, as the sink asks it to close (an object, not a bound
    method: one less object per connection)."""

    def close_slow_consumer(self) -> None: ...


class Flusher:
    """Writes the frames every sink queued during a loop iteration, one write per sink."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirty: list[Sink] = []
        self.scheduled = False

    def add(self, sink: Sink) -> None:
        self.dirty.append(sink)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        dirty = self.dirty
        self.dirty = []
        for sink in dirty:
            sink.flush()


class Sink:
    """The outgoing side of one connection.

    Frames queued during a loop iteration leave together, in one write, when the
    iteration's work is done, or, for RPC replies, as soon as ``flush_frames`` are waiting.
    """

    def __init__(
        self,
        transport: Any,
        as_json: bool,
        max_out: int = DEFAULT_MAX_SEND_BUFFER,
        drop: bool = False,
        flusher: Flusher | None = None,
        stats: dict[str, int] | None = None,
        owner: Owner | None = None,
        max_backlog: int = 64 * DEFAULT_MAX_SEND_BUFFER,
        patient: bool = True,
    ) -> None:
        self.transport = transport  # picows WSTransport
        self.writer = transport.underlying_transport  # its socket transport, which writes
        self.as_json = as_json
        self.open = True
        self.blocked = False  # the transport's write buffer is above its high-water mark
        # Frames waiting for the end of this loop iteration: the first alone in ``first`` (no
        # list, nothing for the garbage collector, when a connection gets one frame per
        # iteration, as subscribers of many different channels do), all of them in ``out``
        # from the second on.
        self.first: bytes | None = None
        self.out: list[bytes] | None = None
        self.out_size = 0
        self.flusher = flusher  # None: write at once
        self.max_out = max_out
        self.flush_frames = FLUSH_FRAMES
        self.drop = drop  # slow-consumer policy: True "drop", False "disconnect"
        self.dropped = 0
        self.stats = {"dropped": 0, "slow_consumer_disconnects": 0, "deliveries": 0} if stats is None else stats
        self.owner = owner  # closes the connection (policy "disconnect")
        self.max_backlog = max_backlog  # hard cap on the bytes held for this connection
        self.patient = patient  # above max_out, pushes still queue (up to max_backlog) for a while
        self.corked = False  # frames queue but are not written (a session resume puts older ones first)

    def queue(self, frames: bytes) -> None:
        """Queue frames for the end of this loop iteration (written at once without a flusher)."""
        if not self.open:
            return
        first = self.first
        if first is None:
            flusher = self.flusher
            if flusher is None:
                self.writer.write(frames)
                return
            self.first = frames
            self.out_size = len(frames)
            flusher.add(self)
            return
        out = self.out
        if out is None:
            self.out = [first, frames]
        else:
            out.append(frames)
        self.out_size += len(frames)

    def send(self, frames: bytes) -> None:
        """Queue an RPC reply (never dropped). Its caller is waiting: once ``flush_frames`` are
        queued they are written at once, so a long batch of requests starts being answered
        before it is all handled."""
        self.queue(frames)
        if self.first is not None and (self.queued_frames() >= self.flush_frames or self.out_size > self.max_out):
            self.flush()  # past max_out the transport's high-water mark must see it: backpressure now

    def queued_frames(self) -> int:
        """How many frames wait for the end of this loop iteration."""
        if self.first is None:
            return 0
        out = self.out
        return 1 if out is None else len(out)

    def queued_size(self) -> int:
        """Bytes of the frames waiting for the end of this loop iteration."""
        return 0 if self.first is None else self.out_size

    def push(self, frames: bytes) -> bool:
        """Queue a pushed packet (send, publish, broadcast); False if the slow-consumer policy refused it.

        Pushes wait for the end of the loop iteration however many there are: one write per
        subscriber per iteration is what keeps fan-out cheap."""
        if not self.admit(len(frames)):
            return False
        self.queue(frames)
        return True

    def admit(self, size: int) -> bool:
        """May a pushed packet of ``size`` bytes go out? If the buffer is full, apply the policy.

        Below ``max_out`` everything goes. Above it, policy "drop" drops; policy "disconnect"
        keeps queueing while the backlog stays under ``max_backlog`` (the engine closes a
        connection that stays above ``max_out`` too long), and closes at once past it, or at
        once above ``max_out`` when not ``patient``.
        """
        if not self.open:
            return False
        if not self.blocked:
            if self.first is None or self.out_size + size <= self.max_out:
                return True
            self.flush()  # the transport's high-water mark decides (pause_writing sets blocked)
            if not self.blocked and not self.corked:
                return True
        if self.drop or not self.patient or self.backlog() + size > self.max_backlog:
            self.slow()
            return False
        return True

    def backlog(self) -> int:
        """Bytes held for this connection: the transport's write buffer and the frames queued."""
        return int(self.writer.get_write_buffer_size()) + self.queued_size()

    def slow(self) -> None:
        """A push found the outgoing buffer full: drop and count it, or close (code 4008)."""
        if self.drop:
            self.dropped += 1
            self.stats["dropped"] += 1
            return
        self.cut()

    def cut(self) -> None:
        """Close the connection as a slow consumer (code 4008), whatever the policy."""
        if not self.open:
            return
        self.stats["slow_consumer_disconnects"] += 1
        if self.owner is not None:
            self.owner.close_slow_consumer()
        # The close frame waits behind unread data: give the client a moment, then abort.
        asyncio.get_running_loop().call_later(SLOW_CONSUMER_GRACE, _abort, self.transport)

    def flush(self) -> None:
        """Write the queued frames now (unless corked)."""
        first = self.first
        if first is not None and not self.corked:
            out = self.out
            self.first = None
            self.out = None
            transport = self.transport
            if not transport.is_close_frame_sent and not transport.is_disconnected:
                if out is None:
                    self.writer.write(first)
                else:
                    self.writer.writelines(out)

    def uncork(self, front: list[bytes], keep: bool) -> None:
        """Write ``front``, then the frames queued while corked (``keep``; else they are dropped), now."""
        self.corked = False
        first = self.first
        out = self.out
        self.first = None
        self.out = None
        self.out_size = 0
        frames = front
        if keep and first is not None:
            frames = front + ([first] if out is None else out)
        if frames and self.open:
            size = 0
            for frames_of_one in frames:
                size += len(frames_of_one)
            self.first = frames[0]
            self.out = frames if len(frames) > 1 else None
            self.out_size = size
            self.flush()


class Endpoint:
    """Where pushes go: a connection's outgoing side (:class:`~webshocket.ClientConnection` derives from it)."""

    __slots__ = ("_sink",)

    def __init__(self, sink: Sink) -> None:
        self._sink = sink


def _abort(transport: Any) -> None:
    if not transport.is_disconnected:
        transport.disconnect(False)


class Outgoing:
    """One packet on its way to many clients: encoded and framed at most once per dialect."""

    def __init__(self, source: int, data: Any, channel: str | None, packet: Any = None) -> None:
        self.source = source
        self.data = data
        self.channel = channel
        self.packet = packet
        self.encoded_mp: bytes | None = None
        self.encoded_json: bytes | None = None
        self.frames_mp: bytes | None = None
        self.frames_json: bytes | None = None

    @staticmethod
    def from_msgpack(encoded: bytes) -> Outgoing:
        """A packet that arrived encoded (msgpack) from another node."""
        out = Outgoing(0, None, None, None)
        out.encoded_mp = encoded
        return out

    def encoded(self, as_json: bool) -> bytes:
        """The packet encoded for one dialect."""
        if as_json:
            if self.encoded_json is None:
                self.encoded_json = self._encode(True)
            return self.encoded_json
        if self.encoded_mp is None:
            self.encoded_mp = self._encode(False)
        return self.encoded_mp

    def _encode(self, as_json: bool) -> bytes:
        if self.packet is not None:
            return encode_packet(self.packet, as_json)
        if self.encoded_mp is not None:  # from another node: re-encode for JSON clients
            return encode_packet(decode_packet(self.encoded_mp, False), as_json)
        return encode_push(self.source, self.data, self.channel, as_json)

    def frames(self, as_json: bool) -> bytes:
        """The packet framed for one dialect."""
        if as_json:
            if self.frames_json is None:
                self.frames_json = frame(self.encoded(True))
            return self.frames_json
        if self.frames_mp is None:
            self.frames_mp = frame(self.encoded(False))
        return self.frames_mp


def fan_out(
    recipients: Collection[Any],
    out: Outgoing,
    excluded: Collection[Any],
    predicate: Callable[[Any], bool] | None,
) -> int:
    """Send ``out`` to each recipient (an :class:`Endpoint`); returns how many got it."""
    sent = 0
    # A predicate may (un)subscribe clients: iterate over a snapshot then.
    for client in tuple(recipients) if predicate is not None else recipients:
        if excluded and client in excluded:
            continue
        if predicate is not None and not predicate(client):
            continue
        sink = client._sink
        if sink.push(out.frames(sink.as_json)):
            sent += 1
    return sent
