"""Predicates over a connection's session state.

Usable in ``@rpc_method(requires=...)`` and in ``publish(..., predicate=...)`` /
``broadcast(..., predicate=...)``. Any callable taking a connection and returning a
bool works in the same places.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any as _Any

from .typing import RPC_Predicate as RPC_Predicate

# ``X as X`` imports re-export names 0.5.x's module had (it imported them): docs/migration.md 2.14.

if TYPE_CHECKING:
    from .connection import ClientConnection

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


# --------------------------------------------------------------------------- predicates as data
# (how a predicate crosses a backplane to other nodes)


def predicate_spec(predicate: RPC_Predicate | None) -> _Any:
    """A msgpack-able description of a predicate built from Has/Is/IsEqual/Any/All.

    Raises:
        TypeError: the predicate is another callable, which cannot cross the backplane.
    """
    if predicate is None:
        return None
    if isinstance(predicate, Has):
        return ["has", predicate.key]
    if isinstance(predicate, Is):
        return ["is", predicate.key]
    if isinstance(predicate, IsEqual):
        return ["eq", predicate.key, predicate.value]
    if isinstance(predicate, Any):
        return ["any", [predicate_spec(p) for p in predicate.predicates]]
    if isinstance(predicate, All):
        return ["all", [predicate_spec(p) for p in predicate.predicates]]
    raise TypeError(
        f"predicate {predicate!r} cannot cross the backplane to other nodes: build it from "
        "webshocket.Has, Is, IsEqual, Any and All"
    )


def predicate_from_spec(spec: _Any) -> RPC_Predicate | None:
    """Rebuild a predicate from :func:`predicate_spec` output."""
    if spec is None:
        return None
    kind = spec[0]
    if kind == "has":
        return Has(spec[1])
    if kind == "is":
        return Is(spec[1])
    if kind == "eq":
        return IsEqual(spec[1], spec[2])
    if kind == "any":
        return Any(*(predicate_from_spec(p) for p in spec[1]))  # type: ignore[arg-type]
    if kind == "all":
        return All(*(predicate_from_spec(p) for p in spec[1]))  # type: ignore[arg-type]
    raise ValueError(f"unknown predicate kind {kind!r}")
