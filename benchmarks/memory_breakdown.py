"""Where the memory of an idle connection goes: RSS per connection, layer by layer.

Run::

    python benchmarks/memory_breakdown.py                       # every layer, 5,000 and 19,000 connections
    python benchmarks/memory_breakdown.py --connections 19000 --servers uvloop-tcp ours
    python benchmarks/memory_breakdown.py --breakdown --connections 5000 --servers ours ours-pure
    python benchmarks/memory_breakdown.py --servers "picows:read_buffer_init_size=0,use_aiofastnet=false"

Each server runs in a process of its own (this script, ``serve SPEC``); this process opens and
closes 100 connections (so that the code they run and what the first one makes are in place),
opens N idle connections, waits until the server holds them all, and asks the server for its
RSS (``VmRSS``) before and after: RSS per connection = RSS delta / N. Each figure is taken after
``gc.collect()``, then again after ``malloc_trim(0)`` (glibc gives freed heap pages back: the
"trimmed" column); the server's CPU time per connection opened (accept, handshake, idle until
measured) is a rough figure on a busy machine. ``--env KEY=VALUE`` sets an environment variable for the servers (e.g.
``MALLOC_ARENA_MAX=1``).

Server specs (``KIND`` or ``KIND:key=value,...``; the pairs go to the server's creation call
as keyword arguments, values read as JSON, e.g. ``use_aiofastnet=false``; two are this
script's: ``tree=DIR`` runs ``ours`` from another source tree, ``shared_logger=true`` gives
picows a ``LoggerAdapter``, with which it makes no child logger per connection):

* ``asyncio-tcp``: the standard library's event loop, an ``asyncio.Protocol`` that accepts and
  holds TCP connections (reference).
* ``uvloop-tcp``: the same protocol on uvloop: uvloop's floor.
* ``aiofastnet-tcp``: the same protocol on uvloop with aiofastnet's transport, which picows
  uses for its connections whenever aiofastnet is installed (picows >= 2.3 requires it).
* ``picows``: a bare picows server with a do-nothing ``WSListener``, picows's defaults.
* ``picows-asyncio``: the same on the standard library's event loop.
* ``ours``: a webshocket server (the e2e suite's ``BenchHandler``), compiled modules.
* ``ours-pure``: the same with ``WEBSHOCKET_NO_EXTENSIONS=1`` (the pure-Python twins).

The clients of the TCP kinds only connect; the others complete a WebSocket handshake (with
the ``webshocket.v1`` subprotocol) and stay idle, answering pings.

``--breakdown`` (use a few thousand connections: it is slow) runs each server a second time
with ``tracemalloc`` on and reports, per connection:

* ``traced``: bytes of live allocations tracemalloc sees (every ``PyMem_*``/``PyObject_*``
  allocation, the raw domain included: Python objects, picows's buffers, libuv handles);
  ``RSS - traced`` is what it cannot see: allocator overhead (glibc chunk headers, pymalloc
  pools), libc/libuv ``malloc`` outside Python (epoll and libuv tables), fragmentation;
* ``blocks``: the allocations that appeared, by size (count per connection and bytes);
* ``by type``: the new garbage-collected objects, by type (count per connection and
  ``sys.getsizeof``), which shows objects no connection object refers to (event-loop handles);
* ``objects``: one connection's object graph walked from its roots in order (our listener,
  ``ClientConnection``, ``Sink``, picows's transport and protocol, the TCP transport): each
  object not there before the connections were opened is counted under the first root that
  reaches it, with its type and ``sys.getsizeof``. Memory a C object holds by pointer
  (picows's read and write buffers, libuv's handles) is not in ``sys.getsizeof``: the
  ``blocks`` table shows it.

Output: a table per run, and ``--json FILE`` for the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import logging
import os
import resource
import subprocess
import sys
import threading
import time
import tracemalloc
import types
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

DEFAULT_SERVERS = (
    "asyncio-tcp",
    "uvloop-tcp",
    "aiofastnet-tcp",
    "picows",
    "picows:read_buffer_init_size=0",
    "picows:read_buffer_init_size=0,use_aiofastnet=false",
    "picows:read_buffer_init_size=0,use_aiofastnet=false,shared_logger=true",
    "picows:read_buffer_init_size=0,use_aiofastnet=false,shared_logger=true,enable_auto_ping=true",
    "picows-asyncio:read_buffer_init_size=0,use_aiofastnet=false",
    "ours",
    "ours-pure",
    "ours:use_aiofastnet=true",
)
SUBPROTOCOL = "webshocket.v1"
CONNECT_BATCH = 200  # connections opened at once
WARMUP = 100  # connections opened and closed before the mark
SETTLE_S = 1.0  # after the last connection, before measuring


# --------------------------------------------------------------------------- common


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``KIND:key=value,...`` -> (KIND, {key: value}); values are JSON (a bare word stays a string)."""
    kind, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for pair in filter(None, rest.split(",")):
        key, _, value = pair.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return kind, options


