"""The command line, started as a real subprocess and talked to over a socket."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from webshocket import WebSocketClient

ROOT = Path(__file__).resolve().parent.parent


async def start_cli(*args: str) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "webshocket", "serve", *args, "--port", "0",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
    match = re.search(r"serving \S+ on wss?://[\d.]+:(\d+)", line)
    assert match, f"unexpected first line: {line!r}"
    return proc, int(match.group(1))


async def test_serve_then_ctrl_c() -> None:
    proc, port = await start_cli("examples.demo:DemoHandler", "--log-level", "warning")
    try:
        async with WebSocketClient(f"ws://127.0.0.1:{port}") as client:
            assert (await client.send_rpc("add", 2, 3)).data == 5
            proc.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, err.decode()
        assert b"webshocket: stopped" in out
        assert b"Traceback" not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_help_and_version() -> None:
    top = subprocess.run([sys.executable, "-m", "webshocket", "--help"], capture_output=True, text=True, check=True)
    assert "serve" in top.stdout and "bench" in top.stdout
    serve = subprocess.run(
        [sys.executable, "-m", "webshocket", "serve", "--help"], capture_output=True, text=True, check=True
    )
    for option in ("--host", "--port", "--workers", "--backplane", "--certfile", "--keyfile", "--log-level"):
        assert option in serve.stdout
    version = subprocess.run([sys.executable, "-m", "webshocket", "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("webshocket ")


def test_bench_runs_the_benchmark_suite(tmp_path: Path) -> None:
    """``webshocket bench`` hands its arguments to the end-to-end suite (benchmarks/e2e)."""
    bench = [sys.executable, "-m", "webshocket", "bench"]
    usage = subprocess.run([*bench, "--help"], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "--quick" in usage.stdout and "--servers" in usage.stdout
    bad = subprocess.run([*bench, "--servers", "nginx"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "nginx" in bad.stderr


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        ("nocolon", "module:HandlerClass"),
        ("no_such_module:X", "cannot import module"),
        ("examples.demo:Nope", "has no attribute"),
        ("examples.demo:main", "not a webshocket.WebSocketHandler subclass"),
    ],
)
def test_bad_handler_is_a_clear_error(handler: str, message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "webshocket", "serve", handler], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_console_script_is_installed() -> None:
    scripts = Path(sys.executable).parent
    assert (scripts / "webshocket").exists()


async def test_serve_with_two_workers_then_sigterm() -> None:
    proc, port = await start_cli("examples.demo:DemoHandler", "--workers", "2", "--log-level", "warning")
    try:
        clients = [WebSocketClient(f"ws://127.0.0.1:{port}") for _ in range(6)]
        for client in clients:
            await client.connect()
        assert [(await c.send_rpc("add", 1, i)).data for i, c in enumerate(clients)] == [1 + i for i in range(6)]
        for client in clients:
            await client.close()
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, err.decode()
        assert b"webshocket: stopped" in out and b"Traceback" not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
