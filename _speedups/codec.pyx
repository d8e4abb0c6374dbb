# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled packet codec (twin of ``webshocket/_codec_py.py``).

Its own msgpack reader and writer, working on C buffers: RPC responses and
pushed packets are written straight from their fields, never through a dict.
JSON values go through the stdlib's C encoder; the packet framing around them
is written here. Output is byte-identical to the pure twin.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.dict cimport PyDict_Next, PyDict_SetItem
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE, PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_AsUnsignedLongLong, PyLong_FromLongLong, PyLong_FromUnsignedLongLong
from cpython.object cimport Py_TPFLAGS_IMMUTABLETYPE, PyObject, PyObject_TypeCheck, PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.type cimport PyType_Modified
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy

import json

import msgpack

cimport cython

from webshocket import _codec_py, _packets_c
from webshocket._ext import packet_classes
from webshocket.enum import PacketSource, RPCErrorCode
from webshocket.utils import generate_uuid

__all__ = [
    "INVALID_REQUEST",
    "PACKET_CLASSES",
    "Packet",
    "RPCRequest",
    "RPCResponse",
    "decode_packet",
    "encode_packet",
    "encode_push",
    "encode_request",
    "encode_response",
    "encode_value",
    "frame",
    "response_frame",
    "salvage_call_id",
]

# Error path only: shared with the pure twin.
INVALID_REQUEST = _codec_py.INVALID_REQUEST
salvage_call_id = _codec_py.salvage_call_id


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size) except NULL

cdef extern from *:
    """
    #include <string.h>
    static inline unsigned long long ws_be64(unsigned long long x) { return __builtin_bswap64(x); }
    static inline unsigned int ws_be32(unsigned int x) { return __builtin_bswap32(x); }
    static inline unsigned short ws_be16(unsigned short x) { return __builtin_bswap16(x); }
    """
    unsigned long long ws_be64(unsigned long long x) nogil
    unsigned int ws_be32(unsigned int x) nogil
    unsigned short ws_be16(unsigned short x) nogil


DEF INLINE_SIZE = 480
DEF MAX_DEPTH = 1024
cdef Py_ssize_t FRAME_SIZE = _codec_py.FRAME_SIZE  # DEFAULT_CHUNK_SIZE: one definition

cdef object _py_to_builtin = _codec_py._to_builtin
cdef object _msgpack_default_py = _codec_py._msgpack_default
cdef object _json_loads = json.loads
cdef object _unpackb = msgpack.unpackb
cdef object _packb = msgpack.packb
cdef object _Timestamp = msgpack.Timestamp
cdef object _UNKNOWN = PacketSource.UNKNOWN
cdef dict _SOURCES = {int(s): s for s in PacketSource}
cdef dict _ERRORS = {int(e): e for e in RPCErrorCode}


def _to_builtin(obj):
    """Map values msgpack/json don't know to ones they do (packet objects included)."""
    if is_packet(obj):
        return packet_map(obj)
    if is_request(obj) or is_response(obj):
        return rpc_map(obj)
    return _py_to_builtin(obj)


cpdef bint has_odd_float(object obj) except -1:
    """Compiled :func:`webshocket._codec_py.has_odd_float`."""
    cdef type t = type(obj)
    cdef double magnitude
    cdef Py_ssize_t pos = 0
    cdef PyObject* key
    cdef PyObject* value
    if t is float:
        magnitude = PyFloat_AS_DOUBLE(obj)
        if magnitude < 0:
            magnitude = -magnitude
        return not ((1e-4 <= magnitude and magnitude < 1e16) or magnitude == 0.0)
    if t is str or t is int or obj is None or t is bool:
        return False
    if t is dict:
        while PyDict_Next(obj, &pos, &key, &value):
            if has_odd_float(<object>key) or has_odd_float(<object>value):
                return True
        return False
    if t is list or t is tuple:
        for item in obj:
            if has_odd_float(item):
                return True
        return False
    if isinstance(obj, float):
        return has_odd_float(float(obj))
    return False


cdef object _json_bytes = _codec_py.make_json_encoder(_to_builtin, has_odd_float)


cdef object rpc_map(object rpc):
    cdef object error
    if is_response(rpc):
        error = slot(rpc, R_ERROR)
        return {
            "type": "response",
            "call_id": slot(rpc, R_CALL_ID),
            "response": slot(rpc, R_RESPONSE),
            "error": None if error is None else int(error),
            "is_stream": slot(rpc, R_IS_STREAM),
            "is_end": slot(rpc, R_IS_END),
        }
    if is_request(rpc):
        return {
            "type": "request",
            "method": slot(rpc, Q_METHOD),
            "args": slot(rpc, Q_ARGS),
            "kwargs": slot(rpc, Q_KWARGS),
            "call_id": slot(rpc, Q_CALL_ID),
        }
    return rpc  # not an RPC object: written as the value it is (as 0.5.x did)


cdef dict packet_map(object packet):
    cdef dict out = {"source": int(slot(packet, P_SOURCE))}
    cdef Py_ssize_t i
    cdef object value
    for i in range(7):  # the optional fields, in wire order: left out when None
        value = slot(packet, P_OPTIONAL[i])
        if value is not None:
            out[OPTIONAL_NAMES[i]] = rpc_map(value) if i == 1 else value
    return out


class _Invalid(Exception):
    """A decoded value does not have the shape of a packet."""


# =========================================================================== packet objects
# The classes in use are msgspec's Structs (webshocket/_structs.py) when msgspec is
# installed, else ours (webshocket/_packets_py.py, compiled as _packets_c). Either way each
# field is a slot: the codec reads and fills it at its offset, as fast as a C field.

cdef extern from "structmember.h":
    ctypedef struct PyMemberDef:
        const char* name
        int type
        Py_ssize_t offset
        int flags
        const char* doc
    int T_OBJECT_EX
    int READONLY

