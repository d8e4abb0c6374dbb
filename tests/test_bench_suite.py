"""The end-to-end benchmark suite (``webshocket.bench``, run from a clone as ``benchmarks/e2e``): it runs,
and it never counts a wrong answer.

The load generator is run as the runner runs it (a subprocess with a JSON spec) against
servers of ours that answer wrongly on purpose: a wrong sum, a publish delivered twice, a
publish not delivered at all, subscribers not spread over the workers it was told of. Each
must fail the run with the matching error. The whole runner is then run in its quick mode
against ours and the raw-picows baseline, against ours scaled out through a real
redis-server (1 and 2 worker processes), and without redis-server on the PATH. Everything goes
through the clone's names (``benchmarks.e2e``), which are aliases of the package's modules;
tests/test_bench_installed.py runs it from an installed wheel. The Node.js ``ws`` peer
(``servers/node_ws.mjs``) must answer byte for byte as raw picows does, pass the load generator's
checks and run in the runner; selected without its packages, the runner says how to install them.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
from helpers import running_server, wait_until
from redis_server import redis_available
from websockets.asyncio.client import connect as ws_connect
from websockets.typing import Subprotocol

from webshocket import ClientConnection, WebSocketHandler, rpc_method
from webshocket.bench import nodews, procs, run

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


# --------------------------------------------------------------------------- the scenarios of the cost curves

CHANNELS = {"subscribers": 20, "channels": 4, "size": 64, "inflight": 8}


class Misroutes(Honest):
    """Now and then publishes to the other channel of a pair (bench.0 <-> bench.1)."""

    @rpc_method(alias_name="publish")
    async def rpc_publish(self, connection: Conn, channel: str, payload: Any) -> bool:
        if payload[7] % 5 == 0 and channel in ("bench.0", "bench.1"):
            channel = "bench.1" if channel == "bench.0" else "bench.0"
        self.publish(channel, payload)
        return True


class MatchesAPattern(Honest):
    """Now and then also publishes to a channel that one of the held patterns (``user.0.*``) matches."""

    @rpc_method(alias_name="publish")
    async def rpc_publish(self, connection: Conn, channel: str, payload: Any) -> bool:
        self.publish(channel, payload)
        if payload[7] % 5 == 0:
            self.publish("user.0.x", payload)
        return True


class SlowSum(Honest):
    """``add`` blocks the loop for 2 ms: the server answers about 500 calls/s."""

    @rpc_method(alias_name="add")
    async def rpc_add(self, connection: Conn, a: int, b: int) -> int:
        time.sleep(0.002)
        return a + b


async def test_loadgen_channels_checks_every_subscriber_on_its_own_channel() -> None:
    """Round-robin over 4 channels: each subscriber gets every publish of its channel exactly once; a
    publish that lands on another channel fails the run (and is missed where it belonged)."""
    async with running_server(Honest) as server:
        ok = await loadgen(server.port, "fanout", **CHANNELS)
    assert ok["ok"] and ok["errors"] == {} and ok["channels"] == 4, ok
    assert ok["deliveries"] > 100 and ok["publishes_total"] >= 20
    assert abs(ok["deliveries_per_s"] - 5 * ok["publishes_per_s"]) <= 0.2 * ok["deliveries_per_s"]  # 5 per channel
    async with running_server(Misroutes) as server:
        wrong = await loadgen(server.port, "fanout", **CHANNELS)
    assert not wrong["ok"]
    assert wrong["errors"].get("delivery of another channel's publish", 0) > 0, wrong["errors"]
    assert wrong["errors"].get("missing delivery", 0) > 0, wrong["errors"]


async def test_loadgen_patterns_are_held_and_must_not_match() -> None:
    """1,000 non-matching patterns on one connection (the limit lifted): the fan-out passes; a delivery to
    the pattern connection fails the run; with the default limit the subscription is refused, and said so."""
    from webshocket.bench.loadgen import non_matching_patterns

    patterns = non_matching_patterns(1000)
    assert len(set(patterns)) == 1000 and not any(fnmatch.fnmatchcase("bench", p) for p in patterns)
    spec = {**FANOUT, "patterns": 1000}
    async with running_server(Honest, max_subscribed_channels=0) as server:
        ok = await loadgen(server.port, "patterns", **spec)
    assert ok["ok"] and ok["errors"] == {} and ok["patterns"] == 1000 and ok["deliveries"] > 100, ok
    async with running_server(MatchesAPattern, max_subscribed_channels=0) as server:
        matched = await loadgen(server.port, "patterns", **spec)
    assert not matched["ok"] and matched["errors"].get("delivery to a non-matching pattern", 0) > 0, matched
    async with running_server(Honest) as server:
        refused = await loadgen(server.port, "patterns", **spec)
    assert not refused["ok"]
    assert any("patterns refused" in error and "limit" in error for error in refused["errors"]), refused


async def test_loadgen_churn_counts_checked_handshakes() -> None:
    """Connect, one add, close, in a loop: every cycle's reply is checked and only complete cycles count."""
    async with running_server(Honest) as server:
        ok = await loadgen(server.port, "churn", parallel=3)
        await wait_until(lambda: not server.handler.clients)  # every connection was closed
        stats = dict(server.stats)
    assert ok["ok"] and ok["errors"] == {} and ok["parallel"] == 3, ok
    assert ok["handshakes"] > 10 and ok["handshakes_total"] >= ok["handshakes"]
    assert stats["connections_opened"] == stats["connections_closed"] >= ok["handshakes_total"]
    assert stats["rpc_calls"] >= ok["handshakes_total"]
    assert ok["handshakes_per_s"] == ok["handshakes"] / ok["seconds"] and ok["latency_us"]["p99"] > 0
    async with running_server(WrongSum) as server:
        wrong = await loadgen(server.port, "churn", parallel=3, duration=1.5)
    assert not wrong["ok"] and wrong["errors"].get("wrong reply", 0) > 0, wrong


