"""The connection engine in use (compiled ``_listener_c`` or pure ``_listener_py``)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # both implementations have the pure twin's API
    from ._listener_py import ServerCore, ServerListener
else:
    from ._ext import load

    _impl = load("listener")
    ServerCore = _impl.ServerCore
    ServerListener = _impl.ServerListener

__all__ = ["ServerCore", "ServerListener"]
