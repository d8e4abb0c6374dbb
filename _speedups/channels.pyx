# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled channel index (twin of ``webshocket/_channels_py.py``).

Exact channels live in a dict. Each pattern is compiled into a small token
program (literal, ``?``, ``*``, character set) read exactly as
``fnmatch.translate`` reads it, and matched by a native glob matcher over the
channel's code points. Patterns are filed in one of two tries: by their literal
prefix, or, when that is shorter than their literal suffix, by the reversed
suffix. A publish walks both tries along the channel name, so it only ever
tests patterns whose literal prefix (or suffix) the channel has: its cost does
not grow with the number of patterns that cannot match. Results that took more
than a few pattern tests are kept in a bounded cache (channel -> matching
patterns) that is cleared whenever the set of patterns changes.

``matching_patterns`` returns patterns in the order of ``ChannelIndex.patterns``.
"""

cimport cython
from cpython.dict cimport PyDict_GetItemWithError
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_Check, PyUnicode_DATA, PyUnicode_FromObject, PyUnicode_GET_LENGTH, PyUnicode_KIND
from libc.stdlib cimport free, malloc, qsort, realloc
from libc.string cimport memmove

import re

cdef extern from "Python.h":
    # the macro only reads the buffer: no GIL needed
    Py_UCS4 PyUnicode_READ(int kind, const void* data, Py_ssize_t index) nogil

__all__ = ["CACHE_SIZE", "ChannelIndex", "is_pattern", "literal_prefix"]

CACHE_SIZE = 4096
_WILDCARDS = frozenset("*?[")

cdef enum:
    _CACHE_SIZE = 4096
    # a cache miss that tested fewer patterns than this is cheaper to redo than to cache
    _CACHE_MIN_TESTS = 4

cdef enum:
    T_LIT = 0
    T_ANY = 1
    T_STAR = 2
    T_SET = 3


# ---------------------------------------------------------------- module functions

cdef inline bint _has_wildcard(str name) noexcept:
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(name)
    cdef int kind = PyUnicode_KIND(name)
    cdef void* data = PyUnicode_DATA(name)
    cdef Py_UCS4 c
    for i in range(n):
        c = PyUnicode_READ(kind, data, i)
        if c == 42 or c == 63 or c == 91:  # * ? [
            return True
    return False


def is_pattern(name):
    """True when ``name`` holds a glob wildcard (``*``, ``?`` or ``[``)."""
    if PyUnicode_Check(name):
        return _has_wildcard(<str>name)
    return not _WILDCARDS.isdisjoint(name)


def literal_prefix(pattern):
    """The part of ``pattern`` before its first wildcard."""
    cdef Py_ssize_t i, n
    cdef int kind
    cdef void* data
    cdef Py_UCS4 c
    if not PyUnicode_Check(pattern):
        for i, ch in enumerate(pattern):
            if ch in _WILDCARDS:
                return pattern[:i]
        return pattern
    n = PyUnicode_GET_LENGTH(pattern)
    kind = PyUnicode_KIND(pattern)
    data = PyUnicode_DATA(pattern)
    for i in range(n):
        c = PyUnicode_READ(kind, data, i)
        if c == 42 or c == 63 or c == 91:
            return pattern[:i]
    return pattern


# ---------------------------------------------------------------- pattern compiler
# Not hot: runs once per new pattern. It reads a pattern exactly as
# fnmatch.translate (CPython 3.10-3.13) does, then reads each bracket
# expression's regex set the way the re module would.

_SET_OPS = re.compile(r"([&~|])")


@cython.wraparound(True)
@cython.boundscheck(True)
def _set_body(str pat, Py_ssize_t i, Py_ssize_t j):
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


@cython.wraparound(True)
@cython.boundscheck(True)
def _set_ranges(str body):
    """(negate, [(lo, hi), ...]) of a regex set body, read as sre_parse reads it."""
    cdef Py_ssize_t pos = 0, n = len(body)
    negate = body.startswith("^")
    if negate:
        pos = 1
    ranges = []
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
    return negate, ranges


@cython.wraparound(True)
@cython.boundscheck(True)
def _tokens(str pat):
    """The token program of ``pat``: a list of (kind, negate, char, ranges)."""
    cdef Py_ssize_t i = 0, j, n = len(pat)
    toks = []
    while i < n:
        c = pat[i]
        i += 1
        if c == "*":
            if not toks or toks[-1][0] != T_STAR:
                toks.append((T_STAR, False, "", None))
        elif c == "?":
            toks.append((T_ANY, False, "", None))
        elif c == "[":
            j = i
            if j < n and pat[j] == "!":
                j += 1
            if j < n and pat[j] == "]":
                j += 1
            while j < n and pat[j] != "]":
                j += 1
            if j >= n:
                toks.append((T_LIT, False, "[", None))
                continue
            body = _set_body(pat, i, j)
            i = j + 1
            if body is None:
                toks.append((T_SET, False, "", []))  # matches nothing
            elif body is ...:
                toks.append((T_ANY, False, "", None))
            else:
                negate, ranges = _set_ranges(body)
                if not negate and len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
                    toks.append((T_LIT, False, ranges[0][0], None))
                else:
                    toks.append((T_SET, negate, "", ranges))
        else:
            toks.append((T_LIT, False, c, None))
    return toks


@cython.auto_pickle(False)
@cython.final
cdef class _Pattern:
    """Owner of one compiled pattern (its token program lives in C memory)."""

    def __cinit__(self, object pattern, Py_ssize_t seq):
        # ``pattern`` may be a str subclass (a StrEnum member, say): results give back that object
        cdef Py_ssize_t i, k, nranges = 0
        cdef Tok* t
        toks = _tokens(PyUnicode_FromObject(pattern))
        for item in toks:
            if item[0] == T_SET:
                nranges += len(item[3])
        self.pattern = pattern
        self.g.pattern = <void*>pattern
        self.g.seq = seq
        self.g.ntoks = len(toks)
        self.g.toks = <Tok*>malloc((self.g.ntoks + 1) * sizeof(Tok))
        self.g.ranges = <Py_UCS4*>malloc((2 * nranges + 1) * sizeof(Py_UCS4))
        if self.g.toks is NULL or self.g.ranges is NULL:
            raise MemoryError()
        nranges = 0
        for i, item in enumerate(toks):
            t = &self.g.toks[i]
            t.kind = item[0]
            t.negate = item[1]
            t.ch = ord(item[2]) if item[0] == T_LIT else 0
            t.off = nranges
            t.n = 0
            if item[0] == T_SET:
                for lo, hi in item[3]:
                    self.g.ranges[2 * nranges] = ord(lo)
                    self.g.ranges[2 * nranges + 1] = ord(hi)
                    nranges += 1
                t.n = nranges - t.off
            if item[0] == T_STAR:
                self.g.has_star = True
            else:
                self.g.min_len += 1
        k = 0
        while k < self.g.ntoks and self.g.toks[k].kind == T_LIT:
            k += 1
        self.g.lead = k
        if k == self.g.ntoks:
            self.g.trail = 0
        else:
            k = 0
            while k < self.g.ntoks and self.g.toks[self.g.ntoks - 1 - k].kind == T_LIT:
                k += 1
            self.g.trail = k
        self.g.by_suffix = self.g.trail > self.g.lead

    def __dealloc__(self):
        free(self.g.toks)
        free(self.g.ranges)


# ---------------------------------------------------------------- matcher

cdef inline bint _tok_ok(const Tok* t, const Py_UCS4* ranges, Py_UCS4 c) noexcept nogil:
    cdef Py_ssize_t k
    cdef const Py_UCS4* r
    if t.kind == T_LIT:
        return t.ch == c
    if t.kind == T_ANY:
        return True
    r = ranges + 2 * t.off
    for k in range(t.n):
        if r[2 * k] <= c <= r[2 * k + 1]:
            return not t.negate
    return t.negate


cdef bint _match_span(const Glob* g, Py_ssize_t ti, Py_ssize_t te, int kind, void* data,
                      Py_ssize_t si, Py_ssize_t se) noexcept nogil:
    """Do tokens [ti, te) match characters [si, se)? (every token but ``*`` takes one character)"""
    cdef const Tok* toks = g.toks
    cdef const Tok* t
    cdef Py_ssize_t star_t = -1, star_s = 0
    cdef Py_UCS4 c
    while si < se:
        if ti < te:
            t = &toks[ti]
            if t.kind == T_STAR:
                if ti + 1 == te:  # a trailing star takes the rest
                    return True
                star_t = ti
                ti += 1
                star_s = si
                continue
            c = PyUnicode_READ(kind, data, si)
            if _tok_ok(t, g.ranges, c):
                ti += 1
                si += 1
                continue
        if star_t < 0:
            return False
        # let the last star take one more character, and retry what follows it
        ti = star_t + 1
        star_s += 1
        si = star_s
        t = &toks[ti]  # never past the span: a star that ends it returned above
        if t.kind == T_LIT:  # skip to the next place that literal occurs
            c = t.ch
            while si < se and PyUnicode_READ(kind, data, si) != c:
                si += 1
            star_s = si
    while ti < te and toks[ti].kind == T_STAR:
        ti += 1
    return ti == te


cdef inline bint _glob_match(const Glob* g, int kind, void* data, Py_ssize_t n) noexcept nogil:
    """Does ``g`` match the whole string, given that its trie key (literal prefix or suffix) already did?"""
    cdef Py_ssize_t k, lead = g.lead, trail = g.trail, end = g.ntoks - g.trail
    if g.has_star:
        if n < g.min_len:
            return False
    elif n != g.min_len:
        return False
    if g.by_suffix:
        for k in range(lead):
            if PyUnicode_READ(kind, data, k) != g.toks[k].ch:
                return False
    else:
        for k in range(trail):
            if PyUnicode_READ(kind, data, n - trail + k) != g.toks[end + k].ch:
                return False
    return _match_span(g, lead, end, kind, data, lead, n - trail)


cdef int _by_seq(const void* a, const void* b) noexcept nogil:
    cdef Py_ssize_t x = (<Glob**>a)[0].seq
    cdef Py_ssize_t y = (<Glob**>b)[0].seq
    return (x > y) - (x < y)


# ---------------------------------------------------------------- tries

cdef inline Py_ssize_t _find(const Node* node, Py_UCS4 c) noexcept nogil:
    """Index of the first child key >= c."""
    cdef Py_ssize_t lo = 0, hi = node.nkids, mid
    cdef const Py_UCS4* keys = node.keys
    if hi <= 8:
        while lo < hi and keys[lo] < c:
            lo += 1
        return lo
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < c:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline Node* _child(const Node* node, Py_UCS4 c) noexcept nogil:
    cdef Py_ssize_t i = _find(node, c)
    if i < node.nkids and node.keys[i] == c:
        return node.kids[i]
    return NULL


cdef Node* _new_node() except NULL:
    cdef Node* node = <Node*>malloc(sizeof(Node))
    if node is NULL:
        raise MemoryError()
    node.keys = NULL
    node.kids = NULL
    node.nkids = node.kcap = 0
    node.globs = NULL
    node.nglobs = node.gcap = 0
    return node


cdef Node* _child_or_new(Node* node, Py_UCS4 c) except NULL:
    cdef Py_ssize_t i = _find(node, c), cap
    cdef Py_UCS4* keys
    cdef Node** kids
    if i < node.nkids and node.keys[i] == c:
        return node.kids[i]
    if node.nkids == node.kcap:
        cap = node.kcap * 2 if node.kcap else 2
        keys = <Py_UCS4*>realloc(node.keys, cap * sizeof(Py_UCS4))
        if keys is NULL:
            raise MemoryError()
        node.keys = keys
        kids = <Node**>realloc(node.kids, cap * sizeof(Node*))
        if kids is NULL:
            raise MemoryError()
        node.kids = kids
        node.kcap = cap
    cdef Node* child = _new_node()
    memmove(&node.keys[i + 1], &node.keys[i], (node.nkids - i) * sizeof(Py_UCS4))
    memmove(&node.kids[i + 1], &node.kids[i], (node.nkids - i) * sizeof(Node*))
    node.keys[i] = c
    node.kids[i] = child
    node.nkids += 1
    return child


cdef inline Py_UCS4 _key_char(const Glob* g, Py_ssize_t depth) noexcept nogil:
    """Character ``depth`` of the trie key of ``g`` (its prefix, or its suffix read backwards)."""
    if g.by_suffix:
        return g.toks[g.ntoks - 1 - depth].ch
    return g.toks[depth].ch


cdef int _trie_insert(Node* root, Glob* g) except -1:
    cdef Py_ssize_t depth, keylen = g.trail if g.by_suffix else g.lead
    cdef Node* node = root
    cdef Glob** globs
    for depth in range(keylen):
        node = _child_or_new(node, _key_char(g, depth))
    if node.nglobs == node.gcap:
        cap = node.gcap * 2 if node.gcap else 2
        globs = <Glob**>realloc(node.globs, cap * sizeof(Glob*))
        if globs is NULL:
            raise MemoryError()
        node.globs = globs
        node.gcap = cap
    node.globs[node.nglobs] = g
    node.nglobs += 1
    return 0


cdef void _node_free(Node* node) noexcept nogil:
    free(node.keys)
    free(node.kids)
    free(node.globs)
    free(node)


cdef int _trie_remove(Node* root, Glob* g) except -1:
    cdef Py_ssize_t depth, i, keylen = g.trail if g.by_suffix else g.lead
    cdef Node** path = <Node**>malloc((keylen + 1) * sizeof(Node*))
    cdef Node* node = root
    cdef Node* parent
    if path is NULL:
        raise MemoryError()
    path[0] = root
    depth = 0
    while depth < keylen:
        node = _child(node, _key_char(g, depth))
        if node is NULL:  # not filed: nothing to do
            free(path)
            return 0
        depth += 1
        path[depth] = node
    for i in range(node.nglobs):
        if node.globs[i] == g:
            node.nglobs -= 1
            node.globs[i] = node.globs[node.nglobs]
            break
    if node.nglobs == 0:
        free(node.globs)
        node.globs = NULL
        node.gcap = 0
    # drop the nodes this leaves empty, deepest first (never the root)
    depth = keylen
    while depth > 0:
        node = path[depth]
        if node.nkids or node.nglobs:
            break
        parent = path[depth - 1]
        i = _find(parent, _key_char(g, depth - 1))
        memmove(&parent.keys[i], &parent.keys[i + 1], (parent.nkids - i - 1) * sizeof(Py_UCS4))
        memmove(&parent.kids[i], &parent.kids[i + 1], (parent.nkids - i - 1) * sizeof(Node*))
        parent.nkids -= 1
        _node_free(node)
        depth -= 1
    free(path)
    return 0


cdef void _trie_free(Node* root) noexcept nogil:
    """Free a whole trie, without recursion (keys can be long)."""
    cdef Py_ssize_t n = 0, cap = 64, i
    cdef Node* node
    cdef Node** stack
    cdef Node** grown
    if root is NULL:
        return
    stack = <Node**>malloc(cap * sizeof(Node*))
    if stack is NULL:
        return  # leak rather than crash
    stack[n] = root
    n += 1
    while n:
        n -= 1
        node = stack[n]
        if n + node.nkids > cap:
            while n + node.nkids > cap:
                cap *= 2
            grown = <Node**>realloc(stack, cap * sizeof(Node*))
            if grown is NULL:
                break
            stack = grown
        for i in range(node.nkids):
            stack[n] = node.kids[i]
            n += 1
        _node_free(node)
    free(stack)


# ---------------------------------------------------------------- the index

@cython.auto_pickle(False)
@cython.no_gc_clear
cdef class ChannelIndex:
    """Which subscribers each channel has, for exact names and glob patterns.

    ``channels`` maps exact names and ``patterns`` maps patterns to the set of
    subscribers; both are read-only views for callers (mutate through the methods).
    """

    def __cinit__(self):
        self.channels = {}
        self.patterns = {}
        self._compiled = {}
        self._cache = {}
        self._prefix = _new_node()
        self._suffix = _new_node()
        self._seq = 0
        self._hits = NULL
        self._hcap = 0

    def __dealloc__(self):
        _trie_free(self._prefix)
        _trie_free(self._suffix)
        free(self._hits)

    cpdef bint add(self, object subscriber, object name) except -1:
        """Subscribe ``subscriber`` to ``name``; False if it already was."""
        cdef PyObject* found
        cdef set subscribers
        if not PyUnicode_Check(name):
            raise TypeError(f"channel names must be str, got {type(name).__name__}")
        if _has_wildcard(<str>name):
            found = PyDict_GetItemWithError(self.patterns, name)
            if found is NULL:
                subscribers = set()
                self.patterns[name] = subscribers
                self._add_pattern(<str>name)
            else:
                subscribers = <set>found
        else:
            found = PyDict_GetItemWithError(self.channels, name)
            if found is NULL:
                subscribers = set()
                self.channels[name] = subscribers
            else:
                subscribers = <set>found
        if subscriber in subscribers:
            return False
        subscribers.add(subscriber)
        return True

    cpdef bint discard(self, object subscriber, object name) except -1:
        """Unsubscribe ``subscriber`` from ``name``; False if it was not subscribed."""
        cdef PyObject* found
        cdef set subscribers
        cdef bint pattern
        if not PyUnicode_Check(name):
            raise TypeError(f"channel names must be str, got {type(name).__name__}")
        pattern = _has_wildcard(<str>name)
        cdef dict table = self.patterns if pattern else self.channels
        found = PyDict_GetItemWithError(table, name)
        if found is NULL:
            return False
        subscribers = <set>found
        if subscriber not in subscribers:
            return False
        subscribers.discard(subscriber)
        if not subscribers:
            del table[name]
            if pattern:
                self._remove_pattern(<str>name)
        return True

    cpdef tuple matching_patterns(self, object channel):
        """The subscribed patterns that match ``channel``."""
        if not PyUnicode_Check(channel):
            raise TypeError(f"channel names must be str, got {type(channel).__name__}")
        if not self._compiled:
            return ()
        return self._match(<str>channel)

    cpdef object subscribers(self, object channel):
        """Everyone subscribed to ``channel`` exactly or by a matching pattern, each once.

        The returned collection must not be mutated by the caller.
        """
        cdef PyObject* exact = PyDict_GetItemWithError(self.channels, channel)
        cdef tuple matched
        cdef set result
        if not self._compiled:
            return <object>exact if exact is not NULL else ()
        if not PyUnicode_Check(channel):
            raise TypeError(f"channel names must be str, got {type(channel).__name__}")
        matched = self._match(<str>channel)
        if not matched:
            return <object>exact if exact is not NULL else ()
        if exact is NULL and len(matched) == 1:
            return self.patterns[matched[0]]
        result = set(<object>exact) if exact is not NULL else set()
        for pattern in matched:
            result.update(<set>self.patterns[pattern])
        return result

    cdef tuple _match(self, str channel):
        cdef PyObject* cached
        cdef Py_ssize_t n, pos, k, nhits = 0, tests = 0, cap
        cdef int kind
        cdef void* data
        cdef Node* node
        cdef Glob* g
        cdef Glob** grown
        cdef tuple result
        cdef object pattern
        if self._cache:
            cached = PyDict_GetItemWithError(self._cache, channel)
            if cached is not NULL:
                return <tuple>cached
        n = PyUnicode_GET_LENGTH(channel)
        kind = PyUnicode_KIND(channel)
        data = PyUnicode_DATA(channel)
        # patterns filed by literal prefix: walk the channel forwards
        node = self._prefix
        pos = 0
        while True:
            for k in range(node.nglobs):
                g = node.globs[k]
                tests += 1
                if _glob_match(g, kind, data, n):
                    if nhits == self._hcap:
                        cap = self._hcap * 2 if self._hcap else 16
                        grown = <Glob**>realloc(self._hits, cap * sizeof(Glob*))
                        if grown is NULL:
                            raise MemoryError()
                        self._hits = grown
                        self._hcap = cap
                    self._hits[nhits] = g
                    nhits += 1
            if pos >= n:
                break
            node = _child(node, PyUnicode_READ(kind, data, pos))
            if node is NULL:
                break
            pos += 1
        # patterns filed by literal suffix: walk it backwards (the root holds none)
        node = self._suffix
        pos = n
        while pos > 0:
            pos -= 1
            node = _child(node, PyUnicode_READ(kind, data, pos))
            if node is NULL:
                break
            for k in range(node.nglobs):
                g = node.globs[k]
                tests += 1
                if _glob_match(g, kind, data, n):
                    if nhits == self._hcap:
                        cap = self._hcap * 2 if self._hcap else 16
                        grown = <Glob**>realloc(self._hits, cap * sizeof(Glob*))
                        if grown is NULL:
                            raise MemoryError()
                        self._hits = grown
                        self._hcap = cap
                    self._hits[nhits] = g
                    nhits += 1
        if nhits == 0:
            result = ()
        else:
            if nhits > 1:
                qsort(self._hits, nhits, sizeof(Glob*), _by_seq)
            result = PyTuple_New(nhits)
            for k in range(nhits):
                pattern = <object>self._hits[k].pattern
                Py_INCREF(pattern)
                PyTuple_SET_ITEM(result, k, pattern)
        if nhits or tests >= _CACHE_MIN_TESTS:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[channel] = result
        return result

    cdef int _add_pattern(self, str pattern) except -1:
        cdef _Pattern compiled = _Pattern(pattern, self._seq)
        self._seq += 1
        _trie_insert(self._suffix if compiled.g.by_suffix else self._prefix, &compiled.g)
        self._compiled[pattern] = compiled
        self._cache.clear()
        return 0

    cdef int _remove_pattern(self, str pattern) except -1:
        cdef _Pattern compiled = self._compiled.pop(pattern)
        _trie_remove(self._suffix if compiled.g.by_suffix else self._prefix, &compiled.g)
        self._cache.clear()
        return 0