async def test_loadgen_open_loop_rpc_reports_achieved_against_offered() -> None:
    """Calls go out on schedule: a server that keeps up achieves the offered rate; one that cannot
    (about 500 calls/s against 1,500 offered) is reported as such, its replies still all checked."""
    async with running_server(Honest) as server:
        ok = await loadgen(server.port, "rpc-open", connections=4, rate=1000)
    assert ok["ok"] and ok["errors"] == {} and ok["offered_per_s"] == 1000, ok
    assert 0.8 < ok["achieved_ratio"] < 1.2 and ok["skipped"] == 0
    assert 0.8 * 500 < ok["scheduled"] < 1.2 * 500  # 0.5 s at 1,000/s
    assert 0 < ok["latency_us"]["p50"] <= ok["latency_us"]["p99"] <= ok["latency_us"]["p99.9"]
    assert ok["send_lag_us"]["p50"] >= 0
    async with running_server(SlowSum) as server:
        slow = await loadgen(server.port, "rpc-open", connections=4, rate=1500, duration=1.0)
    assert slow["ok"] and slow["errors"] == {}, slow
    assert slow["achieved_per_s"] < 0.6 * slow["offered_per_s"] and not slow["sustained"], slow
    assert slow["latency_us"]["p99"] > 100_000  # queued behind the backlog: counted from the scheduled time
    async with running_server(WrongSum) as server:
        wrong = await loadgen(server.port, "rpc-open", connections=4, rate=1000)
    assert not wrong["ok"] and wrong["errors"].get("wrong reply", 0) > 0, wrong


async def test_loadgen_open_loop_fanout_measures_delivery_latency_exactly_once() -> None:
    """Publishes on schedule: publish-to-delivery latency at every subscriber (20 of 20), exactly-once
    still checked (a duplicate fails the run)."""
    async with running_server(Honest) as server:
        ok = await loadgen(server.port, "fanout-open", subscribers=20, size=64, rate=200)
    assert ok["ok"] and ok["errors"] == {} and ok["offered_per_s"] == 200 * 20, ok
    assert ok["timed_subscribers"] == 20 and 0.8 < ok["achieved_ratio"] < 1.2
    assert 0 < ok["latency_us"]["p50"] <= ok["latency_us"]["p99.9"]
    async with running_server(DeliversTwice) as server:
        twice = await loadgen(server.port, "fanout-open", subscribers=20, size=64, rate=200)
    assert not twice["ok"] and twice["errors"].get("duplicate delivery", 0) > 0, twice


