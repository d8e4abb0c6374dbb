# cython: annotation_typing=False
"""Packet objects of the wire format (pure twin of the compiled ``_packets_c``, built from this file).

:class:`Packet` is one WebSocket message; :class:`RPCRequest` and :class:`RPCResponse`
travel in its ``rpc`` field. Compiled, each is an extension type with C fields
(``_speedups/webshocket/_packets_c.pxd``) that the compiled codec fills at their offsets;
pure, a class with ``__slots__``. Type checkers read ``_packets_py.pyi``, where
:class:`Packet` is generic over its ``rpc`` type, as in 0.5.x.

0.5.x made these classes ``msgspec.Struct`` types, and when msgspec is installed the package
uses such Structs instead (``_structs.py``). These are used without msgspec (or with
``WEBSHOCKET_NO_MSGSPEC=1``), and speak the dataclass protocol (``__dataclass_fields__``,
``__post_init__``), which msgspec reads for any class: ``msgspec.convert(obj, type=Packet)``,
``msgspec.json.encode(packet)`` and the like work, and write what 0.5.x wrote (the ``type``
tag of an RPC map first, a packet's None fields left out). msgspec is imported only when
msgspec itself calls in, and the codec never looks at these attributes (docs/migration.md 3.17).
"""

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar, _GenericAlias

from .enum import PacketSource, RPCErrorCode
from .utils import generate_uuid

__all__ = ["Packet", "RPCRequest", "RPCResponse"]

_RPC_SOURCE = PacketSource.RPC
_MODULE = "webshocket.packets"  # where the classes are public, whichever twin is in use (pickles name it)

# (name, type[, default]) of each field, in order: as 0.5.x's Structs declared them, then ours.
_REQUEST_SPEC = (
    ("type", ClassVar[str], "request"),  # the tag: written first, never a field
    ("method", str),
    ("args", Sequence[Any], dataclasses.field(default_factory=tuple)),
    ("kwargs", dict[str, Any], dataclasses.field(default_factory=dict)),
    ("call_id", str, dataclasses.field(default_factory=generate_uuid)),
)
_RESPONSE_SPEC = (
    ("type", ClassVar[str], "response"),
    ("call_id", str),
    ("response", Any, None),
    ("error", RPCErrorCode | None, None),
    ("is_stream", bool, False),
    ("is_end", bool, False),
)
_PACKET_SPEC = (
    ("source", PacketSource),
    ("data", Any, None),
    ("rpc", Any, None),  # an RPCRequest or RPCResponse: __post_init__ reads a map's tag
    ("channel", str | None, None),
    ("timestamp", float | None, None),
    ("correlation_id", str | None, None),
    ("offset", int | None, None),
    ("epoch", str | None, None),
)


def _annotations(spec):
    return {field[0]: field[1] for field in spec}


class _Fields:
    """A class's ``__dataclass_fields__``, made on first use (by the ``dataclasses`` module).

    On the class: every field. On a packet (``omit_none``): only the fields that are not None,
    ``source`` always, so that msgspec leaves the others out, as it did for 0.5.x's
    ``omit_defaults`` Struct.
    """

    __slots__ = ("_fields", "_name", "_omit_none", "_spec")

    def __init__(self, name, spec, omit_none):
        self._name = name
        self._spec = spec
        self._omit_none = omit_none
        self._fields = None

    def __get__(self, obj, owner=None):
        fields = self._fields
        if fields is None:
            fields = self._fields = dataclasses.make_dataclass(self._name, self._spec).__dataclass_fields__
        if obj is None or not self._omit_none:
            return fields
        held = {}
        for name, field in fields.items():
            if name == "source" or getattr(obj, name) is not None:
                held[name] = field
        return held


class RPCRequest:
    """An RPC call: ``method(*args, **kwargs)`` identified by ``call_id``."""

    __slots__ = ("args", "call_id", "kwargs", "method")
    __module__ = _MODULE
    __match_args__ = ("method", "args", "kwargs", "call_id")
    __annotations__ = _annotations(_REQUEST_SPEC)
    __dataclass_fields__ = _Fields("RPCRequest", _REQUEST_SPEC, False)

    def __init__(self, method, args=(), kwargs=None, call_id=None):
        self.method = method
        self.args = args
        self.kwargs = {} if kwargs is None else kwargs
        self.call_id = generate_uuid() if call_id is None else call_id

    @property
    def type(self):
        """``"request"``: the tag of its map on the wire."""
        return "request"

    def __eq__(self, other):
        if not isinstance(other, RPCRequest):
            return NotImplemented
        return (self.method, list(self.args), self.kwargs, self.call_id) == (
            other.method,
            list(other.args),
            other.kwargs,
            other.call_id,
        )

    __hash__ = None

    def __reduce__(self):
        return (type(self), (self.method, self.args, self.kwargs, self.call_id))

    def __repr__(self):
        return (
            f"RPCRequest(method={self.method!r}, args={self.args!r}, kwargs={self.kwargs!r}, call_id={self.call_id!r})"
        )