cdef extern from "Python.h":
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    PyTypeObject PyMemberDescr_Type
    object PyDescr_NewMember(PyTypeObject* type, PyMemberDef* member)
    object PyType_GenericAlloc(PyTypeObject* type, Py_ssize_t nitems)
    const char* PyUnicode_AsUTF8(object text) except NULL

cdef extern from *:
    """
    static int ws_allocates_generically(PyObject* cls) {
        return ((PyTypeObject*)cls)->tp_alloc == PyType_GenericAlloc;
    }
    """
    bint ws_allocates_generically(object cls)


cdef Py_ssize_t offset_of(object instance, object value) except -1:
    """The byte offset of the field of ``instance`` that holds ``value``."""
    cdef char* base = <char*><PyObject*>instance
    cdef type cls = type(instance)
    cdef Py_ssize_t offset
    for offset in range(sizeof(PyObject), (<PyTypeObject*>cls).tp_basicsize, sizeof(PyObject*)):
        if (<PyObject**>(base + offset))[0] == <PyObject*>value:
            return offset
    raise RuntimeError(f"no field of {cls.__name__} holds the value given")


cdef int publish(type cls, const char* name) except -1:
    """Make a compiled packet class behave as its pure twin where msgspec and pickle look.

    - Its name is ``name``, where the class is public (``__module__``, repr, pickles): a
      static type takes these from ``tp_name`` only.
    - It takes class attributes: msgspec keeps what it learnt of a dataclass-like class
      there (``__msgspec_cache__``).
    - Its fields are member descriptors, as the pure twin's slots are: msgspec builds a
      dataclass instance with ``tp_alloc`` (every field NULL) and then sets each field,
      which Cython's own setters, written for fields that are never NULL, cannot take;
      and the codec finds each field's offset there (``field_offset``).
    """
    cdef PyTypeObject* t = <PyTypeObject*>cls
    cdef tuple fields = cls.__match_args__
    cdef list marks = [object() for _ in fields]
    cdef object instance = cls(*marks)
    cdef Py_ssize_t i, n = len(fields)
    cdef PyMemberDef* members = <PyMemberDef*>malloc(n * sizeof(PyMemberDef))  # kept for good, as the type
    if members == NULL:
        raise MemoryError()
    t.tp_name = name
    t.tp_flags &= ~Py_TPFLAGS_IMMUTABLETYPE
    PyType_Modified(cls)
    for i in range(n):
        members[i].name = PyUnicode_AsUTF8(fields[i])  # kept alive by __match_args__
        members[i].type = T_OBJECT_EX
        members[i].offset = offset_of(instance, marks[i])
        members[i].flags = 0
        members[i].doc = NULL
        setattr(cls, fields[i], PyDescr_NewMember(t, &members[i]))
    return 0


publish(_packets_c.Packet, b"webshocket.packets.Packet")
publish(_packets_c.RPCRequest, b"webshocket.packets.RPCRequest")
publish(_packets_c.RPCResponse, b"webshocket.packets.RPCResponse")

PACKET_CLASSES = packet_classes((_packets_c.Packet, _packets_c.RPCRequest, _packets_c.RPCResponse))
Packet, RPCRequest, RPCResponse = PACKET_CLASSES
cdef PyTypeObject* PACKET = <PyTypeObject*>Packet
cdef PyTypeObject* REQUEST = <PyTypeObject*>RPCRequest
cdef PyTypeObject* RESPONSE = <PyTypeObject*>RPCResponse


cdef Py_ssize_t field_offset(object cls, str name) except -1:
    """Where the slot ``name`` of ``cls`` sits in an instance."""
    descr = cls.__dict__.get(name)
    cdef PyMemberDef* member
    if descr is None or not PyObject_TypeCheck(descr, &PyMemberDescr_Type):
        raise TypeError(f"{cls.__qualname__}.{name} is not a slot")
    member = (<PyMemberDescrObject*>descr).d_member
    if member.type != T_OBJECT_EX or member.flags & READONLY or not (
        <Py_ssize_t>sizeof(PyObject) <= member.offset <= (<PyTypeObject*>cls).tp_basicsize - <Py_ssize_t>sizeof(PyObject*)
    ):
        raise TypeError(f"{cls.__qualname__}.{name} is not a writable object slot")
    return member.offset


for _cls in PACKET_CLASSES:
    if not ws_allocates_generically(_cls):  # new_* below allocate as the class does
        raise TypeError(f"{_cls.__qualname__} does not allocate with PyType_GenericAlloc")

cdef Py_ssize_t P_SOURCE = field_offset(Packet, "source")
cdef Py_ssize_t P_DATA = field_offset(Packet, "data")
cdef Py_ssize_t P_RPC = field_offset(Packet, "rpc")
cdef Py_ssize_t P_CHANNEL = field_offset(Packet, "channel")
cdef Py_ssize_t P_TIMESTAMP = field_offset(Packet, "timestamp")
cdef Py_ssize_t P_CORRELATION_ID = field_offset(Packet, "correlation_id")
cdef Py_ssize_t P_OFFSET = field_offset(Packet, "offset")
cdef Py_ssize_t P_EPOCH = field_offset(Packet, "epoch")
cdef tuple OPTIONAL_NAMES = ("data", "rpc", "channel", "timestamp", "correlation_id", "offset", "epoch")
cdef Py_ssize_t[7] P_OPTIONAL = [P_DATA, P_RPC, P_CHANNEL, P_TIMESTAMP, P_CORRELATION_ID, P_OFFSET, P_EPOCH]
cdef Py_ssize_t Q_METHOD = field_offset(RPCRequest, "method")
cdef Py_ssize_t Q_ARGS = field_offset(RPCRequest, "args")
cdef Py_ssize_t Q_KWARGS = field_offset(RPCRequest, "kwargs")
cdef Py_ssize_t Q_CALL_ID = field_offset(RPCRequest, "call_id")
cdef Py_ssize_t R_CALL_ID = field_offset(RPCResponse, "call_id")
cdef Py_ssize_t R_RESPONSE = field_offset(RPCResponse, "response")
cdef Py_ssize_t R_ERROR = field_offset(RPCResponse, "error")
cdef Py_ssize_t R_IS_STREAM = field_offset(RPCResponse, "is_stream")
cdef Py_ssize_t R_IS_END = field_offset(RPCResponse, "is_end")


