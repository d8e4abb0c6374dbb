"""Sessions that survive a network cut: ``python examples/recovery.py``.

A ticker publishes prices on ``prices.eurusd``. The client connects through a small TCP
proxy that plays the network: after a few prices the proxy black-holes the connection (no
FIN, no RST: bytes just stop, as when a phone changes cell). The client notices (its pings
go unanswered), reconnects by itself and presents its session token: the server gives back
its session state and subscription without running ``on_connect`` again, and sends the
prices published while the link was down, each once, in order, before the new ones.

The script starts everything on free ports, prints what the client sees, and exits.
"""

from __future__ import annotations

import asyncio
from typing import Any

import webshocket
from webshocket import ClientConnection, WebSocketHandler, rpc_method

HOST = "127.0.0.1"
PRICES = 30


class Ticker(WebSocketHandler[Any]):
    async def on_connect(self, connection: ClientConnection[Any]) -> None:
        print("server: on_connect (a new session)")

    @rpc_method()
    async def watch(self, connection: ClientConnection[Any], symbol: str) -> str:
        if not symbol.isalpha():
            raise webshocket.RPCError("a symbol is letters only")
        connection.symbol = symbol
        connection.subscribe(f"prices.{symbol}")
        return f"watching {symbol}"

    @rpc_method()
    async def watching(self, connection: ClientConnection[Any]) -> str:
        return str(connection.symbol)


class Network:
    """A TCP proxy; ``cut()`` black-holes the connections it carries, later ones pass."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.generation = 0

    def cut(self) -> None:
        self.generation += 1

    async def _pump(self, generation: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if generation == self.generation:
                    writer.write(data)
        except OSError:
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        generation = self.generation
        up_reader, up_writer = await asyncio.open_connection(HOST, self.port)
        await asyncio.gather(self._pump(generation, reader, up_writer), self._pump(generation, up_reader, writer))

    async def start(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, HOST, 0)


async def main() -> None:
    server = webshocket.WebSocketServer(HOST, 0, clientHandler=Ticker, recovery=True)
    await server.start()
    print(f"Recovery server on ws://{HOST}:{server.port}")
    network = Network(server.port)
    proxy = await network.start()
    port = proxy.sockets[0].getsockname()[1]

    client = webshocket.WebSocketClient(
        f"ws://{HOST}:{port}",
        on_disconnect=lambda code: print("client: connection lost"),
        on_reconnect=lambda recovered: print(f"client: reconnected, session recovered: {recovered}"),
    )
    # Short pings so that the cut is noticed within half a second (10 s + 10 s by default).
    await client.connect(
        retry=True, retry_interval=0.1, max_retry_interval=0.5, auto_ping_idle_timeout=0.2, auto_ping_reply_timeout=0.2
    )
    print("client:", (await client.send_rpc("watch", "eurusd")).data)

    async def ticker() -> None:
        for i in range(1, PRICES + 1):
            server.publish("prices.eurusd", {"n": i, "bid": round(1.08 + i / 10_000, 5)})
            if i == 10:
                network.cut()
                print("network: cut")
            await asyncio.sleep(0.05)

    publishing = asyncio.create_task(ticker())
    received = [(await client.recv(timeout=15)).data["n"] for _ in range(PRICES)]
    await publishing
    print(f"client: got {len(received)} prices, in order and once each: {received == list(range(1, PRICES + 1))}")
    print("client: still", (await client.send_rpc("watching")).data, "(session state kept)")
    await client.close()
    proxy.close()
    await server.close()


if __name__ == "__main__":
    asyncio.run(main())
