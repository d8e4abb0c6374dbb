# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled channel index (twin of ``webshocket/_channels_py.py``).

Exact channels live in a dict. Each pattern is compiled into a small token
program (literal, ``?``, ``*``, character set), reading it exactly as
``fnmatch.translate`` does, and is matched by a native glob matcher over the
channel's code points (no regex).

Patterns are filed in one of two radix tries: by their literal prefix, or by
their literal suffix (reversed) -- whichever key has fewer patterns filed on it
already, else the longer one; patterns with neither sit at the prefix root. A
publish walks both tries along the channel name (forwards, and backwards from
its end), so it only ever tests patterns whose whole literal prefix (or suffix)
the channel has: the cost does not grow with the number of patterns that cannot
match. A pattern made of literal characters only (``escape("room[1]")`` is ``room[[]1]``,
whose tokens are all literal) matches one channel name: it is filed in a dict under that
name instead of a trie, so a publish finds it with one lookup (and only that lookup when
no pattern is filed in a trie). Results that took more than a few pattern tests are
kept in a bounded cache (channel -> matching patterns), cleared whenever the set of
patterns changes.

``matching_patterns`` returns patterns in the order of ``ChannelIndex.patterns``.
"""

cimport cython
from cpython.dict cimport PyDict_GetItemWithError
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_Check, PyUnicode_DATA, PyUnicode_FromObject, PyUnicode_GET_LENGTH, PyUnicode_KIND
from libc.stdlib cimport calloc, free, malloc, qsort, realloc
from libc.string cimport memcmp, memcpy, memmove, memset

import re

cdef extern from "Python.h":
    # the macro only reads the buffer: no GIL needed
    Py_UCS4 PyUnicode_READ(int kind, const void* data, Py_ssize_t index) nogil
    ctypedef unsigned char Py_UCS1
    enum: PyUnicode_1BYTE_KIND

__all__ = ["CACHE_SIZE", "ChannelIndex", "escape", "is_pattern", "literal_name", "literal_prefix"]

CACHE_SIZE = 4096
_WILDCARDS = frozenset("*?[")
_ESCAPES = {ord("*"): "[*]", ord("?"): "[?]", ord("["): "[[]"}

cdef enum:
    _CACHE_SIZE = 4096
    # a cache miss that tested fewer patterns than this is cheaper to redo than to cache
    _CACHE_MIN_TESTS = 4
    # nodes with more children than this get a 128-entry table of children by ASCII key
    _TABLE_MIN_KIDS = 4

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


def escape(name):
    """A glob pattern that matches ``name`` and nothing else.

    ``*``, ``?`` and ``[`` become ``[*]``, ``[?]`` and ``[[]``; a name without them is
    returned as is (an exact channel).
    """
    if not PyUnicode_Check(name):
        raise TypeError(f"channel names must be str, got {type(name).__name__}")
    if _has_wildcard(<str>name):
        return PyUnicode_FromObject(name).translate(_ESCAPES)
    return name


def literal_name(name):
    """The one channel a subscription to ``name`` receives, or None when it may receive several.

    ``name`` itself when it has no wildcard; for a pattern of literal characters and
    one-character sets only (what :func:`escape` makes, or ``room[1]``), the one name it
    matches (``room[1]`` -> ``room1``, ``escape(x)`` -> ``x``).
    """
    if not PyUnicode_Check(name):
        raise TypeError(f"channel names must be str, got {type(name).__name__}")
    if not _has_wildcard(<str>name):
        return name
    chars = []
    for item in _tokens(PyUnicode_FromObject(name)):
        if item[0] != T_LIT:
            return None
        chars.append(item[2])
    return "".join(chars)


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
        if k == self.g.ntoks:  # literal tokens only: it matches one name (filed in the index's dict)
            self.literal = "".join([item[2] for item in toks])
            self.g.trail = 0
        else:
            k = 0
            while k < self.g.ntoks and self.g.toks[self.g.ntoks - 1 - k].kind == T_LIT:
                k += 1
            self.g.trail = k
        self.g.by_suffix = False  # the index decides where to file it

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


# ---------------------------------------------------------------- radix tries
# A node is reached from its parent by one key character (``keys``/``kids``, kept
# sorted) followed by the node's ``label``: a chain of single-child nodes is one
# node, so walking a long shared prefix is a run of character compares, not a
# chain of pointer loads. Globs hang on the node where their key ends.

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
    cdef Py_ssize_t i
    if c < 128 and node.table is not NULL:  # a wide node: its table follows it in memory, one read
        return (<Node**>(node + 1))[c]
    i = _find(node, c)
    if i < node.nkids and node.keys[i] == c:
        return node.kids[i]
    return NULL


cdef void _reindex(Node* node) noexcept nogil:
    """Rebuild the ASCII table of a wide node (narrow ones have none)."""
    cdef Py_ssize_t i
    if node.table is NULL:
        return
    memset(node.table, 0, 128 * sizeof(Node*))
    for i in range(node.nkids):  # keys are sorted: the ASCII ones come first
        if node.keys[i] >= 128:
            break
        node.table[node.keys[i]] = node.kids[i]


cdef Node* _widen(Node* node) noexcept nogil:
    """A wide copy of ``node`` (its 128-entry table right after it), replacing it; NULL if out of memory."""
    cdef Node* wide = <Node*>malloc(sizeof(Node) + 128 * sizeof(Node*))
    if wide is NULL:
        return NULL  # the narrow node stays, and still works
    memcpy(wide, node, sizeof(Node))
    wide.table = <Node**>(wide + 1)
    _reindex(wide)
    free(node)  # its arrays now belong to ``wide``
    return wide


cdef inline void _set_kid(Node* node, Py_ssize_t i, Node* kid) noexcept:
    """Replace child ``i`` (same key) by ``kid``."""
    node.kids[i] = kid
    if node.table is not NULL and node.keys[i] < 128:
        node.table[node.keys[i]] = kid


cdef Node* _new_node(const Py_UCS4* label, Py_ssize_t nlabel) except NULL:
    cdef Node* node = <Node*>calloc(1, sizeof(Node))
    if node is NULL:
        raise MemoryError()
    if nlabel:
        node.label = <Py_UCS4*>malloc(nlabel * sizeof(Py_UCS4))
        if node.label is NULL:
            free(node)
            raise MemoryError()
        memcpy(node.label, label, nlabel * sizeof(Py_UCS4))
        node.nlabel = nlabel
    return node


cdef void _node_free(Node* node) noexcept nogil:
    free(node.label)
    free(node.keys)
    free(node.kids)
    free(node.globs)
    free(node)  # a wide node's table is part of it


cdef Node* _add_kid(Node* node, Py_UCS4 c, Node* kid) except NULL:
    """File ``kid`` under key ``c`` (which ``node`` must not have yet).

    Returns ``node``, or the wide node that replaces it: the caller relinks it then.
    """
    cdef Py_ssize_t i = _find(node, c), cap
    cdef Py_UCS4* keys
    cdef Node** kids
    cdef Node* wide
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
    memmove(&node.keys[i + 1], &node.keys[i], (node.nkids - i) * sizeof(Py_UCS4))
    memmove(&node.kids[i + 1], &node.kids[i], (node.nkids - i) * sizeof(Node*))
    node.keys[i] = c
    node.kids[i] = kid
    node.nkids += 1
    if node.table is not NULL:
        _reindex(node)
    elif node.nkids > _TABLE_MIN_KIDS:
        wide = _widen(node)
        if wide is not NULL:
            return wide
    return node


cdef void _drop_kid(Node* node, Py_ssize_t i) noexcept:
    """Unfile child ``i`` (not freed). A wide node stays wide."""
    node.nkids -= 1
    memmove(&node.keys[i], &node.keys[i + 1], (node.nkids - i) * sizeof(Py_UCS4))
    memmove(&node.kids[i], &node.kids[i + 1], (node.nkids - i) * sizeof(Node*))
    _reindex(node)


cdef Py_UCS4* _glob_key(const Glob* g, bint by_suffix, Py_ssize_t* size) except NULL:
    """A trie key of ``g`` (a new array): its literal prefix, or its literal suffix reversed."""
    cdef Py_ssize_t k, n = g.trail if by_suffix else g.lead
    cdef Py_UCS4* key = <Py_UCS4*>malloc((n + 1) * sizeof(Py_UCS4))
    if key is NULL:
        raise MemoryError()
    for k in range(n):
        key[k] = g.toks[g.ntoks - 1 - k].ch if by_suffix else g.toks[k].ch
    size[0] = n
    return key


cdef Py_ssize_t _anchor_load(const Node* node, const Glob* g, bint by_suffix) except -1:
    """How many globs are filed where ``g`` would be, under its prefix (or suffix) key."""
    cdef Py_ssize_t size, d = 0, i
    cdef Py_UCS4* key = _glob_key(g, by_suffix, &size)
    try:
        while d < size:
            i = _find(node, key[d])
            if i >= node.nkids or node.keys[i] != key[d]:
                return 0
            node = node.kids[i]
            d += 1
            if d + node.nlabel > size or memcmp(node.label, key + d, node.nlabel * sizeof(Py_UCS4)) != 0:
                return 0
            d += node.nlabel
        return node.nglobs
    finally:
        free(key)


cdef int _trie_insert(Node** root, Glob* g) except -1:
    cdef Py_ssize_t size, d = 0, i, j, cap, slot = -1
    cdef Py_UCS4* key = _glob_key(g, g.by_suffix, &size)
    cdef Node* node = root[0]
    cdef Node* parent = NULL
    cdef Node* kid
    cdef Node* mid
    cdef Node* grown
    cdef Glob** globs
    cdef Py_UCS4 c
    try:
        while d < size:
            c = key[d]
            i = _find(node, c)
            if i >= node.nkids or node.keys[i] != c:  # new branch: one leaf takes the rest of the key
                kid = _new_node(key + d + 1, size - d - 1)
                grown = _add_kid(node, c, kid)
                if grown is NULL:
                    _node_free(kid)
                    return -1
                if grown != node:  # widened: relink it
                    if parent is NULL:
                        root[0] = grown
                    else:
                        _set_kid(parent, slot, grown)
                node = kid
                break
            kid = node.kids[i]
            d += 1
            j = 0
            while j < kid.nlabel and d + j < size and kid.label[j] == key[d + j]:
                j += 1
            if j < kid.nlabel:  # the key leaves the label at j: split the edge there
                mid = _new_node(kid.label, j)
                if _add_kid(mid, kid.label[j], kid) is NULL:  # (one child: never widened)
                    _node_free(mid)
                    return -1
                memmove(kid.label, kid.label + j + 1, (kid.nlabel - j - 1) * sizeof(Py_UCS4))
                kid.nlabel -= j + 1
                _set_kid(node, i, mid)  # same key character, same slot
                kid = mid
            parent = node
            slot = i
            node = kid
            d += j
        if node.nglobs == node.gcap:
            cap = node.gcap * 2 if node.gcap else 2
            globs = <Glob**>realloc(node.globs, cap * sizeof(Glob*))
            if globs is NULL:
                raise MemoryError()
            node.globs = globs
            node.gcap = cap
        node.globs[node.nglobs] = g
        node.nglobs += 1
    finally:
        free(key)
    return 0


cdef int _trie_remove(Node* root, Glob* g) except -1:
    cdef Py_ssize_t size, d = 0, depth = 0, i, j
    cdef Py_UCS4* key = _glob_key(g, g.by_suffix, &size)
    cdef Node** path = NULL
    cdef Py_ssize_t* slots = NULL
    cdef Node* node = root
    cdef Node* kid
    cdef Py_UCS4* label
    try:
        path = <Node**>malloc((size + 1) * sizeof(Node*))
        slots = <Py_ssize_t*>malloc((size + 1) * sizeof(Py_ssize_t))
        if path is NULL or slots is NULL:
            raise MemoryError()
        while d < size:
            i = _find(node, key[d])
            if i >= node.nkids or node.keys[i] != key[d]:
                return 0  # not filed
            kid = node.kids[i]
            d += 1
            if d + kid.nlabel > size or memcmp(kid.label, key + d, kid.nlabel * sizeof(Py_UCS4)) != 0:
                return 0
            path[depth] = node
            slots[depth] = i
            depth += 1
            node = kid
            d += kid.nlabel
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
        while depth > 0 and node.nglobs == 0 and node.nkids == 0:
            depth -= 1
            _drop_kid(path[depth], slots[depth])
            _node_free(node)
            node = path[depth]
        # a node left with one child and no globs merges into that child
        if depth > 0 and node.nglobs == 0 and node.nkids == 1:
            kid = node.kids[0]
            label = <Py_UCS4*>malloc((node.nlabel + 1 + kid.nlabel) * sizeof(Py_UCS4))
            if label is not NULL:  # else keep the unmerged (still correct) node
                memcpy(label, node.label, node.nlabel * sizeof(Py_UCS4))
                label[node.nlabel] = node.keys[0]
                memcpy(label + node.nlabel + 1, kid.label, kid.nlabel * sizeof(Py_UCS4))
                free(kid.label)
                kid.label = label
                kid.nlabel += node.nlabel + 1
                _set_kid(path[depth - 1], slots[depth - 1], kid)
                node.nkids = 0
                _node_free(node)
    finally:
        free(key)
        free(path)
        free(slots)
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


cdef inline Py_ssize_t _walk(const Node* node, bint backwards, int kind, const void* data, Py_ssize_t n,
                      Glob** hits, Py_ssize_t nhits, Py_ssize_t* tests) noexcept nogil:
    """Walk one trie along the channel (backwards for the suffix trie), appending the globs that match to hits.

    ``hits`` has room for every filed glob. Returns the new number of hits.
    """
    cdef Py_ssize_t pos = 0, j, k, m
    cdef const Py_UCS4* label
    cdef Glob* g
    while True:
        for k in range(node.nglobs):
            g = node.globs[k]
            tests[0] += 1
            if _glob_match(g, kind, <void*>data, n):
                hits[nhits] = g
                nhits += 1
        if pos >= n:
            return nhits
        node = _child(node, PyUnicode_READ(kind, data, n - 1 - pos if backwards else pos))
        if node is NULL:
            return nhits
        pos += 1
        m = node.nlabel
        if m:
            if pos + m > n:
                return nhits
            label = node.label
            if backwards:
                for j in range(m):
                    if PyUnicode_READ(kind, data, n - 1 - pos - j) != label[j]:
                        return nhits
            else:
                for j in range(m):
                    if PyUnicode_READ(kind, data, pos + j) != label[j]:
                        return nhits
            pos += m


cdef inline Py_ssize_t _walk1(const Node* node, bint backwards, const Py_UCS1* s, Py_ssize_t n,
                       Glob** hits, Py_ssize_t nhits, Py_ssize_t* tests) noexcept nogil:
    """_walk for a 1-byte-per-character channel (the usual case): no per-character kind dispatch."""
    cdef Py_ssize_t pos = 0, j, k, m
    cdef const Py_UCS4* label
    cdef Glob* g
    while True:
        for k in range(node.nglobs):
            g = node.globs[k]
            tests[0] += 1
            if _glob_match(g, PyUnicode_1BYTE_KIND, <void*>s, n):
                hits[nhits] = g
                nhits += 1
        if pos >= n:
            return nhits
        node = _child(node, s[n - 1 - pos] if backwards else s[pos])
        if node is NULL:
            return nhits
        pos += 1
        m = node.nlabel
        if m:
            if pos + m > n:
                return nhits
            label = node.label
            if backwards:
                for j in range(m):
                    if s[n - 1 - pos - j] != label[j]:
                        return nhits
            else:
                for j in range(m):
                    if s[pos + j] != label[j]:
                        return nhits
            pos += m


# ---------------------------------------------------------------- the index

@cython.auto_pickle(False)
@cython.no_gc_clear
@cython.final
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
        self._literals = {}
        self._named = {}
        self._walked = 0
        self._prefix = _new_node(NULL, 0)
        self._suffix = _new_node(NULL, 0)
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
        cdef PyObject* found
        cdef Py_ssize_t n, k, nhits, tests = 0
        cdef int kind
        cdef void* data
        cdef tuple result
        cdef PyObject* local[16]
        cdef PyObject** refs
        if self._walked == 0:  # one-name patterns only (literal subscriptions): one lookup, no walk
            found = PyDict_GetItemWithError(self._named, channel)
            return <tuple>found if found is not NULL else ()
        if self._cache:
            cached = PyDict_GetItemWithError(self._cache, channel)
            if cached is not NULL:
                return <tuple>cached
        n = PyUnicode_GET_LENGTH(channel)
        kind = PyUnicode_KIND(channel)
        data = PyUnicode_DATA(channel)
        if kind == PyUnicode_1BYTE_KIND:
            nhits = _walk1(self._prefix, False, <const Py_UCS1*>data, n, self._hits, 0, &tests)
            nhits = _walk1(self._suffix, True, <const Py_UCS1*>data, n, self._hits, nhits, &tests)
        else:
            nhits = _walk(self._prefix, False, kind, data, n, self._hits, 0, &tests)
            nhits = _walk(self._suffix, True, kind, data, n, self._hits, nhits, &tests)
        if self._literals:
            found = PyDict_GetItemWithError(self._literals, channel)
            if found is not NULL:
                for item in <list>found:
                    self._hits[nhits] = &(<_Pattern>item).g
                    nhits += 1
        if nhits == 0:
            result = ()
        else:
            if nhits > 1:
                qsort(self._hits, nhits, sizeof(Glob*), _by_seq)
            # Own the pattern names before allocating the tuple: that may run the garbage
            # collector, whose finalizers could call back into this index (reusing _hits,
            # or unsubscribing a pattern and freeing its Glob).
            refs = &local[0] if nhits <= 16 else <PyObject**>malloc(nhits * sizeof(PyObject*))
            if refs is NULL:
                raise MemoryError()
            for k in range(nhits):
                refs[k] = <PyObject*>self._hits[k].pattern
                Py_INCREF(<object>refs[k])
            try:
                result = PyTuple_New(nhits)
            except BaseException:
                for k in range(nhits):
                    Py_DECREF(<object>refs[k])
                if refs != &local[0]:
                    free(refs)
                raise
            for k in range(nhits):
                PyTuple_SET_ITEM(result, k, <object>refs[k])  # takes over our reference
            if refs != &local[0]:
                free(refs)
        if nhits or tests >= _CACHE_MIN_TESTS:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[channel] = result
        return result

    cdef int _add_pattern(self, str pattern) except -1:
        cdef _Pattern compiled = _Pattern(pattern, self._seq)
        cdef Glob* g = &compiled.g
        cdef Py_ssize_t on_prefix, on_suffix, cap
        cdef PyObject* found
        cdef Glob** grown
        if self._hcap <= len(self._compiled):  # room for every pattern to match at once
            cap = 2 * self._hcap if self._hcap else 16
            grown = <Glob**>realloc(self._hits, cap * sizeof(Glob*))
            if grown is NULL:
                raise MemoryError()
            self._hits = grown
            self._hcap = cap
        self._seq += 1
        if compiled.literal is not None:  # one name: a dict entry, no trie
            found = PyDict_GetItemWithError(self._literals, compiled.literal)
            entries = [compiled] if found is NULL else [*(<list>found), compiled]
            self._literals[compiled.literal] = entries
            self._named[compiled.literal] = tuple([(<_Pattern>item).pattern for item in entries])
            self._compiled[pattern] = compiled
            self._cache.clear()
            return 0
        # File it by literal prefix or by literal suffix: where fewer patterns already wait
        # to be tested (so 10,000 "news.*.<i>" go by their distinct suffixes), else by the longer.
        if g.trail == 0:
            g.by_suffix = False
        elif g.lead == 0:
            g.by_suffix = True
        else:
            on_prefix = _anchor_load(self._prefix, g, False)
            on_suffix = _anchor_load(self._suffix, g, True)
            g.by_suffix = on_suffix < on_prefix or (on_suffix == on_prefix and g.trail > g.lead)
        _trie_insert(&self._suffix if compiled.g.by_suffix else &self._prefix, &compiled.g)
        self._walked += 1
        self._compiled[pattern] = compiled
        self._cache.clear()
        return 0

    cdef int _remove_pattern(self, str pattern) except -1:
        cdef _Pattern compiled = self._compiled.pop(pattern)
        if compiled.literal is not None:
            # a new list: a match that is iterating the old one (reentered from a finalizer) is not disturbed
            rest = [p for p in self._literals.get(compiled.literal, ()) if p is not compiled]
            if rest:
                self._literals[compiled.literal] = rest
                self._named[compiled.literal] = tuple([(<_Pattern>item).pattern for item in rest])
            else:
                self._literals.pop(compiled.literal, None)
                self._named.pop(compiled.literal, None)
        else:
            self._walked -= 1
            _trie_remove(self._suffix if compiled.g.by_suffix else self._prefix, &compiled.g)
        self._cache.clear()
        return 0
