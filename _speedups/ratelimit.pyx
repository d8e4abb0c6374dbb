# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled token bucket (twin of ``webshocket/_ratelimit_py.py``).

The state is four C doubles; :meth:`TokenBucket.allow` reads the monotonic
clock with ``clock_gettime(CLOCK_MONOTONIC)``, the clock behind
``time.monotonic()``, converted exactly as CPython does, so ``allow_at(time.monotonic())``
and ``allow()`` can be mixed. The arithmetic is the pure twin's, step for step,
so both give bit-identical ``tokens`` for the same calls.
"""

cimport cython
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

__all__ = ["TokenBucket"]


cdef double monotonic_now() noexcept nogil:
    """``time.monotonic()`` without the float object: nanoseconds / 1e9, as CPython computes it."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>(<long long>ts.tv_sec * 1000000000LL + <long long>ts.tv_nsec) / 1e9


@cython.auto_pickle(False)
@cython.freelist(64)
@cython.final
cdef class TokenBucket:
    """``limit`` tokens, refilled continuously at ``limit / period`` tokens per second.

    One bucket per (connection, method). :meth:`allow` takes a token if one is
    left and says whether it did.
    """

    def __init__(self, limit, period):
        if limit < 1 or not period > 0:
            raise ValueError("TokenBucket needs limit >= 1 and period > 0")
        self.limit = limit
        self.period = float(period)
        self._limit = float(limit)
        self._rate = limit / self.period
        self._tokens = self._limit
        self._stamp = monotonic_now()

    cdef bint take(self, double now) noexcept:
        """Take one token at monotonic time ``now`` (seconds); False when the bucket is empty."""
        cdef double elapsed = now - self._stamp
        cdef double tokens
        if elapsed > 0:
            tokens = self._tokens + elapsed * self._rate
            self._tokens = tokens if tokens < self._limit else self._limit
            self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    cdef bint take_now(self) noexcept:
        """:meth:`take` at the current monotonic time."""
        return self.take(monotonic_now())

    def allow(self):
        """Take one token now; False when the bucket is empty."""
        return self.take(monotonic_now())

    def allow_at(self, double now):
        """Take one token at monotonic time ``now`` (seconds)."""
        return self.take(now)

    @property
    def tokens(self):
        """Tokens left as of the last call."""
        return self._tokens

