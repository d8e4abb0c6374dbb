"""0.5.x module path: ``webshocket.websocket.server`` and ``.client``."""

from .client import WebSocketClient
from .client import WebSocketClient as client  # noqa: N813 - 0.5.x name
from .connection import ClientConnection as ClientConnection
from .enum import ClientType as ClientType
from .enum import ConnectionState as ConnectionState
from .enum import PacketSource as PacketSource
from .enum import RPCErrorCode as RPCErrorCode
from .enum import ServerState as ServerState
from .exceptions import ConnectionClosedError as ConnectionClosedError
from .exceptions import ConnectionFailedError as ConnectionFailedError
from .exceptions import RateLimitError as RateLimitError
from .exceptions import ReceiveTimeoutError as ReceiveTimeoutError
from .exceptions import RPCError as RPCError
from .exceptions import RPCTimeoutError as RPCTimeoutError
from .exceptions import WebSocketError as WebSocketError
from .handler import DefaultWebSocketHandler as DefaultWebSocketHandler
from .handler import WebSocketHandler as WebSocketHandler
from .packets import Packet as Packet
from .packets import RPCRequest as RPCRequest
from .packets import RPCResponse as RPCResponse
from .packets import deserialize as deserialize
from .packets import serialize as serialize
from .server import H, WebSocketServer
from .server import WebSocketServer as server  # noqa: N813 - 0.5.x name
from .typing import RateLimitConfig as RateLimitConfig
from .typing import RPC_Predicate as RPC_Predicate
from .typing import RPCMethod as RPCMethod
from .typing import Serializable as Serializable

# ``X as X`` imports re-export names 0.5.x's module had (it imported them): docs/migration.md 2.14.

__all__ = ["H", "WebSocketClient", "WebSocketServer", "client", "server"]
