"""Exception hierarchy (identical names and bases to webshocket 0.5.2)."""


class WebSocketError(Exception):
    """Base class of every error raised by webshocket."""


class ConnectionError(WebSocketError):
    """Base class of connection errors."""


class ConnectionFailedError(ConnectionError):
    """The client could not establish a connection.

    When a lower layer said why (``ConnectionRefusedError``, ``picows.WSError`` for a refused
    upgrade, ``ssl.SSLCertVerificationError``, ...), the exception raised is also an instance
    of that exception's class (see :func:`connection_failed`), so ``except`` clauses written
    for webshocket 0.5.x, which let those through, still catch it. The original is its
    ``__cause__``.
    """


_COMBINED: dict[type[BaseException], type[ConnectionFailedError]] = {}


def connection_failed(message: str, cause: BaseException | None) -> ConnectionFailedError:
    """A :class:`ConnectionFailedError` saying ``message`` that is also an instance of ``cause``'s class."""
    if cause is None or type(cause) is ConnectionFailedError:
        return ConnectionFailedError(message)
    base = type(cause)
    if isinstance(cause, ConnectionFailedError):  # already combined: keep its other class
        base = next(
            (b for b in base.__mro__[1:] if issubclass(b, BaseException) and not issubclass(b, WebSocketError)), base
        )
    combined = _COMBINED.get(base)
    if combined is None:
        try:
            combined = type(
                f"ConnectionFailedError[{base.__name__}]",
                (ConnectionFailedError, base),
                {"__module__": __name__, "__str__": _message, "__reduce__": _reduce},
            )
        except TypeError:  # a class that cannot be combined (layout): ours alone
            combined = ConnectionFailedError
        _COMBINED[base] = combined
    try:
        error = combined(*cause.args)
    except Exception:
        error = ConnectionFailedError(message)
    error.message = message  # type: ignore[attr-defined]
    return error


def _message(self: BaseException) -> str:
    return str(getattr(self, "message", "") or BaseException.__str__(self))


def _reduce(self: BaseException) -> tuple[type[ConnectionFailedError], tuple[str]]:
    return ConnectionFailedError, (str(self),)


class ConnectionClosedError(ConnectionError):
    """The connection is closed (or closed while an operation waited on it)."""


class InvalidURIError(ConnectionError):
    """The WebSocket URI is not a valid ``ws://`` or ``wss://`` URI."""


class MessageError(WebSocketError):
    """Base class of message processing errors."""


class PacketError(MessageError):
    """A packet is malformed or used where it does not belong."""


class PacketValidationError(PacketError):
    """A packet failed validation."""


class TimeoutError(WebSocketError):
    """Base class of timeouts."""


class ReceiveTimeoutError(TimeoutError):
    """``recv()`` got no message within its timeout."""


class RPCTimeoutError(TimeoutError):
    """An RPC got no response within its timeout."""


class RPCError(WebSocketError):
    """Raise it in an RPC method to send an APPLICATION_ERROR reply with its message."""


class RPCMethodNotFoundError(RPCError):
    """The RPC method does not exist."""


class RateLimitError(RPCError):
    """The rate limit of an RPC method was exceeded."""


class SubscriptionLimitError(RPCError):
    """A connection tried to subscribe to more channels than ``max_subscribed_channels``.

    It is an :class:`RPCError`, so raised inside an RPC method it becomes an
    APPLICATION_ERROR reply carrying its message.
    """


__all__ = [
    "ConnectionClosedError",
    "ConnectionError",
    "ConnectionFailedError",
    "InvalidURIError",
    "MessageError",
    "PacketError",
    "PacketValidationError",
    "RPCError",
    "RPCMethodNotFoundError",
    "RPCTimeoutError",
    "RateLimitError",
    "ReceiveTimeoutError",
    "SubscriptionLimitError",
    "TimeoutError",
    "WebSocketError",
]
