"""The cost curves of issue 17: ``--curves`` runs these scenarios instead of the default suite.

Each point is one scenario, run ``--repeat`` times per server like any other (medians, server and
load generator pinned to their own cores); what is new is how they are grouped and shown:

* ``subscribers``: fan-out deliveries/s and server CPU per delivery vs subscribers of one channel
  (``fanout-<n>x64``, the same scenarios as the default run's);
* ``channels``: the same vs the number of channels, at a fixed total of subscriptions
  (``channels-<channels>x<subscribers each>``; the publisher publishes round-robin over them,
  8 publishes in flight per channel, at most 64: with one subscriber per channel, 8 would leave
  both processes waiting on round trips rather than measure the server);
* ``patterns``: server CPU per publish and deliveries/s vs non-matching glob patterns held by one
  more connection, with a small real fan-out (``patterns-<n>``; ours only: the others have no
  patterns; the server runs with ``--max-subscriptions 0``);
* ``churn``: completed handshakes (connect, one ``add``, close) per second and server CPU per
  handshake vs connections cycling in parallel (``churn-<n>``);
* ``latency``: RPC and publish-to-delivery latency percentiles under an open-loop load at a share of
  each server's peak (``rpc-open-<pct>``, ``fanout-open-<n>-<pct>``); the peak is the median of
  the closed-loop ``rpc-50x16`` / ``fanout-<n>x64`` runs of the same server earlier in the same
  suite run (the runner puts them first and adds them when ``--scenarios`` leaves them out). The
  publish-to-delivery points use ``--latency-subscribers`` (100), not the fan-out curve's 1,000: the
  load generator reads its subscribers one after another on one core (~20 µs each here), so with
  1,000 a publish takes it ~20 ms to read out whatever the server, and every server's p99 is that;
* ``memory``: RSS per idle connection (``memory-<n>``, 19,000 in the full run).

:func:`finish` writes ``curves.json`` (every run, the medians, the curves), ``curves.md`` (a table
per curve) and one PNG per curve (``curves-<name>.png``, when matplotlib is installed) in ``--out``.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from . import report
from .run import Scenario

PATTERN_SUBSCRIBERS = 100  # the real fan-out of the patterns curve
RPC_BASE = Scenario("rpc-50x16", "RPC add, 50 conns x 16 in flight", "rpc", {"connections": 50, "inflight": 16})
#: closed-loop kind -> the metric whose median is the peak of an open-loop point
PEAK_METRIC = {"rpc": "calls_per_s", "fanout": "publishes_per_s"}
SERVER_OPTIONS_PATTERNS = ("--max-subscriptions", "0")  # one connection holds every pattern
SUSTAINED = 0.95  # an open-loop point achieving less than this share of the offered rate did not keep up


def fanout_point(subscribers: int) -> Scenario:
    """``fanout-<n>x64``: one channel, ``subscribers`` subscribers, 64-byte payloads, 8 publishes in flight."""
    return Scenario(
        f"fanout-{subscribers}x64",
        f"fan-out, {subscribers:,} subscribers, 64 B",
        "fanout",
        {"subscribers": subscribers, "size": 64, "inflight": 8},
        curve="subscribers",
        x=subscribers,
    )


def open_loop_point(which: str, pct: int, subscribers: int, base: Scenario, *, shared: bool) -> Scenario:
    """An open-loop latency point (``which``: "rpc" or "fanout") at ``pct`` % of ``base``'s peak: the
    server's own (``rpc-open-<pct>``, ``fanout-open-<n>-<pct>``) or, ``shared``, the slowest server's
    (``rpc-same-<pct>``, ``fanout-same-<n>-<pct>``)."""
    variant, share = ("same", "the slowest server's peak") if shared else ("open", "peak")
    if which == "rpc":
        key, label, kind, params = (
            f"rpc-{variant}-{pct}",
            f"RPC add, open loop at {pct}% of {share}, 50 conns",
            "rpc-open",
            {"connections": 50},
        )
    else:
        key = f"fanout-{variant}-{subscribers}-{pct}"
        label = f"fan-out to {subscribers:,}, open loop at {pct}% of {share}"
        kind, params = "fanout-open", {"subscribers": subscribers, "size": 64}
    curve = f"latency-{which}" + ("-same" if shared else "")
    return Scenario(key, label, kind, params, curve=curve, x=pct, base=base.key, fraction=pct / 100, shared=shared)


def scenarios(
    subscribers: list[int],
    channels: list[int],
    subscriptions: int,
    patterns: list[int],
    parallel: list[int],
    loads: list[int],
    idle: int,
    latency_subscribers: int,
) -> list[Scenario]:
    """Every point of every curve, the closed-loop peaks before the open-loop points that use them
    (publish-to-delivery ones with ``latency_subscribers``)."""
    out = [fanout_point(n) for n in subscribers]
    for count in channels:
        each = subscriptions // count
        out.append(
            Scenario(
                f"channels-{count}x{each}",
                f"fan-out, {count:,} channels x {each:,} subscribers",
                "fanout",
                {"subscribers": subscriptions, "channels": count, "size": 64, "inflight": min(8 * count, 64)},
                curve="channels",
                x=count,
            )
        )
    for count in patterns:
        out.append(
            Scenario(
                f"patterns-{count}",
                f"fan-out to {PATTERN_SUBSCRIBERS} subscribers, {count:,} non-matching patterns",
                "patterns",
                {"subscribers": PATTERN_SUBSCRIBERS, "size": 64, "inflight": 8, "patterns": count},
                curve="patterns",
                x=count,
                server_options=SERVER_OPTIONS_PATTERNS,
            )
        )
    for count in parallel:
        out.append(
            Scenario(
                f"churn-{count}",
                f"churn: connect, add, close; {count} in parallel",
                "churn",
                {"parallel": count},
                curve="churn",
                x=count,
            )
        )
    n = latency_subscribers
    fanout_base = fanout_point(n)
    if fanout_base.key not in {s.key for s in out}:
        out.append(fanout_base)
    out.append(RPC_BASE)
    out += [open_loop_point("rpc", pct, n, RPC_BASE, shared=False) for pct in loads]
    out += [open_loop_point("fanout", pct, n, fanout_base, shared=False) for pct in loads]
    for pct in loads:  # the same offered load for every server: a share of the slowest peak
        out += [
            open_loop_point(which, pct, n, base, shared=True)
            for which, base in (("rpc", RPC_BASE), ("fanout", fanout_base))
        ]
    out.append(
        Scenario(
            f"memory-{idle}", f"memory, {idle:,} idle connections", "memory", {"idle": idle}, curve="memory", x=idle
        )
    )
    return out


def with_bases(selected: list[Scenario], every: list[Scenario]) -> list[Scenario]:
    """``selected`` plus the closed-loop scenarios its open-loop points take their peak from, in ``every``'s order."""
    keys = {s.key for s in selected} | {s.base for s in selected if s.base}
    return [s for s in every if s.key in keys]