def test_open_loop_points_take_their_rate_from_the_servers_peak() -> None:
    """rate = fraction x the median of the server's passing closed-loop runs so far; none: no rate."""
    plan = run.curve_plan(run.parse_args(["--curves", "--quick", "--out", "/tmp/unused"]))
    point = next(s for s in plan if s.key == "rpc-open-90")
    kind = run.SERVERS["ours"]
    assert run.open_loop_rate(point, kind, [], plan) == {"peak": None, "peak_of": "rpc-50x16", "rate": None}
    runs = [
        {"server": "ours", "scenario": "rpc-50x16", "ok": True, "calls_per_s": 1000.0},
        {"server": "ours", "scenario": "rpc-50x16", "ok": False, "calls_per_s": 9e9},  # failed: not counted
        {"server": "raw-picows", "scenario": "rpc-50x16", "ok": True, "calls_per_s": 9e9},  # another server's
        {"server": "ours", "scenario": "rpc-50x16", "ok": True, "calls_per_s": 3000.0},
    ]
    assert run.open_loop_rate(point, kind, runs, plan) == {"peak": 2000.0, "peak_of": "rpc-50x16", "rate": 1800.0}
    fanout = next(s for s in plan if s.key == "fanout-open-100-50")
    runs = [{"server": "ours", "scenario": "fanout-100x64", "ok": True, "publishes_per_s": 400.0}]
    assert run.open_loop_rate(fanout, kind, runs, plan) == {"peak": 400.0, "peak_of": "fanout-100x64", "rate": 200.0}
    assert [s.key for s in plan].index("rpc-50x16") < [s.key for s in plan].index("rpc-open-90")
    # the same-load points: every server is offered a share of the slowest server's peak
    same = next(s for s in plan if s.key == "rpc-same-50")
    runs = [
        {"server": "ours", "scenario": "rpc-50x16", "ok": True, "calls_per_s": 4000.0},
        {"server": "raw-picows", "scenario": "rpc-50x16", "ok": True, "calls_per_s": 1000.0},
        {"server": "node-ws", "scenario": "rpc-50x16", "ok": False, "calls_per_s": 10.0},  # failed: not counted
    ]
    expected = {"peak": 1000.0, "peak_of": "rpc-50x16", "rate": 500.0}
    assert run.open_loop_rate(same, kind, runs, plan) == expected
    assert run.open_loop_rate(same, run.SERVERS["raw-picows"], runs, plan) == expected
    assert run.open_loop_rate(same, kind, [], plan) == {"peak": None, "peak_of": "rpc-50x16", "rate": None}
    assert next(s for s in plan if s.kind == "patterns").server_options == ("--max-subscriptions", "0")
    # publish-to-delivery latency has its own subscriber count, and its closed-loop peak run with it
    args = ["--curves", "--quick", "--latency-subscribers", "20", "--out", "/tmp/unused"]
    keys = [s.key for s in run.curve_plan(run.parse_args(args))]
    assert "fanout-open-20-50" in keys and "fanout-same-20-90" in keys and "fanout-open-100-50" not in keys
    assert keys.index("fanout-20x64") < keys.index("fanout-open-20-50")


