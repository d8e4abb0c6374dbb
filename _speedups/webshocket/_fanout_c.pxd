# Augmenting declarations: Cython compiles webshocket/_fanout_py.py (through the
# symlink _fanout_c.py) into webshocket._fanout_c with these C-level types.
cimport cython


cdef class Flusher:
    cdef public object loop
    cdef public list dirty
    cdef public bint scheduled

    cpdef add(self, Sink sink)
    cpdef flush(self)


cdef class Sink:
    cdef public object transport
    cdef public object writer
    cdef public bint as_json
    cdef public bint open
    cdef public bint blocked
    cdef public bytes first
    cdef public list out
    cdef public Py_ssize_t out_size
    cdef public Flusher flusher
    cdef public Py_ssize_t max_out
    cdef public Py_ssize_t flush_frames
    cdef public bint drop
    cdef public Py_ssize_t dropped
    cdef public dict stats
    cdef public object owner
    cdef public Py_ssize_t max_backlog
    cdef public bint patient
    cdef public bint corked

    cpdef queue(self, bytes frames)
    cpdef send(self, bytes frames)
    cpdef Py_ssize_t queued_frames(self) except -1
    cpdef Py_ssize_t queued_size(self) except -1
    cpdef bint push(self, bytes frames) except -1
    cpdef bint admit(self, Py_ssize_t size) except -1
    cpdef Py_ssize_t backlog(self) except -1
    cpdef slow(self)
    cpdef cut(self)
    cpdef flush(self)
    cpdef uncork(self, list front, bint keep)


cdef class Endpoint:
    cdef readonly Sink _sink


cdef class Outgoing:
    cdef public object source
    cdef public object data
    cdef public object channel
    cdef public object packet
    cdef public object encoded_mp
    cdef public object encoded_json
    cdef public object frames_mp
    cdef public object frames_json

    cpdef bytes encoded(self, bint as_json)
    cpdef bytes frames(self, bint as_json)


@cython.locals(client=Endpoint, sink=Sink, sent=Py_ssize_t)
cpdef Py_ssize_t fan_out(object recipients, Outgoing out, object excluded, object predicate) except -1
