# cython: annotation_typing=False
"""Pure-Python frame layer (twin of the compiled ``_framing_c``, built from this file).

One layer turns WebSocket frames into messages for both sides: the server's
connection listener and the client's listener derive from :class:`MessageListener`.
It checks what RFC 6455 asks of every frame and message (no reserved bits without
an extension, fragments in order, text is UTF-8, a message no larger than
``max_message_size`` bytes in no more than ``max_frames`` frames), answers pings after
those checks, and answers a close frame with the echo of its code. A violation closes
the connection with the matching code (1002, 1007, 1009). :func:`write_message` is the way out: one message, fragmented
into frames of at most ``chunk_size`` bytes.
"""

from __future__ import annotations

from typing import Any

import picows
from picows import WSCloseCode, WSMsgType

from .constant import DEFAULT_CHUNK_SIZE, DEFAULT_MAX_MESSAGE_FRAMES


def _probe() -> None:
    """Its type tells whether this module runs as Python or compiled by Cython."""


if type(_probe).__name__ == "function":  # pure Python; compiled, the .pxd cimports WSListener instead
    from picows import *  # noqa: F403

__all__ = ["MessageListener", "close_reply", "valid_close_code", "write_message"]

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE
_PING = WSMsgType.PING
_CLOSE_OK = WSCloseCode.OK
_PROTOCOL_ERROR = WSCloseCode.PROTOCOL_ERROR
# The same kinds as C ints, compiled (the .pxd declares them): a frame's kind is compared
# without making it a Python WSMsgType first (that call costs more than the rest of the test).
BINARY_KIND = _BINARY.value
TEXT_KIND = _TEXT.value
CONTINUATION_KIND = _CONTINUATION.value
CLOSE_KIND = _CLOSE.value
PING_KIND = _PING.value


class MessageListener(WSListener):  # noqa: F405
    """A picows listener that delivers whole, checked messages to :meth:`on_message`.

    Subclasses override :meth:`on_message`, and may extend :meth:`on_close_frame`
    (the peer closes) and :meth:`fail` (the peer broke the protocol).
    """

    __slots__ = ("fragments", "fragments_size", "fragments_text", "heard", "max_frames", "max_message_size")

    def __init__(self, max_message_size: int, max_frames: int = DEFAULT_MAX_MESSAGE_FRAMES) -> None:
        self.max_message_size = max_message_size
        self.max_frames = max_frames  # frames one message may take
        self.fragments: list[bytes] | None = None  # parts of a fragmented message, in order
        self.fragments_size = 0
        self.fragments_text = False
        self.heard = False  # a frame arrived since the server's keep-alive last looked

    def on_message(self, payload: bytes) -> None:
        """One complete message arrived (override)."""

    def on_close_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        """The peer sent a close frame: answer it (its code echoed) and disconnect."""
        if not transport.is_close_frame_sent:
            code, reason = close_reply(frame)
            transport.send_close(code, reason)
        transport.disconnect()

    def fail(self, transport: picows.WSTransport, code: WSCloseCode, reason: bytes) -> None:
        """The peer broke the protocol: close with ``code`` and disconnect."""
        self.fragments = None
        if not transport.is_close_frame_sent:
            transport.send_close(code, reason)
        transport.disconnect()

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        self.heard = True
        kind: int = frame.msg_type  # type: ignore[assignment]  # a C int compiled, else an IntEnum (the stub: an Enum)
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            self.fail(transport, WSCloseCode.PROTOCOL_ERROR, b"Reserved bits set without a negotiated extension")
            return
        if kind == BINARY_KIND or kind == TEXT_KIND:
            if self.fragments is not None:
                self.fail(transport, WSCloseCode.PROTOCOL_ERROR, b"New message before the fragmented one ended")
                return
            if frame.fin:
                payload = frame.get_payload_as_bytes()
                if kind == TEXT_KIND and not _valid_utf8(payload):
                    self.fail(transport, WSCloseCode.INVALID_TEXT, b"Invalid UTF-8 in a text message")
                    return
                self.on_message(payload)
            else:
                self.fragments = [frame.get_payload_as_bytes()]
                self.fragments_size = frame.payload_size
                self.fragments_text = kind == TEXT_KIND
                self._check_size(transport)
        elif kind == CONTINUATION_KIND:
            fragments = self.fragments
            if fragments is None:
                self.fail(transport, WSCloseCode.PROTOCOL_ERROR, b"Continuation frame without a message")
                return
            fragments.append(frame.get_payload_as_bytes())
            self.fragments_size += frame.payload_size
            if not self._check_size(transport):
                return
            if frame.fin:
                self.fragments = None
                payload = b"".join(fragments)
                if self.fragments_text and not _valid_utf8(payload):
                    self.fail(transport, WSCloseCode.INVALID_TEXT, b"Invalid UTF-8 in a text message")
                    return
                self.on_message(payload)
        elif kind == PING_KIND:  # answered here (not by picows) so that its reserved bits were checked
            transport.send_pong(frame.get_payload_as_bytes())
        elif kind == CLOSE_KIND:
            self.on_close_frame(transport, frame)

    def _check_size(self, transport: picows.WSTransport) -> bool:
        if self.fragments_size > self.max_message_size:
            self.fail(transport, WSCloseCode.MESSAGE_TOO_BIG, b"Message too big")
            return False
        fragments = self.fragments
        if fragments is not None and len(fragments) > self.max_frames:
            self.fail(transport, WSCloseCode.MESSAGE_TOO_BIG, b"Message in too many frames")
            return False
        return True


def valid_close_code(code: int) -> bool:
    """A close code a peer may send (RFC 6455 7.4, with the registered 1012-1014)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def close_reply(frame: picows.WSFrame) -> tuple[WSCloseCode, bytes]:
    """The close frame that answers ``frame``: its code echoed, 1000 if it had none, 1002 if invalid."""
    if frame.payload_size == 0:
        return _CLOSE_OK, b""
    code = frame.get_close_code()
    if not valid_close_code(int(code)):  # type: ignore[call-overload]  # an IntEnum (picows's stub: an Enum), or an int
        return _PROTOCOL_ERROR, b"Invalid close code"
    return code, frame.get_close_message()


def write_message(transport: Any, payload: bytes | bytearray, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
    """Send ``payload`` on a picows transport as one binary message, in frames of at most ``chunk_size``."""
    size = len(payload)
    if size <= chunk_size:
        transport.send(_BINARY, payload)
        return
    view = memoryview(payload)
    transport.send(_BINARY, view[:chunk_size], False)
    offset = chunk_size
    while size - offset > chunk_size:
        transport.send(_CONTINUATION, view[offset : offset + chunk_size], False)
        offset += chunk_size
    transport.send(_CONTINUATION, view[offset:], True)


def _valid_utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
