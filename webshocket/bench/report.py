"""Medians, ratios and the three outputs (JSON, markdown, PNG) of a suite run.

A run counts only when it passed every check of the load generator; the median of a
server and scenario is over its passing runs, and a cell says so when some runs failed.
Ratios compare ours (compiled) to webshocket 0.5.2, to raw picows and to Node ws, figure by figure:
``ours / other`` of the plain metric, so above 1 is better for rates and below 1 is
better for latency and memory (the *better* column says which). The scale-out kinds
(ours through Redis, 1 and 2 workers) are compared to single-process ours of the same
run: ``scale-out / ours`` of fan-out deliveries per second, in a section of their own.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

OURS = "ours"
PURE = "ours-pure"
THEIRS = "webshocket-0.5.2"
RAW = "raw-picows"
NODE = "node-ws"
BASE = "baseline"
BASE_PURE = "baseline-pure"
REDIS1 = "ours-redis"
REDIS2 = "ours-2w-redis"
SCALE_OUT = (REDIS1, REDIS2)

#: (kind, metric key, label, unit, higher is better)
METRICS: list[tuple[str, str, str, str, bool]] = [
    ("rpc", "calls_per_s", "calls/s", "/s", True),
    ("rpc", "p50_us", "p50 latency", "µs", False),
    ("rpc", "p99_us", "p99 latency", "µs", False),
    ("fanout", "deliveries_per_s", "deliveries/s", "/s", True),
    ("memory", "bytes_per_connection", "RSS per idle connection", "B", False),
]
SATURATED = 0.9


def bound(run: dict[str, Any]) -> str:
    """Which core was busy over the window: ``loadgen``, ``server``, ``both`` or ``neither``.

    ``loadgen`` (the load generator above :data:`SATURATED` of its core, the server below)
    means the figure is the load generator's limit, not the server's; ``both`` is ambiguous
    (a load generator keeping up with a saturated server also gets busier, smaller reads).
    """
    loadgen = (run.get("loadgen_cpu") or 0) > SATURATED
    server = (run.get("server_cpu") or 0) + (run.get("redis_cpu") or 0) > SATURATED  # Redis shares the core
    return {(True, False): "loadgen", (False, True): "server", (True, True): "both"}.get((loadgen, server), "neither")


RATES = ("calls_per_s", "deliveries_per_s", "publishes_per_s", "handshakes_per_s")
COSTS = (
    ("calls_per_s", "call"),
    ("deliveries_per_s", "delivery"),
    ("publishes_per_s", "publish"),
    ("handshakes_per_s", "handshake"),
)
OPEN_LOOP = ("offered_per_s", "achieved_per_s", "achieved_ratio", "skipped")  # the open-loop scenarios


def figures(run: dict[str, Any]) -> dict[str, float]:
    """The metrics of one run, flat; ``server_us_per_<call|delivery|publish|handshake>``: the server's
    CPU time (Redis's included) per unit of the rate."""
    out: dict[str, float] = {}
    for key in (*RATES, "bytes_per_connection", *OPEN_LOOP):
        if isinstance(run.get(key), (int, float)):
            out[key] = float(run[key])
    latency = run.get("latency_us") or {}
    for p in ("p50", "p90", "p99", "p99.9"):
        if p in latency:
            out[f"{p}_us"] = float(latency[p])
    lag = run.get("send_lag_us") or {}
    if "p99" in lag:
        out["lag_p99_us"] = float(lag["p99"])
    for key in ("loadgen_cpu", "server_cpu", "redis_cpu", "server_kernel_share"):
        if isinstance(run.get(key), (int, float)):
            out[key] = float(run[key])
    if "server_cpu" in out:  # the server side's cost, Redis included
        cpu = out["server_cpu"] + out.get("redis_cpu", 0.0)
        for rate, unit in COSTS:
            if out.get(rate):
                out[f"server_us_per_{unit}"] = cpu / out[rate] * 1e6
    return out


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``summary[server][scenario]``: run counts, medians over passing runs, errors of the others."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        grouped.setdefault((run["server"], run["scenario"]), []).append(run)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for (server, scenario), group in grouped.items():
        passed = [r for r in group if r.get("ok")]
        values: dict[str, list[float]] = {}
        for run in passed:
            for key, value in figures(run).items():
                values.setdefault(key, []).append(value)
        errors: Counter[str] = Counter()
        for run in group:
            if not run.get("ok"):
                errors.update(run.get("errors") or {"failed": 1})
        summary.setdefault(server, {})[scenario] = {
            "runs": len(group),
            "passed": len(passed),
            "median": {k: statistics.median(v) for k, v in values.items()},
            "all": values,
            "saturated_runs": sum(1 for r in passed if (r.get("loadgen_cpu") or 0) > SATURATED),
            "bound": dict(Counter(bound(r) for r in passed if r.get("loadgen_cpu") is not None)),
            "errors": dict(errors),
        }
        spread = [r["subscribers_per_worker"] for r in passed if r.get("subscribers_per_worker")]
        if spread:
            summary[server][scenario]["subscribers_per_worker"] = spread
    return summary


def median_of(summary: dict[str, Any], server: str, scenario: str, metric: str) -> float | None:
    """A median, or None when that server has no passing run of that scenario."""
    cell = summary.get(server, {}).get(scenario)
    if not cell or not cell["passed"]:
        return None
    value = cell["median"].get(metric)
    return float(value) if value is not None else None


def ratios(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Ours (and ours pure) against 0.5.2 and raw picows, per scenario and metric."""
    summary = data["summary"]
    out: list[dict[str, Any]] = []
    for key, scenario in data["meta"]["scenarios"].items():
        for kind, metric, label, _unit, higher in METRICS:
            if kind != scenario["kind"] or metric == "p50_us":
                continue
            row: dict[str, Any] = {
                "scenario": key,
                "label": scenario["label"],
                "metric": metric,
                "metric_label": label,
                "better": "higher" if higher else "lower",
            }
            ours = median_of(summary, OURS, key, metric)
            pure = median_of(summary, PURE, key, metric)
            for name, mine, other in (
                ("ours/0.5.2", ours, THEIRS),
                ("ours/raw", ours, RAW),
                ("ours/node", ours, NODE),
                ("pure/0.5.2", pure, THEIRS),
            ):
                theirs = median_of(summary, other, key, metric)
                row[name] = mine / theirs if mine is not None and theirs else None
            base = median_of(summary, BASE, key, metric)
            base_pure = median_of(summary, BASE_PURE, key, metric)
            row["ours/base"] = ours / base if ours is not None and base else None
            row["pure/base-pure"] = pure / base_pure if pure is not None and base_pure else None
            for name, server in (("redis/ours", REDIS1), ("2w-redis/ours", REDIS2)):  # scale-out vs single process
                scaled = median_of(summary, server, key, metric)
                row[name] = scaled / ours if scaled is not None and ours else None
            out.append(row)
    return out


def scale_out_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The ratio rows with a scale-out figure (fan-out deliveries/s)."""
    return [r for r in data["ratios"] if r.get("redis/ours") is not None or r.get("2w-redis/ours") is not None]


# --------------------------------------------------------------------------- formatting


def fmt(metric: str, value: float | None) -> str:
    """A value for a table cell."""
    if value is None:
        return "-"
    if metric.endswith("_us"):
        return f"{value:,.0f} µs" if value >= 100 else f"{value:,.1f} µs"
    if metric == "bytes_per_connection":
        return f"{value / 1024:,.1f} KiB"
    if metric.endswith(("_cpu", "_share")):
        return f"{value:.0%}"
    return f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    """``1.23x``."""
    return "-" if value is None else f"{value:.2f}x"


def not_run(meta: dict[str, Any], server: str, scenario: str) -> bool:
    """True when ``server`` is not measured on ``scenario`` by design (the Redis kinds: fan-out only)."""
    kinds = (meta.get("server_kinds") or {}).get(server)
    return kinds is not None and meta["scenarios"][scenario]["kind"] not in kinds


def cell(summary: dict[str, Any], server: str, scenario: str, metric: str) -> str:
    """A table cell: the median, marked when runs failed or the load generator saturated."""
    entry = summary.get(server, {}).get(scenario)
    if entry is None:
        return "-"
    if not entry["passed"]:
        return "FAILED"
    text = fmt(metric, entry["median"].get(metric))
    if metric.endswith("_per_s"):
        counts = entry.get("bound", {})
        if counts.get("loadgen", 0) * 2 > entry["passed"]:
            text += " \\*"
        elif (counts.get("loadgen", 0) + counts.get("both", 0)) * 2 > entry["passed"]:
            text += " †"
    if entry["passed"] < entry["runs"]:
        text += f" ({entry['runs'] - entry['passed']}/{entry['runs']} failed)"
    return text


def run_header(meta: dict[str, Any], title: str) -> list[str]:
    """The first lines of a results file: its title, the command that made it, the machine."""
    m = meta["machine"]
    source = "installed package" if m.get("installed") else f"commit {m['commit']}{', dirty' if m['dirty'] else ''}"
    return [
        f"# {title}",
        "",
        f"`{meta['command']}` — {meta['started']}, {meta['wall_s'] / 60:.1f} min.",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}; Python {m['python']}, "
        f"webshocket {m['webshocket']} ({source}), picows {m['picows']}, uvloop {m['uvloop']}, msgpack {m['msgpack']}.",
    ]


def markdown(data: dict[str, Any]) -> str:
    """The tables of ``e2e.md``."""
    meta = data["meta"]
    s = meta["settings"]
    summary = data["summary"]
    servers = list(meta["servers"])
    lines = [
        *run_header(meta, "End-to-end benchmark"),
        f"Each figure is the median of {s['repeat']} run(s) of {s['duration_s']:g} s after {s['warmup_s']:g} s "
        f"of warm-up; "
        + (
            f"servers pinned to core {s['server_cpu']}, load generator to core {s['loadgen_cpu']}."
            if s["server_cpu"] is not None
            else "processes not pinned."
        ),
        "Every reply and every delivery is verified; a run with an error is failed and not counted. "
        "\\* = load-generator-bound: it used more than 90% of its core while the server used less "
        "(the server had spare CPU; the figure understates it). † = both cores above 90%. "
        "n/a = not run by that server kind (see the notes).",
        "",
        "## Results",
        "",
        "| scenario | metric | " + " | ".join(meta["servers"][k] for k in servers) + " |",
        "|---|---|" + "---:|" * len(servers),
    ]
    for key, scenario in meta["scenarios"].items():
        for kind, metric, label, _unit, _higher in METRICS:
            if kind == scenario["kind"]:
                cells = " | ".join(
                    "n/a" if not_run(meta, server, key) else cell(summary, server, key, metric) for server in servers
                )
                lines.append(f"| {scenario['label']} | {label} | {cells} |")
    lines += [
        "",
        "## Ratios",
        "",
        "ours / other, medians; above 1 is better for rates, below 1 for latency and memory.",
        "",
        "| scenario | metric | ours / 0.5.2 | ours / raw picows | ours / Node ws | pure / 0.5.2 | better |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in data["ratios"]:
        lines.append(
            f"| {row['label']} | {row['metric_label']} | **{fmt_ratio(row['ours/0.5.2'])}** | "
            f"{fmt_ratio(row['ours/raw'])} | {fmt_ratio(row['ours/node'])} | {fmt_ratio(row['pure/0.5.2'])} | "
            f"{row['better']} |"
        )
    if any(row["ours/base"] is not None or row["pure/base-pure"] is not None for row in data["ratios"]):
        lines += [
            "",
            "## Before / after",
            "",
            f"This tree against the baseline tree `{meta.get('baseline', '?')}` (``--baseline``), same run, "
            "medians: above 1 is better for rates, below 1 for latency and memory.",
            "",
            "| scenario | metric | ours / baseline (compiled) | pure / baseline (pure) | better |",
            "|---|---|---:|---:|---|",
        ]
        for row in data["ratios"]:
            lines.append(
                f"| {row['label']} | {row['metric_label']} | **{fmt_ratio(row['ours/base'])}** | "
                f"{fmt_ratio(row['pure/base-pure'])} | {row['better']} |"
            )
    lines += scale_out_markdown(data)
    lines += [
        "",
        "## CPU over the window",
        "",
        "Share of one core: load generator / server (medians of passing runs); for the Redis kinds the server "
        "is the sum of its processes, + the redis-server's share.",
        "",
        "| scenario | " + " | ".join(meta["servers"][k] for k in servers) + " |",
        "|---|" + "---:|" * len(servers),
    ]
    for key, scenario in meta["scenarios"].items():
        if scenario["kind"] == "memory":
            continue
        cpu_cells: list[str] = []
        for server in servers:
            entry = summary.get(server, {}).get(key)
            if not entry or not entry["passed"]:
                cpu_cells.append("n/a" if not_run(meta, server, key) else "-")
                continue
            med = entry["median"]
            text = f"{fmt('loadgen_cpu', med.get('loadgen_cpu'))} / {fmt('server_cpu', med.get('server_cpu'))}"
            if "redis_cpu" in med:
                text += f" + {fmt('redis_cpu', med['redis_cpu'])}"
            cpu_cells.append(text)
        lines.append(f"| {scenario['label']} | " + " | ".join(cpu_cells) + " |")
    failed = [r for r in data["runs"] if not r.get("ok")]
    if failed or meta["notes"]:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in meta["notes"]]
        for run in failed:
            where = f"{run['server']} {run['scenario']} #{run.get('repeat', 0) + 1}"
            lines.append(f"- FAILED: {where}: {run.get('errors')}")
    return "\n".join(lines) + "\n"


def spread_text(entry: dict[str, Any] | None) -> str:
    """Subscribers per worker: ``250/250``, or its range over the runs."""
    spreads = (entry or {}).get("subscribers_per_worker") or []
    if not spreads:
        return "-"
    texts = list(dict.fromkeys("/".join(str(n) for n in spread) for spread in spreads))
    return texts[0] if len(texts) == 1 else f"{texts[0]} … {texts[-1]}"


def scale_out_markdown(data: dict[str, Any]) -> list[str]:
    """The section comparing the Redis kinds to single-process ours (nothing when they did not run)."""
    meta = data["meta"]
    summary = data["summary"]
    present = [k for k in SCALE_OUT if k in meta["servers"]]
    if not present:
        return []
    lines = [
        "",
        "## Scale-out through Redis",
        "",
        "Fan-out deliveries/s through the Redis backplane next to single-process ours of the same run; "
        "*vs ours* = scale-out / ours (medians). Every subscriber still got exactly one copy of every "
        "acknowledged publish; *per worker* = subscribers on each worker (the kernel spreads connections "
        "over the workers, SO_REUSEPORT). When the load generator is the bottleneck (\\*, †) the rates stay "
        "close and the cost of the backplane shows in *server CPU per delivery*: CPU time of the server's "
        "processes (and redis-server) per delivery, ours / 1 worker / 2 workers.",
        "",
    ]
    header = "| scenario | " + meta["servers"].get(OURS, "ours (compiled)")
    rule = "|---|---:"
    for key in present:
        header += f" | {meta['servers'][key]} | vs ours"
        rule += "|---:|---:"
    if REDIS2 in present:
        header += " | per worker"
        rule += "|---:"
    header += " | server CPU per delivery"
    rule += "|---:"
    lines += [header + " |", rule + "|"]
    for row in scale_out_rows(data):
        key = row["scenario"]
        cells = [cell(summary, OURS, key, row["metric"])]
        for server, name in ((REDIS1, "redis/ours"), (REDIS2, "2w-redis/ours")):
            if server in present:
                cells += [cell(summary, server, key, row["metric"]), f"**{fmt_ratio(row[name])}**"]
        if REDIS2 in present:
            cells.append(spread_text(summary.get(REDIS2, {}).get(key)))
        costs = [median_of(summary, server, key, "server_us_per_delivery") for server in (OURS, *present)]
        cells.append(" / ".join("-" if c is None else f"{c:.2f}" for c in costs) + " µs")
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    redis = meta.get("redis") or {}
    if redis:
        lines += ["", f"redis-server {redis.get('version', '?')}, one for the whole run, no persistence."]
    return lines


COLORS = {
    OURS: "#1f77b4",
    REDIS1: "#2ca02c",
    REDIS2: "#98df8a",
    PURE: "#9ecae1",
    THEIRS: "#d62728",
    RAW: "#7f7f7f",
    NODE: "#ff7f0e",
}


def draw_chart(data: dict[str, Any], path: Path) -> None:
    """``e2e.png``: one panel per metric family, one bar per server, medians."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import StrMethodFormatter

    meta = data["meta"]
    summary = data["summary"]
    servers = list(meta["servers"])
    panels = [
        ("rpc", "calls_per_s", "RPC add: calls/s (higher is better)", 1.0),
        ("rpc", "p99_us", "RPC add: p99 latency, ms (lower is better)", 1e-3),
        ("fanout", "deliveries_per_s", "fan-out: deliveries/s (higher is better)", 1.0),
        ("memory", "bytes_per_connection", "RSS per idle connection, KiB (lower is better)", 1 / 1024),
    ]
    panels = [p for p in panels if any(s["kind"] == p[0] for s in meta["scenarios"].values())]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 3.3 * len(panels)), squeeze=False)
    for ax, (kind, metric, title, scale) in zip(axes[:, 0], panels, strict=True):
        keys = [k for k, s in meta["scenarios"].items() if s["kind"] == kind]
        shown = [sv for sv in servers if any(median_of(summary, sv, key, metric) is not None for key in keys)]
        width = 0.8 / max(1, len(shown))
        for i, server in enumerate(shown):
            xs, ys = [], []
            for j, key in enumerate(keys):
                value = median_of(summary, server, key, metric)
                if value is not None:
                    xs.append(j + (i - (len(shown) - 1) / 2) * width)
                    ys.append(value * scale)
            bars = ax.bar(xs, ys, width, label=meta["servers"][server], color=COLORS.get(server))
            if len(shown) > 4 and metric.endswith("_per_s"):  # crowded: 880k, not 880,583
                ax.bar_label(bars, labels=[f"{y / 1000:,.0f}k" for y in ys], fontsize=7, padding=1)
            else:
                ax.bar_label(bars, fmt="{:,.0f}" if metric != "p99_us" else "{:,.1f}", fontsize=7, padding=1)
        ax.set_xticks(range(len(keys)), [meta["scenarios"][k]["label"] for k in keys], fontsize=8)
        if len(keys) < 2:
            ax.set_xlim(-1.5, 1.5)
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}" if metric != "p99_us" else "{x:,.1f}"))
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    found: dict[str, Any] = {}
    for ax in axes[:, 0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            found.setdefault(label, handle)
    handles = {meta["servers"][sv]: found[meta["servers"][sv]] for sv in servers if meta["servers"][sv] in found}
    ncols = len(handles) if len(handles) <= 4 else (len(handles) + 1) // 2
    axes[0, 0].legend(
        list(handles.values()), list(handles), fontsize=8, ncols=ncols, loc="upper center", bbox_to_anchor=(0.5, 1.35)
    )
    m = meta["machine"]
    fig.suptitle(
        f"webshocket end-to-end, medians of {meta['settings']['repeat']} run(s) — {m['cpu']}, {m['cores']} cores",
        fontsize=9,
        y=0.995,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_text(data: dict[str, Any]) -> str:
    """The ratios, for the terminal."""
    lines = ["", "ours (compiled) vs the others, medians (ours / other):"]
    for row in data["ratios"]:
        lines.append(
            f"  {row['label']:<42} {row['metric_label']:<24} vs 0.5.2 {fmt_ratio(row['ours/0.5.2']):>8}"
            f"   vs raw {fmt_ratio(row['ours/raw']):>8}   vs node {fmt_ratio(row['ours/node']):>8}"
            f"   ({row['better']} is better)"
        )
        if row["ours/base"] is not None or row["pure/base-pure"] is not None:
            lines.append(
                f"  {'':<42} {'':<24} vs baseline {fmt_ratio(row['ours/base']):>8}"
                f"   pure vs baseline pure {fmt_ratio(row['pure/base-pure']):>8}"
            )
    rows = scale_out_rows(data)
    if rows:
        lines.append("")
        lines.append("scale-out through Redis vs ours (compiled) in the same run, medians (scale-out / ours):")
        for row in rows:
            costs = [median_of(data["summary"], sv, row["scenario"], "server_us_per_delivery") for sv in SCALE_OUT]
            ours = median_of(data["summary"], OURS, row["scenario"], "server_us_per_delivery")
            cost = " / ".join(fmt_ratio(c / ours if c is not None and ours else None) for c in costs)
            lines.append(
                f"  {row['label']:<42} {row['metric_label']:<24} 1 worker {fmt_ratio(row['redis/ours']):>8}"
                f"   2 workers {fmt_ratio(row['2w-redis/ours']):>8}   server CPU per delivery {cost}"
            )
    for kind, text in (
        ("loadgen", "load-generator-bound (load generator > 90% of its core, server below)"),
        ("both", "both cores > 90%"),
    ):
        where = [
            f"{server} {scenario}"
            for server, cells in data["summary"].items()
            for scenario, c in cells.items()
            if c.get("bound", {}).get(kind)
        ]
        if where:
            lines.append(f"  {text}: {', '.join(where)}")
    return "\n".join(lines)


def finish(data: dict[str, Any], out: Path, chart: bool = True) -> dict[str, Path]:
    """Add summary and ratios to ``data``; write ``e2e.json``, ``e2e.md``, ``e2e.png``; print the ratios."""
    for run in data["runs"]:
        if run.get("loadgen_cpu") is not None:
            run["bound"] = bound(run)
    data["summary"] = aggregate(data["runs"])
    data["ratios"] = ratios(data)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "e2e.json", "markdown": out / "e2e.md", "chart": out / "e2e.png"}
    paths["json"].write_text(json.dumps(data, indent=1) + "\n")
    paths["markdown"].write_text(markdown(data))
    if chart:
        try:
            draw_chart(data, paths["chart"])
        except ImportError:
            sys.stderr.write("matplotlib is not installed: no chart (pip install matplotlib)\n")
            del paths["chart"]
    else:
        del paths["chart"]
    print(summary_text(data))
    print("\nwritten: " + ", ".join(str(p) for p in paths.values()))
    return paths
