"""Decorators that turn handler coroutines into RPC methods.

``@rpc_method`` marks a coroutine (plain RPC) or an async generator (streaming
RPC). ``@rate_limit`` attaches a per-connection token bucket. Both only set
attributes on the function, so they stack in either order and add no call overhead.
"""

from __future__ import annotations

import dis
import inspect
import numbers
from collections.abc import Callable
from typing import Any, TypeVar

from .typing import RateLimitConfig, RateLimitKey, RPC_Predicate
from .typing import RPCDecorator as RPCDecorator
from .utils import parse_duration

# ``X as X`` imports re-export names 0.5.x's module had (it imported them): docs/migration.md 2.14.

__all__ = ["rate_limit", "rpc_method"]

F = TypeVar("F", bound=Callable[..., Any])


def _check_async(func: Callable[..., Any]) -> bool:
    """Return True for an async generator function, False for a coroutine function."""
    if inspect.isasyncgenfunction(func):
        return True
    if inspect.iscoroutinefunction(func):
        return False
    raise TypeError(f"RPC method '{getattr(func, '__name__', func)}' must be an async function.")


_SUSPENDING_OPS = frozenset(
    {"GET_AWAITABLE", "GET_AITER", "GET_ANEXT", "BEFORE_ASYNC_WITH", "SEND", "YIELD_VALUE", "YIELD_FROM"}
)


def never_suspends(func: Callable[..., Any]) -> bool:
    """True for a coroutine function whose body has no ``await``, ``async with`` or ``async for``.

    Such a coroutine always finishes in its first step, so the server runs it
    inline instead of creating an ``asyncio.Task`` for it (``asyncio.current_task()``
    is then None inside it).
    """
    code = getattr(getattr(func, "__func__", func), "__code__", None)
    if code is None or not inspect.iscoroutinefunction(func):
        return False
    return not any(instruction.opname in _SUSPENDING_OPS for instruction in dis.get_instructions(code))


def rpc_method(alias_name: str | None = None, requires: RPC_Predicate | None = None) -> Callable[[F], F]:
    """Expose a handler coroutine (or async generator, for streaming) as an RPC method.

    .. code-block:: python

        class MyHandler(WebSocketHandler):
            @rpc_method(alias_name="add")
            async def add(self, connection, a: int, b: int) -> int:
                return a + b

            @rpc_method(requires=Is("is_admin"))
            async def secret(self, connection) -> str:
                return "sensitive"

    Args:
        alias_name: name clients call it by (default: the function's name).
        requires: predicate the caller's connection must satisfy, else ACCESS_DENIED.
    """
    if callable(alias_name) and requires is None and not isinstance(alias_name, str):
        # Used bare, as ``@rpc_method``.
        return rpc_method()(alias_name)  # type: ignore[return-value,unused-ignore]

    def decorator(func: F) -> F:
        params = list(inspect.signature(func).parameters.values())
        is_method = bool(params) and params[0].name == "self"
        needed = 2 if is_method else 1
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
        if len(positional) < needed:
            expected = "(self, connection, ...)" if is_method else "(connection, ...)"
            raise TypeError(f"'{func.__name__}' must accept the client connection: {expected}")
        attrs = func.__dict__
        attrs["_is_stream"] = _check_async(func)
        attrs["_rpc_alias_name"] = alias_name or func.__name__
        attrs["_restricted"] = requires
        attrs["_is_rpc_method"] = True
        return func

    return decorator


def rate_limit(
    *,
    limit: float,
    period: str | float = "1s",
    disconnect_on_limit_exceeded: bool = False,
    key: RateLimitKey = None,
) -> Callable[[F], F]:
    """Limit an RPC method to ``limit`` calls per ``period`` for each connection.

    A token bucket of ``limit`` tokens refilled continuously over ``period``
    (``"30s"``, ``"5m"``, ``"1h"``, ``"2d"`` or seconds). Over the limit the caller
    gets RATE_LIMIT_EXCEEDED; with ``disconnect_on_limit_exceeded`` the connection
    is also closed with 1013 (try again later). Stacks with ``@rpc_method`` in
    either order. Calls refused by ``requires=`` count too.

    Edge values behave as in 0.5.x: ``limit`` 0 or below refuses every call; a fractional
    ``limit`` allows the next whole number of calls (2.5: 3); an infinite (or NaN) ``limit``
    and a ``period`` of zero or below do not limit at all.

    ``key`` chooses whose calls share a bucket: None or ``"connection"`` (default, as in
    0.5.x: each connection its own, so a reconnect starts afresh), ``"address"`` (the
    client's IP address), or a callable over the connection returning any hashable value,
    e.g. ``key=lambda c: c.session_state.get("user_id")`` (None: the connection's own
    bucket). Keyed buckets are shared by every connection of the key in this process.
    """
    if not isinstance(limit, numbers.Real):
        raise TypeError(f"rate_limit(limit=...) must be a number, got {limit!r}")
    if key == "connection":
        key = None
    if key is not None and key != "address" and not callable(key):
        raise ValueError(f'rate_limit(key=...) must be "connection", "address" or a callable, got {key!r}')
    config = RateLimitConfig(limit, parse_duration(period), disconnect_on_limit_exceeded, key)

    def decorator(func: F) -> F:
        _check_async(func)
        func.__dict__["_rate_limit"] = config
        return func

    return decorator
