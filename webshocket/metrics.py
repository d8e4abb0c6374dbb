"""Server counters for monitoring: a dict (``server.metrics()``) and Prometheus.

.. code-block:: python

    from prometheus_client import start_http_server
    from webshocket.metrics import register_prometheus

    register_prometheus(server)   # scraped values come from server.metrics()
    start_http_server(9100)

Nothing is counted twice and nothing is added to the hot path: the collector
reads the server's counters when Prometheus scrapes.

Without ``prometheus_client``, :class:`MetricsEndpoint` serves the same series over HTTP
(``GET /metrics``, Prometheus text format) with a ``GET /health`` endpoint (JSON); the
command line starts one with ``webshocket serve --metrics-port``. Worker processes
(``--workers``) each run one on the shared port and add up the counters of all of them
(:class:`WorkerPeers`), so any worker answering a scrape reports the whole server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .enum import ServerState
from .hub import STAT_NAMES

if TYPE_CHECKING:
    from .server import WebSocketServer

__all__ = ["MetricsEndpoint", "WebshocketCollector", "WorkerPeers", "prometheus_text", "register_prometheus"]

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
    "workers": "Worker processes whose counters are included (those answering)",
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


def prometheus_text(
    values: Mapping[str, int], labels: Mapping[str, str] | None = None, namespace: str = "webshocket"
) -> str:
    """``values`` (as :meth:`~webshocket.WebSocketServer.metrics` returns them) in Prometheus text format 0.0.4.

    The series are those of :class:`WebshocketCollector`: counters get ``_total``, gauges keep their name.
    """
    label_text = ""
    if labels:
        pairs = (f'{key}="{_escape_label(value)}"' for key, value in labels.items())
        label_text = "{" + ",".join(pairs) + "}"
    lines: list[str] = []
    for name, value in values.items():
        full = f"{namespace}_{name}"
        if name in STAT_NAMES:
            full += "_total"
            kind = "counter"
        else:
            kind = "gauge"
        help_text = _HELP.get(name, name).replace("\\", "\\\\").replace("\n", "\\n")
        lines += [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}", f"{full}{label_text} {value}"]
    return "\n".join(lines) + "\n"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class WorkerPeers:
    """The counters of sibling worker processes, exchanged over Unix sockets in one directory.

    Worker ``index`` (of ``count``) answers on ``directory/<index>.sock`` with its
    ``server.metrics()`` as one JSON line; :meth:`gather` asks every other worker.
    The directory is made (and removed) by the parent process.
    """

    def __init__(self, directory: str, index: int, count: int, timeout: float = 1.0) -> None:
        self.directory = directory
        self.index = index
        self.count = count
        self.timeout = timeout
        self._server: asyncio.AbstractServer | None = None

    def path(self, index: int) -> str:
        """The socket of worker ``index``."""
        return os.path.join(self.directory, f"{index}.sock")

    async def start(self, metrics: Callable[[], dict[str, int]]) -> None:
        """Answer the other workers with ``metrics()`` (a dead predecessor's socket is replaced)."""

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                writer.write(json.dumps(metrics()).encode() + b"\n")
                await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()

        path = self.path(self.index)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._server = await asyncio.start_unix_server(answer, path)

    async def _ask(self, index: int) -> dict[str, int] | None:
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(self.path(index)), self.timeout)
            line = await asyncio.wait_for(reader.readline(), self.timeout)
            values = json.loads(line)
        except (OSError, ValueError, asyncio.TimeoutError):
            return None
        finally:
            if writer is not None:
                writer.close()
        return values if isinstance(values, dict) else None

    async def gather(self) -> list[dict[str, int]]:
        """The counters of every other worker that answers within ``timeout`` seconds."""
        others = [i for i in range(self.count) if i != self.index]
        answers = await asyncio.gather(*(self._ask(i) for i in others))
        return [answer for answer in answers if answer is not None]

    async def close(self) -> None:
        """Stop answering."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(self.index))


_STATUS_LINES = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class MetricsEndpoint:
    """HTTP endpoint of a server: ``GET /metrics`` (Prometheus text) and ``GET /health`` (JSON).

    ``/health`` answers 200 with ``{"status": "serving", ...}`` while the server accepts
    connections and 503 (``"closed"``) once it is shutting down. With ``peers`` the
    values are the sums over every worker answering (``workers`` says how many did).

    Args:
        server: the server whose :meth:`~webshocket.WebSocketServer.metrics` are reported.
        host: address to bind.
        port: port to bind (0: a free one, see :attr:`port` after :meth:`start`).
        peers: the other worker processes of the same server, if any.
        namespace: prefix of every series name.
    """

    def __init__(
        self,
        server: WebSocketServer[Any],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        peers: WorkerPeers | None = None,
        namespace: str = "webshocket",
    ) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.peers = peers
        self.namespace = namespace
        self._http: asyncio.AbstractServer | None = None

    async def start(self, *, reuse_port: bool = False) -> None:
        """Listen (and answer the other workers, with ``peers``)."""
        if self.peers is not None:
            await self.peers.start(self.server.metrics)
        try:
            self._http = await asyncio.start_server(self._handle, self.host, self.port, reuse_port=reuse_port or None)
        except BaseException:
            if self.peers is not None:
                await self.peers.close()
            raise
        sockets = self._http.sockets
        if sockets and not self.port:
            self.port = sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening."""
        http, self._http = self._http, None
        if http is not None:
            http.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(http.wait_closed(), 2.0)
        if self.peers is not None:
            await self.peers.close()

    async def snapshot(self) -> tuple[dict[str, int], int]:
        """The counters summed over this process and the peers answering, and how many processes that is."""
        total = dict(self.server.metrics())
        answered = 1
        if self.peers is not None:
            for values in await self.peers.gather():
                answered += 1
                for name, value in values.items():
                    if isinstance(value, int):
                        total[name] = total.get(name, 0) + value
        return total, answered

    async def metrics_text(self) -> str:
        """What ``GET /metrics`` returns."""
        values, answered = await self.snapshot()
        values["workers"] = answered
        labels = {"server": f"{self.server.host}:{self.server.port}"}
        return prometheus_text(values, labels, self.namespace)

    async def health(self) -> tuple[int, dict[str, Any]]:
        """What ``GET /health`` returns: the status code and the JSON body."""
        serving = self.server.state is ServerState.SERVING
        values, answered = await self.snapshot()
        body: dict[str, Any] = {
            "status": "serving" if serving else "closed",
            "pid": os.getpid(),
            "port": self.server.port,
            "workers": self.peers.count if self.peers is not None else 1,
            "workers_up": answered,
            "connections": values.get("connections", 0),
        }
        return (200 if serving else 503), body

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            method, target, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path = target.split("?", 1)[0]
            content_type = "text/plain; charset=utf-8"
            if method not in ("GET", "HEAD"):
                status, body = 405, "only GET and HEAD\n"
            elif path == "/metrics":
                status, body = 200, await self.metrics_text()
                content_type = "text/plain; version=0.0.4; charset=utf-8"
            elif path == "/health":
                status, document = await self.health()
                body, content_type = json.dumps(document) + "\n", "application/json"
            else:
                status, body = 404, "not found: try /metrics or /health\n"
            data = body.encode()
            header = (
                f"HTTP/1.1 {status} {_STATUS_LINES[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
            ).encode()
            writer.write(header if method == "HEAD" else header + data)
            await writer.drain()
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
            pass  # a client that went away or did not speak HTTP: nothing to answer
        finally:
            writer.close()
