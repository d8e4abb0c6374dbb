"""The runner: every scenario against every server, repeated, medians, three output files.

``webshocket bench [--quick] [--servers ours,redis,2w-redis,pure,052,raw] [--repeat 3] ...``
(``python -m webshocket.bench``, or ``python -m benchmarks.e2e`` in a clone; ``--help`` lists the
options). Each run starts a fresh server process pinned to one core (``taskset -c 0``), waits
for its ``READY`` line, runs the load generator in its own process pinned to the other core
(``taskset -c 1``), then ends the server. Runs are interleaved
(repeat, then scenario, then server in an order rotated per repeat) so a slow phase of a
shared machine does not land on one server only. The suite writes ``e2e.json`` (every run,
the medians, the ratios, the machine), ``e2e.md`` (tables) and ``e2e.png`` (chart, when
matplotlib is installed) into ``--out`` (default: ``benchmarks/results/`` in a clone,
``./webshocket-bench-results/`` for an installed package) and prints the ratios of ours to the
others. It exits 1 when a run failed (errors are never counted as throughput), 2 on
bad usage.

From an installed package (a wheel) every kind that needs nothing but this package runs: ours
compiled and pure, raw picows, ours with recovery, ours + Redis (with ``redis-server`` and the
``redis`` extra). Two need more: ``052`` needs a virtualenv holding webshocket 0.5.2 (``--venv-052
PATH``; a clone builds one by itself, :mod:`.venv052`) and ``base``/``base-pure`` another source
tree (``--baseline DIR``). Selecting one without what it needs is one line on stderr saying how to
enable it, and exit status 2. So does ``node``, a Node.js server on ``ws`` (:mod:`.nodews`), without
node or its packages (``npm ci --prefix benchmarks`` in a clone, or ``--node-modules DIR``); in the
default server list it is left out with a note instead.

Cost curves (issue 17): ``--curves`` runs the points of :mod:`.curves` instead of the default
scenarios (fan-out vs subscribers, vs channels, vs non-matching patterns; connection churn;
open-loop latency at shares of each server's closed-loop peak, measured earlier in the same run;
memory), the same way, and writes ``curves.json``, ``curves.md`` and ``curves-<curve>.png``.

Scale-out (issue #6): ``ours-redis`` (one process publishing through a Redis backplane)
and ``ours-2w-redis`` (two worker processes sharing the port through ``SO_REUSEPORT``,
joined by Redis) serve the same app, compiled, and run the fan-out scenarios only (RPC
never touches the backplane; the RSS of one process does not describe several). When one
of them is selected the runner starts one throwaway ``redis-server`` (free port, no
persistence) pinned to the server core with the workers, and kills it at the end; without
``redis-server`` on the PATH they are left out with a note. Their server CPU is the sum over
the parent and worker processes; Redis's own CPU is reported next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from . import nodews, procs, report

HERE = Path(__file__).resolve().parent
SERVERS_DIR = HERE / "servers"
RESULTS_DIR = "webshocket-bench-results"  # the default --out of an installed package, in the working directory


def default_out() -> Path:
    """``benchmarks/results`` of the clone this runs from, else ``./webshocket-bench-results``."""
    if procs.SOURCE_TREE is not None:
        return procs.SOURCE_TREE / "benchmarks" / "results"
    return Path.cwd() / RESULTS_DIR


class Unavailable(Exception):
    """A selected server kind cannot run here; the message says how to enable it, in one line."""


# --------------------------------------------------------------------------- what is compared


#: scenario kinds every server runs (each peer answers add, subscribe, publish and count), and ours'
#: (the patterns curve: glob patterns are ours only)
PEER_KINDS = ("rpc", "fanout", "memory", "churn", "rpc-open", "fanout-open")
OURS_KINDS = (*PEER_KINDS, "patterns")


@dataclass(frozen=True)
class ServerKind:
    """One implementation under test."""

    key: str
    label: str
    script: str
    pure: bool = False  # ours with WEBSHOCKET_NO_EXTENSIONS=1
    venv: bool = False  # runs with the python of the webshocket 0.5.2 virtualenv
    compiled: bool = False  # ours, every compiled module must be loaded
    workers: int = 1  # worker processes sharing the port (serve_workers when above 1)
    redis: bool = False  # served through a Redis backplane (the runner's redis-server)
    kinds: tuple[str, ...] = PEER_KINDS  # scenario kinds it runs
    baseline: bool = False  # ours from the source tree given by --baseline (a before/after comparison)
    recovery: bool = False  # ours with recovery=True (channel history, sessions)
    node: bool = False  # the Node.js ws server (node_ws.mjs, run by node: see nodews)


SCALE_OUT_KINDS = ("fanout",)
SERVERS: dict[str, ServerKind] = {
    s.key: s
    for s in (
        ServerKind("ours", "ours (compiled)", "webshocket_app.py", compiled=True, kinds=OURS_KINDS),
        ServerKind(
            "ours-redis",
            "ours, 1 worker + Redis",
            "webshocket_app.py",
            compiled=True,
            redis=True,
            kinds=SCALE_OUT_KINDS,
        ),
        ServerKind(
            "ours-2w-redis",
            "ours, 2 workers + Redis",
            "webshocket_app.py",
            compiled=True,
            workers=2,
            redis=True,
            kinds=SCALE_OUT_KINDS,
        ),
        ServerKind("ours-pure", "ours (pure Python)", "webshocket_app.py", pure=True, kinds=OURS_KINDS),
        ServerKind(
            "ours-recovery",
            "ours, recovery on",
            "webshocket_app.py",
            compiled=True,
            recovery=True,
            kinds=("fanout", "memory"),
        ),
        ServerKind(
            "ours-redis-recovery",
            "ours, 1 worker + Redis, recovery on",
            "webshocket_app.py",
            compiled=True,
            redis=True,
            recovery=True,
            kinds=SCALE_OUT_KINDS,
        ),
        ServerKind(
            "baseline", "baseline (compiled)", "webshocket_app.py", compiled=True, baseline=True, kinds=OURS_KINDS
        ),
        ServerKind(
            "baseline-pure", "baseline (pure Python)", "webshocket_app.py", pure=True, baseline=True, kinds=OURS_KINDS
        ),
        ServerKind("webshocket-0.5.2", "webshocket 0.5.2", "webshocket_app.py", venv=True),
        ServerKind("raw-picows", "raw picows", "raw_picows.py"),
        ServerKind("node-ws", "Node ws", "node_ws.mjs", node=True),
    )
}
ALIASES = {
    "ours": "ours",
    "compiled": "ours",
    "redis": "ours-redis",
    "ours-redis": "ours-redis",
    "2w-redis": "ours-2w-redis",
    "ours-2w-redis": "ours-2w-redis",
    "pure": "ours-pure",
    "ours-pure": "ours-pure",
    "052": "webshocket-0.5.2",
    "0.5.2": "webshocket-0.5.2",
    "webshocket-0.5.2": "webshocket-0.5.2",
    "recovery": "ours-recovery",
    "ours-recovery": "ours-recovery",
    "redis-recovery": "ours-redis-recovery",
    "ours-redis-recovery": "ours-redis-recovery",
    "raw": "raw-picows",
    "raw-picows": "raw-picows",
    "node": "node-ws",
    "ws": "node-ws",
    "node-ws": "node-ws",
    "base": "baseline",
    "baseline": "baseline",
    "base-pure": "baseline-pure",
    "baseline-pure": "baseline-pure",
}
ALL_SERVERS = "ours,redis,2w-redis,pure,052,raw,node"
INSTALLED_SERVERS = "ours,redis,2w-redis,pure,raw"  # the default of an installed package (052 with --venv-052)


def default_servers(venv_052: Path | None, node_modules: Path | None = None) -> str:
    """The servers run when ``--servers`` is not given (and what ``all`` means; node is left out with a
    note when it cannot run)."""
    if procs.SOURCE_TREE is not None or venv_052 is not None:
        return ALL_SERVERS
    return INSTALLED_SERVERS + (",node" if node_modules is not None else "")


@dataclass
class Scenario:
    """One measurement; ``params`` go to the load generator.

    The points of the cost curves (``--curves``, :mod:`.curves`) also say which ``curve`` they
    belong to and their ``x``; an open-loop point is offered ``fraction`` of the peak of the
    closed-loop scenario ``base`` for the same server; ``server_options`` go to the server script.
    """

    key: str
    label: str
    kind: str  # rpc | fanout | memory | patterns | churn | rpc-open | fanout-open (the load generator's scenario)
    params: dict[str, Any] = field(default_factory=dict)
    curve: str = ""
    x: float = 0.0
    base: str = ""
    fraction: float = 0.0
    shared: bool = False  # open loop: ``fraction`` of the lowest peak of the run's servers, the same load for all
    server_options: tuple[str, ...] = ()

    def meta(self) -> dict[str, Any]:
        """What ``e2e.json``/``curves.json`` record of it."""
        out = {"label": self.label, "kind": self.kind, **self.params}
        if self.curve:
            out.update(curve=self.curve, x=self.x)
        if self.base:
            out.update(base=self.base, fraction=self.fraction)
        return out


def scenarios(subscribers: list[int], idle: int, sizes: tuple[int, ...] = (64, 1024)) -> list[Scenario]:
    """The suite: RPC 1x64 and 50x16, fan-out per subscriber count and payload size, memory."""
    out = [
        Scenario("rpc-1x64", "RPC add, 1 conn x 64 in flight", "rpc", {"connections": 1, "inflight": 64}),
        Scenario("rpc-50x16", "RPC add, 50 conns x 16 in flight", "rpc", {"connections": 50, "inflight": 16}),
    ]
    for count in subscribers:
        for size in sizes:
            name = f"{size} B" if size < 1024 else f"{size // 1024} KiB"
            out.append(
                Scenario(
                    f"fanout-{count}x{size}",
                    f"fan-out, {count:,} subscribers, {name}",
                    "fanout",
                    {"subscribers": count, "size": size, "inflight": 8},
                )
            )
    out.append(Scenario(f"memory-{idle}", f"memory, {idle:,} idle connections", "memory", {"idle": idle}))
    return out


def curve_plan(args: argparse.Namespace) -> list[Scenario]:
    """The points of the cost curves (``--curves``), from the counts on the command line."""
    from . import curves

    return curves.scenarios(
        args.subscriber_counts,
        args.channel_counts,
        args.subscriptions,
        args.pattern_counts,
        args.parallel_counts,
        args.load_percents,
        args.idle,
        args.latency_subscribers,
    )


def open_loop_rate(
    scenario: Scenario, kind: ServerKind, runs: list[dict[str, Any]], plan: list[Scenario]
) -> dict[str, Any] | None:
    """For an open-loop point: ``kind``'s peak so far (the median of its passing ``scenario.base``
    runs; for a ``shared`` point the lowest such peak of the run's servers), the scenario it came
    from and the ``rate`` offered (None without a peak); None otherwise."""
    if not scenario.base:
        return None
    from . import curves

    base = next(s for s in plan if s.key == scenario.base)
    peak = curves.peak(runs, kind.key, base)
    if scenario.shared and peak:  # the same offered load for every server: a share of the slowest one's peak
        peaks = [curves.peak(runs, server, base) for server in {r["server"] for r in runs if r["scenario"] == base.key}]
        peak = min(p for p in peaks if p)
    return {"peak": peak, "peak_of": base.key, "rate": peak * scenario.fraction if peak else None}


def runs_scenario(kind: ServerKind, scenario: Scenario) -> bool:
    """True when ``kind`` is measured on ``scenario`` (the scale-out kinds: fan-out only)."""
    return scenario.kind in kind.kinds


def loadgen_timeout(scenario: Scenario, warmup: float, duration: float) -> float:
    """Seconds the load generator may take before it stops itself (generous: slow servers too)."""
    if scenario.kind in ("rpc", "rpc-open", "churn"):
        return warmup + duration + 60
    if scenario.kind in ("fanout", "patterns", "fanout-open"):
        held = float(scenario.params.get("patterns", 0)) * 0.002
        return warmup + duration + 90 + float(scenario.params["subscribers"]) * 0.05 + held
    return 90 + float(scenario.params["idle"]) * 0.02


# --------------------------------------------------------------------------- processes


def server_command(
    kind: ServerKind, venv_python: Path | None, redis_url: str | None = None, baseline: Path | None = None
) -> tuple[list[str], dict[str, str]]:
    """Interpreter + script (+ scale-out options), and the environment, for ``kind``."""
    if kind.node:
        assert node_ws is not None
        return node_ws.command(SERVERS_DIR / kind.script)
    script = str(SERVERS_DIR / kind.script)
    if kind.venv:
        from . import venv052

        assert venv_python is not None
        return [str(venv_python), script], venv052.clean_env()
    env = {k: v for k, v in os.environ.items() if k not in ("WEBSHOCKET_NO_EXTENSIONS", "WEBSHOCKET_NO_UVLOOP")}
    env["PYTHONUNBUFFERED"] = "1"
    if kind.pure:
        env["WEBSHOCKET_NO_EXTENSIONS"] = "1"
    if kind.baseline:
        assert baseline is not None
        env["PYTHONPATH"] = str(baseline)  # its webshocket package comes first
    options: list[str] = []
    if kind.workers > 1:
        options += ["--workers", str(kind.workers)]
    if kind.redis:
        assert redis_url is not None
        options += ["--backplane", redis_url]
    if kind.recovery:
        options.append("--recovery")
    return [sys.executable, script, *options], env


def check_server(kind: ServerKind, info: dict[str, Any]) -> str | None:
    """Why the server that said ``info`` is not the implementation wanted (None if it is)."""
    if kind.node:  # not Python: no uvloop, no compiled modules
        assert node_ws is not None
        return node_ws.problem(info)
    if not info.get("uvloop"):
        return "server is not running on uvloop"
    speedups = info.get("speedups") or {}
    if kind.compiled and not (speedups and all(speedups.values())):
        return f"compiled modules missing: {speedups}"
    if kind.redis and not str(info.get("backplane", "")).startswith("redis://"):
        return f"expected a Redis backplane, got {info.get('backplane')!r}"
    if kind.redis and len(info.get("workers") or []) != kind.workers:
        return f"expected {kind.workers} worker(s), got {info.get('workers')!r}"
    if kind.recovery and not info.get("recovery"):
        return "expected a server with recovery on"
    if kind.pure and any(speedups.values()):
        return f"compiled modules loaded in the pure run: {speedups}"
    if kind.venv and info.get("version") != "0.5.2":
        return f"expected webshocket 0.5.2, got {info.get('version')}"
    if kind.baseline and not str(info.get("file", "")).startswith(str(baseline_tree)):
        return f"expected the baseline's webshocket from {baseline_tree}, got {info.get('file')!r}"
    if not kind.venv and kind.key.startswith("ours") and info.get("version") != our_version():
        return f"expected our webshocket {our_version()}, got {info.get('version')}"
    return None


baseline_tree: Path | None = None  # --baseline
node_ws: nodews.NodeWs | None = None  # node and the packages of the server node-ws, when selected


def our_version() -> str:
    """Version of the webshocket installed for this interpreter (this repository)."""
    try:
        return metadata.version("webshocket")
    except metadata.PackageNotFoundError:
        return "?"


def run_one(
    kind: ServerKind,
    scenario: Scenario,
    args: argparse.Namespace,
    venv_python: Path | None,
    redis: procs.Redis | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One server process, one load generator run; the record of the run (``extra`` goes to the
    load generator's spec and into the record: the rate of an open-loop point)."""
    started = time.perf_counter()
    record: dict[str, Any] = {"server": kind.key, "scenario": scenario.key, **(extra or {})}
    if kind.redis and (redis is None or redis.process.poll() is not None):
        record.update(ok=False, errors={"redis-server is not running": 1})
        return record
    argv, env = server_command(
        kind, venv_python, redis.url if redis is not None and kind.redis else None, args.baseline
    )
    argv += scenario.server_options
    port = procs.free_port()
    try:
        server = procs.start_server(argv, port, env=env, cpu=args.server_cpu)
    except RuntimeError as exc:
        record.update(ok=False, errors={"server did not start": 1}, detail=str(exc)[-2000:])
        return record
    try:
        record["server_info"] = server.info
        problem = check_server(kind, server.info)
        if problem is not None:
            record.update(ok=False, errors={problem: 1})
            return record
        timeout = loadgen_timeout(scenario, args.warmup, args.duration)
        spec = {
            "scenario": scenario.kind,
            **scenario.params,
            "port": port,
            "server_pid": server.pid,
            "duration": args.duration,
            "warmup": args.warmup,
            "settle": args.settle,
            "timeout": timeout,
            **(extra or {}),
        }
        if kind.redis:
            workers = [int(w["pid"]) for w in server.info["workers"]]
            spec["worker_pids"] = workers  # every subscriber asks which one serves it
            spec["cpu_pids"] = list(dict.fromkeys([server.pid, *workers]))  # parent and workers
            spec["redis_pid"] = redis.pid if redis is not None else None
        loadgen = [sys.executable, "-m", "webshocket.bench.loadgen", json.dumps(spec)]
        result = procs.run_json(loadgen, cpu=args.loadgen_cpu, timeout=timeout + 15)
        if server.process.poll() is not None:
            result["ok"] = False
            result.setdefault("errors", {})[f"server exited with {server.process.returncode}"] = 1
        record.update(result)
        if not record.get("ok"):
            record["server_stderr"] = procs.stderr_tail(server.process)
        return record
    finally:
        procs.reap(server.process)
        record["wall_s"] = time.perf_counter() - started