def test_runner_curves_quick_writes_tables_and_charts(tmp_path: Path) -> None:
    """--curves: a point of each curve against ours and raw picows; the open-loop points get their peak
    from the closed-loop run that --scenarios left out (added); patterns run for ours only."""
    out = tmp_path / "curves"
    wanted = "fanout-100x64,channels-10x10,patterns,churn-1,rpc-open-50,fanout-open-100-50,memory"
    options = ["--servers", "ours,raw", "--scenarios", wanted, "--patterns", "0,100", "--duration", "0.5"]
    proc = run_suite(out, "--curves", *options)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "curves.json").read_text())
    runs = {(r["server"], r["scenario"]): r for r in data["runs"]}
    assert all(r["ok"] and not r["errors"] for r in runs.values()), [r["errors"] for r in runs.values()]
    ours = {k: r for (s, k), r in runs.items() if s == "ours"}
    points = wanted.replace("memory", "memory-1000").replace("patterns", "patterns-0,patterns-100").split(",")
    assert set(ours) == {*points, "rpc-50x16"}  # the peak's run added
    assert {k for (s, k) in runs if s == "raw-picows"} == set(ours) - {"patterns-0", "patterns-100"}
    assert ours["rpc-open-50"]["rate"] == ours["rpc-50x16"]["calls_per_s"] * 0.5 == ours["rpc-open-50"]["peak"] / 2
    assert ours["fanout-open-100-50"]["rate"] == ours["fanout-100x64"]["publishes_per_s"] * 0.5
    assert ours["patterns-100"]["server_info"]["max_subscriptions"] == 0 and ours["patterns-100"]["patterns"] == 100
    assert ours["channels-10x10"]["channels"] == 10 and ours["churn-1"]["handshakes"] > 0
    curves = data["curves"]
    assert set(curves) == {"subscribers", "channels", "patterns", "churn", "latency-rpc", "latency-fanout", "memory"}
    assert list(curves["patterns"]) == ["ours"] and [p["x"] for p in curves["patterns"]["ours"]] == [0, 100]
    assert curves["churn"]["raw-picows"][0]["server_us_per_handshake"] > 0
    assert curves["subscribers"]["ours"][0]["server_us_per_delivery"] > 0
    assert curves["patterns"]["ours"][1]["server_us_per_publish"] > 0
    table = (out / "curves.md").read_text()
    for heading in ("Fan-out vs subscribers", "Fan-out vs channels", "non-matching patterns", "churn", "RPC latency"):
        assert heading in table, heading
    assert "| 10 | server CPU per delivery |" in table and "| 50% | offered → achieved /s |" in table
    assert "| 10 | server CPU in the kernel |" in table and "| 1 | server CPU in the kernel |" in table  # churn
    for server in ("ours", "raw-picows"):  # stime over utime + stime of the server: some of each
        assert 0 < runs[(server, "channels-10x10")]["server_kernel_share"] < 1
        assert 0 < runs[(server, "churn-1")]["server_kernel_share"] < 1
    assert "Server CPU per publish over that with no patterns" in table and "RLIMIT_NOFILE" in table
    for curve in ("subscribers", "channels", "patterns", "churn", "latency-rpc", "latency-fanout"):
        assert (out / f"curves-{curve}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", curve
    assert not (out / "e2e.md").exists()


def test_runner_curves_rejects_uneven_channels(tmp_path: Path) -> None:
    proc = run_suite(tmp_path, "--curves", "--subscriptions", "100", "--channels", "1,3")
    assert proc.returncode == 2 and "multiple of every --channels count" in proc.stderr


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
    assert 0 < two["server_kernel_share"] < 1  # summed over the parent and both workers
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


# --------------------------------------------------------------------------- the Node.js ws peer

SERVERS_DIR = REPO / "webshocket" / "bench" / "servers"


def node_ws() -> nodews.NodeWs:
    """node and benchmarks/node_modules at the versions pinned in benchmarks/package.json: required, not skipped
    (``scripts/install.sh dev``, i.e. ``make test``, runs ``npm ci --prefix benchmarks``)."""
    try:
        found = nodews.locate(REPO / "benchmarks" / "node_modules")
    except nodews.Unavailable as exc:
        raise AssertionError(f"{exc} (scripts/install.sh dev does)") from None
    pins = json.loads((REPO / "benchmarks" / "package.json").read_text())["dependencies"]
    installed = {name: found.versions[name] for name in pins}
    assert installed == pins, f"benchmarks/node_modules is stale ({installed}): run 'npm ci --prefix benchmarks'"
    return found


def start(argv: list[str], env: dict[str, str] | None = None) -> procs.Server:
    return procs.start_server(argv, procs.free_port(), env=env or dict(os.environ), cpu=None)


def rpc_request(method: str, args: list[Any], call_id: str) -> bytes:
    rpc = {"type": "request", "method": method, "args": args, "kwargs": {}, "call_id": call_id}
    packed: bytes = msgpack.packb({"source": 5, "rpc": rpc})
    return packed


async def conversation(port: int) -> list[Any]:
    """Subprotocols, then the bytes of every reply and delivery to the benchmark's requests (and an unknown one)."""
    url = f"ws://127.0.0.1:{port}/"
    async with ws_connect(url, subprotocols=[Subprotocol("webshocket.v1")]) as ws, ws_connect(url) as plain:
        seen: list[Any] = [ws.subprotocol, plain.subprotocol]
        calls: list[tuple[str, list[Any], str]] = [
            ("add", [0x10000001, 7], "0000002a"),
            ("add", [1, 2], "x"),
            ("subscribe", ["bench"], "s1"),
            ("count", [], "p1"),
            ("nope", [], "n"),
            ("publish", ["bench", b"\0" * 8 + b"abc"], "00000001"),
            ("publish", ["bench", bytes(range(256)) * 4], "00000002"),
        ]
        for method, args, call_id in calls:
            await ws.send(rpc_request(method, args, call_id))
            seen.append(await asyncio.wait_for(ws.recv(), 10))
            if method == "publish":  # the delivery to ourselves, and the acknowledgement
                seen.append(await asyncio.wait_for(ws.recv(), 10))
    return seen


async def test_node_ws_answers_byte_for_byte_as_raw_picows() -> None:
    """Same subprotocol negotiation, same reply and delivery bytes (keys, order, msgpack types)."""
    setup = node_ws()
    servers = {
        "raw": start([sys.executable, str(SERVERS_DIR / "raw_picows.py")]),
        "node": start(*setup.command(SERVERS_DIR / "node_ws.mjs")),
    }
    try:
        assert setup.problem(servers["node"].info) is None, servers["node"].info
        raw = await conversation(servers["raw"].port)
        node = await conversation(servers["node"].port)
    finally:
        for server in servers.values():
            procs.reap(server.process)
    assert raw[:2] == ["webshocket.v1", None]
    assert node == raw
    assert msgpack.unpackb(node[2])["rpc"]["response"] == 0x10000008


async def test_loadgen_passes_the_node_ws_server() -> None:
    """The load generator verifies every reply and delivery: the Node server passes RPC and fan-out."""
    server = start(*node_ws().command(SERVERS_DIR / "node_ws.mjs"))
    try:
        rpc = await loadgen(server.port, "rpc", **RPC)
        fanout = await loadgen(server.port, "fanout", **FANOUT)
        assert server.process.poll() is None
    finally:
        procs.reap(server.process)
    assert rpc["ok"] and rpc["errors"] == {} and rpc["calls"] > 100, rpc
    assert fanout["ok"] and fanout["errors"] == {} and fanout["deliveries"] > 100, fanout


def test_runner_quick_mode_with_node_ws(tmp_path: Path) -> None:
    """ours and Node ws on RPC, fan-out and memory: every run passes; the ratios to Node ws are printed, tabulated."""
    setup = node_ws()
    out = tmp_path / "results"
    scenarios = "rpc-1x64,fanout-100x64,memory"
    proc = run_suite(out, "--servers", "ours,node", "--scenarios", scenarios, "--no-chart")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "e2e.json").read_text())
    assert data["meta"]["servers"] == {"ours": "ours (compiled)", "node-ws": "Node ws"}
    runs = {(r["server"], r["scenario"]): r for r in data["runs"]}
    assert set(runs) == {(s, k) for s in ("ours", "node-ws") for k in ("rpc-1x64", "fanout-100x64", "memory-1000")}
    assert all(r["ok"] and not r["errors"] for r in runs.values())
    node = {k: r for (s, k), r in runs.items() if s == "node-ws"}
    assert node["rpc-1x64"]["calls_per_s"] > 0 and node["rpc-1x64"]["latency_us"]["p99"] > 0
    assert node["fanout-100x64"]["deliveries_per_s"] > 0 and node["fanout-100x64"]["server_cpu"] is not None
    assert node["memory-1000"]["bytes_per_connection"] > 0
    info = node["rpc-1x64"]["server_info"]
    assert info["impl"] == "node-ws" and info["ws"] == setup.versions["ws"] and info["bufferutil_native"]
    assert not alive(info["pid"])
    ratios = {(r["scenario"], r["metric"]): r for r in data["ratios"]}
    assert all(ratios[(k, m)]["ours/node"] > 0 for k, m in ratios)
    table = (out / "e2e.md").read_text()
    assert "| ours (compiled) | Node ws |" in table and "| ours / Node ws |" in table
    assert f"Node ws: node {setup.versions['node']}, ws {setup.versions['ws']}" in table
    assert "vs node" in proc.stdout


def test_runner_node_ws_without_its_packages_says_how_to_install_them(tmp_path: Path) -> None:
    """Selected without ws & co.: one line saying how to install them, exit 2, nothing run; in the default
    list (not named), it is left out with a note instead."""
    out = tmp_path / "results"
    proc = run_suite(out, "--servers", "ours,node", "--node-modules", "/nonexistent", "--scenarios", "rpc-1x64")
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m benchmarks.e2e: error: "), proc.stderr
    assert "/nonexistent" in lines[0] and "npm ci --prefix benchmarks" in lines[0]
    assert not out.exists()
    args = run.parse_args(["--node-modules", "/nonexistent", "--out", str(out)])
    assert "node-ws" in args.server_keys and "npm ci --prefix benchmarks" in args.node_missing
