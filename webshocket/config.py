"""The server's options, checked once and frozen: what the engine reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from .constant import (
    DEFAULT_MAX_INFLIGHT_RPCS,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SEND_BUFFER,
)
from .presence import Presence
from .recovery import Recovery
from .request import OriginPolicy

__all__ = ["ServerConfig"]

NO_LIMIT = 1 << 40
"""The bound of an option given as "no limit" (a count no server reaches, safe to add to)."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Limits and policies of one server (see :class:`~webshocket.WebSocketServer` for each option).

    Raises:
        ValueError: an option is out of range (the message names it).
    """

    max_connection: int | None = None
    packet_qsize: int = 512
    rpc_task_limit: int = 1024
    max_subscribed_channels: int | None = 5
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER
    slow_consumer_policy: str = "disconnect"
    max_inflight_rpcs: int = DEFAULT_MAX_INFLIGHT_RPCS
    rpc_task_reserve: int = 4
    rpc_task_share: int | None = None
    slow_consumer_timeout: float = 5.0
    max_send_backlog: int = 64 * DEFAULT_MAX_SEND_BUFFER
    max_total_send_backlog: int = 256 * 1024 * 1024
    max_message_frames: int = 1024
    max_queued_bytes: int = 4 * DEFAULT_MAX_MESSAGE_SIZE
    handshake_timeout: float | None = 5.0
    error_detail: str = "full"
    recovery: Recovery | None = None
    presence: Presence | None = None
    allowed_origins: tuple[str, ...] | None = None
    allow_missing_origin: bool = True
    origin_policy: OriginPolicy | None = field(default=None, init=False, repr=False, compare=False)
    """The compiled ``allowed_origins`` check (None: every origin is allowed)."""

    @property
    def task_pool(self) -> int:
        """Tasks of the pool shared by all connections (``rpc_task_limit``; 0: no bound, as in 0.5.x,
        which never used the option)."""
        return self.rpc_task_limit or NO_LIMIT

    @property
    def task_share(self) -> int:
        """Tasks of the shared pool one connection may hold at once (``rpc_task_share``, or 1/8 of the pool)."""
        if self.rpc_task_share is not None:
            return self.rpc_task_share
        return max(1, self.rpc_task_limit // 8) if self.rpc_task_limit else NO_LIMIT

    @property
    def queue_limit(self) -> int:
        """Messages of a connection queued for ``recv()``/``on_receive`` before reading pauses
        (``packet_qsize``; 0 or less: no bound on their number, as 0.5.x's unbounded queue;
        ``max_queued_bytes`` still bounds their bytes)."""
        return self.packet_qsize if self.packet_qsize > 0 else NO_LIMIT

    def __post_init__(self) -> None:
        if self.rpc_task_limit < 0:
            raise ValueError("rpc_task_limit must be 0 (no limit) or more")
        if self.max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        if self.max_send_buffer < 1:
            raise ValueError("max_send_buffer must be positive")
        if self.slow_consumer_policy not in ("disconnect", "drop"):
            raise ValueError('slow_consumer_policy must be "disconnect" or "drop"')
        if self.max_inflight_rpcs < 2:
            raise ValueError("max_inflight_rpcs must be at least 2")
        if self.rpc_task_reserve < 1:
            raise ValueError("rpc_task_reserve must be at least 1")
        if self.rpc_task_share is not None and self.rpc_task_share < 1:
            raise ValueError("rpc_task_share must be at least 1 (or None: rpc_task_limit // 8)")
        if not self.slow_consumer_timeout >= 0:
            raise ValueError("slow_consumer_timeout must be 0 (close at once) or more seconds")
        if self.max_send_backlog < self.max_send_buffer:
            raise ValueError("max_send_backlog must be at least max_send_buffer")
        if self.max_total_send_backlog < self.max_send_backlog:
            raise ValueError("max_total_send_backlog must be at least max_send_backlog")
        if self.max_queued_bytes < 1:
            raise ValueError("max_queued_bytes must be positive")
        if self.max_message_frames < 1:
            raise ValueError("max_message_frames must be at least 1")
        if self.error_detail not in ("full", "minimal"):
            raise ValueError('error_detail must be "full" (0.5.x) or "minimal" (type and reference id only)')
        if self.handshake_timeout is not None and not self.handshake_timeout > 0:
            raise ValueError("handshake_timeout must be positive (or None: no timeout)")
        origins = self.allowed_origins
        if origins is not None:
            origins = (origins,) if isinstance(origins, str) else tuple(origins)  # a list or one string, too
            object.__setattr__(self, "allowed_origins", origins)
            object.__setattr__(self, "origin_policy", OriginPolicy(origins, self.allow_missing_origin))
