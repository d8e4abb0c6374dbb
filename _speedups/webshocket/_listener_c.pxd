# Augmenting declarations: Cython compiles webshocket/_listener_py.py (through the
# symlink _listener_c.py) into webshocket._listener_c with these C-level types.
cimport cython
from picows.picows cimport WSFrame, WSTransport

from webshocket._fanout_c cimport Sink
from webshocket._framing_c cimport MessageListener


@cython.locals(sink=Sink)
cpdef reply(ServerListener engine, object call_id, object response, object error, bint is_stream, bint is_end)


cdef class _Done:
    cdef ServerCore core
    cdef ServerListener engine
    cdef object call_id
    cdef bint is_stream


cdef class ServerCore:
    cdef public object handler
    cdef public object hub
    cdef public object config
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
    cdef public set engines
    cdef public object on_open

    cpdef call(self, ServerListener engine, object request)
    cpdef done(self, ServerListener engine, object call_id, bint is_stream, object task)
    cdef _failed(self, ServerListener engine, object call_id, object exc)
    cpdef receive(self, ServerListener engine, object packet)


cdef class ServerListener(MessageListener):
    cdef public ServerCore core
    cdef public object hub
    cdef public object client_type
    cdef public Py_ssize_t packet_qsize
    cdef public object max_subscribed_channels
    cdef public WSTransport transport
    cdef public Sink sink
    cdef public object conn
    cdef public bint is_open
    cdef public dict streams
    cdef public dict buckets
    cdef public Py_ssize_t inflight
    cdef public int paused
    cdef public object inbox
    cdef public bint receiving
    cdef public object queue
    cdef public object remote
    cdef public bint ready
    cdef public list pending
    cdef public object connect_task

    cpdef on_ws_connected(self, WSTransport transport)
    cpdef fail(self, WSTransport transport, object code, bytes reason)
    cpdef on_close_frame(self, WSTransport transport, WSFrame frame)
    cpdef on_ws_disconnected(self, WSTransport transport)
    cpdef pause_writing(self)
    cpdef resume_writing(self)
    cpdef bint push(self, bytes payload, Py_ssize_t chunk_size=*) except -1
    cpdef close(self, int code=*, bytes reason=*)
    cpdef mark_closed(self)
    cpdef pause_reading(self, int reason)
    cpdef resume_reading(self, int reason)
    cpdef enqueue(self, object packet)
    cpdef on_message(self, bytes payload)
    cpdef dispatch(self, bytes payload)
