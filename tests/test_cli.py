"""The command line, started as a real subprocess and talked to over sockets (WebSocket and HTTP)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import trustme
from picows import WSError
from prometheus_client.parser import text_string_to_metric_families
from redis_server import free_port

from webshocket import WebSocketClient

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "webshocket"]


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a CLI subprocess: ours without WEBSHOCKET_* options (the mode flags stay)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBSHOCKET_") or k.endswith("EXTENSIONS")}
    env.update(extra or {})
    return env


async def start_cli(
    *args: str, env: Mapping[str, str] | None = None, port: str = "0"
) -> tuple[asyncio.subprocess.Process, str]:
    """Start ``webshocket serve ARGS --port 0``; return the process and its first stdout line."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, "serve", *args, "--port", port,
        cwd=ROOT, env=cli_env(env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
    if not line:
        _, err = await proc.communicate()
        raise AssertionError(f"the CLI did not start: {err.decode()}")
    return proc, line


def ws_port(line: str) -> int:
    match = re.search(r"serving \S+ on wss?://[\d.]+:(\d+)", line)
    assert match, f"unexpected first line: {line!r}"
    return int(match.group(1))


async def stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> tuple[str, str]:
    """Signal the CLI, wait for it; assert a clean exit; return its stdout and stderr."""
    proc.send_signal(sig)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert b"webshocket: stopped" in out and b"Traceback" not in err
    return out.decode(), err.decode()


async def kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


def run_cli(*args: str, cwd: Path = ROOT, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, env=cli_env(env), capture_output=True, text=True, timeout=60)


def assert_one_line(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    """The command failed with exactly ``expected`` as its only line on stderr."""
    assert proc.returncode != 0, proc.stdout
    assert proc.stderr == f"webshocket: error: {expected}\n", proc.stderr


def http_get(url: str | urllib.request.Request) -> tuple[int, str, str]:
    """Status, content type and body of GET ``url`` (or another request; error statuses included)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def scrape(url: str) -> dict[str, float]:
    """``/metrics`` parsed by prometheus_client: sample name -> value."""
    status, content_type, body = http_get(url)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    return {s.name: s.value for family in text_string_to_metric_families(body) for s in family.samples}


# ---------------------------------------------------------------------------- serving


async def test_serve_then_ctrl_c() -> None:
    proc, line = await start_cli("examples.demo:DemoHandler", "--log-level", "warning")
    try:
        async with WebSocketClient(f"ws://127.0.0.1:{ws_port(line)}") as client:
            assert (await client.send_rpc("add", 2, 3)).data == 5
            await stop(proc, signal.SIGINT)
    finally:
        await kill(proc)


def test_help_and_version() -> None:
    top = run_cli("--help")
    assert top.returncode == 0 and "serve" in top.stdout and "bench" in top.stdout
    serve = run_cli("serve", "--help")
    assert serve.returncode == 0
    for option in ("--host", "--port", "--workers", "--backplane", "--certfile", "--keyfile", "--log-level"):
        assert option in serve.stdout
    for option in ("--log-config", "--metrics-port", "--metrics-host"):
        assert option in serve.stdout
    assert "[env: WEBSHOCKET_MAX_CONNECTION]" in " ".join(serve.stdout.split())
    assert "The command line wins over the environment" in serve.stdout
    assert run_cli("--version").stdout.startswith("webshocket ")


def test_bench_runs_the_benchmark_suite(tmp_path: Path) -> None:
    """``webshocket bench`` hands its arguments to the end-to-end suite (benchmarks/e2e)."""
    usage = run_cli("bench", "--help", cwd=tmp_path)
    assert usage.returncode == 0 and "--quick" in usage.stdout and "--servers" in usage.stdout
    bad = run_cli("bench", "--servers", "nginx", cwd=tmp_path)
    assert bad.returncode == 2 and "nginx" in bad.stderr


def test_console_script_is_installed() -> None:
    scripts = Path(sys.executable).parent
    assert (scripts / "webshocket").exists()


async def test_serve_with_two_workers_then_sigterm() -> None:
    proc, line = await start_cli("examples.demo:DemoHandler", "--workers", "2", "--log-level", "warning")
    try:
        clients = [WebSocketClient(f"ws://127.0.0.1:{ws_port(line)}") for _ in range(6)]
        for client in clients:
            await client.connect()
        assert [(await c.send_rpc("add", 1, i)).data for i, c in enumerate(clients)] == [1 + i for i in range(6)]
        for client in clients:
            await client.close()
        await stop(proc)
    finally:
        await kill(proc)


# ---------------------------------------------------------------------------- mistakes: one line each


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cert.pem, key.pem, other-key.pem (another certificate's key) and both.pem (key and chain)."""
    folder = tmp_path_factory.mktemp("pem")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "both.pem"))
    ca.issue_cert("other").private_key_pem.write_to_path(str(folder / "other-key.pem"))
    (folder / "garbage.pem").write_text("not a certificate\n")
    return folder


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 where nothing listens."""
    yield free_port()


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


DEMO = "examples.demo:DemoHandler"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "99999"], "--port 99999: out of range; use a port from 0 to 65535 (0: any free port)"),
        (["--port", "http"], "--port http: not a port number; use 0 to 65535 (0: any free port)"),
        (["--workers", "0"], "--workers 0: too small; give 1 or more processes"),
        (["--max-connection", "lots"], "--max-connection lots: not a whole number; give 1 or more clients"),
        (["--handshake-timeout", "0"], "--handshake-timeout 0: out of range; give a number of seconds above 0"),
        (["--log-level", "loud"], "--log-level loud: not one of critical, error, warning, info, debug"),
        (
            ["--backplane", "localhost:6379"],
            "--backplane localhost:6379: not a redis:// URL; write it as redis://localhost:6379/0 "
            "(rediss:// for TLS, unix:///path/redis.sock for a socket)",
        ),
        (
            ["--certfile", "missing.pem"],
            "--certfile missing.pem: no such file; give the path of a PEM certificate chain",
        ),
        (["--bogus"], "unrecognized arguments: --bogus (see 'webshocket serve --help')"),
        (
            ["--metrics-port", "9100", "--port", "9100"],
            "--metrics-port 9100 is also --port; choose another port for the metrics",
        ),
    ],
)
def test_bad_option_is_one_line(args: list[str], expected: str) -> None:
    assert_one_line(run_cli("serve", DEMO, *args), expected)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            ["--certfile", "garbage.pem"],
            "--certfile {d}/garbage.pem: no PEM certificate in it (-----BEGIN CERTIFICATE-----); "
            "give the server's certificate chain in PEM format",
        ),
        (
            ["--certfile", "cert.pem"],
            "--certfile {d}/cert.pem: no PEM private key in it (-----BEGIN PRIVATE KEY-----); "
            "give the certificate's private key with --keyfile",
        ),
        (
            ["--certfile", "cert.pem", "--keyfile", "garbage.pem"],
            "--keyfile {d}/garbage.pem: no PEM private key in it (-----BEGIN PRIVATE KEY-----); "
            "give the certificate's private key with --keyfile",
        ),
        (
            ["--certfile", "cert.pem", "--keyfile", "other-key.pem"],
            "--keyfile {d}/other-key.pem does not match the certificate in --certfile {d}/cert.pem; "
            "give that certificate's private key",
        ),
        (["--keyfile", "key.pem"], "--keyfile {d}/key.pem needs --certfile: give the certificate chain (PEM) too"),
    ],
)
def test_bad_pem_is_one_line(pem_files: Path, files: list[str], expected: str) -> None:
    args = [f"{pem_files}/{value}" if value.endswith(".pem") else value for value in files]
    assert_one_line(run_cli("serve", DEMO, *args), expected.format(d=pem_files))


async def test_tls_from_one_pem_file(pem_files: Path) -> None:
    proc, line = await start_cli(DEMO, "--certfile", str(pem_files / "both.pem"), "--log-level", "warning")
    try:
        assert line.startswith(f"webshocket: serving {DEMO} on wss://127.0.0.1:")
        await stop(proc)
    finally:
        await kill(proc)


def test_redis_down_at_startup_is_one_line(closed_port: int) -> None:
    url = f"redis://127.0.0.1:{closed_port}/0"
    expected = f"--backplane {url}: cannot reach Redis (Connection refused); start Redis there or fix the URL"
    assert_one_line(run_cli("serve", DEMO, "--backplane", url), expected)
    assert_one_line(run_cli("serve", DEMO, "--backplane", url, "--workers", "2"), expected)


def test_port_in_use_is_one_line(busy_port: int) -> None:
    expected = (
        f"--port {busy_port}: address 127.0.0.1:{busy_port} already in use; "
        "stop what listens there or choose another --port"
    )
    assert_one_line(run_cli("serve", DEMO, "--port", str(busy_port)), expected)
    assert_one_line(run_cli("serve", DEMO, "--port", str(busy_port), "--workers", "2"), expected)
    metrics = (
        f"--metrics-port {busy_port}: address 127.0.0.1:{busy_port} already in use; "
        "stop what listens there or choose another --metrics-port"
    )
    assert_one_line(run_cli("serve", DEMO, "--port", "0", "--metrics-port", str(busy_port)), metrics)


def test_module_not_importable_from_here_is_one_line(tmp_path: Path) -> None:
    expected = (
        f"cannot import module 'examples.demo' (no module named 'examples') from the current directory {tmp_path} "
        "or PYTHONPATH: run webshocket where examples/demo.py can be imported, or add its directory to PYTHONPATH "
        "(HANDLER is module:Class)"
    )
    assert_one_line(run_cli("serve", DEMO, cwd=tmp_path), expected)
    # ... and PYTHONPATH is a fix: now the module is found (and the class is not)
    assert_one_line(
        run_cli("serve", "examples.demo:Nope", cwd=tmp_path, env={"PYTHONPATH": str(ROOT)}),
        "module 'examples.demo' has no attribute 'Nope'; its handler classes: DemoHandler (HANDLER is module:Class)",
    )


def test_broken_modules_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "needsdep.py").write_text("import not_installed_anywhere\n")
    (tmp_path / "raises.py").write_text("x = 1\nraise RuntimeError('no config')\n")
    (tmp_path / "typo.py").write_text("def f(:\n")
    assert_one_line(
        run_cli("serve", "needsdep:H", cwd=tmp_path),
        f"importing module 'needsdep' failed: no module named 'not_installed_anywhere' (imported at "
        f"{tmp_path}/needsdep.py:1); install it in this environment ({sys.executable})",
    )
    assert_one_line(
        run_cli("serve", "raises:H", cwd=tmp_path),
        f"importing module 'raises' raised RuntimeError: no config (at {tmp_path}/raises.py:2); "
        "fix the module (python -c 'import raises' shows the traceback)",
    )
    assert_one_line(
        run_cli("serve", "typo:H", cwd=tmp_path),
        f"module 'typo' has a syntax error at {tmp_path}/typo.py:1: invalid syntax; fix the module",
    )


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        ("nocolon", "HANDLER nocolon: write it as module:Class, e.g. myapp:ChatHandler (ChatHandler in myapp.py)"),
        (
            "examples.demo:Nope",
            "module 'examples.demo' has no attribute 'Nope'; its handler classes: DemoHandler "
            "(HANDLER is module:Class)",
        ),
        (
            "examples.demo:main",
            "HANDLER examples.demo:main is a function, not a webshocket.WebSocketHandler subclass; "
            "name a class deriving from webshocket.WebSocketHandler",
        ),
    ],
)
def test_bad_handler_is_one_line(handler: str, expected: str) -> None:
    assert_one_line(run_cli("serve", handler), expected)


def test_missing_handler_is_one_line() -> None:
    assert_one_line(
        run_cli("serve"),
        "HANDLER missing: give the handler class as module:Class (webshocket serve myapp:ChatHandler) "
        "or set WEBSHOCKET_HANDLER",
    )


# ---------------------------------------------------------------------------- environment variables


def test_environment_variables_are_checked_like_options() -> None:
    env = {"WEBSHOCKET_PORT": "99999"}
    assert_one_line(
        run_cli("serve", DEMO, env=env),
        "WEBSHOCKET_PORT=99999: out of range; use a port from 0 to 65535 (0: any free port) (or unset WEBSHOCKET_PORT)",
    )
    env = {"WEBSHOCKET_BACKPLANE": "localhost"}
    assert_one_line(
        run_cli("serve", DEMO, env=env),
        "WEBSHOCKET_BACKPLANE=localhost: not a redis:// URL; write it as redis://localhost:6379/0 "
        "(rediss:// for TLS, unix:///path/redis.sock for a socket) (or unset WEBSHOCKET_BACKPLANE)",
    )


async def test_options_from_environment_command_line_wins(busy_port: int) -> None:
    """WEBSHOCKET_HANDLER, _MAX_CONNECTION and _LOG_LEVEL apply; --port 0 beats a busy WEBSHOCKET_PORT."""
    env = {
        "WEBSHOCKET_HANDLER": DEMO,
        "WEBSHOCKET_MAX_CONNECTION": "1",
        "WEBSHOCKET_LOG_LEVEL": "warning",
        "WEBSHOCKET_PORT": str(busy_port),
    }
    proc, line = await start_cli(env=env)
    try:
        port = ws_port(line)
        assert port != busy_port
        async with WebSocketClient(f"ws://127.0.0.1:{port}") as first:
            assert (await first.send_rpc("add", 1, 1)).data == 2
            with pytest.raises(WSError):  # refused at the upgrade: 503, the server is full
                await WebSocketClient(f"ws://127.0.0.1:{port}").connect()
        _, err = await stop(proc)
        assert "INFO" not in err  # WEBSHOCKET_LOG_LEVEL=warning
    finally:
        await kill(proc)


# ---------------------------------------------------------------------------- metrics and health


def metrics_url(line: str) -> str:
    match = re.search(r"metrics on (http://[\d.]+:\d+)/metrics", line)
    assert match, f"no metrics address in {line!r}"
    return match.group(1)


async def test_metrics_and_health_over_http() -> None:
    proc, line = await start_cli(DEMO, "--metrics-port", "0", "--log-level", "warning")
    try:
        base, port = metrics_url(line), ws_port(line)
        async with WebSocketClient(f"ws://127.0.0.1:{port}") as a, WebSocketClient(f"ws://127.0.0.1:{port}") as b:
            await a.send_rpc("add", 1, 2)
            await b.send_rpc("add", 3, 4)
            values = await asyncio.to_thread(scrape, f"{base}/metrics")
            status, content_type, body = await asyncio.to_thread(http_get, f"{base}/health")
        assert values["webshocket_connections"] == 2 and values["webshocket_workers"] == 1
        assert values["webshocket_rpc_calls_total"] >= 2 and values["webshocket_connections_opened_total"] == 2
        assert status == 200 and content_type == "application/json"
        health = json.loads(body)
        assert health["status"] == "serving" and health["connections"] == 2 and health["port"] == port
        missing = await asyncio.to_thread(http_get, f"{base}/nope")
        assert missing[0] == 404
        await stop(proc)
    finally:
        await kill(proc)


async def test_metrics_add_up_across_workers() -> None:
    """Whichever worker answers a scrape reports the sum over both."""
    proc, line = await start_cli(DEMO, "--workers", "2", "--metrics-port", "0", "--log-level", "error")
    try:
        base, port = metrics_url(line), ws_port(line)
        clients = [WebSocketClient(f"ws://127.0.0.1:{port}") for _ in range(6)]
        for client in clients:
            await client.connect()
            await client.send_rpc("add", 1, 1)
        for _ in range(8):
            values = await asyncio.to_thread(scrape, f"{base}/metrics")
            assert values["webshocket_workers"] == 2
            assert values["webshocket_connections"] == 6 and values["webshocket_rpc_calls_total"] == 6
            status, _, body = await asyncio.to_thread(http_get, f"{base}/health")
            health = json.loads(body)
            assert status == 200 and health["workers_up"] == 2 and health["connections"] == 6
        for client in clients:
            await client.close()
        await stop(proc)
    finally:
        await kill(proc)


# ---------------------------------------------------------------------------- logging


async def connect_once(port: int) -> None:
    """Connect, call, close."""
    async with WebSocketClient(f"ws://127.0.0.1:{port}") as client:
        assert (await client.send_rpc("add", 1, 2)).data == 3


async def test_a_connection_is_logged_once_at_debug() -> None:
    for level, expected in (("debug", 1), ("info", 0)):
        proc, line = await start_cli(DEMO, "--log-level", level)
        try:
            await connect_once(ws_port(line))
            _, err = await stop(proc)
        finally:
            await kill(proc)
        per_connection = [text for text in err.splitlines() if "picows" in text or "connection" in text.lower()]
        assert len(per_connection) == expected, err
        if expected:
            assert " DEBUG webshocket.server: New connection from ('127.0.0.1', " in per_connection[0]


async def test_log_config_files(tmp_path: Path) -> None:
    """--log-config: a JSON dictConfig and an .ini fileConfig, as uvicorn takes them."""
    (tmp_path / "log.json").write_text(
        json.dumps(
            {
                "version": 1,
                "formatters": {"f": {"format": "JSONCFG %(levelname)s %(name)s %(message)s"}},
                "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "f", "stream": "ext://sys.stderr"}},
                "root": {"level": "DEBUG", "handlers": ["h"]},
            }
        )
    )
    (tmp_path / "log.ini").write_text(
        "[loggers]\nkeys=root\n[handlers]\nkeys=h\n[formatters]\nkeys=f\n"
        "[logger_root]\nlevel=DEBUG\nhandlers=h\n"
        "[handler_h]\nclass=StreamHandler\nformatter=f\nargs=(sys.stderr,)\n"
        "[formatter_f]\nformat=INICFG %(levelname)s %(name)s %(message)s\n"
    )
    for name, marker in (("log.json", "JSONCFG"), ("log.ini", "INICFG")):
        proc, line = await start_cli(DEMO, "--log-config", str(tmp_path / name))
        try:
            await connect_once(ws_port(line))
            _, err = await stop(proc)
        finally:
            await kill(proc)
        assert f"{marker} INFO webshocket.server Server started on 127.0.0.1:" in err
        assert err.count(f"{marker} DEBUG webshocket.server New connection from") == 1
        assert "picows" not in err  # picows's own connection lines stay quiet


def test_bad_log_config_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"version": 1,\n')
    assert_one_line(
        run_cli("serve", DEMO, "--log-config", str(tmp_path / "bad.json")),
        f"--log-config {tmp_path}/bad.json: invalid JSON at line 2 column 1 "
        "(Expecting property name enclosed in double quotes); fix the file",
    )
    (tmp_path / "bad.ini").write_text("[loggers]\nkeys=root\n")
    assert_one_line(
        run_cli("serve", DEMO, "--log-config", str(tmp_path / "bad.ini")),
        f"--log-config {tmp_path}/bad.ini: not a valid logging fileConfig (.ini) configuration "
        "(KeyError: 'formatters'); see https://docs.python.org/3/library/logging.config.html",
    )


async def test_health_is_503_once_the_server_closes() -> None:
    """The endpoint the CLI runs, in process: 200 while serving, 503 after close(), 405 for a POST."""
    from helpers import Adder

    from webshocket import WebSocketServer
    from webshocket.metrics import MetricsEndpoint

    server = WebSocketServer("127.0.0.1", 0, clientHandler=Adder)
    endpoint = MetricsEndpoint(server, "127.0.0.1", 0)
    await endpoint.start()
    try:
        base = f"http://127.0.0.1:{endpoint.port}"
        assert (await asyncio.to_thread(http_get, f"{base}/health"))[0] == 503  # not started yet
        await server.start()
        status, _, body = await asyncio.to_thread(http_get, f"{base}/health")
        assert status == 200 and json.loads(body)["status"] == "serving"
        post = urllib.request.Request(f"{base}/metrics", data=b"x", method="POST")
        assert (await asyncio.to_thread(http_get, post))[0] == 405
        await server.close()
        status, _, body = await asyncio.to_thread(http_get, f"{base}/health")
        assert status == 503 and json.loads(body)["status"] == "closed"
    finally:
        await server.close()
        await endpoint.close()
