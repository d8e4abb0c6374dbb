"""Enumerations shared by the server, the client and the wire format."""

from enum import Enum, IntEnum


class ConnectionState(IntEnum):
    """State of one WebSocket connection."""

    DISCONNECTED = 1
    CONNECTING = 2
    CONNECTED = 3
    CLOSED = 4


class ServerState(IntEnum):
    """State of the server: listening or not."""

    CLOSED = 1
    SERVING = 2


class ClientType(Enum):
    """Dialect a connected client speaks.

    ``FRAMEWORK`` clients asked for the ``webshocket.v1`` subprotocol and get msgpack;
    ``GENERIC`` clients (browsers, other languages) get JSON.
    """

    FRAMEWORK = "Framework"
    GENERIC = "Generic"


class PacketSource(IntEnum):
    """Where a packet comes from (the ``source`` key of every packet)."""

    BROADCAST = 1
    CHANNEL = 2
    UNKNOWN = 3
    CUSTOM = 4
    RPC = 5
    SESSION = 6
    """Session resume (servers with recovery; only to clients that negotiated it, see docs/protocol.md)."""


class RPCErrorCode(IntEnum):
    """Error codes of RPC responses (JSON-RPC 2.0 style)."""

    METHOD_NOT_FOUND = -32601
    """No RPC method of that name."""

    INVALID_PARAMS = -32602
    """The arguments don't fit the method's signature."""

    INTERNAL_SERVER_ERROR = -32603
    """The method raised an unexpected exception."""

    RATE_LIMIT_EXCEEDED = -32000
    """The caller spent its rate limit for the method."""

    APPLICATION_ERROR = -32001
    """The method raised :class:`webshocket.RPCError` on purpose."""

    ACCESS_DENIED = -32002
    """The method's ``requires=`` predicate was false for the caller."""

    # Aliases (same values, so they compare and encode identically).
    RPC_RATE_LIMITED = -32000
    RPC_ACCESS_DENIED = -32002