def rss_kib() -> int:
    """This process's VmRSS in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def malloc_trim() -> None:
    """Give free heap memory back to the system (glibc), if the C library has malloc_trim."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


# --------------------------------------------------------------------------- server side


class Holder(asyncio.Protocol):
    """Accepts a TCP connection and holds it (reads and drops whatever comes)."""

    __slots__ = ("held", "transport")

    def __init__(self, held: set[Holder]) -> None:
        self.held = held
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.held.add(self)

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.held.discard(self)


class Server:
    """One kind of server in this process: how many connections it holds, and one connection's roots."""

    def __init__(self, count: Callable[[], int], roots: Callable[[], list[tuple[str, Any]]]) -> None:
        self.count = count
        self.roots = roots


def transport_roots(protocol: Any, transport: Any) -> list[tuple[str, Any]]:
    return [("protocol", protocol), (f"transport ({type(transport).__module__.split('.')[0]})", transport)]


async def start_tcp(kind: str, options: dict[str, Any]) -> tuple[int, Server]:
    loop = asyncio.get_running_loop()
    held: set[Holder] = set()
    if kind == "aiofastnet-tcp":
        import aiofastnet

        server = await aiofastnet.create_server(loop, lambda: Holder(held), "127.0.0.1", 0, **options)
    else:
        server = await loop.create_server(lambda: Holder(held), "127.0.0.1", 0, **options)

    def roots() -> list[tuple[str, Any]]:
        one = next(iter(held))
        return transport_roots(one, one.transport)

    return server.sockets[0].getsockname()[1], Server(lambda: len(held), roots)


def picows_roots(listener: Any) -> list[tuple[str, Any]]:
    transport = listener.transport
    tcp = transport.underlying_transport
    return [
        ("listener", listener),
        ("picows WSTransport", transport),
        ("picows: upgrade request", transport.request),
        ("picows: upgrade response", transport.response),
        ("picows WSProtocol", tcp.get_protocol()),
        (f"TCP transport ({type(tcp).__module__.split('.')[0]})", tcp),
    ]


async def start_picows(options: dict[str, Any]) -> tuple[int, Server]:
    import picows

    held: set[Any] = set()

    class Listener(picows.WSListener):
        __slots__ = ("transport",)  # as a lean listener would (a __dict__ would add ~300 bytes)

        def on_ws_connected(self, transport: picows.WSTransport) -> None:
            self.transport = transport
            held.add(self)

        def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
            held.discard(self)

    def factory(request: picows.WSUpgradeRequest) -> Any:
        response = picows.WSUpgradeResponse.create_101_response(extra_headers={"Sec-WebSocket-Protocol": SUBPROTOCOL})
        return picows.WSUpgradeResponseWithListener(response, Listener())

    if options.pop("shared_logger", False):  # not a logging.Logger: picows makes no child logger per connection
        options["logger_name"] = logging.LoggerAdapter(logging.getLogger("picows.server"), {})
    server = await picows.ws_create_server(factory, "127.0.0.1", 0, **options)
    return server.sockets[0].getsockname()[1], Server(lambda: len(held), lambda: picows_roots(next(iter(held))))


async def start_ours(options: dict[str, Any]) -> tuple[int, Server]:
    from webshocket import WebSocketServer
    from webshocket.bench.servers.webshocket_app import BenchHandler

    options.pop("tree", None)  # the source tree it was imported from (see Child)
    server: Any = WebSocketServer("127.0.0.1", 0, clientHandler=BenchHandler)
    await server.start(**options)

    def roots() -> list[tuple[str, Any]]:
        engine = next(iter(server._core.engines))
        return [
            ("ServerListener (engine)", engine),
            ("ClientConnection", engine.conn),
            ("Sink", engine.sink),
            *picows_roots(engine)[1:],
        ]

    return int(server.port), Server(lambda: len(server.clients), roots)


async def start(kind: str, options: dict[str, Any]) -> tuple[int, Server]:
    options.setdefault("backlog", 1024)  # the clients connect 200 at a time
    if kind.endswith("-tcp"):
        return await start_tcp(kind, options)
    if kind.startswith("picows"):
        return await start_picows(options)
    if kind.startswith("ours"):
        return await start_ours(options)
    raise SystemExit(f"unknown server kind {kind!r}")


