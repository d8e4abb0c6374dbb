"""Rate-limit buckets shared by the connections of one key (an address, a user, ...).

``@rate_limit(..., key="address")`` or ``key=callable`` gives every key its own token
bucket per method, shared by all the connections of that key in this process, so that
reconnecting does not reset a limit. The table is bounded: past ``max_keys`` the least
recently used buckets are forgotten (a forgotten key starts again with a full bucket).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from .ratelimit import TokenBucket
from .typing import RateLimitConfig

__all__ = ["DEFAULT_MAX_KEYS", "KeyedBuckets"]

DEFAULT_MAX_KEYS = 100_000
"""Buckets the shared table keeps (one per method and key)."""


class KeyedBuckets:
    """Token buckets by (method, key), least recently used forgotten first."""

    __slots__ = ("buckets", "max_keys")

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.max_keys = max_keys
        self.buckets: OrderedDict[tuple[str, Hashable], TokenBucket] = OrderedDict()

    def allow(self, method: str, key: Hashable, limit: RateLimitConfig) -> bool:
        """Take a token of ``key``'s bucket for ``method``; False when it is empty."""
        entry = (method, key)
        buckets = self.buckets
        bucket = buckets.get(entry)
        if bucket is None:
            bucket = buckets[entry] = TokenBucket(limit.limit, limit.period)
            if len(buckets) > self.max_keys:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(entry)
        return bucket.allow()

    def __len__(self) -> int:
        return len(self.buckets)
