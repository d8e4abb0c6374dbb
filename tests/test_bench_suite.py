"""The end-to-end benchmark suite (``benchmarks/e2e``): it runs, and it never counts a wrong answer.

The load generator is run as the runner runs it (a subprocess with a JSON spec) against
servers of ours that answer wrongly on purpose: a wrong sum, a publish delivered twice, a
publish not delivered at all. Each must fail the run with the matching error. The whole
runner is then run in its quick mode against ours and the raw-picows baseline.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import running_server

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
