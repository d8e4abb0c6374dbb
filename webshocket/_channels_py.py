"""Pure-Python channel index (twin of the compiled ``_channels_c``).

Exact channels live in a dict. Pattern subscriptions (fnmatch: ``*``, ``?``,
``[...]``, ``[!...]`` over the whole name) are grouped by their literal prefix,
so a publish only tests patterns whose prefix the channel starts with: the cost
per publish grows with the number of distinct prefix lengths, not with the
number of patterns. A bounded cache maps channel -> matching patterns and is
cleared whenever the set of patterns changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Hashable
from fnmatch import translate
from typing import Any

__all__ = ["CACHE_SIZE", "ChannelIndex", "is_pattern", "literal_prefix"]

CACHE_SIZE = 4096
_WILDCARDS = frozenset("*?[")


def is_pattern(name: str) -> bool:
    """True when ``name`` holds a glob wildcard (``*``, ``?`` or ``[``)."""
    return not _WILDCARDS.isdisjoint(name)


def literal_prefix(pattern: str) -> str:
    """The part of ``pattern`` before its first wildcard."""
    for i, ch in enumerate(pattern):
        if ch in _WILDCARDS:
            return pattern[:i]
    return pattern


class ChannelIndex:
    """Which subscribers each channel has, for exact names and glob patterns.

    ``channels`` maps exact names and ``patterns`` maps patterns to the set of
    subscribers; both are read-only views for callers (mutate through the methods).
    """

    __slots__ = ("_by_prefix", "_cache", "_lengths", "channels", "patterns")

    def __init__(self) -> None:
        self.channels: dict[str, set[Any]] = {}
        self.patterns: dict[str, set[Any]] = {}
        # prefix -> {pattern: compiled matcher}
        self._by_prefix: dict[str, dict[str, Callable[[str], Any]]] = {}
        # distinct prefix length -> number of prefixes of that length
        self._lengths: dict[int, int] = {}
        self._cache: dict[str, tuple[str, ...]] = {}

    def add(self, subscriber: Hashable, name: str) -> bool:
        """Subscribe ``subscriber`` to ``name``; False if it already was."""
        if is_pattern(name):
            subscribers = self.patterns.get(name)
            if subscribers is None:
                subscribers = self.patterns[name] = set()
                self._add_pattern(name)
        else:
            subscribers = self.channels.get(name)
            if subscribers is None:
                subscribers = self.channels[name] = set()
        if subscriber in subscribers:
            return False
        subscribers.add(subscriber)
        return True

    def discard(self, subscriber: Hashable, name: str) -> bool:
        """Unsubscribe ``subscriber`` from ``name``; False if it was not subscribed."""
        table = self.patterns if is_pattern(name) else self.channels
        subscribers = table.get(name)
        if subscribers is None or subscriber not in subscribers:
            return False
        subscribers.discard(subscriber)
        if not subscribers:
            del table[name]
            if table is self.patterns:
                self._remove_pattern(name)
        return True

    def matching_patterns(self, channel: str) -> tuple[str, ...]:
        """The subscribed patterns that match ``channel``."""
        cached = self._cache.get(channel)
        if cached is not None:
            return cached
        found: list[str] = []
        size = len(channel)
        for length in tuple(self._lengths):
            if length > size:
                continue
            bucket = self._by_prefix.get(channel[:length])
            if bucket:
                found.extend(p for p, match in bucket.items() if match(channel) is not None)
        result = tuple(found)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[channel] = result
        return result

    def subscribers(self, channel: str) -> Collection[Any]:
        """Everyone subscribed to ``channel`` exactly or by a matching pattern, each once.

        The returned collection must not be mutated by the caller.
        """
        exact = self.channels.get(channel)
        if not self._by_prefix:
            return exact if exact is not None else ()
        matched = self.matching_patterns(channel)
        if not matched:
            return exact if exact is not None else ()
        if exact is None and len(matched) == 1:
            return self.patterns[matched[0]]
        result: set[Any] = set(exact) if exact is not None else set()
        for pattern in matched:
            result.update(self.patterns[pattern])
        return result

    def _add_pattern(self, pattern: str) -> None:
        prefix = literal_prefix(pattern)
        bucket = self._by_prefix.get(prefix)
        if bucket is None:
            bucket = self._by_prefix[prefix] = {}
            self._lengths[len(prefix)] = self._lengths.get(len(prefix), 0) + 1
        bucket[pattern] = re.compile(translate(pattern)).match
        self._cache.clear()

    def _remove_pattern(self, pattern: str) -> None:
        prefix = literal_prefix(pattern)
        bucket = self._by_prefix[prefix]
        del bucket[pattern]
        if not bucket:
            del self._by_prefix[prefix]
            count = self._lengths[len(prefix)] - 1
            if count:
                self._lengths[len(prefix)] = count
            else:
                del self._lengths[len(prefix)]
        self._cache.clear()