cdef inline bint is_packet(object obj) noexcept:
    return PyObject_TypeCheck(obj, PACKET)


cdef inline bint is_request(object obj) noexcept:
    return PyObject_TypeCheck(obj, REQUEST)


cdef inline bint is_response(object obj) noexcept:
    return PyObject_TypeCheck(obj, RESPONSE)


cdef inline object slot(object obj, Py_ssize_t offset):
    """The value of the slot at ``offset`` (None where msgspec left one unset)."""
    cdef PyObject* value = (<PyObject**>((<char*><PyObject*>obj) + offset))[0]
    if value == NULL:
        return None
    return <object>value


cdef inline void fill(object obj, Py_ssize_t offset, object value) noexcept:
    """Set the slot at ``offset`` of an instance that was just allocated (every slot NULL)."""
    Py_INCREF(value)
    (<PyObject**>((<char*><PyObject*>obj) + offset))[0] = <PyObject*>value


cdef inline object new_packet(object source, object data, object rpc, object channel, object timestamp, object correlation_id, object offset=None, object epoch=None):
    cdef object p = PyType_GenericAlloc(PACKET, 0)
    fill(p, P_SOURCE, source)
    fill(p, P_DATA, data)
    fill(p, P_RPC, rpc)
    fill(p, P_CHANNEL, channel)
    fill(p, P_TIMESTAMP, timestamp)
    fill(p, P_CORRELATION_ID, correlation_id)
    fill(p, P_OFFSET, offset)
    fill(p, P_EPOCH, epoch)
    return p


cdef inline object new_request(object method, object args, object kwargs, object call_id):
    cdef object r = PyType_GenericAlloc(REQUEST, 0)
    fill(r, Q_METHOD, method)
    fill(r, Q_ARGS, args)
    fill(r, Q_KWARGS, kwargs)
    fill(r, Q_CALL_ID, call_id)
    return r


cdef inline object new_response(object call_id, object response, object error, object is_stream, object is_end):
    cdef object r = PyType_GenericAlloc(RESPONSE, 0)
    fill(r, R_CALL_ID, call_id)
    fill(r, R_RESPONSE, response)
    fill(r, R_ERROR, error)
    fill(r, R_IS_STREAM, is_stream)
    fill(r, R_IS_END, is_end)
    return r


# =========================================================================== buffer

cdef struct Buf:
    char* data
    Py_ssize_t size
    Py_ssize_t cap
    bint heap
    char inline_data[INLINE_SIZE]


cdef inline void buf_init(Buf* b) noexcept:
    b.data = b.inline_data
    b.size = 0
    b.cap = INLINE_SIZE
    b.heap = 0


cdef inline void buf_free(Buf* b) noexcept:
    if b.heap:
        free(b.data)
        b.heap = 0


