"""0.5.x module path: ``webshocket.websocket.server`` and ``.client``."""

from .client import WebSocketClient
from .client import WebSocketClient as client
from .server import WebSocketServer
from .server import WebSocketServer as server

__all__ = ["WebSocketClient", "WebSocketServer", "client", "server"]
