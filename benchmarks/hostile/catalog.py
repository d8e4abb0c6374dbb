"""The attacks: what each does, the options it changes, what it is expected to end in, its RSS bound.

Every attack runs against the server's default options unless :attr:`Attack.options` (every
mode) or :attr:`Attack.quick_options` (``--quick`` only) lowers one to make it practical
within seconds; the report prints those next to the attack.

**RSS bound.** The server's RSS may grow, during the attack and the second after it, by at
most::

    SLACK + conns x (PER_CONN + min(rpcs, max_inflight_rpcs) x PER_RPC) + held

over its *baseline* (its median RSS with the well-behaved clients calling, before the
attack). ``conns`` is the number of attacker connections the server may hold at once and
``rpcs`` the RPCs each one sends that can be in flight (running or queued: reading pauses at
``max_inflight_rpcs``); ``held`` is what the byte limits let the server hold for this
attack (``max_send_buffer``, ``max_send_backlog``, ``packet_qsize``, ``max_message_size``),
computed from the limits in force in that server (its READY line reports them). The
constants are the costs the limits do not count in bytes:

* :data:`PER_CONN` 64 KiB: one connection (transport, listener, read buffer; the e2e suite
  measures ~17 KiB per idle connection);
* :data:`PER_RPC` 4 KiB: one RPC in flight (an ``asyncio.Task``, its coroutine and frame,
  the decoded request, bookkeeping: ~1-2 KiB in CPython 3.11);
* :data:`SLACK` 16 MiB: memory the allocator keeps after a burst (pymalloc arenas, malloc
  fragmentation), the garbage collector running late, code paths warmed for the first time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KiB = 1024
MiB = 1024 * KiB

SLACK = 16 * MiB
PER_CONN = 64 * KiB
PER_RPC = 4 * KiB
LATENCY_LIMIT_MS = 250.0
"""Worst latency a well-behaved call may see during an attack for a PASS."""

Config = dict[str, Any]


@dataclass(frozen=True)
class Attack:
    """One attack of the suite (implemented in :mod:`benchmarks.hostile.attacks` under the same key)."""

    key: str
    what: str
    expect_cut: bool | None  # True: the server must cut it; False: it stays; None: it leaves by itself
    conns: int
    rpcs: int
    held: Callable[[Config], int]
    held_text: str
    handler: str = "app"
    options: dict[str, Any] = field(default_factory=dict)
    quick_options: dict[str, Any] = field(default_factory=dict)

    def server_options(self, quick: bool) -> dict[str, Any]:
        """The options this attack changes from the server's defaults."""
        return {**self.options, **(self.quick_options if quick else {})}

    def allowance(self, config: Config) -> dict[str, int]:
        """The parts of the RSS growth this attack is allowed, in bytes (see the module docstring)."""
        rpcs = min(self.rpcs, int(config["max_inflight_rpcs"]))
        return {
            "slack": SLACK,
            "connections": self.conns * PER_CONN,
            "rpcs": self.conns * rpcs * PER_RPC,
            "held": int(self.held(config)),
        }

    def formula(self, config: Config) -> str:
        """The bound, spelled out with this attack's figures (for the report)."""
        rpcs = min(self.rpcs, int(config["max_inflight_rpcs"]))
        text = f"16 MiB + {self.conns} conn x (64 KiB"
        text += f" + {rpcs} RPC x 4 KiB)" if rpcs else ")"
        return text + (f" + {self.held_text}" if self.held_text else "")


def _reply_cap(config: Config) -> int:
    """Bytes of replies one connection may hold: about twice ``max_send_buffer`` (one batch is written at once)."""
    return 2 * int(config["max_send_buffer"])


BLOB = 64 * KiB
CHUNK = 1 * KiB
INBOX_PACKETS = 300
INBOX_SIZE = 16 * KiB
BURST = 3000
BURST_SIZE = 16 * KiB
DEEP = 100_000
DEEP_LEVEL = 80  # bytes per level of deep(): a one-item list (64 B) and its GC header (16 B)

