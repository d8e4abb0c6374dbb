"""Several worker processes serving one port (``SO_REUSEPORT``), each with its own event loop.

.. code-block:: python

    from webshocket.workers import serve_workers

    def make_server() -> WebSocketServer:
        return WebSocketServer("0.0.0.0", 8000, clientHandler=ChatHandler, backplane="redis://localhost")

    serve_workers(make_server, 4, host="0.0.0.0", port=8000)  # blocks until SIGINT/SIGTERM

The parent binds the port first (with ``SO_REUSEPORT``, without listening: it reserves the
port, and with ``port=0`` picks it), then forks the workers. Each worker calls
``make_server()``, starts it with ``reuse_port=True`` on that port under uvloop (when
installed) and serves until SIGINT or SIGTERM; the kernel spreads new connections over
the workers. The parent forwards SIGINT/SIGTERM to the workers (a second signal kills
them), restarts a worker that dies while the others serve, and reaps them all.

Each worker has its own clients, channels and handler state: configure a ``backplane``
(Redis) so that publishes and broadcasts reach the clients of every worker.
Linux (and other systems with ``SO_REUSEPORT`` and ``fork``) only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._loop import run
from .exceptions import WebSocketError

if TYPE_CHECKING:
    from .server import WebSocketServer

__all__ = ["WORKER_ENV", "WorkerError", "current_worker", "serve_workers"]

_logger = logging.getLogger("webshocket.workers")
WORKER_ENV = "WEBSHOCKET_WORKER"
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_PR_SET_PDEATHSIG = 1


class WorkerError(WebSocketError):
    """A worker process could not start."""


class _StartFailed(Exception):
    """A worker could not start and told the parent why (which reports it: no traceback here)."""


def current_worker() -> int | None:
    """Index (0-based) of the worker process this code runs in; None outside :func:`serve_workers`."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value is not None and value.isdigit() else None


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``(host, port)`` with ``SO_REUSEPORT``, not listening (``port=0``: a free port)."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def serve_workers(
    make_server: Callable[[], WebSocketServer[Any]],
    workers: int,
    *,
    host: str,
    port: int,
    on_ready: Callable[[int], None] | None = None,
    start_timeout: float = 30.0,
    shutdown_timeout: float = 10.0,
    restart: bool = True,
    **start_kwargs: Any,
) -> int:
    """Run ``workers`` processes serving ``host:port`` until SIGINT/SIGTERM; return an exit status.

    Args:
        make_server: called in each worker (after the fork) to make its server; the
            server's ``host`` and ``port`` are replaced by ``host`` and ``port``.
        workers: number of worker processes (at least 1).
        host: address to bind.
        port: port to bind; 0 picks a free one (``on_ready`` receives it).
        on_ready: called in the parent with the port once every worker accepts connections.
        start_timeout: seconds every worker has to start.
        shutdown_timeout: seconds a worker gives running RPCs at shutdown (``server.close``).
        restart: start again a worker that exits while the others keep serving.
        **start_kwargs: passed to ``server.start()`` (then to asyncio's ``create_server``).

    Returns:
        0 when every worker shut down cleanly, else 1.

    Raises:
        WorkerError: a worker failed to start (its error message is included); the others are stopped.
        OSError: ``host:port`` cannot be bound.
        RuntimeError: called inside a running event loop.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("serve_workers() blocks until shutdown: call it outside of a running event loop")
    reserved = reserve_port(host, port)
    port = reserved.getsockname()[1]
    read_fd, write_fd = os.pipe()
    children: dict[int, int] = {}  # pid -> worker index
    state = {"stopping": False, "signals": 0}
    parent = os.getpid()

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            reserved.close()
            os.close(read_fd)
            _worker_main(make_server, index, host, port, write_fd, parent, shutdown_timeout, start_kwargs)
        children[pid] = index

    def on_signal(signum: int, frame: FrameType | None) -> None:
        state["stopping"] = True
        state["signals"] += 1
        forward = signal.SIGTERM if state["signals"] == 1 else signal.SIGKILL
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, forward)

    previous = {}
    if _is_main_thread():
        for sig in _SIGNALS:
            previous[sig] = signal.signal(sig, on_signal)
    try:
        for index in range(workers):
            spawn(index)
        _wait_ready(read_fd, children, workers, start_timeout, state)
        if state["stopping"]:
            return _reap(children, state, spawn, restart=False)
        _logger.info("%d workers serving %s:%d", workers, host, port)
        if on_ready is not None:
            on_ready(port)
        return _reap(children, state, spawn, restart=restart)
    except BaseException:
        _stop_all(children)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reserved.close()
        os.close(read_fd)
        os.close(write_fd)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _wait_ready(read_fd: int, children: dict[int, int], workers: int, timeout: float, state: dict[str, Any]) -> None:
    """Read one line per worker from the pipe: ``R index`` (serving) or ``F index message``."""
    deadline = time.monotonic() + timeout
    ready: set[int] = set()
    pending = [b""]

    def read_lines(wait: float) -> None:
        readable, _, _ = select.select([read_fd], [], [], wait)
        if not readable:
            return
        *lines, pending[0] = (pending[0] + os.read(read_fd, 65536)).split(b"\n")
        for line in lines:
            kind, _, rest = line.decode("utf-8", "replace").partition(" ")
            index, _, message = rest.partition(" ")
            if kind == "F":
                raise WorkerError(f"worker {index} failed to start: {message}")
            ready.add(int(index))

    while len(ready) < workers and not state["stopping"]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WorkerError(f"workers did not start within {timeout} s ({len(ready)} of {workers} ready)")
        read_lines(min(remaining, 0.1))
        for pid, index in list(children.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                del children[pid]
                read_lines(0)  # its last words, if any
                code = os.waitstatus_to_exitcode(status)
                raise WorkerError(f"worker {index} exited with status {code} while starting")


def _reap(children: dict[int, int], state: dict[str, Any], spawn: Callable[[int], None], *, restart: bool) -> int:
    """Wait for the workers to exit (restarting those that die while serving); return the exit status."""
    status_ok = True
    started: dict[int, float] = dict.fromkeys(children.values(), time.monotonic())
    while children:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        index = children.pop(pid, None)
        if index is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if state["stopping"]:
            status_ok = status_ok and code == 0
            continue
        _logger.error("worker %d (pid %d) exited with status %d while serving", index, pid, code)
        if not restart:
            status_ok = False
            continue
        lived = time.monotonic() - started.get(index, 0.0)
        if lived < 1.0:
            time.sleep(1.0 - lived)  # no hot restart loop
        if not state["stopping"]:
            started[index] = time.monotonic()
            spawn(index)
    return 0 if status_ok else 1


def _stop_all(children: dict[int, int], timeout: float = 10.0) -> None:
    """SIGTERM every worker, SIGKILL those still there after ``timeout`` seconds, reap them."""
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while children:
        for pid in list(children):
            with contextlib.suppress(ChildProcessError):
                done, _status = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
            del children[pid]
        if children:
            if time.monotonic() > deadline:
                for pid in children:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.02)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGTERM this worker when the parent dies (no orphans)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(
    make_server: Callable[[], WebSocketServer[Any]],
    index: int,
    host: str,
    port: int,
    ready_fd: int,
    parent: int,
    shutdown_timeout: float,
    start_kwargs: dict[str, Any],
) -> None:
    """Body of a forked worker: serve until SIGINT/SIGTERM, then exit the process."""
    code = 1
    try:
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        os.environ[WORKER_ENV] = str(index)
        _die_with_parent(parent)
        run(_serve(make_server, index, host, port, ready_fd, shutdown_timeout, start_kwargs))
        code = 0
    except BaseException as exc:  # reported to the parent through the pipe when starting
        if not isinstance(exc, (KeyboardInterrupt, SystemExit, _StartFailed)):
            _logger.exception("worker %d failed", index)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


async def _serve(
    make_server: Callable[[], WebSocketServer[Any]],
    index: int,
    host: str,
    port: int,
    ready_fd: int,
    shutdown_timeout: float,
    start_kwargs: dict[str, Any],
) -> None:
    started = False

    def ready(_port: int) -> None:
        nonlocal started
        started = True
        os.write(ready_fd, f"R {index}\n".encode())

    try:
        server = make_server()
        server.host, server.port = host, port
        await server._run_until_signal(ready, shutdown_timeout, {**start_kwargs, "reuse_port": True})
    except BaseException as exc:
        if not started:  # the parent is waiting for this worker's ready line
            message = f"{type(exc).__name__}: {exc}".replace("\n", " ")
            os.write(ready_fd, f"F {index} {message}\n".encode())
            if isinstance(exc, Exception):
                raise _StartFailed(message) from exc
        raise
