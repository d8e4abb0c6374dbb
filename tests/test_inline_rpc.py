"""RPC methods without ``await`` run inline (no asyncio.Task); the rest run as tasks."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import connected_client, running_server

from webshocket import ClientConnection, RPCError, RPCErrorCode, WebSocketHandler, rpc_method
from webshocket.handler import hub_of
from webshocket.rpc import never_suspends


class Handler(WebSocketHandler[Any]):
    @rpc_method()
    async def inline(self, connection: ClientConnection[Any], x: int) -> dict[str, Any]:
        return {"x": x, "task": asyncio.current_task() is not None}

    @rpc_method()
    async def awaiting(self, connection: ClientConnection[Any], x: int) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"x": x, "task": asyncio.current_task() is not None}

    @rpc_method()
    async def inline_app_error(self, connection: ClientConnection[Any]) -> None:
        raise RPCError("no")

    @rpc_method()
    async def inline_crash(self, connection: ClientConnection[Any]) -> None:
        raise ValueError("boom")

    @rpc_method()
    async def timeout_ok(self, connection: ClientConnection[Any]) -> bool:
        async with asyncio.Lock():  # "async with" may suspend: must not run inline
            return asyncio.current_task() is not None


def test_never_suspends_reads_the_body() -> None:
    handler = Handler()
    methods = hub_of(handler).methods
    assert methods["inline"].inline and methods["inline_app_error"].inline
    assert not methods["awaiting"].inline and not methods["timeout_ok"].inline

    async def with_async_for(items: Any) -> list[Any]:
        return [item async for item in items]

    def plain(connection: Any) -> None:
        return None

    assert not never_suspends(with_async_for)
    assert not never_suspends(plain)


async def test_inline_and_task_paths_answer_alike() -> None:
    async with running_server(Handler) as server, connected_client(server) as client:
        results = await asyncio.gather(*(client.send_rpc("inline", i) for i in range(50)))
        assert [r.data for r in results] == [{"x": i, "task": False} for i in range(50)]
        assert (await client.send_rpc("awaiting", 7)).data == {"x": 7, "task": True}
        app = await client.send_rpc("inline_app_error")
        assert (app.error, app.response) == (RPCErrorCode.APPLICATION_ERROR, "no")
        crash = await client.send_rpc("inline_crash")
        assert crash.error == RPCErrorCode.INTERNAL_SERVER_ERROR and "boom" in crash.response
        assert (await client.send_rpc("timeout_ok")).data is True
        bad = await client.send_rpc("inline", 1, 2)
        assert bad.error == RPCErrorCode.INVALID_PARAMS
