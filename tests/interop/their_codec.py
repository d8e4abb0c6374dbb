"""Run with a webshocket 0.5.x venv's python: encode the sample packets with THEIR codec.

Reads ``{"ours": {case_name: {"msgpack": hex|null, "json": hex|null}}}`` on stdin (our
codec's bytes) and prints one JSON object on stdout::

    {"version": "0.5.2", "module": ".../site-packages/webshocket/__init__.py",
     "results": {case_name: {
        "msgpack": hex|null, "json": hex|null, "encode_error": str|null,
        "decode_ours_msgpack": "equal"|"different: ..."|"error: ...",
        "decode_ours_json": ...,
        "their_decode_msgpack": samples.tagged_packet(their decoding of their bytes),
        "their_decode_json": ...}}}

``decode_ours_*`` compares their decoding of our bytes with their decoding of their own
bytes (msgspec ``Struct`` equality).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import msgspec
import samples

import webshocket
from webshocket import packets
from webshocket.enum import PacketSource, RPCErrorCode

Packet = packets.Packet
RPCRequest = packets.RPCRequest
RPCResponse = packets.RPCResponse
_RESPONSE_FIELDS = {f.name for f in msgspec.structs.fields(RPCResponse)}


def _response(fields: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {
        "call_id": fields["call_id"],
        "response": fields["response"],
        "error": None if fields["error"] is None else RPCErrorCode(fields["error"]),
    }
    for name in ("is_stream", "is_end"):
        if name in _RESPONSE_FIELDS:  # 0.5.0's RPCResponse has neither
            kwargs[name] = fields[name]
    return RPCResponse(**kwargs)


def _request(fields: dict[str, Any]) -> Any:
    return RPCRequest(
        method=fields["method"], args=tuple(fields["args"]), kwargs=fields["kwargs"], call_id=fields["call_id"]
    )


def build(case: dict[str, Any]) -> Any:
    kind = case["kind"]
    if kind == "push":
        return Packet(source=PacketSource(case["source"]), data=case["data"], channel=case["channel"])
    if kind == "request":
        return Packet(source=PacketSource.RPC, rpc=_request(case))
    if kind == "response":
        return Packet(source=PacketSource.RPC, rpc=_response(case))
    rpc = case["rpc"]
    if rpc is not None:
        rpc = _request(rpc) if rpc["type"] == "request" else _response(rpc)
    return Packet(
        source=PacketSource(case["source"]),
        data=case["data"],
        rpc=rpc,
        channel=case["channel"],
        timestamp=case["timestamp"],
        correlation_id=case["correlation_id"],
    )


def _compare(decode: Any, ours_hex: str | None, theirs: bytes | None) -> str:
    if ours_hex is None:
        return "error: our codec produced no bytes"
    try:
        mine = decode(bytes.fromhex(ours_hex))
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"
    if theirs is None:
        return f"decoded (no reference): {mine!r}"[:500]
    reference = decode(theirs)
    if mine == reference:
        return "equal"
    return f"different: ours decoded to {mine!r}, theirs to {reference!r}"[:2000]


def _tagged_decode(decode: Any, raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return samples.tagged_packet(decode(raw))
    except Exception as exc:
        return {"$error": f"{type(exc).__name__}: {exc}"}


def main() -> None:
    ours: dict[str, dict[str, str | None]] = json.load(sys.stdin)["ours"]
    results: dict[str, dict[str, Any]] = {}
    for case in samples.all_cases():
        name = case["name"]
        out: dict[str, Any] = {"msgpack": None, "json": None, "encode_error": None}
        msgpack_bytes = json_bytes = None
        try:
            packet = build(case)
            msgpack_bytes = packets.serialize(packet)
            json_bytes = packets._json_encoder.encode(packet)
            out["msgpack"], out["json"] = msgpack_bytes.hex(), json_bytes.hex()
        except Exception as exc:
            out["encode_error"] = f"{type(exc).__name__}: {exc}"
        mine = ours.get(name, {})
        out["decode_ours_msgpack"] = _compare(packets._decoder.decode, mine.get("msgpack"), msgpack_bytes)
        out["decode_ours_json"] = _compare(packets._json_decoder.decode, mine.get("json"), json_bytes)
        out["their_decode_msgpack"] = _tagged_decode(packets._decoder.decode, msgpack_bytes)
        out["their_decode_json"] = _tagged_decode(packets._json_decoder.decode, json_bytes)
        results[name] = out
    json.dump({"version": webshocket.__version__, "module": webshocket.__file__, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
