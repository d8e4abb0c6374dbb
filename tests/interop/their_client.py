"""Run with a webshocket 0.5.x venv's python: THEIR client against OUR server.

Usage: ``python their_client.py ws://127.0.0.1:PORT``. Talks to the handler of
``test_interop_052.py`` (add, count, fail, join, shout, announce, echo) and prints one
JSON summary on stdout. A step that raises records ``{"exception": "..."}`` instead.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import webshocket
from webshocket import Packet, WebSocketClient


def plain(value: Any) -> Any:
    """JSON-friendly copy (bytes as {"b64": ...}, enums as ints)."""
    if isinstance(value, (bytes, bytearray)):
        return {"b64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value
    return repr(value)


def rpc_of(result: Any) -> Any:
    """0.5.0's send_rpc returns a Packet (``.rpc`` is the response), 0.5.2's the RPCResponse."""
    return result.rpc if isinstance(result, Packet) else result


def describe_rpc(result: Any) -> dict[str, Any]:
    rpc = rpc_of(result)
    return {
        "returned": type(result).__name__,
        "response": plain(rpc.response),
        "error": None if rpc.error is None else int(rpc.error),
        "data": plain(getattr(result, "data", "<no data attribute>")),
        "is_stream": getattr(rpc, "is_stream", None),
        "is_end": getattr(rpc, "is_end", None),
    }


def describe_packet(packet: Any) -> dict[str, Any]:
    return {"source": int(packet.source), "data": plain(packet.data), "channel": packet.channel}


async def step(summary: dict[str, Any], name: str, action: Callable[[], Awaitable[Any]]) -> None:
    try:
        summary[name] = await asyncio.wait_for(action(), 10)
    except BaseException as exc:
        summary[name] = {"exception": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-1500:]}


async def main(uri: str) -> dict[str, Any]:
    summary: dict[str, Any] = {"version": webshocket.__version__, "module": webshocket.__file__}
    client = WebSocketClient(uri)
    await client.connect()
    summary["connected_state"] = int(client.state)

    async def add() -> Any:
        return describe_rpc(await client.send_rpc("add", 10, 20))

    async def add_kwargs() -> Any:
        return describe_rpc(await client.send_rpc("add", a=1, b=2))

    async def stream() -> Any:
        if not hasattr(client, "stream_rpc"):
            return "unsupported"
        return [describe_rpc(chunk) async for chunk in client.stream_rpc("count", 4)]

    async def stream_error() -> Any:
        if not hasattr(client, "stream_rpc"):
            return "unsupported"
        return [describe_rpc(chunk) async for chunk in client.stream_rpc("broken_stream")]

    async def fail() -> Any:
        return describe_rpc(await client.send_rpc("fail"))

    async def missing() -> Any:
        return describe_rpc(await client.send_rpc("no_such_method"))

    async def bad_params() -> Any:
        return describe_rpc(await client.send_rpc("add", 1))

    async def publish() -> Any:
        joined = describe_rpc(await client.send_rpc("join", "room-1"))
        shouted = describe_rpc(await client.send_rpc("shout", "room-1", {"msg": "héllo", "n": [1, 2.5]}))
        return {"join": joined, "shout": shouted, "packet": describe_packet(await client.recv(5))}

    async def broadcast() -> Any:
        reply = describe_rpc(await client.send_rpc("announce", "to everyone"))
        return {"reply": reply, "packet": describe_packet(await client.recv(5))}

    async def custom() -> Any:
        client.send({"kind": "custom", "n": 7, "blob": b"\x00\x01"})
        return describe_packet(await client.recv(5))

    async def big_echo() -> Any:
        payload = bytes(range(256)) * 1200  # 300 KiB: fragmented both ways
        result = rpc_of(await client.send_rpc("echo", payload))
        return {"sent": len(payload), "received": len(result.response), "equal": result.response == payload}

    for name, action in [
        ("add", add),
        ("add_kwargs", add_kwargs),
        ("stream", stream),
        ("stream_error", stream_error),
        ("fail", fail),
        ("missing", missing),
        ("bad_params", bad_params),
        ("publish", publish),
        ("broadcast", broadcast),
        ("custom", custom),
        ("big_echo", big_echo),
    ]:
        await step(summary, name, action)
    await client.close()
    summary["closed_state"] = int(client.state)
    return summary


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1]))
    sys.stdout.write(json.dumps(result) + "\n")
