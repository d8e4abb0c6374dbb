# Declarations of the compiled token bucket (``_speedups/ratelimit.pyx`` -> ``webshocket._ratelimit_c``).
# Cython finds a module's .pxd by its full name: this file is webshocket/_ratelimit_c.pxd under the include
# path (setup.py passes include_path=[_speedups]). Other Cython modules:
# ``from webshocket._ratelimit_c cimport TokenBucket`` and call ``bucket.take_now()`` / ``bucket.take(now)``.

cimport cython


cdef double monotonic_now() noexcept nogil


@cython.final
cdef class TokenBucket:
    cdef readonly object limit
    cdef readonly double period
    cdef double _limit
    cdef double _rate
    cdef double _tokens
    cdef double _stamp

    cdef bint take(self, double now) noexcept
    cdef bint take_now(self) noexcept
