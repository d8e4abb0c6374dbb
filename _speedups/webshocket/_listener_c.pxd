# Augmenting declarations: Cython compiles webshocket/_listener_py.py (through the
# symlink _listener_c.py) into webshocket._listener_c with these C-level types.
cimport cython
from picows.picows cimport WSFrame, WSListener, WSTransport

from webshocket._fanout_c cimport Sink


@cython.locals(sink=Sink)
cpdef reply(object conn, object call_id, object response, object error, bint is_stream, bint is_end)


cdef class _Done:
    cdef ServerCore core
    cdef object conn
    cdef object call_id
    cdef bint is_stream


cdef class ServerCore:
    cdef public object server
    cdef public object handler
    cdef public dict methods
    cdef public object loop
    cdef public Py_ssize_t task_limit
    cdef public Py_ssize_t running
    cdef public object waiting
    cdef public Py_ssize_t max_message_size
    cdef public Py_ssize_t max_inflight
    cdef public bint queue_packets
    cdef public bint has_on_connect
    cdef public bint has_on_disconnect
    cdef public set lifecycle_tasks
    cdef public set rpc_tasks
    cdef public set stream_tasks
    cdef public dict stats
    cdef public object flusher

    cpdef call(self, object conn, object request)
    cpdef done(self, object conn, object call_id, bint is_stream, object task)
    cdef _failed(self, object conn, object call_id, object exc)
    cpdef receive(self, object conn, object packet)


cdef class ServerListener(WSListener):
    cdef public ServerCore core
    cdef public object client_type
    cdef public object conn
    cdef public object fragments
    cdef public Py_ssize_t fragments_size
    cdef public bint ready
    cdef public list pending
    cdef public object connect_task
    cdef public bint _text

    cpdef on_ws_connected(self, WSTransport transport)
    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame)
    cpdef on_ws_disconnected(self, WSTransport transport)
    cpdef pause_writing(self)
    cpdef resume_writing(self)
    cpdef message(self, bytes payload)
    cpdef dispatch(self, bytes payload)
