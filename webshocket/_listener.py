"""The connection listener in use (compiled ``_listener_c`` or pure ``_listener_py``)."""

from ._ext import load

_impl = load("listener")

ServerCore = _impl.ServerCore
ServerListener = _impl.ServerListener
close_reply = _impl.close_reply
valid_close_code = _impl.valid_close_code

__all__ = ["ServerCore", "ServerListener", "close_reply", "valid_close_code"]
