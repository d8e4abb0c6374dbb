"""The hostile-client suite (``benchmarks/hostile``): it runs, and its verdicts come from what it measured.

The runner is run as a user runs it (``python -m benchmarks.hostile --quick``) on a few cheap
attacks. Nothing here depends on how fast the machine is: the test checks that every figure
of the report was measured (calls sent and answered, RSS samples, a bound made of the
baseline and the attack's allowance) and that each verdict agrees with those figures, not
that any attack passes. An impossible RSS bound must turn every verdict into FAIL, with the
measured peak in the reason, and the exit status into 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run_suite(out: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    environ = {k: v for k, v in os.environ.items() if k != "WEBSHOCKET_NO_EXTENSIONS"}  # the clients: compiled
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.hostile", "--quick", *args, "--out", str(out)],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert (out / "hostile.json").exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads((out / "hostile.json").read_text())


def measured(record: dict[str, Any]) -> None:
    """Every figure the verdict uses was measured in this run."""
    assert not record["errors"], record["errors"]
    calls, rss = record["calls"], record["rss"]
    assert calls["sent"] > 0 and 0 <= calls["answered"] <= calls["sent"]
    assert calls["worst_ms"] > 0 and calls["p99_ms"] <= calls["worst_ms"]
    assert rss["samples"] > 0 and rss["baseline_samples"] > 0 and rss["peak_kib"] > 0
    inside = [kib for t, kib in rss["series"] if 0.01 <= t <= record["window_s"] - 0.01]
    assert inside and rss["peak_kib"] >= max(inside) and rss["peak_kib"] in {kib for _t, kib in rss["series"]}
    assert record["server_info"]["config"]["max_send_buffer"] > 0  # the limits in force, from the server


def agrees(record: dict[str, Any], limit_ms: float) -> None:
    """The verdict is what the figures say."""
    calls, rss = record["calls"], record["rss"]
    failures = {
        "unanswered": calls["answered"] < calls["sent"],
        "latency": calls["worst_ms"] >= limit_ms,
        "RSS": rss["peak_kib"] > rss["bound_kib"],
        "checks": not all(record["checks"].values()),
        "cut": record["cut_ok"] is False,
        "idle": not record["after"]["idle"],
    }
    assert (record["verdict"] == "PASS") == (not any(failures.values())), (record["verdict"], failures)
    assert (record["verdict"] == "PASS") == (not record["reasons"])
    if failures["RSS"]:
        assert any(r.startswith("peak RSS") for r in record["reasons"]), record["reasons"]


def test_quick_run_measures_and_judges(tmp_path: Path) -> None:
    proc, data = run_suite(tmp_path / "results", "--attacks", "task-hog,inbox-flood,fragments")
    records = {r["attack"]: r for r in data["attacks"]}
    assert list(records) == ["task-hog", "inbox-flood", "fragments"]  # the suite's order
    limit = data["meta"]["settings"]["latency_limit_ms"]
    for record in records.values():
        measured(record)
        agrees(record, limit)
        allowance = sum(record["rss"]["allowance_bytes"].values()) // 1024
        assert record["rss"]["bound_kib"] == record["rss"]["baseline_kib"] + allowance
    assert records["inbox-flood"]["server_info"]["handler"] == "blocking-receive"
    assert records["task-hog"]["server_info"]["config"]["rpc_task_limit"] == 1024  # the defaults
    assert records["fragments"]["attack_detail"]["rounds"] > 0
    failed = any(r["verdict"] != "PASS" for r in records.values())
    assert proc.returncode == (1 if failed else 0), proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (tmp_path / "results" / "hostile.md").read_text()
    assert "| attack | what it does | worst well-behaved RPC latency (ms) |" in table
    assert all(f"| `{name}` |" in table for name in records)


def test_an_impossible_rss_bound_fails_every_attack(tmp_path: Path) -> None:
    proc, data = run_suite(tmp_path / "results", "--attacks", "fragments", "--rss-bound-mib", "1")
    (record,) = data["attacks"]
    measured(record)
    agrees(record, data["meta"]["settings"]["latency_limit_ms"])
    assert record["rss"]["bound_kib"] == 1024
    assert record["verdict"] == "FAIL"
    assert f"peak RSS {record['rss']['peak_kib'] / 1024:,.1f} MiB > bound 1.0 MiB" in record["reasons"]
    assert proc.returncode == 1
    assert "FAIL fragments: " in proc.stderr
    assert "**FAIL**" in (tmp_path / "results" / "hostile.md").read_text()
