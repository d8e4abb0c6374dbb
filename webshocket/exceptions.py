"""Exception hierarchy (identical names and bases to webshocket 0.5.2)."""


class WebSocketError(Exception):
    """Base class of every error raised by webshocket."""


class ConnectionError(WebSocketError):
    """Base class of connection errors."""


class ConnectionFailedError(ConnectionError):
    """The client could not establish a connection."""


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