cdef int buf_grow(Buf* b, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap = b.cap * 2
    cdef char* p
    if cap < b.size + need:
        cap = b.size + need
    if b.heap:
        p = <char*>realloc(b.data, cap)
    else:
        p = <char*>malloc(cap)
        if p != NULL:
            memcpy(p, b.data, b.size)
    if p == NULL:
        raise MemoryError()
    b.data = p
    b.cap = cap
    b.heap = 1
    return 0


cdef inline int put(Buf* b, const char* src, Py_ssize_t n) except -1:
    if b.size + n > b.cap:
        buf_grow(b, n)
    memcpy(b.data + b.size, src, n)
    b.size += n
    return 0


cdef inline int put1(Buf* b, uint8_t c) except -1:
    if b.size + 1 > b.cap:
        buf_grow(b, 1)
    b.data[b.size] = <char>c
    b.size += 1
    return 0


cdef inline int put_bytes(Buf* b, bytes s) except -1:
    return put(b, PyBytes_AS_STRING(s), PyBytes_GET_SIZE(s))


cdef inline bytes buf_bytes(Buf* b):
    return PyBytes_FromStringAndSize(b.data, b.size)


# =========================================================================== msgpack writer

cdef inline int put_u8(Buf* b, uint8_t head, uint8_t v) except -1:
    cdef char tmp[2]
    tmp[0] = <char>head
    tmp[1] = <char>v
    return put(b, tmp, 2)


cdef inline int put_u16(Buf* b, uint8_t head, uint16_t v) except -1:
    cdef char tmp[3]
    tmp[0] = <char>head
    v = ws_be16(v)
    memcpy(tmp + 1, &v, 2)
    return put(b, tmp, 3)


cdef inline int put_u32(Buf* b, uint8_t head, uint32_t v) except -1:
    cdef char tmp[5]
    tmp[0] = <char>head
    v = ws_be32(v)
    memcpy(tmp + 1, &v, 4)
    return put(b, tmp, 5)


cdef inline int put_u64(Buf* b, uint8_t head, uint64_t v) except -1:
    cdef char tmp[9]
    tmp[0] = <char>head
    v = ws_be64(v)
    memcpy(tmp + 1, &v, 8)
    return put(b, tmp, 9)


cdef int pack_int(Buf* b, object o) except -1:
    cdef int overflow = 0
    cdef long long v = PyLong_AsLongLongAndOverflow(o, &overflow)
    cdef unsigned long long u
    if overflow == 0:
        if v >= 0:
            if v < 128:
                return put1(b, <uint8_t>v)
            if v < 0x100:
                return put_u8(b, 0xcc, <uint8_t>v)
            if v < 0x10000:
                return put_u16(b, 0xcd, <uint16_t>v)
            if v < 0x100000000:
                return put_u32(b, 0xce, <uint32_t>v)
            return put_u64(b, 0xcf, <uint64_t>v)
        if v >= -32:
            return put1(b, <uint8_t>(<int8_t>v))
        if v >= -128:
            return put_u8(b, 0xd0, <uint8_t>(<int8_t>v))
        if v >= -32768:
            return put_u16(b, 0xd1, <uint16_t>(<int16_t>v))
        if v >= -2147483648:
            return put_u32(b, 0xd2, <uint32_t>(<int32_t>v))
        return put_u64(b, 0xd3, <uint64_t>v)
    if overflow > 0:
        try:
            u = PyLong_AsUnsignedLongLong(o)
        except OverflowError:
            raise OverflowError("Integer value out of range") from None
        return put_u64(b, 0xcf, u)
    raise OverflowError("Integer value out of range")


cdef inline int pack_float(Buf* b, double d) except -1:
    cdef uint64_t bits
    memcpy(&bits, &d, 8)
    return put_u64(b, 0xcb, bits)


cdef int pack_str(Buf* b, object s) except -1:
    cdef Py_ssize_t n
    cdef const char* p = PyUnicode_AsUTF8AndSize(s, &n)
    if n < 32:
        put1(b, 0xa0 | <uint8_t>n)
    elif n < 0x100:
        put_u8(b, 0xd9, <uint8_t>n)
    elif n < 0x10000:
        put_u16(b, 0xda, <uint16_t>n)
    elif n <= 0xffffffff:
        put_u32(b, 0xdb, <uint32_t>n)
    else:
        raise ValueError("String is too large")
    return put(b, p, n)


cdef int pack_bin(Buf* b, const char* p, Py_ssize_t n) except -1:
    if n < 0x100:
        put_u8(b, 0xc4, <uint8_t>n)
    elif n < 0x10000:
        put_u16(b, 0xc5, <uint16_t>n)
    elif n <= 0xffffffff:
        put_u32(b, 0xc6, <uint32_t>n)
    else:
        raise ValueError("Bytes object is too large")
    return put(b, p, n)


cdef int pack_array_header(Buf* b, Py_ssize_t n) except -1:
    if n < 16:
        return put1(b, 0x90 | <uint8_t>n)
    if n < 0x10000:
        return put_u16(b, 0xdc, <uint16_t>n)
    if n <= 0xffffffff:
        return put_u32(b, 0xdd, <uint32_t>n)
    raise ValueError("list is too large")


cdef int pack_map_header(Buf* b, Py_ssize_t n) except -1:
    if n < 16:
        return put1(b, 0x80 | <uint8_t>n)
    if n < 0x10000:
        return put_u16(b, 0xde, <uint16_t>n)
    if n <= 0xffffffff:
        return put_u32(b, 0xdf, <uint32_t>n)
    raise ValueError("dict is too large")


cdef inline int check_depth(int depth) except -1:
    if depth <= 0:
        raise ValueError("recursion limit exceeded.")
    return 0


cdef int pack(Buf* b, object o, int depth) except -1:
    cdef Py_ssize_t i, n, pos
    cdef PyObject* key
    cdef PyObject* value
    cdef type t
    cdef bint converted = False
    while True:
        t = type(o)
        if o is None:
            return put1(b, 0xc0)
        if o is True:
            return put1(b, 0xc3)
        if o is False:
            return put1(b, 0xc2)
        if t is int:
            return pack_int(b, o)
        if t is str:
            return pack_str(b, o)
        if t is float:
            return pack_float(b, PyFloat_AS_DOUBLE(o))
        if t is dict:
            check_depth(depth)
            n = len(<dict>o)
            pack_map_header(b, n)
            pos = 0
            while PyDict_Next(o, &pos, &key, &value):
                pack(b, <object>key, depth - 1)
                pack(b, <object>value, depth - 1)
            return 0
        if t is list:
            check_depth(depth)
            n = PyList_GET_SIZE(o)
            pack_array_header(b, n)
            for i in range(n):
                pack(b, <object>PyList_GET_ITEM(o, i), depth - 1)
            return 0
        if t is tuple:
            check_depth(depth)
            n = PyTuple_GET_SIZE(o)
            pack_array_header(b, n)
            for i in range(n):
                pack(b, <object>PyTuple_GET_ITEM(o, i), depth - 1)
            return 0
        if t is bytes:
            return pack_bin(b, PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o))
        if t is bytearray:
            return pack_bin(b, PyByteArray_AS_STRING(o), PyByteArray_GET_SIZE(o))
        # Subclasses, as msgpack-python (strict_types=False) treats them.
        if isinstance(o, int):
            return pack_int(b, o)
        if isinstance(o, float):
            return pack_float(b, <double>o)
        if isinstance(o, str):
            return pack_str(b, o)
        if isinstance(o, bytes):
            return pack_bin(b, PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o))
        if isinstance(o, dict):
            check_depth(depth)
            pack_map_header(b, len(o))
            for k, v in (<dict>o).items():
                pack(b, k, depth - 1)
                pack(b, v, depth - 1)
            return 0
        if isinstance(o, (list, tuple)):
            check_depth(depth)
            pack_array_header(b, len(o))
            for item in o:
                pack(b, item, depth - 1)
            return 0
        if converted:
            raise TypeError(f"can not serialize {type(o).__name__!r} object")
        if is_packet(o) or is_request(o) or is_response(o):
            o = _to_builtin(o)
        else:
            o = _msgpack_default_py(o)  # e.g. aware datetime -> msgpack Timestamp
            if isinstance(o, _Timestamp):
                return put_bytes(b, _packb(o))
        converted = True


# Constant pieces of the packets we write directly.
cdef bytes MP_RESPONSE_HEAD = b"\x82\xa6source\x05\xa3rpc\x86\xa4type\xa8response\xa7call_id"
cdef bytes MP_RESPONSE = b"\xa8response"
cdef bytes MP_ERROR = b"\xa5error"
cdef bytes MP_IS_STREAM = b"\xa9is_stream"
cdef bytes MP_IS_END = b"\xa6is_end"
cdef bytes MP_REQUEST_HEAD = b"\x82\xa6source\x05\xa3rpc\x85\xa4type\xa7request\xa6method"
cdef bytes MP_ARGS = b"\xa4args"
cdef bytes MP_KWARGS = b"\xa6kwargs"
cdef bytes MP_CALL_ID = b"\xa7call_id"
cdef bytes MP_SOURCE = b"\xa6source"
cdef bytes MP_DATA = b"\xa4data"
cdef bytes MP_CHANNEL = b"\xa7channel"

