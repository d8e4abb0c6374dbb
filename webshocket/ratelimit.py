"""Token bucket in use (compiled ``_ratelimit_c`` or pure ``_ratelimit_py``)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # both implementations have the pure twin's API
    from ._ratelimit_py import (
        TokenBucket,
    )
else:
    from ._ext import load

    _impl = load("ratelimit")
    TokenBucket = _impl.TokenBucket

__all__ = ["TokenBucket"]
