"""The packet objects and codec in use (compiled ``_codec_c`` or pure ``_codec_py``).

``json`` arguments select the dialect: False for msgpack (framework clients),
True for JSON (generic clients). Decoding never raises: a message that is not a
valid packet becomes an UNKNOWN packet carrying the raw bytes.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # both implementations have the pure twin's API
    from ._codec_py import (
        INVALID_REQUEST,
        Packet,
        RPCRequest,
        RPCResponse,
        decode_packet,
        encode_packet,
        encode_push,
        encode_request,
        encode_response,
        encode_value,
        frame,
        response_frame,
        salvage_call_id,
    )
else:
    from ._ext import SPEEDUPS, load

    _impl = load("codec")
    # msgspec's Structs when msgspec is installed, else the codec's twin of ours (_ext.packet_classes).
    Packet, RPCRequest, RPCResponse = _impl.PACKET_CLASSES
    SPEEDUPS["packets"] = SPEEDUPS["codec"]
    decode_packet = _impl.decode_packet
    encode_packet = _impl.encode_packet
    encode_push = _impl.encode_push
    encode_response = _impl.encode_response
    encode_request = _impl.encode_request
    encode_value = _impl.encode_value
    salvage_call_id = _impl.salvage_call_id
    frame = _impl.frame
    response_frame = _impl.response_frame
    INVALID_REQUEST = _impl.INVALID_REQUEST

__all__ = [
    "INVALID_REQUEST",
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
