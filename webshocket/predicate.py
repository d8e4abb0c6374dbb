"""Predicates over a connection's session state.

Usable in ``@rpc_method(requires=...)`` and in ``publish(..., predicate=...)`` /
``broadcast(..., predicate=...)``. Any callable taking a connection and returning a
bool works in the same places.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any as _Any

if TYPE_CHECKING:
    from .connection import ClientConnection
    from .typing import RPC_Predicate

_MISSING = object()


class Has:
    """True when the session state has ``key`` (whatever its value)."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, connection: ClientConnection[_Any]) -> bool:
        return self.key in connection.session_state

    def __repr__(self) -> str:
        return f"Has({self.key!r})"


class Is:
    """True when the session state's ``key`` is present and truthy."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, connection: ClientConnection[_Any]) -> bool:
        return bool(connection.session_state.get(self.key))

    def __repr__(self) -> str:
        return f"Is({self.key!r})"


class IsEqual:
    """True when the session state's ``key`` is present and equal to ``value``."""

    __slots__ = ("key", "value")

    def __init__(self, key: str, value: _Any) -> None:
        self.key = key
        self.value = value

    def __call__(self, connection: ClientConnection[_Any]) -> bool:
        return bool(connection.session_state.get(self.key, _MISSING) == self.value)

    def __repr__(self) -> str:
        return f"IsEqual({self.key!r}, {self.value!r})"


class Any:
    """Logical OR of predicates."""

    __slots__ = ("predicates",)

    def __init__(self, *predicates: RPC_Predicate) -> None:
        self.predicates = predicates

    def __call__(self, connection: ClientConnection[_Any]) -> bool:
        return any(predicate(connection) for predicate in self.predicates)

    def __repr__(self) -> str:
        return f"Any({', '.join(map(repr, self.predicates))})"


class All:
    """Logical AND of predicates."""

    __slots__ = ("predicates",)

    def __init__(self, *predicates: RPC_Predicate) -> None:
        self.predicates = predicates

    def __call__(self, connection: ClientConnection[_Any]) -> bool:
        return all(predicate(connection) for predicate in self.predicates)

    def __repr__(self) -> str:
        return f"All({', '.join(map(repr, self.predicates))})"
