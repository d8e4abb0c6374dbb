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

from . import _packets_py
from .enum import PacketSource, RPCErrorCode
from .utils import generate_uuid

__all__ = ["PACKET_CLASSES", "Packet", "RPCRequest", "RPCResponse"]


def _same(cls: type, name: str) -> Any:
    """Our class's ``name`` (a property or method that only reads fields), for the Struct too."""
    return cls.__dict__[name]


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

    type = _same(_packets_py.RPCRequest, "type")


class RPCResponse(msgspec.Struct, tag="response", gc=False):
    __doc__ = _packets_py.RPCResponse.__doc__

    call_id: str
    response: Any = None
    error: RPCErrorCode | None = None
    is_stream: bool = False
    is_end: bool = False

    type = _same(_packets_py.RPCResponse, "type")
    data = _same(_packets_py.RPCResponse, "data")
    rpc = _same(_packets_py.RPCResponse, "rpc")
    source = _same(_packets_py.RPCResponse, "source")
    ok = _same(_packets_py.RPCResponse, "ok")


RType = TypeVar("RType", bound=RPCRequest | RPCResponse)
"""The type of a packet's ``rpc`` (what ``Packet[RPCResponse]`` names)."""


class Packet(msgspec.Struct, Generic[RType], gc=False, omit_defaults=True):
    __doc__ = _packets_py.Packet.__doc__

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

    __repr__ = _same(_packets_py.Packet, "__repr__")  # 0.5.x's repr; offset and epoch only when set


for _cls in (Packet, RPCRequest, RPCResponse):
    _cls.__module__ = "webshocket.packets"  # where they are public (pickles name it), as 0.5.x's

PACKET_CLASSES = (Packet, RPCRequest, RPCResponse)