class RPCResponse:
    """The answer to an :class:`RPCRequest` (one per chunk for a streaming method).

    ``response`` is the result, or the error message when ``error`` is set.
    ``data``, ``rpc`` and ``source`` make it usable where a :class:`Packet` is
    expected: ``(await client.send_rpc("add", 1, 2)).data == 3``.
    """

    __slots__ = ("call_id", "error", "is_end", "is_stream", "response")
    __module__ = _MODULE
    __match_args__ = ("call_id", "response", "error", "is_stream", "is_end")
    __annotations__ = _annotations(_RESPONSE_SPEC)
    __dataclass_fields__ = _Fields("RPCResponse", _RESPONSE_SPEC, False)

    def __init__(self, call_id, response=None, error=None, is_stream=False, is_end=False):
        self.call_id = call_id
        self.response = response
        self.error = error
        self.is_stream = is_stream
        self.is_end = is_end

    @property
    def type(self):
        """``"response"``: the tag of its map on the wire."""
        return "response"

    @property
    def data(self):
        """The result (alias of ``response``), as in ``packet.data``."""
        return self.response

    @property
    def rpc(self):
        """This response (so ``result.rpc.response`` works as on a packet)."""
        return self

    @property
    def source(self):
        """Always :attr:`PacketSource.RPC`."""
        return _RPC_SOURCE

    @property
    def ok(self):
        """True when the call succeeded (``error`` is None)."""
        return self.error is None

    def __eq__(self, other):
        if not isinstance(other, RPCResponse):
            return NotImplemented
        return (self.call_id, self.response, self.error, self.is_stream, self.is_end) == (
            other.call_id,
            other.response,
            other.error,
            other.is_stream,
            other.is_end,
        )

    __hash__ = None

    def __reduce__(self):
        return (type(self), (self.call_id, self.response, self.error, self.is_stream, self.is_end))

    def __repr__(self):
        return (
            f"RPCResponse(call_id={self.call_id!r}, response={self.response!r}, error={self.error!r}, "
            f"is_stream={self.is_stream!r}, is_end={self.is_end!r})"
        )


RType = TypeVar("RType", RPCRequest, RPCResponse)
"""The type of a packet's ``rpc`` (what ``Packet[RPCResponse]`` names)."""


class Packet:
    """One message of the protocol.

    Attributes:
        source: where it comes from (:class:`PacketSource`).
        data: the payload of a custom, channel or broadcast packet.
        rpc: an :class:`RPCRequest` or :class:`RPCResponse`.
        channel: the channel a CHANNEL packet was published to.
        timestamp: optional float.
        correlation_id: optional string.
        offset: a CHANNEL packet's position in its channel's history (servers with recovery).
        epoch: the history ``offset`` counts in; it changes when that history was lost.
    """

    __slots__ = ("channel", "correlation_id", "data", "epoch", "offset", "rpc", "source", "timestamp")
    __module__ = _MODULE
    __match_args__ = ("source", "data", "rpc", "channel", "timestamp", "correlation_id", "offset", "epoch")
    __annotations__ = _annotations(_PACKET_SPEC)
    __dataclass_fields__ = _Fields("Packet", _PACKET_SPEC, True)
    __parameters__ = (RType,)  # generic, as 0.5.x's Packet(Generic[RType]): msgspec.convert(..., type=Packet[X])

    def __init__(
        self, source, data=None, rpc=None, channel=None, timestamp=None, correlation_id=None, offset=None, epoch=None
    ):
        self.source = source
        self.data = data
        self.rpc = rpc
        self.channel = channel
        self.timestamp = timestamp
        self.correlation_id = correlation_id
        self.offset = offset
        self.epoch = epoch

    def __class_getitem__(cls, item):
        # The alias 0.5.x's Packet(Generic[RType]) gave: msgspec keeps its type info on it.
        return _GenericAlias(cls, item if isinstance(item, tuple) else (item,))

    def __post_init__(self):
        """Run by msgspec (``convert``, ``decode(..., type=Packet)``), never by ``Packet(...)``:
        an ``rpc`` map becomes an :class:`RPCRequest` or :class:`RPCResponse` by its ``type``
        tag, as 0.5.x's tagged Structs did."""
        rpc = self.rpc
        if rpc is None or isinstance(rpc, (RPCRequest, RPCResponse)):
            return
        kind = rpc.get("type") if type(rpc) is dict else None
        if kind == "request":
            cls = RPCRequest
        elif kind == "response":
            cls = RPCResponse
        else:
            raise ValueError('`rpc` must be an object with `type` "request" or "response"')
        import msgspec  # only msgspec calls this: it is loaded

        self.rpc = msgspec.convert(rpc, type=cls)

    def _values(self):
        return (
            self.source,
            self.data,
            self.rpc,
            self.channel,
            self.timestamp,
            self.correlation_id,
            self.offset,
            self.epoch,
        )

    def __eq__(self, other):
        if not isinstance(other, Packet):
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None

    def __reduce__(self):
        # As 0.5.x's Struct: Packet(*fields), the two fields it did not have only when set.
        values = self._values()
        if values[6] is None and values[7] is None:
            values = values[:6]
        return (type(self), values)

    def __repr__(self):
        return (
            f"Packet(source={self.source!r}, data={self.data!r}, rpc={self.rpc!r}, channel={self.channel!r}, "
            f"timestamp={self.timestamp!r}, correlation_id={self.correlation_id!r}"
            + ("" if self.offset is None else f", offset={self.offset!r}")
            + ("" if self.epoch is None else f", epoch={self.epoch!r}")
            + ")"
        )