cdef bytes JS_RESPONSE_HEAD = b'{"source":5,"rpc":{"type":"response","call_id":'
cdef bytes JS_REQUEST_HEAD = b'{"source":5,"rpc":{"type":"request","method":'


cdef inline int pack_error(Buf* b, object error) except -1:
    if error is None:
        return put1(b, 0xc0)
    return pack_int(b, int(error))


cdef inline bytes json_value(object value):
    cdef type t = type(value)
    if value is None:
        return b"null"
    if value is True:
        return b"true"
    if value is False:
        return b"false"
    if t is int:
        return str(value).encode("ascii")
    return _json_bytes(value)


cdef int write_response(Buf* b, str call_id, object response, object error, bint is_stream, bint is_end,
                        bint as_json) except -1:
    if as_json:
        put_bytes(b, JS_RESPONSE_HEAD)
        put_bytes(b, json_value(call_id))
        put(b, b',"response":', 12)
        put_bytes(b, json_value(response))
        put(b, b',"error":', 9)
        put_bytes(b, b"null" if error is None else str(int(error)).encode("ascii"))
        if is_stream:
            put(b, b',"is_stream":true', 17)
        else:
            put(b, b',"is_stream":false', 18)
        if is_end:
            put(b, b',"is_end":true}}', 16)
        else:
            put(b, b',"is_end":false}}', 17)
    else:
        put_bytes(b, MP_RESPONSE_HEAD)
        pack_str(b, call_id)
        put_bytes(b, MP_RESPONSE)
        pack(b, response, MAX_DEPTH - 2)
        put_bytes(b, MP_ERROR)
        pack_error(b, error)
        put_bytes(b, MP_IS_STREAM)
        put1(b, 0xc3 if is_stream else 0xc2)
        put_bytes(b, MP_IS_END)
        put1(b, 0xc3 if is_end else 0xc2)
    return 0


cpdef bytes encode_response(str call_id, object response, object error, bint is_stream, bint is_end, bint as_json):
    """Encode an RPC response packet."""
    cdef Buf b
    buf_init(&b)
    try:
        write_response(&b, call_id, response, error, is_stream, is_end, as_json)
        return buf_bytes(&b)
    finally:
        buf_free(&b)


cpdef bytes response_frame(str call_id, object response, object error, bint is_stream, bint is_end, bint as_json):
    """``frame(encode_response(...))`` in one buffer: the frame header is written in front of the packet."""
    cdef Buf b
    cdef Py_ssize_t size, head
    cdef char header[10]
    buf_init(&b)
    try:
        b.size = 10  # room for the longest header
        write_response(&b, call_id, response, error, is_stream, is_end, as_json)
        size = b.size - 10
        if size > FRAME_SIZE:
            return frame(PyBytes_FromStringAndSize(b.data + 10, size))
        head = put_header(header, 0x82, size)
        memcpy(b.data + 10 - head, header, head)
        return PyBytes_FromStringAndSize(b.data + 10 - head, head + size)
    finally:
        buf_free(&b)


cpdef bytes encode_push(int source, object data, object channel, bint as_json):
    """Encode a server-pushed packet (custom, channel or broadcast)."""
    cdef Buf b
    cdef int n = 1
    buf_init(&b)
    try:
        if as_json:
            put(&b, b'{"source":', 10)
            put_bytes(&b, str(source).encode("ascii"))
            if data is not None:
                put(&b, b',"data":', 8)
                put_bytes(&b, json_value(data))
            if channel is not None:
                put(&b, b',"channel":', 11)
                put_bytes(&b, json_value(channel))
            put1(&b, ord("}"))
        else:
            if data is not None:
                n += 1
            if channel is not None:
                n += 1
            put1(&b, 0x80 | n)
            put_bytes(&b, MP_SOURCE)
            pack_int(&b, source)
            if data is not None:
                put_bytes(&b, MP_DATA)
                pack(&b, data, MAX_DEPTH - 1)
            if channel is not None:
                put_bytes(&b, MP_CHANNEL)
                pack(&b, channel, MAX_DEPTH - 1)
        return buf_bytes(&b)
    finally:
        buf_free(&b)


cpdef bytes encode_request(str method, object args, object kwargs, str call_id, bint as_json):
    """Encode an RPC request packet."""
    cdef Buf b
    buf_init(&b)
    try:
        if as_json:
            put_bytes(&b, JS_REQUEST_HEAD)
            put_bytes(&b, json_value(method))
            put(&b, b',"args":', 8)
            put_bytes(&b, json_value(args))
            put(&b, b',"kwargs":', 10)
            put_bytes(&b, json_value(kwargs))
            put(&b, b',"call_id":', 11)
            put_bytes(&b, json_value(call_id))
            put(&b, b"}}", 2)
        else:
            put_bytes(&b, MP_REQUEST_HEAD)
            pack_str(&b, method)
            put_bytes(&b, MP_ARGS)
            pack(&b, args, MAX_DEPTH - 2)
            put_bytes(&b, MP_KWARGS)
            pack(&b, kwargs, MAX_DEPTH - 2)
            put_bytes(&b, MP_CALL_ID)
            pack_str(&b, call_id)
        return buf_bytes(&b)
    finally:
        buf_free(&b)


cpdef bytes encode_value(object value, bint as_json):
    """Encode any value the codec writes, as a packet's ``data`` would be (0.5.x ``serialize``)."""
    cdef Buf b
    if as_json:
        return _json_bytes(value)
    buf_init(&b)
    try:
        pack(&b, value, MAX_DEPTH)
        return buf_bytes(&b)
    finally:
        buf_free(&b)


