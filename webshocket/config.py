"""The server's options, checked once and frozen: what the engine reads."""

from __future__ import annotations

from dataclasses import dataclass

from .constant import (
    DEFAULT_MAX_INFLIGHT_RPCS,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SEND_BUFFER,
)

__all__ = ["ServerConfig"]


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

    def __post_init__(self) -> None:
        if self.rpc_task_limit < 1:
            raise ValueError("rpc_task_limit must be at least 1")
        if self.max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        if self.max_send_buffer < 1:
            raise ValueError("max_send_buffer must be positive")
        if self.slow_consumer_policy not in ("disconnect", "drop"):
            raise ValueError('slow_consumer_policy must be "disconnect" or "drop"')
        if self.max_inflight_rpcs < 2:
            raise ValueError("max_inflight_rpcs must be at least 2")
        if self.packet_qsize < 1:
            raise ValueError("packet_qsize must be at least 1")