def peak(runs: list[dict[str, Any]], server: str, base: Scenario) -> float | None:
    """The median of ``server``'s passing ``base`` runs so far (None when there is none)."""
    metric = PEAK_METRIC[base.kind]
    values = [
        float(r[metric])
        for r in runs
        if r["server"] == server and r["scenario"] == base.key and r.get("ok") and r.get(metric)
    ]
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------- tables

#: the share of the server's CPU spent in the kernel (stime / utime + stime from /proc): what no
#: server-side code can cut, the floor of its CPU per delivery / handshake on this machine
KERNEL_ROW = "server CPU in the kernel"

#: curve -> (title, x label, [(metric, label)]); the first metric is the rate drawn on the left
CURVES: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "subscribers": (
        "Fan-out vs subscribers (one channel, 64 B, 8 publishes in flight)",
        "subscribers",
        [
            ("deliveries_per_s", "deliveries/s"),
            ("server_us_per_delivery", "server CPU per delivery"),
            ("server_kernel_share", KERNEL_ROW),
        ],
    ),
    "channels": (
        "Fan-out vs channels, same total of subscriptions (publishes round-robin, 8 in flight per channel, at most 64)",
        "channels",
        [
            ("deliveries_per_s", "deliveries/s"),
            ("server_us_per_delivery", "server CPU per delivery"),
            ("publishes_per_s", "publishes/s"),
            ("server_us_per_publish", "server CPU per publish"),
            ("server_kernel_share", KERNEL_ROW),
        ],
    ),
    "patterns": (
        f"Publish cost vs non-matching patterns ({PATTERN_SUBSCRIBERS} subscribers of one channel; ours only)",
        "patterns",
        [
            ("deliveries_per_s", "deliveries/s"),
            ("server_us_per_publish", "server CPU per publish"),
            ("server_us_per_delivery", "server CPU per delivery"),
        ],
    ),
    "churn": (
        "Connection churn: connect, one add, close (closed loop)",
        "in parallel",
        [
            ("handshakes_per_s", "handshakes/s"),
            ("server_us_per_handshake", "server CPU per handshake"),
            ("server_kernel_share", KERNEL_ROW),
            ("p99_us", "p99 cycle time"),
        ],
    ),
    "latency-rpc": (
        "RPC latency, open loop at a share of each server's closed-loop peak (rpc-50x16)",
        "load, % of peak",
        [
            ("achieved_per_s", "achieved calls/s"),
            ("p50_us", "p50"),
            ("p99_us", "p99"),
            ("p99.9_us", "p99.9"),
            ("server_us_per_call", "server CPU per call"),
        ],
    ),
    "latency-fanout": (
        "Publish-to-delivery latency, open loop at a share of each server's closed-loop fan-out peak",
        "load, % of peak",
        [
            ("achieved_per_s", "achieved deliveries/s"),
            ("p50_us", "p50"),
            ("p99_us", "p99"),
            ("p99.9_us", "p99.9"),
            ("server_us_per_delivery", "server CPU per delivery"),
        ],
    ),
    "latency-rpc-same": (
        "RPC latency, open loop, the same offered load for every server (a share of the slowest one's rpc-50x16 peak)",
        "load, % of the slowest peak",
        [
            ("achieved_per_s", "achieved calls/s"),
            ("p50_us", "p50"),
            ("p99_us", "p99"),
            ("p99.9_us", "p99.9"),
            ("server_us_per_call", "server CPU per call"),
        ],
    ),
    "latency-fanout-same": (
        "Publish-to-delivery latency, open loop, the same offered load for every server (a share of the slowest peak)",
        "load, % of the slowest peak",
        [
            ("achieved_per_s", "achieved deliveries/s"),
            ("p50_us", "p50"),
            ("p99_us", "p99"),
            ("p99.9_us", "p99.9"),
            ("server_us_per_delivery", "server CPU per delivery"),
        ],
    ),
    "memory": ("Memory per idle connection", "connections", [("bytes_per_connection", "RSS per idle connection")]),
}