cpdef bytes encode_packet(object packet, bint as_json):
    """Encode any :class:`Packet`."""
    cdef Buf b
    cdef object mapping
    if not is_packet(packet):
        raise TypeError(f"Argument 'packet' has incorrect type (expected {Packet.__module__}.Packet, got {type(packet).__name__})")
    if (
        slot(packet, P_RPC) is None
        and slot(packet, P_TIMESTAMP) is None
        and slot(packet, P_CORRELATION_ID) is None
        and slot(packet, P_OFFSET) is None
        and slot(packet, P_EPOCH) is None
    ):
        return encode_push(int(slot(packet, P_SOURCE)), slot(packet, P_DATA), slot(packet, P_CHANNEL), as_json)
    mapping = packet_map(packet)
    if as_json:
        return _json_bytes(mapping)
    buf_init(&b)
    try:
        pack(&b, mapping, MAX_DEPTH)
        return buf_bytes(&b)
    finally:
        buf_free(&b)


# =========================================================================== msgpack reader

cdef struct Reader:
    const uint8_t* data
    Py_ssize_t pos
    Py_ssize_t end


cdef inline const uint8_t* take(Reader* r, Py_ssize_t n) except NULL:
    cdef const uint8_t* p
    if n < 0 or r.end - r.pos < n:
        raise ValueError("Unpack failed: incomplete input")
    p = r.data + r.pos
    r.pos += n
    return p


cdef inline uint16_t rd16(const uint8_t* p) noexcept:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return ws_be16(v)


cdef inline uint32_t rd32(const uint8_t* p) noexcept:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return ws_be32(v)


cdef inline uint64_t rd64(const uint8_t* p) noexcept:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return ws_be64(v)


cdef object read_str(Reader* r, Py_ssize_t n):
    cdef const uint8_t* p = take(r, n)
    return PyUnicode_DecodeUTF8(<const char*>p, n, NULL)


cdef object read_bin(Reader* r, Py_ssize_t n):
    cdef const uint8_t* p = take(r, n)
    return PyBytes_FromStringAndSize(<const char*>p, n)


cdef object read_ext(Reader* r, Py_ssize_t start, Py_ssize_t n):
    # Rare: hand the exact bytes of the ext object to msgpack (timestamps -> datetime).
    take(r, n + 1)
    return _unpackb(PyBytes_FromStringAndSize(<const char*>(r.data + start), r.pos - start), timestamp=3)


cdef object read_array(Reader* r, Py_ssize_t n, int depth):
    cdef list out
    cdef object item
    cdef Py_ssize_t i
    if n > r.end - r.pos:
        raise ValueError("Unpack failed: incomplete input")
    out = PyList_New(n)
    for i in range(n):
        item = unpack(r, depth)
        Py_INCREF(item)
        PyList_SET_ITEM(out, i, item)
    return out


cdef object read_map(Reader* r, Py_ssize_t n, int depth):
    cdef dict out = {}
    cdef object key
    cdef Py_ssize_t i
    if n > r.end - r.pos:
        raise ValueError("Unpack failed: incomplete input")
    for i in range(n):
        key = unpack(r, depth)
        PyDict_SetItem(out, key, unpack(r, depth))
    return out


cdef object unpack(Reader* r, int depth):
    cdef Py_ssize_t start = r.pos
    cdef uint8_t c = take(r, 1)[0]
    cdef const uint8_t* p
    cdef uint64_t bits
    cdef double d
    cdef float f
    cdef uint32_t b32
    if c < 0x80:
        return <long>c
    if c >= 0xe0:
        return <long>(<int8_t>c)
    if c <= 0x8f:
        if depth <= 0:
            raise ValueError("too nested")
        return read_map(r, c & 0x0f, depth - 1)
    if c <= 0x9f:
        if depth <= 0:
            raise ValueError("too nested")
        return read_array(r, c & 0x0f, depth - 1)
    if c <= 0xbf:
        return read_str(r, c & 0x1f)
    if c == 0xc0:
        return None
    if c == 0xc2:
        return False
    if c == 0xc3:
        return True
    if c == 0xc4:
        return read_bin(r, take(r, 1)[0])
    if c == 0xc5:
        return read_bin(r, rd16(take(r, 2)))
    if c == 0xc6:
        return read_bin(r, rd32(take(r, 4)))
    if c == 0xc7:
        return read_ext(r, start, take(r, 1)[0])
    if c == 0xc8:
        return read_ext(r, start, rd16(take(r, 2)))
    if c == 0xc9:
        return read_ext(r, start, rd32(take(r, 4)))
    if c == 0xca:
        b32 = rd32(take(r, 4))
        memcpy(&f, &b32, 4)
        return <double>f
    if c == 0xcb:
        bits = rd64(take(r, 8))
        memcpy(&d, &bits, 8)
        return d
    if c == 0xcc:
        return <long>take(r, 1)[0]
    if c == 0xcd:
        return <long>rd16(take(r, 2))
    if c == 0xce:
        return PyLong_FromUnsignedLongLong(rd32(take(r, 4)))
    if c == 0xcf:
        return PyLong_FromUnsignedLongLong(rd64(take(r, 8)))
    if c == 0xd0:
        return <long>(<int8_t>take(r, 1)[0])
    if c == 0xd1:
        return <long>(<int16_t>rd16(take(r, 2)))
    if c == 0xd2:
        return <long>(<int32_t>rd32(take(r, 4)))
    if c == 0xd3:
        return PyLong_FromLongLong(<int64_t>rd64(take(r, 8)))
    if c == 0xd4:
        return read_ext(r, start, 1)
    if c == 0xd5:
        return read_ext(r, start, 2)
    if c == 0xd6:
        return read_ext(r, start, 4)
    if c == 0xd7:
        return read_ext(r, start, 8)
    if c == 0xd8:
        return read_ext(r, start, 16)
    if c == 0xd9:
        return read_str(r, take(r, 1)[0])
    if c == 0xda:
        return read_str(r, rd16(take(r, 2)))
    if c == 0xdb:
        return read_str(r, rd32(take(r, 4)))
    if c == 0xdc or c == 0xdd:
        if depth <= 0:
            raise ValueError("too nested")
        return read_array(r, rd16(take(r, 2)) if c == 0xdc else rd32(take(r, 4)), depth - 1)
    if c == 0xde or c == 0xdf:
        if depth <= 0:
            raise ValueError("too nested")
        return read_map(r, rd16(take(r, 2)) if c == 0xde else rd32(take(r, 4)), depth - 1)
    raise ValueError("Unpack failed: invalid byte 0xc1")


