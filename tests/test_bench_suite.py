"""The end-to-end benchmark suite (``webshocket.bench``, run from a clone as ``benchmarks/e2e``): it runs,
and it never counts a wrong answer.

The load generator is run as the runner runs it (a subprocess with a JSON spec) against
servers of ours that answer wrongly on purpose: a wrong sum, a publish delivered twice, a
publish not delivered at all, subscribers not spread over the workers it was told of. Each
must fail the run with the matching error. The whole runner is then run in its quick mode
against ours and the raw-picows baseline, against ours scaled out through a real
redis-server (1 and 2 worker processes), and without redis-server on the PATH. Everything goes
through the clone's names (``benchmarks.e2e``), which are aliases of the package's modules;
tests/test_bench_installed.py runs it from an installed wheel.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import running_server
from redis_server import redis_available

from webshocket import ClientConnection, WebSocketHandler, rpc_method

REPO = Path(__file__).resolve().parents[1]
Conn = ClientConnection[Any]


class Honest(WebSocketHandler[Any]):
    """The methods the load generator calls, answered correctly."""

    @rpc_method(alias_name="add")
    async def rpc_add(self, connection: Conn, a: int, b: int) -> int:
        return a + b

    @rpc_method(alias_name="subscribe")
    async def rpc_subscribe(self, connection: Conn, channel: str) -> bool:
        connection.subscribe(channel)
        return True

    @rpc_method(alias_name="publish")
    async def rpc_publish(self, connection: Conn, channel: str, payload: Any) -> bool:
        self.publish(channel, payload)
        return True


class TellsWorker(Honest):
    """Also answers ``worker()`` (the pid serving the connection), as the scale-out app does."""

    @rpc_method(alias_name="worker")
    async def rpc_worker(self, connection: Conn) -> int:
        return os.getpid()


class WrongSum(Honest):
    @rpc_method(alias_name="add")
    async def rpc_add(self, connection: Conn, a: int, b: int) -> int:
        return a + b + (1 if a % 7 == 0 else 0)


class DeliversTwice(Honest):
    @rpc_method(alias_name="publish")
    async def rpc_publish(self, connection: Conn, channel: str, payload: Any) -> bool:
        self.publish(channel, payload)
        if payload[7] % 5 == 0:  # the last byte of the 8-byte sequence number
            self.publish(channel, payload)
        return True


class LosesSome(Honest):
    @rpc_method(alias_name="publish")
    async def rpc_publish(self, connection: Conn, channel: str, payload: Any) -> bool:
        if payload[7] % 5 != 3:
            self.publish(channel, payload)
        return True


async def loadgen(port: int, scenario: str, **params: Any) -> dict[str, Any]:
    spec = {"scenario": scenario, "port": port, "duration": 0.5, "warmup": 0.1, "timeout": 60, **params}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.e2e.loadgen",
        json.dumps(spec),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


RPC = {"connections": 2, "inflight": 16}
FANOUT = {"subscribers": 20, "size": 64, "inflight": 8}


async def test_loadgen_counts_correct_replies() -> None:
    async with running_server(Honest) as server:
        rpc = await loadgen(server.port, "rpc", **RPC)
        fanout = await loadgen(server.port, "fanout", **FANOUT)
    assert rpc["ok"] and rpc["errors"] == {} and rpc["calls"] > 100
    assert rpc["latency_us"]["p50"] > 0
    assert fanout["ok"] and fanout["errors"] == {} and fanout["deliveries"] > 100


async def test_loadgen_checks_positioned_deliveries_by_their_shape() -> None:
    """With recovery every push carries its channel offset: the load generator still verifies
    them by comparing bytes around the holes (decoding only when an offset grows a byte), and
    still catches a duplicate, which arrives with an offset of its own."""
    async with running_server(Honest, recovery=True) as server:
        fanout = await loadgen(server.port, "fanout", **FANOUT)
    assert fanout["ok"] and fanout["errors"] == {} and fanout["publishes_total"] > 300
    widths = 4  # fixint, then uint8 from 128, uint16 from 256, uint32 from 65,536
    assert fanout["decoded"] <= widths * FANOUT["subscribers"], fanout["decoded"]
    async with running_server(DeliversTwice, recovery=True) as server:
        twice = await loadgen(server.port, "fanout", **FANOUT)
    assert not twice["ok"]
    assert any("duplicate" in error for error in twice["errors"]), twice["errors"]


async def test_loadgen_fails_a_run_with_a_wrong_result() -> None:
    async with running_server(WrongSum) as server:
        result = await loadgen(server.port, "rpc", **RPC)
    assert not result["ok"]
    assert any("wrong" in error for error in result["errors"]), result["errors"]


async def test_loadgen_fails_a_run_with_a_duplicate_delivery() -> None:
    async with running_server(DeliversTwice) as server:
        result = await loadgen(server.port, "fanout", **FANOUT)
    assert not result["ok"]
    assert any("duplicate" in error for error in result["errors"]), result["errors"]


async def test_loadgen_fails_a_run_with_a_lost_delivery() -> None:
    async with running_server(LosesSome) as server:
        result = await loadgen(server.port, "fanout", **FANOUT)
    assert not result["ok"]
    assert any("missing" in error or "no delivery" in error for error in result["errors"]), result["errors"]


async def test_loadgen_fails_a_run_when_a_worker_has_no_subscriber() -> None:
    """All subscribers land on this process: a second worker listed without any fails the run."""
    async with running_server(TellsWorker) as server:
        ok = await loadgen(server.port, "fanout", **FANOUT, worker_pids=[os.getpid()])
        idle = await loadgen(server.port, "fanout", **FANOUT, worker_pids=[os.getpid(), 2**22 + 1])
        stranger = await loadgen(server.port, "fanout", **FANOUT, worker_pids=[2**22 + 1])
    assert ok["ok"] and ok["errors"] == {} and ok["subscribers_per_worker"] == [FANOUT["subscribers"]]
    assert not idle["ok"] and idle["errors"] == {"worker without subscribers": 1}
    assert idle["subscribers_per_worker"] == [FANOUT["subscribers"], 0]
    assert not stranger["ok"]
    assert stranger["errors"]["subscriber on a process that is not a worker"] == FANOUT["subscribers"]


def test_benchmarks_e2e_names_the_packaged_modules() -> None:
    """``benchmarks.e2e.X`` is ``webshocket.bench.X`` itself (one copy of the code, one module object)."""
    names = ["run", "loadgen", "procs", "report", "venv052", "servers.common"]
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    old = importlib.import_module('benchmarks.e2e.' + name)\n"
        "    new = importlib.import_module('webshocket.bench.' + name)\n"
        "    assert old is new, (name, old, new)\n"
        "from webshocket.bench import procs\n"
        "assert procs.SOURCE_TREE == procs.REPO, procs.SOURCE_TREE\n"
        "import benchmarks.hostile.run\n"  # the hostile suite borrows procs, run, loadgen and servers.common
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def run_suite(out: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "WEBSHOCKET_NO_EXTENSIONS"}  # "ours" is compiled
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.e2e", "--quick", *args, "--out", str(out)],
        cwd=REPO,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=200,
    )


def test_runner_scale_out_through_redis(tmp_path: Path) -> None:
    """The Redis kinds run fan-out only, exactly once, with subscribers on both workers; Redis is killed after."""
    assert redis_available(), "redis-server is not installed (scripts/install.sh installs it)"
    out = tmp_path / "results"
    scenarios = "rpc-1x64,fanout-100x64"
    proc = run_suite(out, "--servers", "2w-redis,ours,redis", "--scenarios", scenarios, "--no-chart")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "e2e.json").read_text())
    assert list(data["meta"]["servers"]) == ["ours", "ours-redis", "ours-2w-redis"]  # scale-out next to ours
    runs = {(r["server"], r["scenario"]): r for r in data["runs"]}
    assert set(runs) == {
        ("ours", "rpc-1x64"),
        ("ours", "fanout-100x64"),
        ("ours-redis", "fanout-100x64"),
        ("ours-2w-redis", "fanout-100x64"),
    }  # RPC does not touch the backplane: the Redis kinds skip it
    assert all(r["ok"] and not r["errors"] and r["deliveries"] > 0 for r in runs.values() if "deliveries" in r)
    assert all(r["ok"] for r in runs.values())
    one = runs[("ours-redis", "fanout-100x64")]
    assert one["server_info"]["backplane"].startswith("redis://127.0.0.1:")
    assert one["subscribers_per_worker"] == [100]
    two = runs[("ours-2w-redis", "fanout-100x64")]
    workers = [w["pid"] for w in two["server_info"]["workers"]]
    assert len(set(workers)) == 2 and two["server_info"]["pid"] not in workers
    assert all(w["uvloop"] for w in two["server_info"]["workers"])
    spread = two["subscribers_per_worker"]
    assert len(spread) == 2 and min(spread) > 0 and sum(spread) == 100, spread  # both workers had subscribers
    assert two["server_cpu"] is not None and two["redis_cpu"] is not None
    redis_pid = data["meta"]["redis"]["pid"]
    assert not alive(redis_pid) and not any(alive(pid) for pid in workers)
    ratio = next(r for r in data["ratios"] if r["scenario"] == "fanout-100x64")
    assert ratio["2w-redis/ours"] > 0 and ratio["redis/ours"] > 0
    assert ratio["ours/0.5.2"] is None  # the existing ratios are untouched
    table = (out / "e2e.md").read_text()
    assert "## Scale-out through Redis" in table and "ours, 2 workers + Redis" in table
    assert "| RPC add, 1 conn x 64 in flight | calls/s |" in table and "n/a" in table
    assert "not a parallel speedup" in table
    assert "scale-out through Redis" in proc.stdout


def test_runner_without_redis_server_leaves_the_redis_kinds_out(tmp_path: Path) -> None:
    """No redis-server on the PATH: a note, the other servers measured, exit 0."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("taskset", "git"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    out = tmp_path / "results"
    proc = run_suite(
        out,
        "--scenarios",
        "fanout-100x64",
        "--servers",
        "ours,redis,2w-redis",
        "--no-chart",
        env={"PATH": str(bin_dir)},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "redis-server is not installed" in proc.stderr
    data = json.loads((out / "e2e.json").read_text())
    assert [(r["server"], r["ok"]) for r in data["runs"]] == [("ours", True)]
    assert any("redis-server is not installed" in note for note in data["meta"]["notes"])
    assert "redis-server is not installed" in (out / "e2e.md").read_text()


def test_runner_quick_mode_writes_json_table_and_chart(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.e2e",
            "--quick",
            "--servers",
            "ours,raw",
            "--scenarios",
            "rpc-1x64,fanout-100x64,memory",
            "--out",
            str(out),
        ],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "WEBSHOCKET_NO_EXTENSIONS"},  # "ours" is the compiled build
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "e2e.json").read_text())
    runs = data["runs"]
    assert {(r["server"], r["scenario"]) for r in runs} == {
        (server, scenario)
        for server in ("ours", "raw-picows")
        for scenario in ("rpc-1x64", "fanout-100x64", "memory-1000")
    }
    assert all(r["ok"] and not r["errors"] for r in runs)
    ours = {r["scenario"]: r for r in runs if r["server"] == "ours"}
    assert ours["rpc-1x64"]["calls_per_s"] > 0
    assert ours["fanout-100x64"]["deliveries_per_s"] > 0
    assert all(ours["rpc-1x64"]["server_info"]["speedups"].values())
    table = (out / "e2e.md").read_text()
    assert "raw picows" in table and "RPC add, 1 conn x 64 in flight" in table
    assert (out / "e2e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "vs raw" in proc.stdout