def fmt(metric: str, value: float | None) -> str:
    """A table cell for ``metric``: µs with two decimals below 10."""
    if value is not None and metric.startswith("server_us_per_"):
        return f"{value:,.2f} µs" if value < 10 else f"{value:,.1f} µs"
    return report.fmt(metric, value)


def points(data: dict[str, Any], curve: str) -> list[tuple[float, str]]:
    """``(x, scenario key)`` of ``curve``, by x."""
    return sorted((float(s["x"]), key) for key, s in data["meta"]["scenarios"].items() if s.get("curve") == curve)


def servers_of(data: dict[str, Any], curve: str) -> list[str]:
    """The servers that ran some point of ``curve``."""
    keys = {key for _, key in points(data, curve)}
    return [sv for sv in data["meta"]["servers"] if any(k in data["summary"].get(sv, {}) for k in keys)]


def x_text(curve: str, x: float) -> str:
    """The x of a point, for a table."""
    return f"{x:g}%" if curve.startswith("latency") else f"{x:,.0f}"


def cpu_cell(entry: dict[str, Any] | None) -> str:
    """``load generator / server`` CPU shares of a cell."""
    if not entry or not entry["passed"]:
        return "-"
    med = entry["median"]
    return f"{report.fmt('loadgen_cpu', med.get('loadgen_cpu'))} / {report.fmt('server_cpu', med.get('server_cpu'))}"


