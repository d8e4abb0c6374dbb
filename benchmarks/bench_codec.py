"""Codec: decode an RPC request and encode its response, compiled vs pure (msgpack and JSON).

Target (issue 3): compiled at least 3x faster than pure for both dialects.
Run: ``python -m pytest benchmarks/bench_codec.py``.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from webshocket import _codec_py

IMPLS = {"pure": _codec_py}
try:
    IMPLS["compiled"] = importlib.import_module("webshocket._codec_c")
except ImportError:  # pragma: no cover - compiled module not built
    pass

REQUEST = _codec_py.encode_request("add", [10, 20], {}, "6f1a2b3c4d", False)
REQUEST_JSON = b'{"rpc":{"type":"request","method":"add","args":[10,20],"kwargs":{},"call_id":"6f1a2b3c4d"},"source":5}'
PUSH_DATA = {"symbol": "tech.AAPL", "price": 189.52, "volume": 1200, "tags": ["nasdaq", "large-cap"]}


def round_trip(codec: Any, raw: bytes, as_json: bool) -> bytes:
    request = codec.decode_packet(raw, as_json).rpc
    a, b = request.args
    return codec.encode_response(request.call_id, a + b, None, False, False, as_json)


@pytest.mark.parametrize("label", list(IMPLS))
@pytest.mark.parametrize("as_json", [False, True], ids=["msgpack", "json"])
def test_rpc_round_trip(benchmark: Any, ratios: Any, label: str, as_json: bool) -> None:
    codec = IMPLS[label]
    raw = REQUEST_JSON if as_json else REQUEST
    benchmark.group = f"decode request + encode response ({'json' if as_json else 'msgpack'})"
    result = benchmark(round_trip, codec, raw, as_json)
    assert b"30" in result or b"\x1e" in result
    ratios.record(benchmark.group, label, benchmark)


@pytest.mark.parametrize("label", list(IMPLS))
@pytest.mark.parametrize("as_json", [False, True], ids=["msgpack", "json"])
def test_encode_publish(benchmark: Any, ratios: Any, label: str, as_json: bool) -> None:
    codec = IMPLS[label]
    benchmark.group = f"encode a channel packet ({'json' if as_json else 'msgpack'})"
    benchmark(codec.encode_push, 2, PUSH_DATA, "tech.AAPL", as_json)
    ratios.record(benchmark.group, label, benchmark)