def scale_out_notes(
    kinds: list[ServerKind], plan: list[Scenario], args: argparse.Namespace, redis: procs.Redis
) -> list[str]:
    """What the report says about the scale-out kinds: what they skip, where they ran."""
    labels = "The Redis kinds (" + "; ".join(k.label for k in kinds if k.redis) + ")"
    names = {"rpc": "RPC", "fanout": "fan-out", "memory": "memory"}
    skipped = list(
        dict.fromkeys(names.get(s.kind, s.kind) for s in plan for k in kinds if k.redis and not runs_scenario(k, s))
    )
    notes = []
    if skipped:
        notes.append(
            f"{labels}: fan-out scenarios only, {' and '.join(skipped)} not run (RPC never touches the "
            "backplane; the RSS of one process does not describe several workers)"
        )
    where = (
        f"all on the server core ({args.server_cpu}), the load generator alone on core {args.loadgen_cpu}"
        if args.server_cpu is not None
        else "not pinned"
    )
    notes.append(
        f"{labels}: the worker processes and redis-server {redis.version} share the server side, {where}; "
        f"on this {os.cpu_count()}-core machine these figures show the backplane's cost and that every "
        "delivery still arrives exactly once across workers, not a parallel speedup. Server CPU is summed "
        "over the parent and worker processes; Redis's CPU is shown after it"
    )
    return notes


