"""Shared fixtures: real servers on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

import webshocket
from webshocket import WebSocketClient, WebSocketHandler, WebSocketServer

HOST = "127.0.0.1"


def uri_of(server: WebSocketServer[Any], scheme: str = "ws") -> str:
    """URI of a started server."""
    return f"{scheme}://{HOST}:{server.port}"


@asynccontextmanager
async def running_server(
    handler: type[WebSocketHandler[Any]] = webshocket.DefaultWebSocketHandler, **kwargs: Any
) -> AsyncIterator[WebSocketServer[Any]]:
    """Start a server on a free port, close it afterwards."""
    server = WebSocketServer(HOST, 0, clientHandler=handler, **kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.close(timeout=2.0)


@asynccontextmanager
async def connected_client(server: WebSocketServer[Any], **kwargs: Any) -> AsyncIterator[WebSocketClient]:
    client = WebSocketClient(uri_of(server), **kwargs)
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def make_server() -> Callable[..., Any]:
    return running_server


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> None:
    """Poll ``predicate`` until it is true (fails the test after ``timeout`` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached within timeout")
        await asyncio.sleep(interval)
