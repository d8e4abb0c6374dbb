"""Pure-Python channel index: the same algorithm as the compiled twin (``_speedups/channels.pyx``).

Exact channels live in a dict. Each pattern (fnmatch: ``*``, ``?``, ``[...]``,
``[!...]`` over the whole name) is read into tokens exactly as
``fnmatch.translate`` reads it; its literal prefix and literal suffix are its
leading and trailing literal tokens (``a[b]*`` has the prefix ``ab``).

Patterns are filed in one of two radix tries: by their literal prefix, or by
their literal suffix (reversed) -- whichever key has fewer patterns filed on it
already, else the longer one; patterns with neither sit at the prefix root. A
publish walks both tries along the channel name (forwards, and backwards from
its end), so it only ever tests patterns whose whole literal prefix (or suffix)
the channel has: the cost does not grow with the number of patterns that cannot
match. A pattern made of literal characters only (``escape("room[1]")`` is ``room[[]1]``,
whose tokens are all literal) matches one channel name: it is filed in a dict under that
name instead of a trie, so a publish finds it with one lookup (and only that lookup when
no pattern is filed in a trie). A pattern reached in a trie is tested on the channel's
length and its other literal end, then (unless only ``?`` and ``*`` lie between its
literal ends) by the regex of ``fnmatch.translate``. Results are kept in a bounded cache
(channel -> matching patterns), dropped whenever the set of patterns changes.

Two constant-factor choices differ from the compiled twin, because in Python every
operation of a walk costs far more than in C (a dict lookup, or a ``str`` slice, costs
half or more of a ``subscribers`` call with no patterns): every walked result is cached (the
compiled twin only caches costly ones), and a walk reads the channel only at the nodes
(one dict lookup per node, never per character of an edge label) and checks the labels
it skipped only where patterns are filed, by comparing that node's whole key with the
channel (the compiled twin compares each label as it goes).

Trie nodes keep their children in dicts keyed by character. ``matching_patterns``
returns patterns in the order of ``ChannelIndex.patterns`` (creation order).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Collection, Hashable
from fnmatch import translate
from types import EllipsisType
from typing import Any

__all__ = ["CACHE_SIZE", "ChannelIndex", "escape", "is_pattern", "literal_name", "literal_prefix"]

CACHE_SIZE = 4096
_WILDCARDS = frozenset("*?[")
_ESCAPES = {ord("*"): "[*]", ord("?"): "[?]", ord("["): "[[]"}


# ---------------------------------------------------------------- module functions


def is_pattern(name: str) -> bool:
    """True when ``name`` holds a glob wildcard (``*``, ``?`` or ``[``)."""
    if isinstance(name, str):
        text = name if type(name) is str else str.__str__(name)  # a str subclass: its characters as stored
        return "*" in text or "?" in text or "[" in text
    return not _WILDCARDS.isdisjoint(name)  # any iterable of characters


def escape(name: str) -> str:
    """A glob pattern that matches ``name`` and nothing else.

    ``*``, ``?`` and ``[`` become ``[*]``, ``[?]`` and ``[[]``; a name without them is
    returned as is (an exact channel).
    """
    if not isinstance(name, str):
        raise TypeError(f"channel names must be str, got {type(name).__name__}")
    text = name if type(name) is str else str.__str__(name)
    if "*" in text or "?" in text or "[" in text:
        return text.translate(_ESCAPES)
    return name


def literal_name(name: str) -> str | None:
    """The one channel a subscription to ``name`` receives, or None when it may receive several.

    ``name`` itself when it has no wildcard; for a pattern of literal characters and
    one-character sets only (what :func:`escape` makes, or ``room[1]``), the one name it
    matches (``room[1]`` -> ``room1``, ``escape(x)`` -> ``x``).
    """
    if not isinstance(name, str):
        raise TypeError(f"channel names must be str, got {type(name).__name__}")
    text = name if type(name) is str else str.__str__(name)
    if not ("*" in text or "?" in text or "[" in text):
        return name
    chars = []
    for kind, ch in _tokens(text):
        if kind != _LIT:
            return None
        chars.append(ch)
    return "".join(chars)


def literal_prefix(pattern: str) -> str:
    """The part of ``pattern`` before its first wildcard."""
    text = pattern if type(pattern) is str or not isinstance(pattern, str) else str.__str__(pattern)
    for i, ch in enumerate(text):
        if ch in _WILDCARDS:
            return pattern[:i]
    return pattern


# ---------------------------------------------------------------- pattern reader
# Not hot: runs once per new pattern. It reads a pattern exactly as
# fnmatch.translate (CPython 3.10-3.13) does, then reads each bracket
# expression's regex set the way the re module would (as the compiled twin does).

_SET_OPS = re.compile(r"([&~|])")
_LIT, _ANY, _STAR, _SET = range(4)


def _set_body(pat: str, i: int, j: int) -> str | EllipsisType | None:
    """The regex set fnmatch.translate makes of ``pat[i:j]`` (the text between ``[`` and ``]``).

    Returns ``None`` for "never matches", ``...`` for "any character", else the
    text between the brackets of the regex set.
    """
    stuff = pat[i:j]
    if "-" not in stuff:
        stuff = stuff.replace("\\", r"\\")
    else:
        chunks = []
        k = i + 2 if pat[i] == "!" else i + 1
        while True:
            k = pat.find("-", k, j)
            if k < 0:
                break
            chunks.append(pat[i:k])
            i = k + 1
            k = k + 3
        chunk = pat[i:j]
        if chunk:
            chunks.append(chunk)
        else:
            chunks[-1] += "-"
        # Remove empty ranges -- invalid in RE.
        for k in range(len(chunks) - 1, 0, -1):
            if chunks[k - 1][-1] > chunks[k][0]:
                chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
                del chunks[k]
        stuff = "-".join(s.replace("\\", r"\\").replace("-", r"\-") for s in chunks)
    stuff = _SET_OPS.sub(r"\\\1", stuff)
    if not stuff:
        return None
    if stuff == "!":
        return ...
    if stuff[0] == "!":
        stuff = "^" + stuff[1:]
    elif stuff[0] in ("^", "["):
        stuff = "\\" + stuff
    return stuff


def _single_char(body: str) -> str | None:
    """The one character a regex set body (read as sre_parse reads it) stands for, else None."""
    if body.startswith("^"):
        return None
    pos, n = 0, len(body)
    ranges: list[tuple[str, str]] = []
    while pos < n:
        lo = body[pos]
        pos += 1
        if lo == "\\":
            lo = body[pos]
            pos += 1
        if pos < n and body[pos] == "-":
            pos += 1
            if pos >= n:  # "x-" right before "]": two literals
                ranges.append((lo, lo))
                ranges.append(("-", "-"))
                break
            hi = body[pos]
            pos += 1
            if hi == "\\":
                hi = body[pos]
                pos += 1
            ranges.append((lo, hi))
        else:
            ranges.append((lo, lo))
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return ranges[0][0]
    return None


def _tokens(pat: str) -> list[tuple[int, str]]:
    """The tokens of ``pat``: (kind, character) pairs, the character set for literals only."""
    i, n = 0, len(pat)
    toks: list[tuple[int, str]] = []
    while i < n:
        c = pat[i]
        i += 1
        if c == "*":
            if not toks or toks[-1][0] != _STAR:
                toks.append((_STAR, ""))
        elif c == "?":
            toks.append((_ANY, ""))
        elif c == "[":
            j = i
            if j < n and pat[j] == "!":
                j += 1
            if j < n and pat[j] == "]":
                j += 1
            while j < n and pat[j] != "]":
                j += 1
            if j >= n:
                toks.append((_LIT, "["))
                continue
            body = _set_body(pat, i, j)
            i = j + 1
            if body is ...:
                toks.append((_ANY, ""))
            elif isinstance(body, str) and (single := _single_char(body)) is not None:
                toks.append((_LIT, single))
            else:
                toks.append((_SET, ""))
        else:
            toks.append((_LIT, c))
    return toks


# What a trie node lists for each pattern filed on it: (seq, pattern, min_len, max_len, k, other, match).
# A channel that has the node's key matches when it has min_len..max_len characters, its other end
# (its last k characters in the prefix trie, its first k in the suffix trie) is ``other``, and ``match``
# (a compiled fnmatch regex) is None or matches it.
_Entry = tuple[int, str, int, int, int, str, Callable[[str], object] | None]


class _Glob:
    """One pattern, read: its literal ends, its length bounds, its regex if it needs one."""

    __slots__ = ("by_suffix", "entry", "literal", "match", "max_len", "min_len", "pattern", "prefix", "seq", "suffix")

    def __init__(self, pattern: str, seq: int) -> None:
        text = pattern if type(pattern) is str else str.__str__(pattern)
        toks = _tokens(text)
        ntoks = len(toks)
        lead = 0
        while lead < ntoks and toks[lead][0] == _LIT:
            lead += 1
        trail = 0
        if lead < ntoks:  # (a pattern of literals only has no suffix: its prefix is all of it)
            while toks[ntoks - 1 - trail][0] == _LIT:
                trail += 1
        stars = sum(1 for kind, _ in toks if kind == _STAR)
        self.pattern = pattern  # as subscribed: results give back this object
        self.seq = seq  # creation order
        self.prefix = "".join(ch for _, ch in toks[:lead])
        self.suffix = "".join(ch for _, ch in toks[ntoks - trail :])
        self.min_len = ntoks - stars
        self.max_len = sys.maxsize if stars else self.min_len
        # once both literal ends and the length fit, "?" and "*" alone between them always match
        plain = all(kind == _ANY or kind == _STAR for kind, _ in toks[lead : ntoks - trail])
        self.match = None if plain else re.compile(translate(text)).match
        self.by_suffix = False
        self.entry: _Entry | None = None
        # literal tokens only: it matches one name, ``prefix`` (filed in the index's dict, not a trie)
        self.literal = lead == ntoks

    def key(self, by_suffix: bool) -> str:
        """The trie key: the literal prefix, or the literal suffix reversed."""
        return self.suffix[::-1] if by_suffix else self.prefix

    def file(self, by_suffix: bool) -> _Entry:
        """Decide the trie; the entry to list in it."""
        other = self.prefix if by_suffix else self.suffix
        self.by_suffix = by_suffix
        self.entry = (self.seq, self.pattern, self.min_len, self.max_len, len(other), other, self.match)
        return self.entry


# ---------------------------------------------------------------- radix tries
# A node is reached from its parent's ``kids`` by one key character (the channel's next
# one; in the suffix trie, its previous one) followed by the node's ``label``: a chain
# of single-child nodes is one node. Entries hang on the node where their key ends.
# A walk steps from node to node by key characters alone and checks the labels it
# skipped at a node that has entries, by comparing that node's whole ``key`` with the
# channel: when that fails, so would every deeper node's. (Comparing each label on the
# way, with ``str.startswith``, costs about two node steps per label: more than it saves.)


class _Node:
    """A radix trie node: its children by key character, and the entries of the patterns keyed here."""

    __slots__ = ("entries", "key", "kids", "label", "size")

    def __init__(self, key: str, label: str) -> None:
        self.key = key  # the whole key up to here, in the channel's reading order
        self.label = label  # the key characters after the one that leads here (in key order)
        self.size = 1 + len(label)  # characters of the channel this edge takes
        self.kids: dict[str, _Node] = {}
        self.entries: list[_Entry] | None = None


def _load(root: _Node, key: str) -> int:
    """How many patterns are filed where one keyed ``key`` would be."""
    node, d = root, 0
    while d < len(key):
        kid = node.kids.get(key[d])
        if kid is None or not key.startswith(kid.label, d + 1):
            return 0
        d += kid.size
        node = kid
    return len(node.entries) if node.entries else 0


def _insert(root: _Node, key: str, by_suffix: bool, entry: _Entry) -> None:
    """File ``entry`` under ``key`` (in key order), splitting the edge where the key leaves it."""
    node, d, size = root, 0, len(key)
    while d < size:
        c = key[d]
        kid = node.kids.get(c)
        if kid is None:  # new branch: one leaf takes the rest of the key
            kid = node.kids[c] = _Node(key[::-1] if by_suffix else key, key[d + 1 :])
            node = kid
            break
        d += 1
        label = kid.label
        j = 0
        while j < len(label) and d + j < size and label[j] == key[d + j]:
            j += 1
        if j < len(label):  # the key leaves the label at j: split the edge there
            head = key[: d + j]
            mid = _Node(head[::-1] if by_suffix else head, label[:j])
            mid.kids[label[j]] = kid
            kid.label = label[j + 1 :]
            kid.size = len(label) - j
            node.kids[c] = mid
            kid = mid
        node = kid
        d += j
    if node.entries is None:
        node.entries = [entry]
    else:
        node.entries.append(entry)


def _remove(root: _Node, key: str, entry: _Entry) -> None:
    """Unfile ``entry`` from under ``key``; prune the nodes this empties, merge a pass-through one."""
    node, d = root, 0
    path: list[tuple[_Node, str]] = []  # (parent, key character) of each node on the way
    while d < len(key):
        c = key[d]
        kid = node.kids.get(c)
        if kid is None or not key.startswith(kid.label, d + 1):
            return  # not filed
        path.append((node, c))
        node = kid
        d += kid.size
    if node.entries:
        # a new list: a walk that is iterating the old one (reentered from a finalizer) is not disturbed
        node.entries = [e for e in node.entries if e is not entry] or None
    # drop the nodes this leaves empty, deepest first (never the root)
    while path and node.entries is None and not node.kids:
        parent, c = path.pop()
        del parent.kids[c]
        node = parent
    # a node left with one child and no entries merges into that child
    if path and node.entries is None and len(node.kids) == 1:
        ((c, kid),) = node.kids.items()
        kid.label = node.label + c + kid.label
        kid.size = 1 + len(kid.label)
        parent, c = path[-1]
        parent.kids[c] = kid


# ---------------------------------------------------------------- the index


class ChannelIndex:
    """Which subscribers each channel has, for exact names and glob patterns.

    ``channels`` maps exact names and ``patterns`` maps patterns to the set of
    subscribers; both are read-only views for callers (mutate through the methods).
    """

    __slots__ = (
        "_cache",
        "_compiled",
        "_literals",
        "_named",
        "_prefix",
        "_seq",
        "_suffix",
        "_walked",
        "channels",
        "patterns",
    )

    def __init__(self) -> None:
        self.channels: dict[str, set[Any]] = {}
        self.patterns: dict[str, set[Any]] = {}
        self._compiled: dict[str, _Glob] = {}
        # channel -> matching patterns; replaced (not cleared) when the patterns change, so that
        # a result computed before a change (reentrantly, from a finalizer) lands in the old one
        self._cache: dict[str, tuple[str, ...]] = {}
        self._prefix = _Node("", "")
        self._suffix = _Node("", "")  # its root lists nothing: a suffix key is never empty
        # the one name a pattern of literal tokens matches -> the entries of those patterns
        self._literals: dict[str, list[_Entry]] = {}
        self._named: dict[str, tuple[str, ...]] = {}  # the same, as the patterns a publish there matches
        self._walked = 0  # patterns filed in the tries (the others are in _literals)
        self._seq = 0

    def add(self, subscriber: Hashable, name: str) -> bool:
        """Subscribe ``subscriber`` to ``name``; False if it already was."""
        if not isinstance(name, str):
            raise TypeError(f"channel names must be str, got {type(name).__name__}")
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
        if not isinstance(name, str):
            raise TypeError(f"channel names must be str, got {type(name).__name__}")
        pattern = is_pattern(name)
        table = self.patterns if pattern else self.channels
        subscribers = table.get(name)
        if subscribers is None or subscriber not in subscribers:
            return False
        subscribers.discard(subscriber)
        if not subscribers:
            del table[name]
            if pattern:
                self._remove_pattern(name)
        return True

    def matching_patterns(self, channel: str) -> tuple[str, ...]:
        """The subscribed patterns that match ``channel``."""
        if self._walked:  # (as in subscribers: a cache hit needs no type check)
            matched = self._cache.get(channel)
            return matched if matched is not None else self._match(channel)
        if type(channel) is not str and not isinstance(channel, str):
            raise TypeError(f"channel names must be str, got {type(channel).__name__}")
        return self._named.get(channel, ()) if self._named else ()  # one-name patterns only: one lookup

    def subscribers(self, channel: str) -> Collection[Any]:
        """Everyone subscribed to ``channel`` exactly or by a matching pattern, each once.

        The returned collection must not be mutated by the caller.
        """
        exact = self.channels.get(channel)
        if not self._compiled:
            return exact if exact is not None else ()
        if self._walked:
            # the cache holds names _match took (str ones): a hit needs no type check
            matched = self._cache.get(channel)
            if matched is None:
                matched = self._match(channel)
        else:  # one-name patterns only (literal subscriptions): one lookup, no walk
            if type(channel) is not str and not isinstance(channel, str):
                raise TypeError(f"channel names must be str, got {type(channel).__name__}")
            matched = self._named.get(channel)
        if not matched:
            return exact if exact is not None else ()
        if exact is None and len(matched) == 1:
            return self.patterns[matched[0]]
        result: set[Any] = set(exact) if exact is not None else set()
        for pattern in matched:
            result.update(self.patterns[pattern])
        return result

    def _match(self, channel: str) -> tuple[str, ...]:
        """Walk both tries along ``channel`` (not in the cache); cache the result."""
        if type(channel) is str:
            text = channel
        elif isinstance(channel, str):
            text = str.__str__(channel)  # a str subclass: its characters
        else:
            raise TypeError(f"channel names must be str, got {type(channel).__name__}")
        cache = self._cache  # taken before the walk: a result computed before the patterns change lands in the old one
        n = len(text)
        hits: list[_Entry] | None = None
        # the prefix trie, forwards along the channel (pos: the length of node.key); its root
        # lists the patterns with neither a literal prefix nor a literal suffix
        node = self._prefix
        pos = 0
        while True:
            if node.entries is not None:
                if text[:pos] != node.key:  # a label skipped on the way differs: so do all deeper keys
                    break
                for entry in node.entries:
                    _, _, min_len, max_len, k, other, match = entry
                    if min_len <= n <= max_len and text[n - k :] == other and (match is None or match(text)):
                        if hits is None:
                            hits = []
                        hits.append(entry)
            if pos >= n:
                break
            kid = node.kids.get(text[pos])
            if kid is None:
                break
            node = kid
            pos += node.size
        # the suffix trie, backwards from the channel's end (pos: the length of node.key)
        node = self._suffix
        pos = 0
        while pos < n:
            kid = node.kids.get(text[~pos])
            if kid is None:
                break
            node = kid
            pos += node.size
            if node.entries is not None:
                if text[-pos:] != node.key:
                    break
                for entry in node.entries:
                    _, _, min_len, max_len, k, other, match = entry
                    if min_len <= n <= max_len and text[:k] == other and (match is None or match(text)):
                        if hits is None:
                            hits = []
                        hits.append(entry)
        literals = self._literals
        if literals:
            found = literals.get(text)
            if found is not None:
                hits = found if hits is None else [*hits, *found]
        if hits is None:
            result: tuple[str, ...] = ()  # cached too: in Python a walk costs more than an entry
        elif len(hits) == 1:
            result = (hits[0][1],)
        else:
            result = tuple([entry[1] for entry in sorted(hits)])  # by seq: the order of ``patterns``
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[channel] = result
        return result

    def _add_pattern(self, pattern: str) -> None:
        g = _Glob(pattern, self._seq)
        self._seq += 1
        if g.literal:  # one name: a dict entry, no trie
            entry = g.file(False)
            found = self._literals.get(g.prefix)
            entries = self._literals[g.prefix] = [entry] if found is None else [*found, entry]
            self._named[g.prefix] = tuple([e[1] for e in entries])
            self._compiled[pattern] = g
            self._cache = {}
            return
        # File it by literal prefix or by literal suffix: where fewer patterns already wait
        # to be tested (so 10,000 "news.*.<i>" go by their distinct suffixes), else by the longer.
        if not g.suffix:
            by_suffix = False
        elif not g.prefix:
            by_suffix = True
        else:
            on_prefix = _load(self._prefix, g.key(False))
            on_suffix = _load(self._suffix, g.key(True))
            by_suffix = on_suffix < on_prefix or (on_suffix == on_prefix and len(g.suffix) > len(g.prefix))
        _insert(self._suffix if by_suffix else self._prefix, g.key(by_suffix), by_suffix, g.file(by_suffix))
        self._walked += 1
        self._compiled[pattern] = g
        self._cache = {}

    def _remove_pattern(self, pattern: str) -> None:
        g = self._compiled.pop(pattern)
        if g.literal:
            # a new list: a match that is iterating the old one (reentered from a finalizer) is not disturbed
            rest = [e for e in self._literals.get(g.prefix, ()) if e is not g.entry]
            if rest:
                self._literals[g.prefix] = rest
                self._named[g.prefix] = tuple([e[1] for e in rest])
            else:
                self._literals.pop(g.prefix, None)
                self._named.pop(g.prefix, None)
        else:
            self._walked -= 1
            if g.entry is not None:
                _remove(self._suffix if g.by_suffix else self._prefix, g.key(g.by_suffix), g.entry)
        self._cache = {}