def metric_cell(summary: dict[str, Any], server: str, key: str, metric: str) -> str:
    """:func:`report.cell` (the median, marked when runs failed or the load generator was the
    bottleneck), with CPU costs to two decimals."""
    text = report.cell(summary, server, key, metric)
    entry = summary.get(server, {}).get(key)
    if entry is None or not entry["passed"]:
        return text
    value = entry["median"].get(metric)
    return text.replace(report.fmt(metric, value), fmt(metric, value), 1)


def open_loop_cell(summary: dict[str, Any], server: str, key: str) -> str:
    """``offered -> achieved (ratio)``, flagged when the server did not keep up."""
    entry = summary.get(server, {}).get(key)
    if entry is None or not entry["passed"]:
        return report.cell(summary, server, key, "achieved_per_s")
    med = entry["median"]
    offered, achieved, ratio = med.get("offered_per_s"), med.get("achieved_per_s"), med.get("achieved_ratio")
    text = f"{report.fmt('offered_per_s', offered)} → {report.fmt('achieved_per_s', achieved)}"
    if ratio is not None:
        text += f" ({ratio:.0%})"
    if (ratio is not None and ratio < SUSTAINED) or med.get("skipped"):
        text += " **not sustained**"
    return text


def curve_table(data: dict[str, Any], curve: str) -> list[str]:
    """The markdown table of one curve (nothing when none of its points ran)."""
    rows = points(data, curve)
    servers = servers_of(data, curve)
    if not rows or not servers:
        return []
    title, x_label, metrics = CURVES[curve]
    summary = data["summary"]
    names = data["meta"]["servers"]
    lines = [f"## {title}", ""]
    lines += [f"| {x_label} | metric | " + " | ".join(names[s] for s in servers) + " |"]
    lines += ["|---:|---|" + "---:|" * len(servers)]
    for x, key in rows:
        where = x_text(curve, x)
        if curve.startswith("latency"):
            lines.append(
                f"| {where} | offered → achieved /s | "
                + " | ".join(open_loop_cell(summary, s, key) for s in servers)
                + " |"
            )
        for metric, label in metrics:
            if curve.startswith("latency") and metric == "achieved_per_s":
                continue
            cells = " | ".join(metric_cell(summary, s, key, metric) for s in servers)
            lines.append(f"| {where} | {label} | {cells} |")
        if curve.startswith("latency"):
            lag = " | ".join(metric_cell(summary, s, key, "lag_p99_us") for s in servers)
            lines.append(f"| {where} | load generator send lag, p99 | {lag} |")
        if curve != "memory":
            lines.append(
                f"| {where} | CPU: load generator / server | "
                + " | ".join(cpu_cell(summary.get(s, {}).get(key)) for s in servers)
                + " |"
            )
    if curve == "patterns":
        lines += ["", *patterns_verdict(data, rows, servers)]
    if curve.startswith("latency"):
        lines += ["", *peaks_used(data, rows, servers)]
    return [*lines, ""]


def patterns_verdict(data: dict[str, Any], rows: list[tuple[float, str]], servers: list[str]) -> list[str]:
    """Server CPU per publish at each pattern count over that with none (the issue's target: at most 2x)."""
    summary = data["summary"]
    zero = next((key for x, key in rows if x == 0), None)
    if zero is None:
        return []
    out = ["Server CPU per publish over that with no patterns (target: at most 2x with 100,000):", ""]
    for server in servers:
        base = report.median_of(summary, server, zero, "server_us_per_publish")
        ratios = []
        for x, key in rows:
            value = report.median_of(summary, server, key, "server_us_per_publish")
            if x and value is not None and base:
                ratios.append(f"{x:,.0f}: **{value / base:.2f}x**")
        if ratios:
            out.append(f"- {data['meta']['servers'][server]}: " + ", ".join(ratios))
    return out


