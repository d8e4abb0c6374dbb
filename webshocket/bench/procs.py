"""Child processes of the suite: servers and load generators, pinned, always reaped.

Every process is started in its own session (so its whole process group can be signalled)
and recorded in :data:`LIVE` until it is reaped; :func:`kill_all` (called by the runner
in a ``finally``, and at exit) ends whatever is left. Servers also exit by themselves when
their stdin closes, so they do not outlive a runner killed with SIGKILL; load generators
carry their own deadline (``SIGALRM``). The scale-out kinds share one throwaway
``redis-server`` (:func:`start_redis`), started and reaped the same way.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

#: The directory holding the ``webshocket`` package: the source tree in a clone (or an editable
#: install), site-packages in an installed wheel. Child processes start there (``python -m
#: webshocket.bench.loadgen`` then imports the same ``webshocket`` as this process).
REPO = Path(__file__).resolve().parents[2]


def source_tree(root: Path = REPO) -> Path | None:
    """``root`` when it is a clone of the repository (``benchmarks/e2e`` and ``pyproject.toml`` beside the
    package), else None: an installed package, where the kinds that need the source tree are not available."""
    if (root / "pyproject.toml").is_file() and (root / "benchmarks" / "e2e").is_dir():
        return root
    return None


#: The clone this package runs from, or None when it is installed (a wheel).
SOURCE_TREE = source_tree()

#: processes started and not yet reaped
LIVE: set[subprocess.Popen[bytes]] = set()


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now (bound to port 0, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin_prefix(cpu: str | None) -> list[str]:
    """``taskset -c CPU`` (nothing when ``cpu`` is None)."""
    return [] if cpu is None else ["taskset", "-c", cpu]


def pinning_available() -> str | None:
    """None when the suite can pin to two cores, else why not."""
    if shutil.which("taskset") is None:
        return "taskset not found"
    if len(os.sched_getaffinity(0)) < 2:
        return "fewer than 2 usable cores"
    return None


def spawn(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session with piped stdin/stdout and stderr to a temporary file."""
    log = tempfile.TemporaryFile()  # closed in reap()
    process = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
        cwd=str(cwd or REPO),
        start_new_session=True,
    )
    process.log = log  # type: ignore[attr-defined]
    LIVE.add(process)
    return process


def stderr_tail(process: subprocess.Popen[bytes], limit: int = 2000) -> str:
    """The last ``limit`` characters ``process`` wrote to stderr."""
    log: IO[bytes] | None = getattr(process, "log", None)
    if log is None or log.closed:
        return ""
    log.flush()
    log.seek(0, os.SEEK_END)
    size = log.tell()
    log.seek(max(0, size - limit))
    return log.read().decode(errors="replace")


def reap(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """End ``process`` and its group: stdin closed, SIGTERM, then SIGKILL after ``grace`` s."""
    if process.stdin is not None and not process.stdin.closed:
        with contextlib.suppress(OSError):
            process.stdin.close()
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the leader, and anything it left in its group
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)
    if process.stdout is not None:
        process.stdout.close()
    log: IO[bytes] | None = getattr(process, "log", None)
    if log is not None:
        log.close()
    LIVE.discard(process)


def kill_all() -> None:
    """Reap every process still alive (quickly: no grace period)."""
    for process in list(LIVE):
        reap(process, grace=0.5)


atexit.register(kill_all)


@dataclass
class Server:
    """A running server process and what it said when ready."""

    process: subprocess.Popen[bytes]
    port: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid


def start_server(argv: list[str], port: int, *, env: dict[str, str], cpu: str | None, timeout: float = 60.0) -> Server:
    """Start ``argv PORT`` pinned to ``cpu``; returns once it prints ``READY PORT {info}``.

    ``taskset`` execs the server, so the pid is the server's own. Raises RuntimeError
    (with the server's stderr) when it exits or stays silent for ``timeout`` seconds.
    """
    process = spawn([*pin_prefix(cpu), *argv, str(port)], env=env)
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        readable, _, _ = select.select([process.stdout], [], [], max(0.0, left))
        if not readable:
            break
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            break
        line += chunk
    if not line.startswith(b"READY "):
        tail = stderr_tail(process)
        reap(process, grace=1.0)
        raise RuntimeError(f"server {argv[-1]} did not start: {line[:200]!r}\n{tail}")
    _, reported, info = line.decode().rstrip("\n").split(" ", 2)
    if int(reported) != port:
        reap(process, grace=1.0)
        raise RuntimeError(f"server reports port {reported}, expected {port}")
    return Server(process, port, json.loads(info))


@dataclass
class Redis:
    """The throwaway ``redis-server`` of the scale-out kinds."""

    process: subprocess.Popen[bytes]
    port: int
    directory: str
    version: str = "?"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        """Kill it (by pid, see :func:`reap`) and remove its directory."""
        reap(self.process, grace=0.5)
        shutil.rmtree(self.directory, ignore_errors=True)


def redis_missing() -> str | None:
    """None when the scale-out kinds can run (``redis-server`` and the redis client), else why not."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis client is not installed (pip install 'webshocket[redis]')"
    return None


def redis_ping(port: int) -> bool:
    """True when a Redis server on 127.0.0.1:``port`` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(*, cpu: str | None, timeout: float = 10.0) -> Redis:
    """A ``redis-server`` on a free 127.0.0.1 port, without persistence, pinned to ``cpu``.

    Returns once it answers PING; raises RuntimeError (with its log) if it does not.
    Killed at the end with everything else the suite started (:func:`kill_all`).
    """
    directory = tempfile.mkdtemp(prefix="webshocket-bench-redis-")
    version = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10).stdout
        version = next((w[2:] for w in out.split() if w.startswith("v=")), "?")
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", directory, "--daemonize", "no", "--loglevel", "warning", "--logfile", f"{directory}/redis.log"]
    process = spawn([*pin_prefix(cpu), *argv])
    deadline = time.monotonic() + timeout
    while not redis_ping(port):
        if process.poll() is not None or time.monotonic() > deadline:
            log = Path(directory, "redis.log")
            tail = log.read_text(errors="replace")[-1000:] if log.exists() else ""
            reap(process, grace=0.5)
            shutil.rmtree(directory, ignore_errors=True)
            raise RuntimeError(f"redis-server on port {port} did not answer PING: {tail.strip()}")
        time.sleep(0.02)
    return Redis(process, port, directory, version)


def run_json(argv: list[str], *, cpu: str | None, timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``argv`` pinned to ``cpu``; its last stdout line, parsed as JSON.

    A crash, a timeout (the process group is killed) or output that is not JSON gives
    ``{"ok": False, "errors": {...}}`` instead of raising.
    """
    process = spawn([*pin_prefix(cpu), *argv], env=env)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tail = stderr_tail(process)
        reap(process, grace=0.5)
        return {"ok": False, "errors": {f"load generator timed out after {timeout:.0f} s": 1}, "stderr": tail}
    try:
        lines = out.decode().strip().splitlines()
        result: dict[str, Any] = json.loads(lines[-1])
    except (ValueError, IndexError):
        result = {"ok": False, "errors": {f"load generator exited {process.returncode} without a result": 1}}
        result["stderr"] = stderr_tail(process)
    reap(process, grace=0.5)
    return result