class Probe:
    """The server's measurements: ``mark`` before the connections are opened, ``report`` after."""

    def __init__(self, server: Server, trace: bool) -> None:
        self.server = server
        self.trace = trace
        self.before: dict[str, Any] = {}
        self.kept: list[Any] = []  # what existed at the mark, kept alive (ids stay unique)
        self.known: set[int] = set()
        self.stats: Counter[tuple[str, int]] = Counter()  # blocks at the mark, by (site, size)

    def measure(self) -> dict[str, Any]:
        cpu = time.process_time()
        gc.collect()
        rss = rss_kib()
        malloc_trim()
        return {"rss_kib": rss, "trimmed_kib": rss_kib(), "cpu_s": cpu}

    def mark(self) -> dict[str, Any]:
        if self.trace:
            gc.collect()
            self.kept = gc.get_objects()
            known = self.known
            known.add(id(self.kept))
            known.update(map(id, self.kept))
            # What they refer to, and through containers the collector does not track (a dict
            # or tuple of strings), what those refer to.
            stack = [ref for obj in self.kept for ref in gc.get_referents(obj)]
            while stack:
                obj = stack.pop()
                if id(obj) not in known:
                    known.add(id(obj))
                    if not gc.is_tracked(obj):
                        stack.extend(gc.get_referents(obj))
            self.stats = site_stats(tracemalloc.take_snapshot())
        self.before = {**self.measure(), "count": self.server.count()}
        return self.before

    def report(self) -> dict[str, Any]:
        after = self.measure()
        count = self.server.count() - self.before["count"]
        result: dict[str, Any] = {"before": self.before, "after": {**after, "count": self.server.count()}}
        result["connections"] = count
        result["webshocket"] = getattr(sys.modules.get("webshocket"), "__file__", None)  # which tree
        for key in ("rss_kib", "trimmed_kib"):
            result[f"{key[:-4]}_per_conn"] = (after[key] - self.before[key]) * 1024 / max(count, 1)
        result["cpu_us_per_conn"] = (after["cpu_s"] - self.before["cpu_s"]) * 1e6 / max(count, 1)
        if self.trace and count:
            result.update(self.breakdown(count))
        return result

    def breakdown(self, count: int) -> dict[str, Any]:
        """Per connection: traced bytes, new blocks by size and by site, new objects by type, one connection's graph."""
        stats = site_stats(tracemalloc.take_snapshot())
        types_: dict[str, list[int]] = {}
        for obj in gc.get_objects():
            if id(obj) not in self.known:
                entry = types_.setdefault(qualname(obj), [0, 0])
                entry[0] += 1
                entry[1] += sys.getsizeof(obj)
        objects = walk(self.server.roots(), self.known)
        sizes: Counter[int] = Counter()
        sites: Counter[str] = Counter()
        for (site, size), n in stats.items():
            new = n - self.stats.get((site, size), 0)
            sizes[size] += new
            sites[site] += new * size
        return {
            "traced_per_conn": sum(sites.values()) / count,
            "blocks": [
                {"size": size, "per_conn": n / count, "bytes_per_conn": size * n / count}
                for size, n in sorted(sizes.items(), key=lambda item: -item[0] * item[1])
                if n / count >= 0.5
            ][:25],
            "sites": [{"site": site, "bytes_per_conn": size / count} for site, size in sites.most_common(10)],
            "by_type": [
                {"type": name, "per_conn": n / count, "bytes_per_conn": size / count}
                for name, (n, size) in sorted(types_.items(), key=lambda item: -item[1][1])
                if n / count >= 0.5
            ],
            "objects": objects,
        }


def site_stats(snapshot: tracemalloc.Snapshot) -> Counter[tuple[str, int]]:
    """Live blocks by (allocation site, size), but those of this script (its measurements)."""
    stats: Counter[tuple[str, int]] = Counter()
    for trace in snapshot.traces:
        frame = trace.traceback[0]
        if frame.filename != __file__:
            stats[(f"{frame.filename}:{frame.lineno}", trace.size)] += 1
    return stats


def qualname(obj: Any) -> str:
    kind = type(obj)
    module = kind.__module__
    return kind.__qualname__ if module in ("builtins", "__main__") else f"{module}.{kind.__qualname__}"


_STOP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType)