# =========================================================================== packet validation

cdef class _Unset:
    pass

cdef object INVALID = _Unset()   # a field whose value cannot be valid


cdef inline object str_or_none(object value):
    if value is None or type(value) is str:
        return value
    raise _Invalid()


cdef inline bint as_bool(object value) except -1:
    if value is None or value is False:
        return False
    if value is True:
        return True
    raise _Invalid()


cdef object make_request(object method, object args, object kwargs, object call_id):
    if type(method) is not str:
        raise _Invalid()
    if args is None:
        args = []
    elif type(args) is not list:
        raise _Invalid()
    if kwargs is None:
        kwargs = {}
    elif type(kwargs) is not dict:
        raise _Invalid()
    else:
        for key in <dict>kwargs:
            if type(key) is not str:
                raise _Invalid()
    if call_id is None:
        call_id = generate_uuid()
    elif type(call_id) is not str:
        raise _Invalid()
    return new_request(method, args, kwargs, call_id)


cdef object make_response(object call_id, object response, object error, object is_stream, object is_end):
    if type(call_id) is not str:
        raise _Invalid()
    if error is not None:
        if type(error) is not int or error not in _ERRORS:
            raise _Invalid()
        error = _ERRORS[error]
    return new_response(call_id, response, error, as_bool(is_stream), as_bool(is_end))


cdef object make_rpc(object rpc):
    """Validate an ``rpc`` value already decoded to Python objects (the JSON path)."""
    cdef dict d
    if type(rpc) is not dict:
        raise _Invalid()
    d = <dict>rpc
    kind = d.get("type")
    if kind == "request":
        return make_request(d.get("method"), d.get("args"), d.get("kwargs"), d.get("call_id"))
    if kind == "response":
        return make_response(d.get("call_id"), d.get("response"), d.get("error"), d.get("is_stream"), d.get("is_end"))
    raise _Invalid()


cdef object finish_packet(object source, object data, object rpc, object channel, object timestamp, object correlation_id, object offset, object epoch):
    if type(source) is not int or source not in _SOURCES:
        raise _Invalid()
    if rpc is INVALID:
        raise _Invalid()
    if timestamp is not None:
        if type(timestamp) is not float and type(timestamp) is not int:
            raise _Invalid()
        timestamp = float(timestamp)
    if offset is not None and type(offset) is not int:
        raise _Invalid()
    return new_packet(_SOURCES[source], data, rpc, str_or_none(channel), timestamp, str_or_none(correlation_id), offset, str_or_none(epoch))


cdef object make_packet(object obj):
    """Validate a packet already decoded to Python objects (the JSON path)."""
    cdef dict d
    if type(obj) is not dict:
        raise _Invalid()
    d = <dict>obj
    rpc = d.get("rpc")
    if rpc is not None:
        rpc = make_rpc(rpc)
    return finish_packet(d.get("source"), d.get("data"), rpc, d.get("channel"), d.get("timestamp"), d.get("correlation_id"), d.get("offset"), d.get("epoch"))


# ---- msgpack straight into packet objects: no intermediate dicts for the packet and rpc maps

cdef str K_SOURCE = "source"
cdef str K_DATA = "data"
cdef str K_RPC = "rpc"
cdef str K_CHANNEL = "channel"
cdef str K_TIMESTAMP = "timestamp"
cdef str K_CORRELATION_ID = "correlation_id"
cdef str K_OFFSET = "offset"
cdef str K_EPOCH = "epoch"
cdef str K_TYPE = "type"
cdef str K_METHOD = "method"
cdef str K_ARGS = "args"
cdef str K_KWARGS = "kwargs"
cdef str K_CALL_ID = "call_id"
cdef str K_RESPONSE = "response"
cdef str K_ERROR = "error"
cdef str K_IS_STREAM = "is_stream"
cdef str K_IS_END = "is_end"
cdef str K_REQUEST = "request"
cdef tuple KNOWN = (
    K_SOURCE, K_DATA, K_RPC, K_CHANNEL, K_TIMESTAMP, K_CORRELATION_ID, K_TYPE, K_METHOD, K_ARGS, K_KWARGS,
    K_CALL_ID, K_RESPONSE, K_ERROR, K_IS_STREAM, K_IS_END, K_REQUEST, K_OFFSET, K_EPOCH,
)


cdef object read_key(Reader* r, int depth):
    """Read a map key; the protocol's own names come back as shared str objects."""
    cdef uint8_t c
    cdef Py_ssize_t n
    cdef const uint8_t* p
    cdef str known
    if r.pos < r.end:
        c = r.data[r.pos]
        if 0xa3 <= c <= 0xae:
            n = c & 0x1f
            if r.end - r.pos > n:
                p = r.data + r.pos + 1
                for known in KNOWN:
                    if len(known) == n and memcmp(p, PyUnicode_AsUTF8AndSize(known, NULL), n) == 0:
                        r.pos += n + 1
                        return known
    key = unpack(r, depth)
    hash(key)  # an unhashable key makes the map invalid, as in a dict
    return key


cdef inline Py_ssize_t map_size(Reader* r) except -2:
    """Size of the map at the cursor (consumed), or -1 if the next object is not a map."""
    cdef uint8_t c = r.data[r.pos] if r.pos < r.end else 0xc1
    if 0x80 <= c <= 0x8f:
        r.pos += 1
        return c & 0x0f
    if c == 0xde:
        r.pos += 1
        return rd16(take(r, 2))
    if c == 0xdf:
        r.pos += 1
        return rd32(take(r, 4))
    return -1


