"""Token streaming, the way AI chat APIs do it: ``python examples/streaming.py``.

``generate`` is an async generator RPC: every ``yield`` sends one packet right away, so
the client prints tokens as they are produced instead of waiting for the whole answer.
The client can stop early: leaving the ``async for`` loop sends ``__abort__`` and the
server cancels the generator, whose ``finally`` block runs (free the GPU, close files...).

The script starts a server on a free port, streams one full answer, aborts a second one
after a few tokens, and exits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import webshocket
from webshocket import ClientConnection, WebSocketHandler, rpc_method

ANSWER = "WebSockets keep one connection open , so the server can push every token the moment it exists ."


class TokenHandler(WebSocketHandler[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.finished: asyncio.Queue[str] = asyncio.Queue()  # one report per generation, for the demo

    @rpc_method()
    async def generate(self, connection: ClientConnection[Any], prompt: str, delay: float = 0.02) -> AsyncIterator[str]:
        sent = 0
        try:
            for token in ANSWER.split():  # a stand-in for a language model
                await asyncio.sleep(delay)  # "thinking" time per token
                yield token  # sent to the client now
                sent += 1
            self.finished.put_nowait(f"completed after {sent} tokens")
        except asyncio.CancelledError:
            # the client left its loop: its __abort__ cancels us at the pending await
            self.finished.put_nowait(f"cancelled by the client after {sent} tokens")
            raise


async def main() -> None:
    async with webshocket.WebSocketServer("127.0.0.1", 0, clientHandler=TokenHandler) as server:
        handler = server.handler
        assert isinstance(handler, TokenHandler)
        uri = f"ws://127.0.0.1:{server.port}"
        print(f"token server on {uri}")
        async with webshocket.WebSocketClient(uri) as client:
            # 1. a full answer, printed token by token as the packets arrive
            start = time.perf_counter()
            first: float | None = None
            tokens: list[str] = []
            print("answer: ", end="", flush=True)
            async for chunk in client.stream_rpc("generate", "why websockets?"):
                first = first if first is not None else time.perf_counter() - start
                tokens.append(chunk.data)
                print(chunk.data, end=" ", flush=True)
            print()
            total = time.perf_counter() - start
            print(f"{len(tokens)} tokens, first after {first or 0:.3f}s, all after {total:.3f}s")
            print("server:", await asyncio.wait_for(handler.finished.get(), 2))

            # 2. stop early: break out of the loop after five tokens. aclosing() closes the
            # stream at once on leaving the block (without it, at the next garbage collection)
            print("aborted answer: ", end="", flush=True)
            async with aclosing(client.stream_rpc("generate", "why websockets?", delay=0.05)) as stream:
                async for chunk in stream:
                    print(chunk.data, end=" ", flush=True)
                    if chunk.data == "open":
                        break
            print("<stop>")
            print("server:", await asyncio.wait_for(handler.finished.get(), 2))

            # 3. the connection is still fine after an abort
            print("next stream:", " ".join([c.data async for c in client.stream_rpc("generate", "again", delay=0)]))
            print("server:", await asyncio.wait_for(handler.finished.get(), 2))
    print("streaming demo finished")


if __name__ == "__main__":
    asyncio.run(main())
