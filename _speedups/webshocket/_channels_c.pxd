# Declarations of the compiled channel index (``_speedups/channels.pyx`` -> ``webshocket._channels_c``).
# Cython finds a module's .pxd by its full name: this file is webshocket/_channels_c.pxd under the include
# path (setup.py passes include_path=[_speedups]). Other Cython modules: ``from webshocket._channels_c cimport ChannelIndex``.

cimport cython


cdef struct Tok:
    # one glob token: T_LIT (ch), T_ANY, T_STAR or T_SET (ranges[2*off : 2*(off+n)], negate)
    int kind
    int negate
    Py_UCS4 ch
    Py_ssize_t off
    Py_ssize_t n


cdef struct Glob:
    # a compiled pattern; lives inside its _Pattern object
    Tok* toks
    Py_ssize_t ntoks
    Py_UCS4* ranges
    Py_ssize_t min_len      # tokens that take one character each
    Py_ssize_t lead         # leading literal tokens (the literal prefix)
    Py_ssize_t trail        # trailing literal tokens (0 when every token is literal)
    bint has_star
    bint by_suffix          # filed in the suffix trie (by its literal suffix) rather than the prefix trie (set by the index)
    Py_ssize_t seq          # creation order: results come in the order of ChannelIndex.patterns
    void* pattern           # the pattern str (borrowed from the owning _Pattern)


cdef struct Node:
    # radix trie node: reached from its parent by one key character then ``label``;
    # children sorted by key; the globs whose key ends here
    Py_UCS4* label
    Py_ssize_t nlabel
    Py_UCS4* keys
    Node** kids
    Py_ssize_t nkids
    Py_ssize_t kcap
    Glob** globs
    Py_ssize_t nglobs
    Py_ssize_t gcap
    Node** table            # NULL, or (wide nodes) the 128 entries right after the node: ASCII key -> child


@cython.final
cdef class _Pattern:
    cdef Glob g
    cdef readonly object pattern   # the name as subscribed (a str, or a str subclass)
    cdef readonly object literal   # None, or (literal tokens only) the one name it matches


@cython.final
cdef class ChannelIndex:
    cdef readonly dict channels
    cdef readonly dict patterns
    cdef dict _compiled
    cdef dict _cache
    cdef dict _literals         # the one name a pattern of literal tokens matches -> its _Pattern objects
    cdef dict _named            # the same, as the tuple of patterns a publish there matches
    cdef Py_ssize_t _walked     # patterns filed in the tries (the others are in _literals)
    cdef Node* _prefix
    cdef Node* _suffix
    cdef Py_ssize_t _seq
    cdef Glob** _hits           # scratch for one match: room for every pattern
    cdef Py_ssize_t _hcap

    cpdef bint add(self, object subscriber, object name) except -1
    cpdef bint discard(self, object subscriber, object name) except -1
    cpdef tuple matching_patterns(self, object channel)
    cpdef object subscribers(self, object channel)
    cdef tuple _match(self, str channel)
    cdef int _add_pattern(self, str pattern) except -1
    cdef int _remove_pattern(self, str pattern) except -1