def walk(roots: list[tuple[str, Any]], known: set[int]) -> list[dict[str, Any]]:
    """One connection's objects, each under the root whose walk reaches it: (root, type, count, bytes).

    A root's walk does not enter another root, nor objects that existed before the connections
    were opened (``known``: the event loop, the server, the shared sets), nor types, modules,
    functions and code."""
    seen = set(known)
    boundary = {id(root) for _, root in roots}
    rows: dict[tuple[str, str], list[int]] = {}
    for label, root in roots:
        stack = [root]
        while stack:
            obj = stack.pop()
            if id(obj) in seen or isinstance(obj, _STOP) or (id(obj) in boundary and obj is not root):
                continue
            seen.add(id(obj))
            row = rows.setdefault((label, qualname(obj)), [0, 0])
            row[0] += 1
            row[1] += sys.getsizeof(obj)
            stack.extend(gc.get_referents(obj))
    return [{"root": label, "type": name, "count": n, "bytes": size} for (label, name), (n, size) in rows.items()]


def serve(spec: str, trace: bool) -> None:
    """Child process: start the server, print ``READY port``, answer ``mark``/``report`` on stdin."""
    raise_nofile()
    if trace:
        tracemalloc.start(1)
    kind, options = parse_spec(spec)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        port, server = await start(kind, options)
        probe = Probe(server, trace)
        done = loop.create_future()

        def commands() -> None:
            for line in sys.stdin:
                command = line.strip()
                if command in ("mark", "report", "count"):
                    call: Callable[[], Any] = {"mark": probe.mark, "report": probe.report, "count": server.count}[
                        command
                    ]
                    answer = asyncio.run_coroutine_threadsafe(run_sync(call), loop).result()
                    sys.stdout.write(json.dumps(answer) + "\n")
                    sys.stdout.flush()
            loop.call_soon_threadsafe(done.set_result, None)

        threading.Thread(target=commands, daemon=True).start()
        sys.stdout.write(f"READY {port}\n")
        sys.stdout.flush()
        await done

    if kind.endswith("-asyncio") or kind == "asyncio-tcp":
        asyncio.run(main())
    else:
        import uvloop

        uvloop.run(main())
    sys.stdout.flush()
    os._exit(0)  # no graceful close of thousands of connections


async def run_sync(call: Callable[[], Any]) -> Any:
    return call()


# --------------------------------------------------------------------------- client side


class Child:
    """A server process and the line protocol to it."""

    def __init__(self, spec: str, trace: bool, env: dict[str, str]) -> None:
        kind, options = parse_spec(spec)
        child_env = {**os.environ, **env}
        if kind == "ours-pure":
            child_env["WEBSHOCKET_NO_EXTENSIONS"] = "1"
        if "tree" in options:  # another source tree of webshocket (built in place): before/after
            child_env["PYTHONPATH"] = str(options["tree"])
        command = [sys.executable, os.path.abspath(__file__), "serve", spec] + (["--trace"] if trace else [])
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env)
        line = self.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"server {spec!r} did not start: {line!r}")
        self.port = int(line.split()[1])

    def readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def ask(self, command: str) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.readline()
        if not line:
            raise RuntimeError(f"server gone (asked {command!r})")
        return json.loads(line)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def open_connections(kind: str, port: int, count: int) -> list[Any]:
    """``count`` idle connections to the server (TCP only for the ``-tcp`` kinds); their transports."""
    loop = asyncio.get_running_loop()
    opened: list[Any] = []
    if kind.endswith("-tcp"):

        async def connect() -> Any:
            transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            return transport

    else:
        import picows

        url = f"ws://127.0.0.1:{port}/"
        headers = {"Sec-WebSocket-Protocol": SUBPROTOCOL}

        async def connect() -> Any:
            transport, _ = await picows.ws_connect(
                picows.WSListener, url, extra_headers=headers, read_buffer_init_size=0, websocket_handshake_timeout=60
            )
            return transport

    for first in range(0, count, CONNECT_BATCH):
        batch: list[Awaitable[Any]] = [connect() for _ in range(first, min(count, first + CONNECT_BATCH))]
        opened.extend(await asyncio.gather(*batch))
    return opened


def close_all(kind: str, transports: Iterable[Any]) -> None:
    for transport in transports:
        if kind.endswith("-tcp"):
            transport.abort()
        else:
            transport.underlying_transport.abort()


