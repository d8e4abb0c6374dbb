"""Event loop selection: uvloop when it is installed."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def uvloop_available() -> bool:
    """True when uvloop can be imported and is not disabled by ``WEBSHOCKET_NO_UVLOOP``."""
    if os.environ.get("WEBSHOCKET_NO_UVLOOP", "") not in ("", "0"):
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def install_uvloop() -> bool:
    """Make ``asyncio.run()`` use uvloop, unless another loop policy is already chosen.

    Called on import of :mod:`webshocket` (Python < 3.14, where loop policies are not
    deprecated). Set ``WEBSHOCKET_NO_UVLOOP=1`` to keep asyncio's default loop.
    Returns True when uvloop's policy is (now) in place.
    """
    if sys.version_info >= (3, 14) or not uvloop_available():
        return False
    import uvloop

    policy = asyncio.get_event_loop_policy()
    if isinstance(policy, uvloop.EventLoopPolicy):
        return True
    if type(policy) is not asyncio.DefaultEventLoopPolicy:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on uvloop when available, else on asyncio's loop."""
    if uvloop_available():
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