def peaks_used(data: dict[str, Any], rows: list[tuple[float, str]], servers: list[str]) -> list[str]:
    """The closed-loop peak each server's open-loop points were offered a share of."""
    found: dict[str, list[float]] = {}
    base = ""
    keys = {key for _, key in rows}
    for run in data["runs"]:
        if run["scenario"] in keys and run.get("peak"):
            found.setdefault(run["server"], []).append(float(run["peak"]))
            base = run.get("peak_of", base)
    if not found:
        return []
    names = data["meta"]["servers"]
    unit = {"rpc": "calls/s", "fanout": "publishes/s"}.get(data["meta"]["scenarios"].get(base, {}).get("kind"), "/s")
    text = ", ".join(f"{names[s]} {statistics.median(found[s]):,.0f} {unit}" for s in servers if s in found)
    return [
        f"Peak (median of the closed-loop `{base}` runs before each point): {text}. "
        "Latency counts from each request's scheduled send time; *send lag* is how late the load "
        "generator itself wrote (its share of the latency). **not sustained**: the achieved rate stayed "
        f"below {SUSTAINED:.0%} of the offered one, or calls were skipped because a second's worth "
        "was unanswered."
    ]


def fd_note(data: dict[str, Any]) -> str:
    """What RLIMIT_NOFILE was, for the server and the load generator."""
    server = sorted(
        {int(r["server_info"]["nofile"]) for r in data["runs"] if (r.get("server_info") or {}).get("nofile")}
    )
    loadgen = sorted({int(r["loadgen_nofile"]) for r in data["runs"] if r.get("loadgen_nofile")})
    if not server and not loadgen:
        return ""

    def show(values: list[int]) -> str:
        return "/".join(f"{v:,}" for v in values) or "?"

    return (
        f"File descriptors: RLIMIT_NOFILE raised to the hard limit, {show(server)} per server process and "
        f"{show(loadgen)} for the load generator; one connection takes one on each side, so the largest "
        "counts (subscribers, idle connections) stay below it (19,000 when it is 20,000)."
    )


def markdown(data: dict[str, Any]) -> str:
    """``curves.md``."""
    meta = data["meta"]
    s = meta["settings"]
    lines = [
        *report.run_header(meta, "Cost curves (issue 17)"),
        f"Each point is the median of {s['repeat']} run(s) of {s['duration_s']:g} s after {s['warmup_s']:g} s of "
        "warm-up; "
        + (
            f"server pinned to core {s['server_cpu']}, load generator to core {s['loadgen_cpu']}."
            if s["server_cpu"] is not None
            else "processes not pinned."
        ),
        "Every reply and delivery is verified; a run with an error is failed and not counted. "
        "\\* = load-generator-bound (it used more than 90% of its core while the server used less: the rate "
        "understates the server, the server's CPU per delivery / publish / handshake does not depend on it); "
        "† = both cores above 90%. Server CPU per X = the server's CPU time over the window / the X in it. "
        "Server CPU in the kernel = the share of that time the kernel spent for the server (stime over "
        "utime + stime, /proc): its system calls and, over loopback, the TCP work they do for the receiving "
        "side; no change to the server's own code cuts it.",
    ]
    note = fd_note(data)
    if note:
        lines += ["", note]
    lines.append("")
    for curve in CURVES:
        lines += curve_table(data, curve)
    failed = [r for r in data["runs"] if not r.get("ok")]
    if failed or meta["notes"]:
        lines += ["## Notes", ""]
        lines += [f"- {n}" for n in meta["notes"]]
        for run in failed:
            lines.append(
                f"- FAILED: {run['server']} {run['scenario']} #{run.get('repeat', 0) + 1}: {run.get('errors')}"
            )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- charts

LOG_X = {"subscribers": "log", "channels": "log", "patterns": "symlog", "churn": "log"}
STYLES = {"p50_us": "-", "p99_us": "--", "p99.9_us": ":"}


