"""Webshocket: RPC, streaming, sessions and pub/sub over WebSockets, on picows and uvloop.

A drop-in for the ``webshocket`` 0.5.x API and wire format.
"""

import logging

from ._ext import SPEEDUPS
from ._loop import install_uvloop as _install_uvloop
from ._loop import run
from .client import WebSocketClient
from .connection import ClientConnection
from .enum import ClientType, ConnectionState, PacketSource, RPCErrorCode, ServerState
from .exceptions import (
    ConnectionClosedError,
    ConnectionError,
    ConnectionFailedError,
    InvalidURIError,
    MessageError,
    PacketError,
    PacketValidationError,
    RateLimitError,
    ReceiveTimeoutError,
    RPCError,
    RPCMethodNotFoundError,
    RPCTimeoutError,
    SubscriptionLimitError,
    TimeoutError,
    WebSocketError,
)
from .handler import DefaultWebSocketHandler, WebSocketHandler
from .packets import Packet, RPCRequest, RPCResponse
from .predicate import All, Any, Has, Is, IsEqual
from .presence import Presence
from .recovery import Recovery
from .request import Reject, Request
from .rpc import rate_limit, rpc_method
from .server import WebSocketServer

__version__ = "0.6.0"
__author__ = "Floydous"  # as in 0.5.x
__license__ = "MIT"

__all__ = [
    "SPEEDUPS",
    "All",
    "Any",
    "ClientConnection",
    "ClientType",
    "ConnectionClosedError",
    "ConnectionError",
    "ConnectionFailedError",
    "ConnectionState",
    "DefaultWebSocketHandler",
    "Has",
    "InvalidURIError",
    "Is",
    "IsEqual",
    "MessageError",
    "Packet",
    "PacketError",
    "PacketSource",
    "PacketValidationError",
    "Presence",
    "RPCError",
    "RPCErrorCode",
    "RPCMethodNotFoundError",
    "RPCRequest",
    "RPCResponse",
    "RPCTimeoutError",
    "RateLimitError",
    "ReceiveTimeoutError",
    "Recovery",
    "Reject",
    "Request",
    "ServerState",
    "SubscriptionLimitError",
    "TimeoutError",
    "WebSocketClient",
    "WebSocketError",
    "WebSocketHandler",
    "WebSocketServer",
    "rate_limit",
    "rpc_method",
    "run",
]

UVLOOP: bool = _install_uvloop()
"""True when ``asyncio.run()`` uses uvloop (installed on import; ``WEBSHOCKET_NO_UVLOOP=1`` disables)."""

log = logging.getLogger(__name__)
"""The package's logger (0.5.x name)."""
log.addHandler(logging.NullHandler())

from . import websocket as websocket  # noqa: E402  # 0.5.x: ``webshocket.websocket.server`` after ``import webshocket``
