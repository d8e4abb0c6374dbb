"""Type aliases and the records that describe RPC methods."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeAlias, TypeVar, overload

from .packets import Packet as Packet

# ``X as X`` imports re-export names 0.5.x's module had (it imported them): docs/migration.md 2.14.

if TYPE_CHECKING:
    from .connection import ClientConnection

P = ParamSpec("P")
R = TypeVar("R")


class RPCDecorator(Protocol):
    """What ``rpc_method(...)`` returns: a decorator keeping the method's signature (0.5.x name)."""

    @overload
    def __call__(
        self, func: Callable[Concatenate[Any, ClientConnection[Any], P], R]
    ) -> Callable[Concatenate[Any, ClientConnection[Any], P], R]: ...

    @overload
    def __call__(
        self, func: Callable[Concatenate[ClientConnection[Any], P], R]
    ) -> Callable[Concatenate[ClientConnection[Any], P], R]: ...


Serializable: TypeAlias = Any
"""Anything the codec can write: None, bool, int, float, str, bytes, list, tuple, set,
dict, dataclasses, ``msgspec.Struct`` values, enums, UUIDs, dates, and :class:`~webshocket.Packet`."""


class RPC_Function(Protocol):  # noqa: N801 - 0.5.x name
    """An RPC method bound to its handler: ``(connection, *args, **kwargs)``."""

    def __call__(self, connection: ClientConnection[Any], /, *args: Any, **kwargs: Any) -> Any: ...


RPC_Predicate: TypeAlias = Callable[["ClientConnection[Any]"], bool]
"""A callable deciding something about a connection (see :mod:`webshocket.predicate`)."""


class SessionState(Protocol):
    """Marker for the type of a connection's session state."""


RateLimitKey: TypeAlias = "str | Callable[[ClientConnection[Any]], Hashable] | None"
"""Whose calls a rate limit counts together: None or ``"connection"`` (each connection on its
own), ``"address"`` (the client's IP address), or a callable over the connection (e.g. the
user id in its session state; when it returns None, the connection's own bucket is used)."""


@dataclass(slots=True, frozen=True)
class RateLimitConfig:
    """``limit`` calls per ``period`` seconds, per connection or per ``key``."""

    limit: float
    period: float
    disconnect_on_limit_exceeded: bool
    key: RateLimitKey = None


@dataclass(slots=True, frozen=True)
class RPCMethod:
    """A registered RPC method."""

    func: Callable[..., Any]
    rate_limit: RateLimitConfig | None = None
    restricted: RPC_Predicate | None = None
    is_stream: bool = False
    inline: bool = False
    """Never suspends (no ``await``): run in place, without an ``asyncio.Task``."""

    def __repr__(self) -> str:
        name = getattr(self.func, "__name__", repr(self.func))
        return f"RPCMethod(func={name}, rate_limit={self.rate_limit}, restricted={self.restricted})"


OnReceive: TypeAlias = Callable[[Any], Awaitable[None]]