ATTACKS: dict[str, Attack] = {
    a.key: a
    for a in (
        Attack(
            "same-call-id",
            "3 clients each open 600 `waiting_stream` calls, all with call_id `same`, then leave "
            "without a close frame; again and again",
            expect_cut=None,
            conns=6,
            rpcs=1,
            held=lambda c: 6 * _reply_cap(c),
            held_text="6 x 2 x max_send_buffer",
        ),
        Attack(
            "paused-leavers",
            "rounds of 4 clients each send 300 `wait` calls (more than max_inflight_rpcs: reading "
            "pauses), then close the socket without a close frame",
            expect_cut=None,
            conns=12,
            rpcs=300,
            held=lambda c: 0,
            held_text="",
        ),
        Attack(
            "task-hog",
            "16 connections each send 200 `wait` calls and stay",
            expect_cut=False,
            conns=16,
            rpcs=200,
            held=lambda c: 0,
            held_text="",
        ),
        Attack(
            "no-read-replies",
            "a client that never reads (4 KiB receive buffer) sends 3,000 requests for 64 KiB `blob` replies",
            expect_cut=True,
            conns=1,
            rpcs=3000,
            held=lambda c: _reply_cap(c) + BLOB,
            held_text="2 x max_send_buffer + 64 KiB",
            quick_options={"slow_consumer_timeout": 0.5},
        ),
        Attack(
            "no-read-stream",
            "a client that never reads (4 KiB receive buffer) calls `chunks(20000, 1024)`",
            expect_cut=True,
            conns=1,
            rpcs=1,
            held=lambda c: int(c["max_send_buffer"]) + BLOB,
            held_text="max_send_buffer + 64 KiB",
            quick_options={"slow_consumer_timeout": 0.5},
        ),
        Attack(
            "inbox-flood",
            "against an `on_receive` that never returns: 300 non-RPC packets of 16 KiB, then stays",
            expect_cut=False,
            conns=1,
            rpcs=0,
            held=lambda c: min(INBOX_PACKETS, int(c["packet_qsize"])) * INBOX_SIZE + int(c["max_message_size"]),
            held_text="min(300, packet_qsize) x 16 KiB + max_message_size",
            handler="blocking-receive",
        ),
        Attack(
            "fragments",
            "one message of 200,000 empty continuation frames; again and again",
            expect_cut=True,
            conns=2,
            rpcs=0,
            held=lambda c: 2 * int(c["max_message_size"]),
            held_text="2 x max_message_size",
        ),
        Attack(
            "busy-stream",
            "a client calls `numbers(100000)` (a stream that never awaits) and reads it; again and again",
            expect_cut=False,
            conns=1,
            rpcs=1,
            held=lambda c: int(c["max_send_buffer"]) + BLOB,
            held_text="max_send_buffer + 64 KiB",
        ),
        Attack(
            "deep-reply",
            "a client calls `deep(100000)` (a reply nested too deep to encode), one call after the other",
            expect_cut=False,
            conns=1,
            rpcs=1,
            held=lambda c: DEEP * DEEP_LEVEL,
            held_text="the value: 100,000 levels x 80 B",
        ),
        Attack(
            "slow-subscriber",
            "`pub` sends a 48 MiB burst (3,000 x 16 KiB) to two subscribers: one reads, one never reads",
            expect_cut=True,
            conns=3,
            rpcs=1,
            held=lambda c: 2 * int(c["max_send_backlog"]),
            held_text="2 x max_send_backlog",
        ),
        Attack(
            "silent-tcp",
            "200 TCP connections that never send a byte (no upgrade request)",
            expect_cut=True,
            conns=200,
            rpcs=0,
            held=lambda c: 0,
            held_text="",
            quick_options={"handshake_timeout": 0.5},
        ),
    )
}


def parse_attacks(text: str) -> list[Attack]:
    """``a,b`` (or empty: all) -> the attacks, in the suite's order; raises KeyError on an unknown name."""
    wanted = [w.strip() for w in text.split(",") if w.strip()]
    for name in wanted:
        if name not in ATTACKS:
            raise KeyError(name)
    return [a for key, a in ATTACKS.items() if not wanted or key in wanted]
