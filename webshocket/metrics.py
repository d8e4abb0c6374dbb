"""Server counters for monitoring: a dict (``server.metrics()``) and Prometheus.

.. code-block:: python

    from prometheus_client import start_http_server
    from webshocket.metrics import register_prometheus

    register_prometheus(server)   # scraped values come from server.metrics()
    start_http_server(9100)

Nothing is counted twice and nothing is added to the hot path: the collector
reads the server's counters when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .hub import STAT_NAMES

if TYPE_CHECKING:
    from .server import WebSocketServer

__all__ = ["WebshocketCollector", "register_prometheus"]

_HELP = {
    "connections_opened": "Connections accepted",
    "connections_closed": "Connections that went away",
    "rpc_calls": "RPC requests received",
    "rpc_errors": "RPC requests answered with an error",
    "rate_limited": "RPC requests refused by a rate limit",
    "publishes": "publish() calls (one per channel)",
    "broadcasts": "broadcast() calls",
    "deliveries": "Packets pushed to clients (send, publish, broadcast)",
    "dropped": "Pushed packets dropped for slow consumers (policy 'drop')",
    "slow_consumer_disconnects": "Connections closed as slow consumers (policy 'disconnect')",
    "connections": "Clients connected now",
    "channels": "Exact channels with subscribers",
    "patterns": "Pattern subscriptions with subscribers",
    "rpc_running": "RPCs running now",
    "rpc_queued": "RPCs waiting for a task slot (rpc_task_reserve, rpc_task_limit, rpc_task_share)",
    "encode_errors": "Replies and publishes that could not be encoded",
}


class WebshocketCollector:
    """A Prometheus collector reading a server's :meth:`~webshocket.WebSocketServer.metrics`."""

    def __init__(self, server: WebSocketServer[Any], namespace: str = "webshocket") -> None:
        self.server = server
        self.namespace = namespace

    def describe(self) -> list[Any]:
        return []  # values are only known at scrape time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        label = f"{self.server.host}:{self.server.port}"
        for name, value in self.server.metrics().items():
            full = f"{self.namespace}_{name}"
            if name in STAT_NAMES:
                family: Any = CounterMetricFamily(full, _HELP.get(name, name), labels=["server"])
            else:
                family = GaugeMetricFamily(full, _HELP.get(name, name), labels=["server"])
            family.add_metric([label], value)
            yield family


def register_prometheus(
    server: WebSocketServer[Any], registry: Any = None, namespace: str = "webshocket"
) -> WebshocketCollector:
    """Expose ``server``'s counters to Prometheus (needs ``prometheus_client``)."""
    try:
        from prometheus_client import REGISTRY
    except ImportError as exc:
        raise ImportError("register_prometheus needs prometheus_client: pip install prometheus-client") from exc
    collector = WebshocketCollector(server, namespace)
    (REGISTRY if registry is None else registry).register(collector)
    return collector
