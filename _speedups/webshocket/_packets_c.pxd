# Augmenting declarations: Cython compiles webshocket/_packets_py.py (through the symlink
# _packets_c.py) into webshocket._packets_c with these C fields (used when msgspec is not
# installed). The compiled codec reads and fills them at their offsets, as it does the slots of
# msgspec's Structs (codec.pyx, "packet objects"); it allocates with PyType_GenericAlloc.
# No cdef/cpdef methods: an instance needs no vtable, so one allocated that way (or by msgspec,
# field by field: codec.pyx's publish(), docs/migration.md 3.17) is complete.
cimport cython


@cython.freelist(64)
cdef class RPCRequest:
    cdef public object method
    cdef public object args
    cdef public object kwargs
    cdef public object call_id


@cython.freelist(64)
cdef class RPCResponse:
    cdef public object call_id
    cdef public object response
    cdef public object error
    cdef public object is_stream
    cdef public object is_end


@cython.freelist(64)
cdef class Packet:
    cdef public object source
    cdef public object data
    cdef public object rpc
    cdef public object channel
    cdef public object timestamp
    cdef public object correlation_id
    cdef public object offset
    cdef public object epoch
