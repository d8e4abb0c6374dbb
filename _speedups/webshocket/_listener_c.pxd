# Augmenting declarations: Cython compiles webshocket/_listener_py.py (through the
# symlink _listener_c.py) into webshocket._listener_c with these C-level types.
cimport cython
from picows.picows cimport WSFrame, WSTransport

from webshocket._fanout_c cimport Sink
from webshocket._framing_c cimport MessageListener


@cython.locals(sink=Sink)
cpdef bint reply(ServerListener engine, object call_id, object response, object error, bint is_stream, bint is_end) except -1


cdef class _Done:
    cdef ServerCore core
    cdef ServerListener engine
    cdef object call_id
    cdef bint is_stream
    cdef bint pooled


cdef class ServerCore:
    cdef public object handler
    cdef public object hub
    cdef public object config
    cdef public dict methods
    cdef public object loop
    cdef public Py_ssize_t task_limit
    cdef public Py_ssize_t reserve
    cdef public Py_ssize_t share
    cdef public Py_ssize_t pool_used
    cdef public object ready
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
    cdef public set watched
    cdef public object sweeping
    cdef public object on_open
    cdef public object keyed
    cdef public dict sessions
    cdef public double tick_interval
    cdef public Py_ssize_t ping_after
    cdef public Py_ssize_t close_after
    cdef public object ticking

    cpdef call(self, ServerListener engine, object request)
    cpdef bint within_limit(self, ServerListener engine, object name, object limit) except -1
    cdef _start(self, ServerListener engine, object call_id, object work, bint is_stream, bint pooled)
    cdef _finish(self, ServerListener engine)
    cpdef done(self, ServerListener engine, object call_id, bint is_stream, bint pooled, object task)
    cdef bint _start_next(self, ServerListener engine, bint pooled) except -1
    cdef _serve_ready(self)
    cdef _failed(self, ServerListener engine, object call_id, object exc)
    cpdef receive(self, ServerListener engine, object packet, Py_ssize_t size=*)
    @cython.locals(engine=ServerListener, ping_after=Py_ssize_t, close_after=Py_ssize_t)
    cpdef tick(self)
    cpdef watch(self, ServerListener engine)
    cpdef drop_work(self, ServerListener engine)
    cpdef str error_text(self, object exc, str what)


cdef class ServerListener(MessageListener):
    cdef public ServerCore core
    cdef public object hub
    cdef public object client_type
    cdef public Py_ssize_t packet_qsize
    cdef public Py_ssize_t max_held
    cdef public Py_ssize_t held
    cdef public object max_subscribed_channels
    cdef public WSTransport transport
    cdef public Sink sink
    cdef public object conn
    cdef public bint is_open
    cdef public dict streams
    cdef public dict calls
    cdef public object queued
    cdef public Py_ssize_t running
    cdef public bint in_ready
    cdef public dict buckets
    cdef public Py_ssize_t inflight
    cdef public int paused
    cdef public double blocked_since
    cdef public list writers
    cdef public object inbox
    cdef public bint receiving
    cdef public object queue
    cdef public object remote
    cdef public object request
    cdef public bint ready
    cdef public list pending
    cdef public bint draining
    cdef public object early
    cdef public object connect_task
    cdef public bint wants_session
    cdef public object session
    cdef public bint parkable
    cdef public Py_ssize_t silent

    cpdef on_ws_connected(self, WSTransport transport)
    cpdef fail(self, WSTransport transport, object code, bytes reason)
    cpdef on_close_frame(self, WSTransport transport, WSFrame frame)
    cpdef on_ws_disconnected(self, WSTransport transport)
    cpdef pause_writing(self)
    cpdef resume_writing(self)
    cpdef send_user_specific_ping(self, WSTransport transport)
    cpdef bint push(self, bytes payload, Py_ssize_t chunk_size=*) except -1
    cpdef close(self, int code=*, bytes reason=*)
    cpdef mark_closed(self)
    cpdef pause_reading(self, int reason)
    cpdef resume_reading(self, int reason)
    cpdef wake_writers(self)
    cpdef wake_early(self)
    cpdef enqueue(self, object packet, Py_ssize_t size=*)
    cpdef hold(self, Py_ssize_t size)
    cpdef unhold(self, Py_ssize_t size)
    cpdef on_message(self, bytes payload)
    cpdef release(self)
    cpdef dispatch(self, bytes payload)
