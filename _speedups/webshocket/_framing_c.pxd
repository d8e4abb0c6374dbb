# Augmenting declarations: Cython compiles webshocket/_framing_py.py (through the
# symlink _framing_c.py) into webshocket._framing_c with these C-level types.
# Other Cython modules: ``from webshocket._framing_c cimport MessageListener``.
cimport cython
from picows.picows cimport WSFrame, WSListener, WSTransport


# Frame kinds (WSMsgType values) as C ints: see on_ws_frame.
cdef int BINARY_KIND, TEXT_KIND, CONTINUATION_KIND, CLOSE_KIND, PING_KIND


cdef class MessageListener(WSListener):
    cdef public Py_ssize_t max_message_size
    cdef public Py_ssize_t max_frames
    cdef public list fragments
    cdef public Py_ssize_t fragments_size
    cdef public bint fragments_text
    cdef public bint heard

    cpdef on_message(self, bytes payload)
    cpdef on_close_frame(self, WSTransport transport, WSFrame frame)
    cpdef fail(self, WSTransport transport, object code, bytes reason)
    @cython.locals(kind=int)
    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame)
    cdef bint _check_size(self, WSTransport transport) except -1
