"""A real ``redis-server`` for tests: started on a free port, stopped (or killed) by PID, restartable."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from types import TracebackType

__all__ = ["RedisServer", "free_port", "redis_available", "running_redis"]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def redis_available() -> bool:
    """True when a ``redis-server`` executable is installed."""
    return os.access(REDIS_SERVER, os.X_OK)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host``."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1 without persistence.

    ``start()`` returns once it answers PING; ``kill()`` sends SIGKILL, ``stop()`` SIGTERM;
    ``start()`` again reuses the same port.
    """

    host = "127.0.0.1"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="webshocket-redis-")

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 5.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        if self.process is not None and self.process.poll() is None:
            return self
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no"]
        args += ["--dir", self._dir, "--daemonize", "no", "--loglevel", "warning", "--logfile", ""]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode} (port {self.port} taken?)")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer PING within {timeout} s")
            time.sleep(0.01)
        return self

    def ping(self) -> bool:
        """True when the server answers PING."""
        try:
            return self.command("PING") == b"+PONG"
        except OSError:
            return False

    def command(self, *args: str | bytes, timeout: float = 2.0) -> bytes:
        """Send one command; return the raw first line of the reply (enough for PING)."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            parts = [a.encode() if isinstance(a, str) else a for a in args]
            sock.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts))
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data.split(b"\r\n", 1)[0]

    def kill(self) -> None:
        """SIGKILL the server and reap it."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM the server (SIGKILL after 5 s) and reap it."""
        self._signal(signal.SIGTERM)

    def close(self) -> None:
        """Kill the server and remove its directory."""
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _signal(self, sig: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        try:
            process.wait(5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A started RedisServer, killed afterwards."""
    server = RedisServer()
    try:
        yield server.start()
    finally:
        server.close()


class NodeProcess:
    """A server node (``tests/backplane_node.py``) in its own process; ``port`` is set once it is READY."""

    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backplane_node.py")

    def __init__(self, *args: str) -> None:
        self.args = list(args)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()

    def start(self, timeout: float = 10.0) -> NodeProcess:
        """Start the node; return once it printed ``READY <port>``."""
        import select
        import sys

        self.process = subprocess.Popen(
            [sys.executable, self.script, *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        assert self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if readable else b""
        if not line.startswith(b"READY "):
            self.stop()
            raise RuntimeError(f"node did not start: {line!r} {self.stderr()}")
        self.port = int(line.split()[1])
        return self

    @property
    def uri(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 5.0) -> int | None:
        """Signal the node, wait for it (SIGKILL after ``timeout``); return its exit status."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = None
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
        return code