async def measure(spec: str, count: int, trace: bool, env: dict[str, str]) -> dict[str, Any]:
    kind, _ = parse_spec(spec)
    child = Child(spec, trace, env)
    transports: list[Any] = []
    try:
        warm = await open_connections(kind, child.port, WARMUP)  # code paths and first-use objects, then gone
        close_all(kind, warm)
        while child.ask("count"):
            await asyncio.sleep(0.1)
        await asyncio.sleep(SETTLE_S)
        child.ask("mark")
        started = time.perf_counter()
        transports = await open_connections(kind, child.port, count)
        connect_s = time.perf_counter() - started
        deadline = time.monotonic() + 60
        while child.ask("count") < count and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(SETTLE_S)
        result: dict[str, Any] = child.ask("report")
        result.update(spec=spec, asked=count, connect_s=connect_s, traced=trace)
        return result
    finally:
        child.stop()
        close_all(kind, transports)
        await asyncio.sleep(0.5)


# --------------------------------------------------------------------------- report


def kib(value: float) -> str:
    return f"{value / 1024:.2f}"


def print_table(results: list[dict[str, Any]]) -> None:
    print("\n| server | connections | RSS per connection (KiB) | after malloc_trim (KiB) | CPU per connect (µs) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in results:
        if not r.get("traced"):
            print(
                f"| `{r['spec']}` | {r['connections']:,} | {kib(r['rss_per_conn'])} | {kib(r['trimmed_per_conn'])} "
                f"| {r['cpu_us_per_conn']:.0f} |"
            )


def print_breakdown(r: dict[str, Any], rss: dict[str, Any] | None) -> None:
    n = r["connections"]
    print(f"\n### `{r['spec']}`: breakdown over {n:,} connections (tracemalloc on)\n")
    traced = r["traced_per_conn"]
    if rss is not None:  # the run without tracemalloc, which inflates RSS
        untraced = rss["rss_per_conn"]
        print(f"RSS {kib(untraced)} KiB per connection (without tracemalloc), traced {kib(traced)} KiB: ", end="")
        print(f"{kib(untraced - traced)} KiB invisible to tracemalloc\n")
    else:
        print(f"traced {kib(traced)} KiB per connection\n")
    print("| allocation size (B) | per connection | bytes per connection |")
    print("| ---: | ---: | ---: |")
    for b in r["blocks"]:
        print(f"| {b['size']} | {b['per_conn']:.2f} | {b['bytes_per_conn']:.0f} |")
    print("\n| allocation site (first frame; C called from the loop: runners.py) | bytes per connection |")
    print("| --- | ---: |")
    for site in r["sites"]:
        print(f"| `{site['site']}` | {site['bytes_per_conn']:.0f} |")
    print("\n| new objects by type | per connection | bytes per connection |")
    print("| --- | ---: | ---: |")
    for t in r["by_type"]:
        print(f"| `{t['type']}` | {t['per_conn']:.2f} | {t['bytes_per_conn']:.0f} |")
    print("\n| one connection's objects: root | type | count | bytes (sys.getsizeof) |")
    print("| --- | --- | ---: | ---: |")
    totals: Counter[str] = Counter()
    for o in r["objects"]:
        totals[o["root"]] += o["bytes"]
        print(f"| {o['root']} | `{o['type']}` | {o['count']} | {o['bytes']} |")
    print("\n| root | bytes |\n| --- | ---: |")
    for root, size in totals.items():
        print(f"| {root} | {size} |")
    print(f"| **total** | **{sum(totals.values())}** |")


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    env = dict(pair.split("=", 1) for pair in args.env)
    results: list[dict[str, Any]] = []
    for count in args.connections:
        for spec in args.servers:
            result = await measure(spec, count, False, env)
            results.append(result)
            print(
                f"{spec} x {result['connections']:,}: {kib(result['rss_per_conn'])} KiB per connection "
                f"({kib(result['trimmed_per_conn'])} trimmed)",
                file=sys.stderr,
            )
    if args.breakdown:
        for spec in args.servers:
            results.append(await measure(spec, args.connections[0], True, env))
    return results


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["serve"]:
        serve(args_in[1], "--trace" in args_in)
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", default="5000,19000", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--servers", nargs="+", default=list(DEFAULT_SERVERS), help="server specs (see above)")
    parser.add_argument("--breakdown", action="store_true", help="also a tracemalloc run per server")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server processes")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(args_in)
    raise_nofile()
    import uvloop

    results = uvloop.run(run(args))
    print_table(results)
    plain = {(r["spec"], r["asked"]): r for r in results if not r.get("traced")}
    for r in results:
        if r.get("traced"):
            print_breakdown(r, plain.get((r["spec"], r["asked"])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
