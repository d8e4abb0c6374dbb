"""The runner: each attack against a fresh server process while well-behaved clients keep calling.

``python -m benchmarks.hostile [--quick] [--attacks a,b] [--out DIR] [--pure]`` (``--help``
lists the rest). For each attack it starts the server (:mod:`.server`, pinned to core 0 with
``taskset``, the e2e suite's process handling: :mod:`benchmarks.e2e.procs`), the
well-behaved clients (:mod:`.good`, pinned to core 1) and, after a warm-up, the attacker
(:mod:`.attacks`, core 1 too: its CPU is the clients' side, not the server's). A thread of
the runner samples the server's VmRSS every 50 ms throughout. When the attacker is done and
a tail has passed (the server cleaning up after it counts too), the clients stop, drain and
report every call; then every process is reaped.

Per attack it reports, over the calls sent from the attack's start to the end of the tail:
the worst and p99 latency of the well-behaved calls, how many were answered out of how many
sent, the server's baseline and peak RSS against the attack's bound (:mod:`.catalog`),
whether the attacker was cut, and a verdict: PASS when every call was answered, the worst
latency is below the limit (250 ms), the peak RSS is below the bound, the attack saw what it
expects of the server (a cut where the limits call for one, its own checks) and the server
was back to idle afterwards (no RPC running or queued, only the well-behaved clients
connected). It writes ``hostile.json`` and ``hostile.md`` into ``--out`` and exits 1 when
a verdict is FAIL (2 on bad usage).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import select
import statistics
import subprocess
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Any

from benchmarks.e2e import procs
from benchmarks.e2e import run as e2e
from benchmarks.e2e.loadgen import percentiles, proc_rss_kib

from . import catalog, report
from .catalog import Attack

DEFAULT_OUT = procs.REPO / "benchmarks" / "results"
GOOD_CLIENTS = 3
GOOD_INTERVAL_S = 0.005
RSS_INTERVAL_S = 0.05
DRAIN_S = 5.0


class RssSampler(threading.Thread):
    """Samples ``(time.monotonic(), VmRSS KiB)`` of one process every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, interval: float = RSS_INTERVAL_S) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        due = time.monotonic()
        while not self.halt.is_set():
            rss = proc_rss_kib(self.pid)
            if rss is None:  # the process is gone
                return
            self.samples.append((time.monotonic(), rss))
            due += self.interval
            self.halt.wait(max(0.0, due - time.monotonic()))

    def stop(self) -> None:
        """Stop sampling (returns once the thread has ended)."""
        self.halt.set()
        if self.is_alive():
            self.join(5)

    def between(self, start: float, end: float) -> list[int]:
        """RSS values (KiB) sampled in ``[start, end]``."""
        return [rss for t, rss in self.samples if start <= t <= end]


