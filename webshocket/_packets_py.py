# cython: annotation_typing=False
"""Packet objects of the wire format (pure twin of the compiled ``_packets_c``, built from this file).

:class:`Packet` is one WebSocket message; :class:`RPCRequest` and :class:`RPCResponse`
travel in its ``rpc`` field. Compiled, each is an extension type with C fields
(``_speedups/webshocket/_packets_c.pxd``) that the compiled codec fills directly;
pure, a class with ``__slots__``. Type checkers read ``_packets_py.pyi``, where
:class:`Packet` is generic over its ``rpc`` type, as in 0.5.x.
"""

from types import GenericAlias

from .enum import PacketSource
from .utils import generate_uuid

__all__ = ["Packet", "RPCRequest", "RPCResponse"]

_RPC_SOURCE = PacketSource.RPC
_PACKET_FIELDS = ("source", "data", "rpc", "channel", "timestamp", "correlation_id", "offset", "epoch")


class RPCRequest:
    """An RPC call: ``method(*args, **kwargs)`` identified by ``call_id``."""

    __slots__ = ("args", "call_id", "kwargs", "method")

    def __init__(self, method, args=(), kwargs=None, call_id=None):
        self.method = method
        self.args = args
        self.kwargs = {} if kwargs is None else kwargs
        self.call_id = generate_uuid() if call_id is None else call_id

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

    def __init__(self, call_id, response=None, error=None, is_stream=False, is_end=False):
        self.call_id = call_id
        self.response = response
        self.error = error
        self.is_stream = is_stream
        self.is_end = is_end

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

    def __repr__(self):
        return (
            f"RPCResponse(call_id={self.call_id!r}, response={self.response!r}, error={self.error!r}, "
            f"is_stream={self.is_stream!r}, is_end={self.is_end!r})"
        )


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
        return GenericAlias(cls, item)

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

    def __repr__(self):
        fields = ", ".join(
            f"{name}={value!r}"
            for name, value in zip(_PACKET_FIELDS, self._values(), strict=True)
            if name == "source" or value is not None
        )
        return f"Packet({fields})"
