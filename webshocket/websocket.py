"""0.5.x module path: ``webshocket.websocket.server`` and ``.client``."""

from .client import WebSocketClient
from .client import WebSocketClient as client  # noqa: N813 - 0.5.x name
from .server import H, WebSocketServer
from .server import WebSocketServer as server  # noqa: N813 - 0.5.x name

__all__ = ["H", "WebSocketClient", "WebSocketServer", "client", "server"]