def draw(data: dict[str, Any], curve: str, path: Path) -> bool:
    """``curves-<curve>.png``: the rate (left) and the costs (right) vs x, one line per server; a hollow
    marker is a load-generator-bound point. False when the curve has no point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    rows = points(data, curve)
    servers = servers_of(data, curve)
    if not rows or not servers or curve == "memory":
        return False
    title, x_label, metrics = CURVES[curve]
    summary = data["summary"]
    names = data["meta"]["servers"]
    latency = curve.startswith("latency")
    panels: list[list[str]] = (
        [["achieved_per_s"], ["p50_us", "p99_us", "p99.9_us"]]
        if latency
        else [[metrics[0][0]], [next(m for m, _ in metrics if m.startswith("server_us_per_"))]]
    )
    labels = dict(metrics)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for server in servers:
            color = report.COLORS.get(server)
            for metric in panel:
                xs, ys, hollow = [], [], []
                for x, key in rows:
                    value = report.median_of(summary, server, key, metric)
                    if value is None:
                        continue
                    xs.append(x)
                    ys.append(value / 1000 if metric.endswith("_us") and latency else value)
                    counts = summary[server][key].get("bound", {})  # open loop: the send lag says, not the CPU
                    hollow.append(not latency and counts.get("loadgen", 0) * 2 > summary[server][key]["passed"])
                if not xs:
                    continue
                label = names[server] if len(panel) == 1 else f"{names[server]}, {labels.get(metric, metric)}"
                style = STYLES.get(metric, "-")
                (line,) = ax.plot(xs, ys, style, color=color, label=label, marker="o")
                ax.plot(
                    [x for x, h in zip(xs, hollow, strict=True) if h],
                    [y for y, h in zip(ys, hollow, strict=True) if h],
                    "o",
                    color="white",
                    markeredgecolor=line.get_color(),
                    markersize=6,
                )
        scale = LOG_X.get(curve)
        if scale == "symlog":
            ax.set_xscale("symlog", linthresh=max(1.0, min((x for x, _ in rows if x), default=1.0)))
        elif scale:
            ax.set_xscale("log")
        if latency and panel[0] != "achieved_per_s":
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_ylabel("latency from the scheduled send, ms")
        elif panel[0].startswith("server_us_per_"):
            ax.set_ylabel(f"{labels[panel[0]]}, µs")
            ax.set_ylim(bottom=0)
        else:
            ax.set_ylabel(labels.get(panel[0], panel[0]))
            ax.set_ylim(bottom=0)
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_xticks([x for x, _ in rows], [x_text(curve, x) for x, _ in rows], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title + ("" if latency else " — hollow: load-generator-bound"), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- outputs


def finish(data: dict[str, Any], out: Path, chart: bool = True) -> dict[str, Path]:
    """Add the summary to ``data``; write ``curves.json``, ``curves.md`` and ``curves-<curve>.png``."""
    for run in data["runs"]:
        if run.get("loadgen_cpu") is not None:
            run["bound"] = report.bound(run)
    data["summary"] = report.aggregate(data["runs"])
    data["curves"] = {
        curve: {
            server: [
                {"x": x, "scenario": key, **data["summary"][server][key]["median"]}
                for x, key in points(data, curve)
                if key in data["summary"].get(server, {})
            ]
            for server in servers_of(data, curve)
        }
        for curve in CURVES
        if points(data, curve)
    }
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "curves.json", "markdown": out / "curves.md"}
    paths["json"].write_text(json.dumps(data, indent=1) + "\n")
    paths["markdown"].write_text(markdown(data))
    if chart:
        try:
            for curve in CURVES:
                path = out / f"curves-{curve}.png"
                if draw(data, curve, path):
                    paths[curve] = path
        except ImportError:
            sys.stderr.write("matplotlib is not installed: no charts (pip install matplotlib)\n")
    print("\nwritten: " + ", ".join(str(p) for p in paths.values()))
    return paths
