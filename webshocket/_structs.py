"""The packet classes as real ``msgspec.Struct`` types, used when msgspec is installed.

0.5.x made :class:`Packet`, :class:`RPCRequest` and :class:`RPCResponse` Structs, and
applications use msgspec on them: ``msgspec.convert``, ``msgspec.json.encode``, and the
``msgspec.structs`` helpers (``asdict``, ``astuple``, ``replace``, ``fields``), which accept
nothing but a class made by msgspec. So when msgspec imports, the package uses these
classes, declared as 0.5.x declared them (``gc=False``, the ``type`` tag, ``omit_defaults``),
plus our two optional fields and the extra properties of our own classes
(``webshocket/_packets_py.py``, used without msgspec). Both codecs build and read them
as they do their own: the compiled one through the slots' offsets, at the same speed
(docs/migration.md 3.17). ``WEBSHOCKET_NO_MSGSPEC=1`` keeps our own classes.
"""

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import msgspec

from .enum import PacketSource, RPCErrorCode
from .utils import generate_uuid

__all__ = ["PACKET_CLASSES", "Packet", "RPCRequest", "RPCResponse"]

_RPC_SOURCE = PacketSource.RPC


class RPCRequest(msgspec.Struct, tag="request", gc=False):
    """An RPC call: ``method(*args, **kwargs)`` identified by ``call_id``."""

    method: str
    args: Sequence[Any] = msgspec.field(default_factory=tuple)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    call_id: str = msgspec.field(default_factory=generate_uuid)

    def __post_init__(self) -> None:
        # As our own class: None stands for the default (0.5.x kept a None).
        if self.kwargs is None:
            self.kwargs = {}
        if self.call_id is None:
            self.call_id = generate_uuid()

    @property
    def type(self) -> str:
        """``"request"``: the tag of its map on the wire."""
        return "request"


class RPCResponse(msgspec.Struct, tag="response", gc=False):
    """The answer to an :class:`RPCRequest` (one per chunk for a streaming method).

    ``response`` is the result, or the error message when ``error`` is set.
    ``data``, ``rpc`` and ``source`` make it usable where a :class:`Packet` is
    expected: ``(await client.send_rpc("add", 1, 2)).data == 3``.
    """

    call_id: str
    response: Any = None
    error: RPCErrorCode | None = None
    is_stream: bool = False
    is_end: bool = False

    @property
    def type(self) -> str:
        """``"response"``: the tag of its map on the wire."""
        return "response"

    @property
    def data(self) -> Any:
        """The result (alias of ``response``), as in ``packet.data``."""
        return self.response

    @property
    def rpc(self) -> "RPCResponse":
        """This response (so ``result.rpc.response`` works as on a packet)."""
        return self

    @property
    def source(self) -> PacketSource:
        """Always :attr:`PacketSource.RPC`."""
        return _RPC_SOURCE

    @property
    def ok(self) -> bool:
        """True when the call succeeded (``error`` is None)."""
        return self.error is None


RType = TypeVar("RType", bound=RPCRequest | RPCResponse)
"""The type of a packet's ``rpc`` (what ``Packet[RPCResponse]`` names)."""


class Packet(msgspec.Struct, Generic[RType], gc=False, omit_defaults=True):
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

    source: PacketSource
    data: Any = None
    rpc: RType | None = None
    channel: str | None = None
    timestamp: float | None = None
    correlation_id: str | None = None
    offset: int | None = None
    epoch: str | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # As 0.5.x's: Packet(*fields), the two fields it did not have only when set.
        values = msgspec.structs.astuple(self)
        if values[6] is None and values[7] is None:
            values = values[:6]
        return (type(self), values)

    def __repr__(self) -> str:
        # 0.5.x's repr; offset and epoch only when set.
        return (
            f"Packet(source={self.source!r}, data={self.data!r}, rpc={self.rpc!r}, channel={self.channel!r}, "
            f"timestamp={self.timestamp!r}, correlation_id={self.correlation_id!r}"
            + ("" if self.offset is None else f", offset={self.offset!r}")
            + ("" if self.epoch is None else f", epoch={self.epoch!r}")
            + ")"
        )


for _cls in (Packet, RPCRequest, RPCResponse):
    _cls.__module__ = "webshocket.packets"  # where they are public (pickles name it), as 0.5.x's

PACKET_CLASSES = (Packet, RPCRequest, RPCResponse)
