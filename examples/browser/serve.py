"""Serve ``index.html`` and a Webshocket server for it: ``python examples/browser/serve.py``.

Open the printed address in a browser. The page connects with the JavaScript client of
``clients/js`` (served from there as ``/webshocket-client/*.js``; it speaks JSON), calls
``add``, joins the lobby and shows every message said there; open it in two tabs to chat
with yourself. Stop with Ctrl-C. Options: ``--host``, ``--port`` (the page) and ``--ws-port``
(0: a free port).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import webshocket
from webshocket import ClientConnection, Has, WebSocketHandler, rpc_method

PAGE = Path(__file__).with_name("index.html")
CLIENT = Path(__file__).resolve().parents[2] / "clients" / "js" / "src"  # the JavaScript client's modules
CLIENT_PREFIX = "/webshocket-client/"


class LobbyHandler(WebSocketHandler[Any]):
    @rpc_method()
    async def add(self, connection: ClientConnection[Any], a: int, b: int) -> int:
        return a + b

    @rpc_method()
    async def join(self, connection: ClientConnection[Any], nick: str) -> None:
        connection.nick = nick[:32]  # session state
        connection.subscribe("lobby")

    @rpc_method(requires=Has("nick"))
    async def say(self, connection: ClientConnection[Any], text: str) -> None:
        self.publish("lobby", {"from": connection.nick, "text": text[:500]})  # the sender sees it too


def client_modules() -> set[str]:
    """File names of the JavaScript client's modules (nothing else under clients/js is served)."""
    return {path.name for path in CLIENT.glob("*.js")}


class PageServer(BaseHTTPRequestHandler):
    """Answers GET / (any query string) with index.html, /webshocket-client/NAME.js with a module
    of the JavaScript client, anything else with 404."""

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path in ("/", "/index.html"):
            body, content_type = PAGE.read_bytes(), "text/html; charset=utf-8"
        elif path.startswith(CLIENT_PREFIX) and path[len(CLIENT_PREFIX) :] in client_modules():
            body, content_type = (CLIENT / path[len(CLIENT_PREFIX) :]).read_bytes(), "text/javascript; charset=utf-8"
        else:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet


async def main(host: str, port: int, ws_port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with webshocket.WebSocketServer(host, ws_port, clientHandler=LobbyHandler) as server:
        httpd = ThreadingHTTPServer((host, port), PageServer)  # the page, from a thread: stdlib only
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            page_port = httpd.server_address[1]
            print(f"websocket server on ws://{host}:{server.port}")
            print(f"open http://{host}:{page_port}/?ws=ws://{host}:{server.port} (Ctrl-C to stop)", flush=True)
            await stop.wait()
        finally:
            httpd.shutdown()
            httpd.server_close()
    print("stopped", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port of the page (default: a free one)")
    parser.add_argument("--ws-port", type=int, default=0, help="port of the websocket server (default: a free one)")
    options = parser.parse_args()
    asyncio.run(main(options.host, options.port, options.ws_port))
