# Augmenting declarations: Cython compiles webshocket/_ratelimit_py.py (through the
# symlink _ratelimit_c.py) into webshocket._ratelimit_c with these C fields.
cimport cython


@cython.final
@cython.freelist(64)
cdef class TokenBucket:
    cdef readonly object limit
    cdef readonly double period
    cdef double _limit
    cdef double _rate
    cdef double _tokens
    cdef double _stamp

    cpdef bint allow(self) except -1
    cpdef bint allow_at(self, double now) except -1