# --------------------------------------------------------------------------- progress


class Progress:
    """A textual progress bar on stderr (one line per step when stderr is not a terminal)."""

    def __init__(self, total: int, width: int = 30) -> None:
        self.total = total
        self.done = 0
        self.width = width
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()

    def show(self, label: str, final: bool = False) -> None:
        """Redraw with ``label`` as the step in progress (without a terminal: only finished steps)."""
        if not self.tty and not final:
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        filled = int(self.width * self.done / self.total) if self.total else self.width
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"[{bar}] {self.done}/{self.total} {fmt_s(elapsed)} eta {fmt_s(eta)}  {label}"
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def step(self, label: str) -> None:
        """One step done."""
        self.done += 1
        self.show(label, final=True)

    def close(self) -> None:
        """End the bar's line."""
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def fmt_s(seconds: float) -> str:
    """``1m05s``."""
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes}m{sec:02d}s"


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "?"

    def git(*cmd: str) -> str:
        if procs.SOURCE_TREE is None:  # an installed package: no commit (nor any enclosing repository's)
            return "?"
        try:
            return subprocess.run(
                ["git", *cmd], cwd=procs.SOURCE_TREE, capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "webshocket": our_version(),
        "picows": version("picows"),
        "uvloop": version("uvloop"),
        "msgpack": version("msgpack"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if procs.SOURCE_TREE else False,
        "installed": procs.SOURCE_TREE is None,
    }


# --------------------------------------------------------------------------- main


EPILOG = """\
servers (--servers, comma list):
  ours             ours, compiled (every compiled module must be loaded)
  pure             ours, pure Python (WEBSHOCKET_NO_EXTENSIONS=1)
  raw              a minimal raw-picows server: the yardstick
  redis, 2w-redis  ours through a Redis backplane, 1 worker / 2 workers sharing the port (fan-out only;
                   need redis-server on PATH and the redis client: pip install 'webshocket[redis]')
  recovery         ours with recovery=True (fan-out and memory); redis-recovery: the same through Redis
  052              PyPI webshocket 0.5.2, in a virtualenv of its own: --venv-052 PATH (a clone builds it)
  base, base-pure  another source tree of webshocket, compiled / pure: --baseline DIR
  node             a Node.js server on ws (with bufferutil; msgpackr): needs node and its packages,
                   'npm ci --prefix benchmarks' in a clone, or --node-modules DIR
  all              the default: ours,redis,2w-redis,pure,052,raw,node (installed package without --venv-052:
                   ours,redis,2w-redis,pure,raw, and node with --node-modules)

curves (--curves, issue 17; each point a scenario, medians of --repeat runs like the others):
  fanout-<n>x64            fan-out deliveries/s and server CPU per delivery vs subscribers (--subscribers:
                           1000,5000,19000; the most a 20,000 file descriptor limit allows)
  channels-<c>x<n>         the same vs channels at --subscriptions in all (--channels 1,100,10000), the
                           publisher round-robin over them, every subscriber checking its own channel
  patterns-<n>             server CPU per publish vs non-matching glob patterns held by one connection
                           (--patterns 0,1000,100000), 100 subscribers; ours and pure only
  churn-<n>                handshakes/s (connect, one add, close) and server CPU per handshake vs
                           connections cycling in parallel (--parallel 1,8,32)
  rpc-open-<pct>           open-loop latency p50/p99/p99.9 at --loads 50,90 % of each server's peak, taken
  fanout-open-<n>-<pct>    from its closed-loop rpc-50x16 / fanout-<n>x64 runs of the same suite run (run
                           first, and added when --scenarios leaves them out); achieved vs offered rate;
                           n = --latency-subscribers (100)
  rpc-same-<pct>,          the same, every server offered the same rate: --loads % of the slowest server's
  fanout-same-<n>-<pct>    peak (p99 at equal load)
  memory-<n>               RSS per idle connection at --idle (19000) connections
  default servers: all but the Redis kinds. Outputs: curves.json, curves.md (a table per curve),
  curves-<curve>.png (one chart per curve) in --out.

outputs: e2e.json (every run, medians, ratios, machine), e2e.md (tables), e2e.png (chart; needs
matplotlib: pip install matplotlib) in --out; the ratios of ours to the others are printed.
Exit status: 0 when every run passed its checks, 1 when one failed, 2 on bad usage.
"""


def usage_error(prog: str, message: str) -> int:
    """One line on stderr, exit status 2."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    return 2


def parse_args(argv: list[str] | None, prog: str = "webshocket bench") -> argparse.Namespace:
    """Command line; ``--quick`` changes the defaults of the options not given.

    Raises :class:`Unavailable` when a selected server kind needs what is not there (the 0.5.2
    virtualenv from an installed package, ``--baseline``); argparse exits 2 on malformed options.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The end-to-end benchmark suite: every scenario against every server, every reply and\n"
        "delivery verified; medians, and the ratios of ours to the others.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 s runs, 1 repeat, small counts (~1 min)")
    parser.add_argument(
        "--curves",
        action="store_true",
        help="run the cost curves (below) instead of the default scenarios; writes curves.json, curves.md, "
        "curves-<curve>.png",
    )
    parser.add_argument("--channels", help="curves: channel counts (1,100,10000; quick: 1,10,100)")
    parser.add_argument(
        "--subscriptions", type=int, help="curves: subscriptions in all, over the channels (10000; quick: 100)"
    )
    parser.add_argument("--patterns", help="curves: non-matching patterns (0,1000,100000; quick: 0,100,1000)")
    parser.add_argument("--parallel", help="curves: connections cycling in parallel, churn (1,8,32; quick: 1,4)")
    parser.add_argument("--loads", help="curves: open-loop loads, %% of each server's closed-loop peak (50,90)")
    parser.add_argument(
        "--latency-subscribers",
        type=int,
        help="curves: subscribers of the open-loop publish-to-delivery points (100): with more, "
        "the time the load generator takes to read a publish out of them all is every server's latency",
    )
    parser.add_argument(
        "--servers",
        default=None,
        help="comma list of server kinds (below); default: all (the Redis kinds are left out with a note "
        "when redis-server or the redis client is missing, node when node or its packages are)",
    )
    parser.add_argument(
        "--scenarios",
        default="",
        help="comma list of scenario keys or prefixes: rpc-1x64, rpc-50x16, fanout-<subscribers>x<bytes>, "
        "memory-<idle>; e.g. 'rpc,fanout-1000' (default: all); with --curves the keys below",
    )
    parser.add_argument("--repeat", type=int, help="runs per server and scenario; medians reported (3; quick: 1)")
    parser.add_argument("--duration", type=float, help="measurement window per run, seconds (5; quick: 1)")
    parser.add_argument("--warmup", type=float, help="load before the window, seconds (1; quick: 0.3)")
    parser.add_argument(
        "--subscribers",
        help="fan-out subscriber counts, comma list (1000,5000; curves: 1000,5000,19000; quick: 100,500)",
    )
    parser.add_argument("--idle", type=int, help="idle connections of the memory scenario (19000; quick: 1000)")
    parser.add_argument("--settle", type=float, help="pause before each RSS reading, seconds (1; quick: 0.3)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"output directory (default: benchmarks/results in a clone, ./{RESULTS_DIR} for an installed package)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--server-cpu", default="0", help="core of the servers (0)")
    parser.add_argument("--loadgen-cpu", default="1", help="core of the load generator (1)")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG (no matplotlib needed)")
    parser.add_argument(
        "--venv-052",
        type=Path,
        metavar="PATH",
        help="a virtualenv holding webshocket==0.5.2 and uvloop (its directory or its python) for the server "
        "052; without it a clone builds one in benchmarks/.venvs, an installed package cannot run 052",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="another source tree of webshocket (e.g. a git worktree of an earlier commit, extensions built "
        "in place) measured beside this one as the servers 'base' and 'base-pure': before/after in one run",
    )
    parser.add_argument(
        "--node-modules",
        type=Path,
        metavar="DIR",
        help=f"the node_modules directory (ws, bufferutil, msgpackr) of the server node (default: ${nodews.ENV}, "
        f"else benchmarks/node_modules of a clone, made by '{nodews.INSTALL}')",
    )
    args = parser.parse_args(argv)
    args.prog = prog
    quick = args.quick
    defaults: dict[str, Any] = {
        "repeat": 1 if quick else 3,
        "duration": 1.0 if quick else 5.0,
        "warmup": 0.3 if quick else 1.0,
        "subscribers": "100,500" if quick else "1000,5000,19000" if args.curves else "1000,5000",
        "idle": 1000 if quick else 19000,
        "channels": "1,10,100" if quick else "1,100,10000",
        "subscriptions": 100 if quick else 10000,
        "patterns": "0,100,1000" if quick else "0,1000,100000",
        "parallel": "1,4" if quick else "1,8,32",
        "loads": "50,90",
        "latency_subscribers": 100,
        "settle": 0.3 if quick else 1.0,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.out is None:
        args.out = default_out()
    every = default_servers(args.venv_052, args.node_modules or nodews.default_modules())
    named = args.servers  # None: the default list
    if args.servers is None:
        args.servers = every if not args.curves else ",".join(n for n in every.split(",") if "redis" not in n)
    try:
        args.subscriber_counts = [int(x) for x in str(args.subscribers).split(",") if x.strip()]
        args.channel_counts, args.pattern_counts, args.parallel_counts, args.load_percents = (
            [int(x) for x in str(text).split(",") if x.strip()]
            for text in (args.channels, args.patterns, args.parallel, args.loads)
        )
        names = [x.strip().lower() for x in args.servers.split(",") if x.strip()]
        names = [n for name in names for n in (every.split(",") if name == "all" else [name])]
        keys = [ALIASES[name] for name in names]
    except (KeyError, ValueError) as exc:
        parser.error(f"bad --servers or --subscribers: {exc}")
    args.server_keys = list(dict.fromkeys(keys))
    if args.repeat < 1 or args.duration <= 0 or args.warmup < 0 or args.idle < 1:
        parser.error("--repeat, --duration and --idle must be positive, --warmup not negative")
    if args.curves:
        counts = [*args.subscriber_counts, *args.channel_counts, *args.parallel_counts, *args.load_percents]
        counts += [args.subscriptions, args.latency_subscribers]
        if not all(args.subscriber_counts and args.channel_counts and args.parallel_counts and args.load_percents):
            parser.error("--subscribers, --channels, --parallel and --loads need at least one value each")
        if min(counts) < 1 or min(args.pattern_counts, default=0) < 0:
            parser.error("curve counts must be positive (patterns: not negative)")
        if any(args.subscriptions % c for c in args.channel_counts):
            parser.error(f"--subscriptions {args.subscriptions} must be a multiple of every --channels count")
    if any(SERVERS[k].baseline for k in args.server_keys) and args.baseline is None:
        raise Unavailable(
            "the servers base and base-pure need --baseline DIR: another source tree of webshocket "
            "(e.g. a git worktree of an earlier commit, extensions built in place)"
        )
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
        if not (args.baseline / "webshocket" / "__init__.py").exists():
            raise Unavailable(f"--baseline {args.baseline}: no webshocket package there (give a source tree)")
        global baseline_tree
        baseline_tree = args.baseline
    args.venv_python = None
    if any(SERVERS[k].venv for k in args.server_keys) and (args.venv_052 is not None or procs.SOURCE_TREE is None):
        from . import venv052

        try:
            args.venv_python = (
                venv052.given(args.venv_052) if args.venv_052 is not None else venv052.venv_python()
            )  # an installed package: says how to make it
        except venv052.Unavailable as exc:
            raise Unavailable(str(exc)) from None
    args.node_missing = None  # why node, in the default list, is left out
    if "node-ws" in args.server_keys:
        global node_ws
        try:
            node_ws = nodews.locate(args.node_modules)
        except nodews.Unavailable as exc:
            if named is not None and any(ALIASES.get(n.strip().lower()) == "node-ws" for n in named.split(",")):
                raise Unavailable(str(exc)) from None
            args.node_missing = str(exc)
    return args


def main(argv: list[str] | None = None, prog: str = "webshocket bench") -> int:
    """Run the suite; 0 when every run passed its checks (``prog`` names the command in messages and outputs)."""
    try:
        args = parse_args(argv, prog)
    except Unavailable as exc:
        return usage_error(prog, str(exc))
    why_not = None if args.no_pin else procs.pinning_available()
    if args.no_pin or why_not:
        args.server_cpu = args.loadgen_cpu = None
    every_scenario = curve_plan(args) if args.curves else scenarios(args.subscriber_counts, args.idle)
    plan = every_scenario
    if args.scenarios:
        wanted = [w.strip() for w in args.scenarios.split(",") if w.strip()]
        plan = [s for s in plan if any(s.key == w or s.key.startswith(w) for w in wanted)]
        if not plan:
            sys.stderr.write(f"no scenario matches {args.scenarios!r}\n")
            return 2
        bases = {s.base for s in plan if s.base}  # the closed-loop runs the open-loop points take their peak from
        plan = [s for s in every_scenario if s in plan or s.key in bases]
    kinds = [SERVERS[k] for k in SERVERS if k in args.server_keys]  # columns in a fixed order: scale-out next to ours
    notes: list[str] = []
    if why_not:
        notes.append(f"not pinned to cores: {why_not}")
    if any(k.redis for k in kinds):
        missing = procs.redis_missing()
        if missing:
            notes.append(f"scale-out kinds (ours + Redis) left out: {missing}")
            sys.stderr.write(notes[-1] + "\n")
            kinds = [k for k in kinds if not k.redis]
    if args.node_missing:
        notes.append(f"Node ws left out: {args.node_missing}")
        sys.stderr.write(notes[-1] + "\n")
        kinds = [k for k in kinds if not k.node]
    elif node_ws is not None and any(k.node for k in kinds):
        notes.append(f"Node ws: {node_ws.describe()}")
    if not kinds:
        sys.stderr.write("no server left to run\n")
        return 2
    plan = [s for s in plan if any(runs_scenario(k, s) for k in kinds)]
    if not plan:
        sys.stderr.write(f"none of the servers runs the scenarios {args.scenarios!r} (the Redis kinds: fan-out only)\n")
        return 2

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # same as Ctrl-C: stop, reap everything, write what was measured

    signal.signal(signal.SIGTERM, on_term)
    venv_python: Path | None = args.venv_python  # --venv-052, checked
    if any(k.venv for k in kinds) and venv_python is None:  # a clone: build it
        sys.stderr.write("preparing the webshocket 0.5.2 virtualenv ...\n")
        try:
            from . import venv052

            venv_python = venv052.venv_python()
        except Exception as exc:
            notes.append(f"webshocket 0.5.2 left out: its virtualenv could not be built ({exc})")
            sys.stderr.write(notes[-1] + "\n")
            kinds = [k for k in kinds if not k.venv]
    redis: procs.Redis | None = None
    redis_meta: dict[str, Any] = {}
    if any(k.redis for k in kinds):
        try:
            redis = procs.start_redis(cpu=args.server_cpu)
        except RuntimeError as exc:
            notes.append(f"scale-out kinds (ours + Redis) left out: {exc}")
            sys.stderr.write(notes[-1] + "\n")
            kinds = [k for k in kinds if not k.redis]
        else:
            redis_meta = {"version": redis.version, "pid": redis.pid, "port": redis.port}
            notes += scale_out_notes(kinds, plan, args, redis)
    if not kinds:
        sys.stderr.write("no server left to run\n")
        return 2
    started = datetime.datetime.now(datetime.timezone.utc)
    runs: list[dict[str, Any]] = []
    total = args.repeat * sum(1 for s in plan for k in kinds if runs_scenario(k, s))
    progress = Progress(total)
    interrupted = False
    try:
        for repeat in range(args.repeat):
            order = kinds[repeat % len(kinds) :] + kinds[: repeat % len(kinds)] if kinds else []
            for scenario in plan:
                for kind in order:
                    if not runs_scenario(kind, scenario):
                        continue
                    progress.show(f"{kind.key} {scenario.key} #{repeat + 1}")
                    extra = open_loop_rate(scenario, kind, runs, plan)
                    if extra is not None and extra["rate"] is None:
                        problem = f"no peak: no passing {scenario.base} run of this server before it"
                        record = {"server": kind.key, "scenario": scenario.key, "ok": False, "errors": {problem: 1}}
                    else:
                        record = run_one(kind, scenario, args, venv_python, redis, extra)
                    record["repeat"] = repeat
                    runs.append(record)
                    status = "ok" if record.get("ok") else "FAILED"
                    progress.step(f"{kind.key} {scenario.key} #{repeat + 1}: {status}")
    except KeyboardInterrupt:
        interrupted = True
        notes.append("interrupted: partial results")
    finally:
        progress.close()
        if redis is not None:
            redis.close()
        procs.kill_all()
    data = {
        "meta": {
            "started": started.isoformat(timespec="seconds"),
            "wall_s": (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(),
            "command": " ".join([prog, *(sys.argv[1:] if argv is None else argv)]),
            "baseline": str(args.baseline) if args.baseline is not None else None,
            "machine": machine(),
            "settings": {
                "repeat": args.repeat,
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "settle_s": args.settle,
                "server_cpu": args.server_cpu,
                "loadgen_cpu": args.loadgen_cpu,
                "quick": args.quick,
            },
            "servers": {k.key: k.label for k in kinds},
            "scenarios": {s.key: s.meta() for s in plan},
            "server_kinds": {k.key: list(k.kinds) for k in kinds},
            "redis": redis_meta,
            "notes": notes,
        },
        "runs": runs,
    }
    if args.curves:
        from . import curves

        curves.finish(data, args.out, chart=not args.no_chart)
    else:
        report.finish(data, args.out, chart=not args.no_chart)
    failed = [r for r in runs if not r.get("ok")]
    if failed:
        sys.stderr.write(f"{len(failed)} of {len(runs)} runs FAILED:\n")
        for r in failed:
            sys.stderr.write(f"  {r['server']} {r['scenario']} #{r.get('repeat', 0) + 1}: {r.get('errors')}\n")
    return 1 if failed or interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
