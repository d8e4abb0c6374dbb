"""The frame layer in use (compiled ``_framing_c`` or pure ``_framing_py``)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # both implementations have the pure twin's API
    from ._framing_py import MessageListener, close_reply, valid_close_code, write_message
else:
    from ._ext import load

    _impl = load("framing")
    MessageListener = _impl.MessageListener
    close_reply = _impl.close_reply
    valid_close_code = _impl.valid_close_code
    write_message = _impl.write_message

__all__ = ["MessageListener", "close_reply", "valid_close_code", "write_message"]
