# cython: annotation_typing=False
"""Token bucket (pure twin of the compiled ``_ratelimit_c``, built from this file).

The state is four floats (C doubles when compiled: ``_speedups/webshocket/_ratelimit_c.pxd``);
:meth:`TokenBucket.allow` reads ``time.monotonic()``, so ``allow_at(time.monotonic())``
and ``allow()`` can be mixed.
"""

from __future__ import annotations

from math import ceil
from time import monotonic

__all__ = ["TokenBucket"]


class TokenBucket:
    """``limit`` tokens, refilled continuously at ``limit / period`` tokens per second.

    One bucket per (connection, method). :meth:`allow` takes a token if one is
    left and says whether it did. A fractional ``limit`` counts as the next whole number,
    as 0.5.x counted calls while fewer than ``limit`` were made (2.5 allowed 3).
    """

    __slots__ = ("_limit", "_rate", "_stamp", "_tokens", "limit", "period")

    def __init__(self, limit: float, period: float) -> None:
        if not 0 < limit < float("inf") or not period > 0:
            raise ValueError("TokenBucket needs a finite limit > 0 and a period > 0")
        self.limit = limit
        self.period = float(period)
        self._limit = float(ceil(limit))
        self._rate = self._limit / self.period
        self._tokens = self._limit
        self._stamp = monotonic()

    def allow(self) -> bool:
        """Take one token now; False when the bucket is empty."""
        return self.allow_at(monotonic())

    def allow_at(self, now: float) -> bool:
        """Take one token at monotonic time ``now`` (seconds)."""
        elapsed = now - self._stamp
        if elapsed > 0:
            tokens = self._tokens + elapsed * self._rate
            self._tokens = tokens if tokens < self._limit else self._limit
            self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    @property
    def tokens(self) -> float:
        """Tokens left as of the last call."""
        return self._tokens
