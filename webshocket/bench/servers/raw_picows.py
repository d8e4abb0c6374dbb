"""A minimal raw-picows server speaking the benchmark's subset of the wire protocol.

The floor a framework on picows can approach: one listener per connection, msgpack decode
of each request, msgpack encode of each reply and one ``transport.send`` per reply; a
publish is encoded once (one ``packb``) and the same bytes are sent to every subscriber.
Replies are byte-compatible with docs/protocol.md (same keys, same order). No fragmentation,
no JSON dialect, no error handling beyond "unknown method": not a server, a yardstick. A close
frame is answered with one and the connection closed (the churn scenario waits for that).

Usage: ``python raw_picows.py PORT``; prints ``READY PORT {json info}`` once accepting and
exits when its stdin closes or on SIGTERM. Methods: ``add``, ``subscribe``, ``publish``,
``count`` (see ``webshocket_app.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
from typing import Any

import msgpack
import picows
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest

if __package__:  # imported as webshocket.bench.servers.<name>
    from .common import raise_nofile, until_stopped
else:  # run as a script, as the runner does (also by the 0.5.2 venv's python): common.py is beside it
    from common import raise_nofile, until_stopped  # type: ignore[import-not-found,no-redef]

SUBPROTOCOL = "webshocket.v1"
_BINARY = WSMsgType.BINARY
_TEXT = WSMsgType.TEXT
_CLOSE = WSMsgType.CLOSE
_packb = msgpack.packb
_unpackb = msgpack.unpackb


class App:
    """Shared state: connected listeners and channel -> subscribed transports."""

    def __init__(self) -> None:
        self.clients: set[RawListener] = set()
        self.channels: dict[str, set[WSTransport]] = {}

    def publish(self, channel: str, data: Any) -> None:
        """Encode once, send to every subscriber."""
        subscribers = self.channels.get(channel)
        if not subscribers:
            return
        encoded = _packb({"source": 2, "data": data, "channel": channel})
        for transport in subscribers:
            transport.send(_BINARY, encoded)


def response(call_id: Any, value: Any, error: int | None = None) -> bytes:
    """An RPC response packet, keys in protocol order."""
    rpc = {"type": "response", "call_id": call_id, "response": value, "error": error, "is_stream": False}
    rpc["is_end"] = error is not None
    encoded: bytes = _packb({"source": 5, "rpc": rpc})
    return encoded


class RawListener(WSListener):
    """One connection: decode, dispatch, reply."""

    def __init__(self, app: App) -> None:
        super().__init__()
        self.app = app
        self.transport: WSTransport | None = None
        self.channels: set[str] = set()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.app.clients.add(self)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.app.clients.discard(self)
        for name in self.channels:
            subscribers = self.app.channels.get(name)
            if subscribers is not None:
                subscribers.discard(transport)
                if not subscribers:
                    del self.app.channels[name]

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not _BINARY and frame.msg_type is not _TEXT:
            if frame.msg_type is _CLOSE:  # answer the client's close frame, then close (RFC 6455 5.5.1)
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            return
        try:
            packet = _unpackb(frame.get_payload_as_bytes())
            rpc = packet["rpc"]
            method = rpc["method"]
            args = rpc.get("args") or []
            call_id = rpc["call_id"]
        except Exception:
            return  # not an RPC request: nothing in the benchmark sends one
        if method == "add":
            reply = response(call_id, args[0] + args[1])
        elif method == "publish":
            self.app.publish(args[0], args[1])
            reply = response(call_id, True)
        elif method == "subscribe":
            channel = args[0]
            self.channels.add(channel)
            self.app.channels.setdefault(channel, set()).add(transport)
            reply = response(call_id, True)
        elif method == "count":
            reply = response(call_id, len(self.app.clients))
        else:
            reply = response(call_id, f"RPC method '{method}' not found.", -32601)
        transport.send(_BINARY, reply)


async def main(port: int) -> None:
    """Serve until stdin closes."""
    loop = asyncio.get_running_loop()
    app = App()

    def factory(request: WSUpgradeRequest) -> Any:
        offered = request.headers.get("Sec-WebSocket-Protocol", "") or ""
        if SUBPROTOCOL in [p.strip() for p in offered.split(",")]:
            return picows.WSUpgradeResponseWithListener(
                picows.WSUpgradeResponse.create_101_response(extra_headers={"Sec-WebSocket-Protocol": SUBPROTOCOL}),
                RawListener(app),
            )
        return RawListener(app)

    await picows.ws_create_server(factory, "127.0.0.1", port)
    info = {
        "impl": "raw-picows",
        "version": picows.__version__ if hasattr(picows, "__version__") else "?",
        "uvloop": isinstance(loop, uvloop.Loop),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "python": sys.version.split()[0],
        "pid": os.getpid(),
    }
    sys.stdout.write(f"READY {port} {json.dumps(info)}\n")
    sys.stdout.flush()
    await until_stopped(loop)


if __name__ == "__main__":
    raise_nofile()
    uvloop.run(main(int(sys.argv[1])))
    sys.stdout.flush()
    os._exit(0)
