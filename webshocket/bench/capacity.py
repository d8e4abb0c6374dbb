"""The capacity model of docs/scaling.md: how many server processes and Redis shards a workload needs.

``webshocket capacity --connections 200000 --publishes 20000 --fanout 50 [--recovery]``
(``python -m webshocket.bench.capacity``) prints the plan; ``--costs FILE`` reads measured
costs (a JSON object with the fields of :class:`Costs`) instead of the defaults, which were
measured on a 2-core AMD EPYC VM (docs/scaling.md says how).

Every worker process is a node to Redis (each keeps its own two connections), so the
model counts processes, one per core. A publish costs:

* on the publishing process: ``node_us_per_publish`` (encode once, envelope, send to Redis);
* on every process with subscribers of its channel: ``node_us_per_envelope`` (read it from
  Redis, frame it once) plus ``node_us_per_delivery`` per local subscriber;
* in Redis: ``redis_us_per_publish`` (or ``redis_us_per_recovered_publish``, the recovery
  script) plus ``redis_us_per_node`` for each process subscribed to the channel.

Subscribers land on processes at random (the kernel spreads connections over workers and a
load balancer over machines), so a publish with ``fanout`` subscribers reaches
``n * (1 - (1 - 1/n) ** fanout)`` of ``n`` processes on average. Memory is
``node_kib_per_connection`` per connection (idle RSS, subscriptions excluded). CPU and
memory are planned at ``utilisation`` of what a core and a node have.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

__all__ = ["Costs", "Plan", "Workload", "main", "plan", "processes_reached"]


@dataclass(frozen=True)
class Costs:
    """Measured unit costs (microseconds of one core; KiB)."""

    node_us_per_delivery: float = 3.2
    node_us_per_envelope: float = 80.0
    node_us_per_publish: float = 50.0
    node_kib_per_connection: float = 12.4
    redis_us_per_publish: float = 1.4
    redis_us_per_node: float = 0.27
    redis_us_per_recovered_publish: float = 33.0


@dataclass(frozen=True)
class Workload:
    """What the application does."""

    connections: int
    publishes_per_s: float
    fanout: float  # subscribers reached by one publish, on average
    recovery: bool = False
    memory_gib_per_process: float = 4.0
    utilisation: float = 0.7


@dataclass(frozen=True)
class Plan:
    """What the workload needs."""

    processes: int
    cpu_per_process: float  # share of one core, at the busiest
    memory_gib_per_process: float
    processes_reached: float  # per publish, on average
    deliveries_per_s: float
    redis_cores: float  # Redis CPU, in cores, over all shards
    redis_shards: int  # Redis instances needed, each planned at ``utilisation`` of its core
    limit: str  # what decided the number of processes: "cpu" or "memory"


def processes_reached(processes: int, fanout: float) -> float:
    """Processes holding at least one of ``fanout`` subscribers spread at random over ``processes``."""
    if processes <= 1:
        return 1.0 if fanout > 0 else 0.0
    return float(processes * (1.0 - (1.0 - 1.0 / processes) ** fanout))


def _cpu_per_process(workload: Workload, costs: Costs, processes: int) -> float:
    p = workload.publishes_per_s
    reached = processes_reached(processes, workload.fanout)
    envelopes = p * reached if processes > 1 else 0.0  # a single process needs no backplane
    publishes = p if processes > 1 else 0.0
    us = p * workload.fanout * costs.node_us_per_delivery + envelopes * costs.node_us_per_envelope
    us += publishes * costs.node_us_per_publish
    return us / 1e6 / processes


def plan(workload: Workload, costs: Costs = Costs(), max_processes: int = 100_000) -> Plan:
    """The fewest processes whose CPU and memory stay under ``utilisation``, and the Redis it takes."""
    if workload.publishes_per_s < 0 or workload.fanout < 0 or workload.connections < 0:
        raise ValueError("connections, publishes and fan-out must not be negative")
    if not 0 < workload.utilisation <= 1:
        raise ValueError("utilisation must be in (0, 1]")
    memory_cap = workload.memory_gib_per_process * workload.utilisation
    by_memory = math.ceil(workload.connections * costs.node_kib_per_connection / 2**20 / memory_cap) or 1
    processes = by_memory
    while _cpu_per_process(workload, costs, processes) > workload.utilisation:
        processes += 1
        if processes > max_processes:
            raise ValueError(f"more than {max_processes:,} processes: the fan-out is too large for this model")
    limit = "memory" if processes == by_memory and by_memory > 1 else "cpu"
    reached = processes_reached(processes, workload.fanout)
    redis_cores = 0.0
    if processes > 1:
        per_publish = costs.redis_us_per_recovered_publish if workload.recovery else costs.redis_us_per_publish
        redis_cores = workload.publishes_per_s * (per_publish + reached * costs.redis_us_per_node) / 1e6
    return Plan(
        processes=processes,
        cpu_per_process=_cpu_per_process(workload, costs, processes),
        memory_gib_per_process=workload.connections / processes * costs.node_kib_per_connection / 2**20,
        processes_reached=reached,
        deliveries_per_s=workload.publishes_per_s * workload.fanout,
        redis_cores=redis_cores,
        redis_shards=math.ceil(redis_cores / workload.utilisation) if redis_cores else 0,
        limit=limit,
    )


def load_costs(path: Path | None) -> Costs:
    """Costs from a JSON file (missing fields keep their defaults)."""
    if path is None:
        return Costs()
    data = json.loads(path.read_text())
    known = {f.name for f in fields(Costs)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{path}: unknown cost fields {sorted(unknown)}; known: {sorted(known)}")
    return replace(Costs(), **{k: float(v) for k, v in data.items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="webshocket capacity", description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--publishes", type=float, required=True, help="publishes per second, all channels")
    parser.add_argument("--fanout", type=float, required=True, help="subscribers per publish, on average")
    parser.add_argument("--recovery", action="store_true", help="channel history and sessions in Redis")
    parser.add_argument("--memory-gib", type=float, default=4.0, help="memory per process (default 4)")
    parser.add_argument("--utilisation", type=float, default=0.7, help="plan CPU and memory at this share")
    parser.add_argument("--costs", type=Path, help="measured costs (JSON with the fields of Costs)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = parser.parse_args(argv)
    try:
        workload = Workload(
            args.connections, args.publishes, args.fanout, args.recovery, args.memory_gib, args.utilisation
        )
        result = plan(workload, load_costs(args.costs))
    except (ValueError, OSError) as exc:
        print(f"webshocket capacity: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(asdict(result)))
        return 0
    print(
        f"{result.processes} worker process(es) (one core each; decided by {result.limit}), "
        f"{result.cpu_per_process:.0%} of a core and {result.memory_gib_per_process:.2f} GiB each\n"
        f"{result.deliveries_per_s:,.0f} deliveries/s; a publish reaches {result.processes_reached:.1f} process(es)\n"
        + (
            f"Redis: {result.redis_cores:.3f} core(s) -> {result.redis_shards} shard(s)"
            if result.redis_shards
            else "Redis: not needed (one process)"
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