cdef object read_rpc(Reader* r, int depth):
    cdef Py_ssize_t n = map_size(r)
    cdef Py_ssize_t i
    cdef object kind = None, method = None, args = None, kwargs = None, call_id = None
    cdef object response = None, error = None, is_stream = None, is_end = None
    if n < 0:
        return None if unpack(r, depth) is None else INVALID
    if depth <= 0:
        raise ValueError("too nested")
    if n > r.end - r.pos:
        raise ValueError("Unpack failed: incomplete input")
    depth -= 1
    for i in range(n):
        key = read_key(r, depth)
        value = unpack(r, depth)
        if key is K_TYPE:
            kind = value
        elif key is K_METHOD:
            method = value
        elif key is K_ARGS:
            args = value
        elif key is K_KWARGS:
            kwargs = value
        elif key is K_CALL_ID:
            call_id = value
        elif key is K_RESPONSE:
            response = value
        elif key is K_ERROR:
            error = value
        elif key is K_IS_STREAM:
            is_stream = value
        elif key is K_IS_END:
            is_end = value
    try:
        if kind == K_REQUEST:
            return make_request(method, args, kwargs, call_id)
        if kind == K_RESPONSE:
            return make_response(call_id, response, error, is_stream, is_end)
    except _Invalid:
        pass
    return INVALID


cdef object read_packet(Reader* r):
    cdef Py_ssize_t n = map_size(r)
    cdef Py_ssize_t i
    cdef int depth = MAX_DEPTH - 1
    cdef object source = None, data = None, rpc = None, channel = None, timestamp = None, correlation_id = None
    cdef object offset = None, epoch = None
    if n < 0:
        unpack(r, MAX_DEPTH)
        raise _Invalid()
    if n > r.end - r.pos:
        raise ValueError("Unpack failed: incomplete input")
    for i in range(n):
        key = read_key(r, depth)
        if key is K_RPC:
            rpc = read_rpc(r, depth)
            continue
        value = unpack(r, depth)
        if key is K_SOURCE:
            source = value
        elif key is K_DATA:
            data = value
        elif key is K_CHANNEL:
            channel = value
        elif key is K_TIMESTAMP:
            timestamp = value
        elif key is K_CORRELATION_ID:
            correlation_id = value
        elif key is K_OFFSET:
            offset = value
        elif key is K_EPOCH:
            epoch = value
        elif key is K_RPC:
            rpc = value
    if r.pos != r.end:
        raise ValueError("unpack(b) received extra data.")
    return finish_packet(source, data, rpc, channel, timestamp, correlation_id, offset, epoch)


cpdef object unpackb(bytes raw):
    """Decode one msgpack object (the whole of ``raw``)."""
    cdef Reader r
    cdef object obj
    r.data = <const uint8_t*>PyBytes_AS_STRING(raw)
    r.pos = 0
    r.end = PyBytes_GET_SIZE(raw)
    obj = unpack(&r, MAX_DEPTH)
    if r.pos != r.end:
        raise ValueError("unpack(b) received extra data.")
    return obj


cdef object _scan_once = json.JSONDecoder().scan_once


cdef object loads_json(bytes raw):
    """``json.loads(raw)``, with a shortcut for the usual case (a UTF-8 object, no padding)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(raw)
    cdef const char* p = PyBytes_AS_STRING(raw)
    cdef Py_ssize_t end
    cdef str text
    if n >= 2 and p[0] == b"{" and p[1] != 0 and p[n - 1] == b"}":
        text = raw.decode("utf-8", "surrogatepass")
        try:
            obj, end = _scan_once(text, 0)
        except StopIteration:
            return _json_loads(raw)  # raises the same JSONDecodeError
        if end == len(text):
            return obj
    return _json_loads(raw)


cpdef object decode_packet(bytes raw, bint as_json):
    """Decode one message; anything that is not a packet becomes an UNKNOWN packet."""
    cdef Reader r
    try:
        if as_json:
            return make_packet(loads_json(raw))
        r.data = <const uint8_t*>PyBytes_AS_STRING(raw)
        r.pos = 0
        r.end = PyBytes_GET_SIZE(raw)
        return read_packet(&r)
    except (_Invalid, ValueError, TypeError, RecursionError):
        return new_packet(_UNKNOWN, raw, None, None, None, None)



# =========================================================================== frames



cdef inline Py_ssize_t put_header(char* out, uint8_t first, Py_ssize_t size) noexcept:
    cdef uint16_t v16
    cdef uint64_t v64
    out[0] = <char>first
    if size < 126:
        out[1] = <char>size
        return 2
    if size < 0x10000:
        out[1] = <char>126
        v16 = ws_be16(<uint16_t>size)
        memcpy(out + 2, &v16, 2)
        return 4
    out[1] = <char>127
    v64 = ws_be64(<uint64_t>size)
    memcpy(out + 2, &v64, 8)
    return 10


cpdef bytes frame(bytes payload):
    """One binary message as server frames (unmasked): a single frame, or 64 KiB fragments."""
    cdef Py_ssize_t size = PyBytes_GET_SIZE(payload)
    cdef const char* src = PyBytes_AS_STRING(payload)
    cdef Py_ssize_t frames = 1 if size <= FRAME_SIZE else (size + FRAME_SIZE - 1) // FRAME_SIZE
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size + 10 * frames)
    cdef char* dst = PyBytes_AS_STRING(out)
    cdef Py_ssize_t pos = 0, offset = 0, chunk
    cdef uint8_t first
    if frames == 1:
        pos = put_header(dst, 0x82, size)
        memcpy(dst + pos, src, size)
        return out[: pos + size] if pos != 10 else out
    while offset < size:
        chunk = size - offset
        if chunk > FRAME_SIZE:
            chunk = FRAME_SIZE
        first = 0x02 if offset == 0 else 0x00
        if offset + chunk >= size:
            first |= 0x80
        pos += put_header(dst + pos, first, chunk)
        memcpy(dst + pos, src + offset, chunk)
        pos += chunk
        offset += chunk
    return out[:pos]
