"""Token bucket in use (compiled ``_ratelimit_c`` or pure ``_ratelimit_py``)."""

from ._ext import load

_impl = load("ratelimit")

TokenBucket = _impl.TokenBucket

__all__ = ["TokenBucket"]
