"""The capacity model (``webshocket capacity``, webshocket/bench/capacity.py; docs/scaling.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from webshocket.bench.capacity import Costs, Workload, plan, processes_reached
from webshocket.cli import main as cli_main


def test_a_publish_reaches_every_process_with_a_subscriber() -> None:
    assert processes_reached(1, 10) == 1.0
    assert processes_reached(1, 0) == 0.0
    assert processes_reached(4, 1) == pytest.approx(1.0)
    assert processes_reached(4, 10_000) == pytest.approx(4.0)  # a large fan-out reaches all
    assert processes_reached(1000, 10) == pytest.approx(10, rel=0.01)  # a small one about one per subscriber


def test_processes_follow_cpu_and_memory() -> None:
    costs = Costs()
    small = plan(Workload(connections=1000, publishes_per_s=100, fanout=10), costs)
    assert (small.processes, small.redis_shards, small.limit) == (1, 0, "cpu")  # one process, no backplane
    busy = plan(Workload(connections=1000, publishes_per_s=2000, fanout=1000), costs)
    assert busy.processes >= 3 and busy.cpu_per_process <= 0.7
    assert busy.deliveries_per_s == 2_000_000
    # 1M connections at 12.4 KiB in 4 GiB processes planned at 70%: memory decides
    crowd = plan(Workload(connections=1_000_000, publishes_per_s=10, fanout=1), costs)
    assert crowd.limit == "memory" and crowd.processes == 5
    assert crowd.memory_gib_per_process <= 4.0 * 0.7


def test_recovery_multiplies_what_redis_needs() -> None:
    load = {"connections": 200_000, "publishes_per_s": 20_000, "fanout": 50}
    plain = plan(Workload(**load))
    recovered = plan(Workload(**load, recovery=True))
    assert plain.processes == recovered.processes
    assert recovered.redis_cores > 3 * plain.redis_cores  # 33 us against 1.4, + 0.27 us per process
    assert plain.redis_shards == 1 and recovered.redis_shards >= 2


def test_cli_prints_a_plan_and_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["capacity", "--connections", "19000", "--publishes", "1000", "--fanout", "1000", "--json"]
    assert cli_main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["processes"] == 6 and result["deliveries_per_s"] == 1_000_000  # 3.2 cores of deliveries + envelopes
    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps({"node_us_per_delivery": 0.32}))
    assert cli_main([*args, "--costs", str(costs)]) == 0
    assert json.loads(capsys.readouterr().out)["processes"] == 1  # ten times cheaper deliveries
    costs.write_text(json.dumps({"node_us_per_deliveryy": 0.1}))
    assert cli_main([*args, "--costs", str(costs)]) == 2
    assert "unknown cost fields ['node_us_per_deliveryy']" in capsys.readouterr().err
    assert cli_main(["capacity", "--connections", "1", "--publishes", "-5", "--fanout", "1"]) == 2
    assert "must not be negative" in capsys.readouterr().err
