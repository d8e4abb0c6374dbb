# Type information for _packets_py.py (and the compiled _packets_c, built from it): the
# classes there carry no annotations so that Cython compiles them with the C field types
# of _packets_c.pxd; here Packet is generic over its rpc type, as in 0.5.x.
from collections.abc import Sequence
from dataclasses import Field
from typing import Any, ClassVar, Generic, TypeVar

from .enum import PacketSource, RPCErrorCode

__all__ = ["Packet", "RPCRequest", "RPCResponse"]

class RPCRequest:
    __match_args__: ClassVar[tuple[str, ...]]
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    method: str
    args: Sequence[Any]
    kwargs: dict[str, Any]
    call_id: str
    def __init__(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        call_id: str | None = None,
    ) -> None: ...
    @property
    def type(self) -> str: ...
    def __eq__(self, other: object) -> bool: ...

class RPCResponse:
    __match_args__: ClassVar[tuple[str, ...]]
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    call_id: str
    response: Any
    error: RPCErrorCode | None
    is_stream: bool
    is_end: bool
    def __init__(
        self,
        call_id: str,
        response: Any = None,
        error: RPCErrorCode | None = None,
        is_stream: bool = False,
        is_end: bool = False,
    ) -> None: ...
    @property
    def type(self) -> str: ...
    @property
    def data(self) -> Any: ...
    @property
    def rpc(self) -> RPCResponse: ...
    @property
    def source(self) -> PacketSource: ...
    @property
    def ok(self) -> bool: ...
    def __eq__(self, other: object) -> bool: ...

RType = TypeVar("RType", RPCRequest, RPCResponse)

class Packet(Generic[RType]):
    __match_args__: ClassVar[tuple[str, ...]]
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    source: PacketSource | int
    data: Any
    rpc: RType | None
    channel: str | None
    timestamp: float | None
    correlation_id: str | None
    offset: int | None
    epoch: str | None
    def __init__(
        self,
        source: PacketSource | int,
        data: Any = None,
        rpc: RType | None = None,
        channel: str | None = None,
        timestamp: float | None = None,
        correlation_id: str | None = None,
        offset: int | None = None,
        epoch: str | None = None,
    ) -> None: ...
    def __post_init__(self) -> None: ...
    def __eq__(self, other: object) -> bool: ...