def client_env() -> dict[str, str]:
    """Environment of the clients and the attacker: compiled webshocket, whatever the server runs."""
    env = {k: v for k, v in os.environ.items() if k not in ("WEBSHOCKET_NO_EXTENSIONS", "WEBSHOCKET_NO_UVLOOP")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def server_env(pure: bool) -> dict[str, str]:
    """Environment of the server: ``WEBSHOCKET_NO_EXTENSIONS=1`` with ``--pure``."""
    env = client_env()
    if pure:
        env["WEBSHOCKET_NO_EXTENSIONS"] = "1"
    return env


def start_good(port: int, cpu: str | None, timeout: float = 30.0) -> subprocess.Popen[bytes]:
    """The well-behaved clients' process; returns once it printed ``READY`` (raises RuntimeError if not)."""
    spec = {"port": port, "clients": GOOD_CLIENTS, "interval": GOOD_INTERVAL_S, "drain": DRAIN_S, "timeout": 900}
    argv = [sys.executable, "-m", "benchmarks.hostile.good", json.dumps(spec)]
    process = procs.spawn([*procs.pin_prefix(cpu), *argv], env=client_env())
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        readable, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            break
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            break
        line += chunk
    if line != b"READY\n":
        tail = procs.stderr_tail(process)
        procs.reap(process, grace=1.0)
        raise RuntimeError(f"the well-behaved clients did not start: {line[:200]!r}\n{tail}")
    return process


def stop_good(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Close the clients' stdin (they stop, drain, report); their JSON record."""
    out = b""
    try:
        out, _ = process.communicate(timeout=DRAIN_S + 30)
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        result = {"ok": False, "errors": {f"well-behaved clients: {type(exc).__name__}": 1}}
        result["stderr"] = procs.stderr_tail(process)
        result["stdout"] = f"{len(out)} bytes, ending: " + out[-500:].decode(errors="replace")
    procs.reap(process, grace=1.0)
    return result


def latency_figures(calls: list[list[Any]], start: float, end: float) -> dict[str, Any]:
    """Calls sent in ``[start, end]``: how many, how many answered, latency percentiles (ms)."""
    window = [c for c in calls if start <= c[0] <= end]
    answered = [c for c in window if c[2]]
    samples = array("q", (int(c[1] * 1e9) for c in answered))
    pct = percentiles(samples)  # microseconds
    return {
        "sent": len(window),
        "answered": len(answered),
        "worst_ms": pct["max"] / 1000 if pct else None,
        "p99_ms": pct["p99"] / 1000 if pct else None,
        "p50_ms": pct["p50"] / 1000 if pct else None,
        "mean_ms": pct["mean"] / 1000 if pct else None,
    }


def verdict(record: dict[str, Any], latency_limit_ms: float) -> list[str]:
    """Why the attack FAILs (empty: PASS), from the figures recorded."""
    reasons: list[str] = []
    if record.get("errors"):
        reasons.append("did not run: " + "; ".join(record["errors"]))
    calls = record.get("calls") or {}
    sent, answered = calls.get("sent", 0), calls.get("answered", 0)
    if not sent:
        reasons.append("no well-behaved call was sent during the attack")
    elif answered < sent:
        reasons.append(f"{sent - answered} well-behaved call(s) unanswered")
    worst = calls.get("worst_ms")
    if worst is not None and worst >= latency_limit_ms:
        reasons.append(f"worst latency {worst:,.0f} ms >= {latency_limit_ms:,.0f} ms")
    rss = record.get("rss") or {}
    if rss.get("peak_kib") is None or rss.get("bound_kib") is None:
        reasons.append("no RSS measured")
    elif rss["peak_kib"] > rss["bound_kib"]:
        reasons.append(f"peak RSS {rss['peak_kib'] / 1024:,.1f} MiB > bound {rss['bound_kib'] / 1024:,.1f} MiB")
    if record.get("cut_ok") is False:
        expected = record.get("expect_cut")
        reasons.append("the server did not cut the attacker" if expected else "the server cut a client it should not")
    for name, ok in (record.get("checks") or {}).items():
        if not ok:
            reasons.append(f"failed: {name}")
    after = record.get("after") or {}
    if after.get("idle") is False:
        reasons.append(f"server not back to idle: {after.get('state')}")
    return reasons


def run_attack(attack: Attack, args: argparse.Namespace, kind: e2e.ServerKind) -> dict[str, Any]:
    """One attack against a fresh server; its record (figures, verdict)."""
    options = attack.server_options(args.quick)
    record: dict[str, Any] = {
        "attack": attack.key,
        "what": attack.what,
        "options": options,
        "handler": attack.handler,
        "expect_cut": attack.expect_cut,
        "errors": {},
    }
    argv = [sys.executable, "-m", "benchmarks.hostile.server", "--handler", attack.handler]
    argv += ["--options", json.dumps(options)]
    port = procs.free_port()
    started = time.monotonic()
    try:
        server = procs.start_server(argv, port, env=server_env(args.pure), cpu=args.server_cpu)
    except RuntimeError as exc:
        record["errors"] = {"server did not start": 1}
        record["detail"] = str(exc)[-2000:]
        record["reasons"] = verdict(record, args.latency_limit)
        record["verdict"] = "FAIL"
        return record
    sampler = RssSampler(server.pid)
    good: subprocess.Popen[bytes] | None = None
    try:
        record["server_info"] = server.info
        problem = e2e.check_server(kind, server.info)
        if problem is not None:
            record["errors"] = {problem: 1}
            return record
        config: dict[str, Any] = server.info["config"]
        sampler.start()
        good = start_good(port, args.client_cpu)
        ready = time.monotonic()
        time.sleep(args.warmup)
        spec = {
            "attack": attack.key,
            "port": port,
            "duration": args.duration,
            "config": config,
            "timeout": int(args.duration + 120),
        }
        attack_argv = [sys.executable, "-m", "benchmarks.hostile.attacks", json.dumps(spec)]
        launched = time.monotonic()
        result = procs.run_json(attack_argv, cpu=args.client_cpu, timeout=args.duration + 150, env=client_env())
        finished = time.monotonic()
        time.sleep(args.tail)
        clients = stop_good(good)
        good = None
        sampler.stop()
        if server.process.poll() is not None:
            record["errors"][f"server exited with {server.process.returncode}"] = 1
        if not result.get("ok"):
            record["errors"].update(result.get("errors") or {"attacker failed": 1})
            record["attacker_stderr"] = result.get("stderr", "")
        if not clients.get("ok"):
            record["errors"].update(clients.get("errors") or {"well-behaved clients failed": 1})
            record["clients_output"] = {k: clients.get(k, "") for k in ("stdout", "stderr")}
        start = float(result.get("t_start") or launched)
        end = float(result.get("t_end") or finished) + args.tail
        record.update(
            cut=result.get("cut"),
            cut_ok=result.get("cut_ok"),
            checks=result.get("checks") or {},
            attack_detail=result.get("detail") or {},
            window_s=end - start,
        )
        record["calls"] = latency_figures(clients.get("calls") or [], start, end)
        record["calls"]["client_errors"] = clients.get("errors") or {}
        record["calls"]["client_late_ms"] = 1000 * float(clients.get("late_s") or 0.0)
        record["calls_before"] = latency_figures(clients.get("calls") or [], ready, start)
        baseline_samples = sampler.between(ready + args.warmup / 2, start)
        peak_samples = sampler.between(start, end)
        baseline = int(statistics.median(baseline_samples)) if baseline_samples else None
        peak = max(peak_samples) if peak_samples else None
        allowance = attack.allowance(config)
        bound: int | None
        if args.rss_bound is not None:
            bound = int(args.rss_bound * 1024)
        else:
            bound = baseline + sum(allowance.values()) // 1024 if baseline is not None else None
        record["rss"] = {
            "baseline_kib": baseline,
            "peak_kib": peak,
            "bound_kib": bound,
            "allowance_bytes": allowance,
            "formula": "--rss-bound-mib (fixed)" if args.rss_bound is not None else attack.formula(config),
            "samples": len(peak_samples),
            "baseline_samples": len(baseline_samples),
            "series": [[round(t - start, 3), kib] for t, kib in sampler.samples],  # seconds from the attack's start
        }
        metrics = clients.get("metrics") or {}
        state = {k: metrics.get(k) for k in ("rpc_running", "rpc_queued", "connections")}
        idle = bool(metrics) and state == {"rpc_running": 0, "rpc_queued": 0, "connections": GOOD_CLIENTS}
        record["after"] = {"idle": idle, "state": state, "metrics": metrics}
        return record
    except RuntimeError as exc:  # the well-behaved clients did not start
        record["errors"][str(exc).split("\n", 1)[0]] = 1
        record["detail"] = str(exc)[-2000:]
        return record
    finally:
        sampler.stop()
        if good is not None:
            procs.reap(good, grace=1.0)
        if record.get("errors"):
            record["server_stderr"] = procs.stderr_tail(server.process)
        procs.reap(server.process)
        record["wall_s"] = time.monotonic() - started
        record["reasons"] = verdict(record, args.latency_limit)
        record["verdict"] = "FAIL" if record["reasons"] else "PASS"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line; ``--quick`` changes the defaults of the options not given."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.hostile", description=__doc__.split("\n", 1)[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: ~1 s attacks, lowered timeouts")
    parser.add_argument("--attacks", default="", help=f"comma list of: {', '.join(catalog.ATTACKS)} (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (benchmarks/results)")
    parser.add_argument("--pure", action="store_true", help="server with WEBSHOCKET_NO_EXTENSIONS=1 (pure Python)")
    parser.add_argument("--duration", type=float, help="seconds each attack runs at least (5; quick: 1)")
    parser.add_argument("--warmup", type=float, help="well-behaved calls before the attack, seconds (1; quick: 0.3)")
    parser.add_argument("--tail", type=float, help="seconds measured after the attacker is done (1; quick: 0.5)")
    parser.add_argument(
        "--latency-limit",
        type=float,
        default=catalog.LATENCY_LIMIT_MS,
        help=f"worst well-behaved latency for a PASS, ms ({catalog.LATENCY_LIMIT_MS:g})",
    )
    parser.add_argument(
        "--rss-bound-mib",
        dest="rss_bound",
        type=float,
        help="one fixed RSS bound for every attack, MiB, instead of each attack's own (to check the verdicts)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--server-cpu", default="0", help="core of the server (0)")
    parser.add_argument("--client-cpu", default="1", help="core of the clients and the attacker (1)")
    args = parser.parse_args(argv)
    defaults = {"duration": (1.0, 5.0), "warmup": (0.3, 1.0), "tail": (0.5, 1.0)}
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    try:
        args.plan = catalog.parse_attacks(args.attacks)
    except KeyError as exc:
        parser.error(f"unknown attack {exc}; known: {', '.join(catalog.ATTACKS)}")
    if args.duration <= 0 or args.warmup <= 0 or args.tail < 0:
        parser.error("--duration and --warmup must be positive, --tail not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the suite; 0 when every verdict is PASS."""
    args = parse_args(argv)
    why_not = None if args.no_pin else procs.pinning_available()
    if args.no_pin or why_not:
        args.server_cpu = args.client_cpu = None
    kind = e2e.SERVERS["ours-pure" if args.pure else "ours"]
    notes: list[str] = []
    if why_not:
        notes.append(f"not pinned to cores: {why_not}")
    began = datetime.datetime.now(datetime.timezone.utc)
    records: list[dict[str, Any]] = []
    progress = e2e.Progress(len(args.plan))
    interrupted = False
    try:
        for attack in args.plan:
            progress.show(attack.key)
            record = run_attack(attack, args, kind)
            records.append(record)
            progress.step(f"{attack.key}: {record['verdict']}")
    except KeyboardInterrupt:
        interrupted = True
        notes.append("interrupted: partial results")
    finally:
        progress.close()
        procs.kill_all()
    data = {
        "meta": {
            "started": began.isoformat(timespec="seconds"),
            "wall_s": (datetime.datetime.now(datetime.timezone.utc) - began).total_seconds(),
            "command": " ".join(["python -m benchmarks.hostile", *(sys.argv[1:] if argv is None else argv)]),
            "server": kind.label,
            "machine": e2e.machine(),
            "settings": {
                "quick": args.quick,
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "tail_s": args.tail,
                "latency_limit_ms": args.latency_limit,
                "rss_bound_mib": args.rss_bound,
                "good_clients": GOOD_CLIENTS,
                "good_interval_ms": GOOD_INTERVAL_S * 1000,
                "rss_interval_ms": RSS_INTERVAL_S * 1000,
                "server_cpu": args.server_cpu,
                "client_cpu": args.client_cpu,
                "slack_mib": catalog.SLACK / catalog.MiB,
                "per_conn_kib": catalog.PER_CONN / catalog.KiB,
                "per_rpc_kib": catalog.PER_RPC / catalog.KiB,
            },
            "notes": notes,
        },
        "attacks": records,
    }
    paths = report.finish(data, args.out)
    sys.stdout.write(report.markdown_table(data) + "\n")
    sys.stdout.write(f"written: {', '.join(str(p) for p in paths.values())}\n")
    failed = [r for r in records if r["verdict"] != "PASS"]
    for r in failed:
        sys.stderr.write(f"FAIL {r['attack']}: {'; '.join(r['reasons'])}\n")
    return 1 if failed or interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
