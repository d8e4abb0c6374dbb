"""Counters as a dict and as Prometheus metrics, after real traffic."""

from __future__ import annotations

import logging
from typing import Any

from helpers import connected_client, running_server, wait_until
from prometheus_client import CollectorRegistry, generate_latest

from webshocket import ClientConnection, WebSocketHandler, rpc_method
from webshocket.metrics import register_prometheus


class Handler(WebSocketHandler[Any]):
    @rpc_method()
    async def join(self, connection: ClientConnection[Any], channel: str) -> None:
        connection.subscribe(channel)

    @rpc_method()
    async def fail(self, connection: ClientConnection[Any]) -> None:
        raise ValueError("x")


async def test_counters_follow_traffic(caplog: Any) -> None:
    caplog.set_level(logging.CRITICAL, logger="webshocket.server")
    async with running_server(Handler) as server, connected_client(server) as a, connected_client(server) as b:
        await a.send_rpc("join", "news")
        await b.send_rpc("join", "news.*")
        await a.send_rpc("fail")
        await a.send_rpc("missing")
        server.publish("news", 1)
        server.broadcast(2)
        for client in server.clients:
            client.send(3)
        for _ in range(3):
            await a.recv(timeout=2)
        metrics = server.metrics()
        assert metrics["connections"] == 2 and metrics["connections_opened"] == 2
        assert metrics["rpc_calls"] == 4 and metrics["rpc_errors"] == 2
        assert (metrics["publishes"], metrics["broadcasts"]) == (1, 1)
        assert metrics["deliveries"] == 1 + 2 + 2
        assert (metrics["channels"], metrics["patterns"]) == (1, 1)

        registry = CollectorRegistry()
        register_prometheus(server, registry)
        text = generate_latest(registry).decode()
        assert f'webshocket_deliveries_total{{server="127.0.0.1:{server.port}"}} 5.0' in text
        assert f'webshocket_connections{{server="127.0.0.1:{server.port}"}} 2.0' in text
        assert "# TYPE webshocket_rpc_errors_total counter" in text
    await wait_until(lambda: server.metrics()["connections_closed"] == 2)
