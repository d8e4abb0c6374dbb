"""The two outputs of a hostile-suite run: ``hostile.json`` (everything) and ``hostile.md`` (tables)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMNS = (
    "attack",
    "what it does",
    "worst well-behaved RPC latency (ms)",
    "p99 (ms)",
    "well-behaved calls answered / sent",
    "server peak RSS (MiB)",
    "RSS bound (MiB)",
    "attacker cut?",
    "verdict",
)


def mib(kib: int | None) -> str:
    """KiB as MiB with one decimal ("?" when unknown)."""
    return "?" if kib is None else f"{kib / 1024:,.1f}"


def ms(value: float | None) -> str:
    """Milliseconds, one decimal below 100, none above ("?" when unknown)."""
    if value is None:
        return "?"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def cell(text: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def options_text(options: dict[str, Any]) -> str:
    """The options an attack changed, for the table ("" when it ran on the defaults)."""
    if not options:
        return ""
    return " *(changed: " + ", ".join(f"`{k}={v}`" for k, v in options.items()) + ")*"


def row(record: dict[str, Any]) -> list[str]:
    """One line of the main table."""
    calls = record.get("calls") or {}
    rss = record.get("rss") or {}
    peak, baseline = rss.get("peak_kib"), rss.get("baseline_kib")
    growth = f" (+{(peak - baseline) / 1024:,.1f})" if peak is not None and baseline is not None else ""
    verdict = "PASS" if record.get("verdict") == "PASS" else "**FAIL**: " + "; ".join(record.get("reasons") or [])
    return [
        f"`{record['attack']}`",
        record.get("what", "") + options_text(record.get("options") or {}),
        ms(calls.get("worst_ms")),
        ms(calls.get("p99_ms")),
        f"{calls.get('answered', 0):,} / {calls.get('sent', 0):,}",
        mib(peak) + growth,
        mib(rss.get("bound_kib")),
        record.get("cut") or "— (leaves by itself)",
        verdict,
    ]


def markdown_table(data: dict[str, Any]) -> str:
    """The main table: one row per attack."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for record in data["attacks"]:
        lines.append("| " + " | ".join(cell(c) for c in row(record)) + " |")
    return "\n".join(lines)


def bounds_table(data: dict[str, Any]) -> str:
    """How each bound was made: baseline, allowance formula, bound."""
    lines = [
        "| attack | baseline RSS (MiB) | allowance | bound (MiB) | RSS samples in the window |",
        "|---|---:|---|---:|---:|",
    ]
    for record in data["attacks"]:
        rss = record.get("rss") or {}
        allowance = sum((rss.get("allowance_bytes") or {}).values()) / 2**20
        formula = f"{rss.get('formula', '?')} = {allowance:,.1f} MiB"
        lines.append(
            f"| `{record['attack']}` | {mib(rss.get('baseline_kib'))} | {cell(formula)} | "
            f"{mib(rss.get('bound_kib'))} | {rss.get('samples', 0)} |"
        )
    return "\n".join(lines)


def details(data: dict[str, Any]) -> list[str]:
    """Per attack: what the attacker saw, its checks, the server's state afterwards."""
    lines: list[str] = []
    for record in data["attacks"]:
        calls = record.get("calls") or {}
        after = record.get("after") or {}
        before = record.get("calls_before") or {}
        parts = [
            f"window {record.get('window_s', 0):.1f} s",
            f"p50 {ms(calls.get('p50_ms'))} ms",
            f"before the attack: p99 {ms(before.get('p99_ms'))} ms, worst {ms(before.get('worst_ms'))} ms",
        ]
        if calls.get("client_late_ms"):
            parts.append(f"clients' own schedule late by up to {calls['client_late_ms']:.1f} ms")
        detail = record.get("attack_detail") or {}
        if detail:
            parts.append("attacker: " + ", ".join(f"{k} {v}" for k, v in detail.items()))
        checks = record.get("checks") or {}
        if checks:
            parts.append("checks: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks.items()))
        if after.get("state"):
            state = ", ".join(f"{k} {v}" for k, v in after["state"].items())
            parts.append(f"server afterwards: {state}")
        metrics = after.get("metrics") or {}
        if metrics.get("slow_consumer_disconnects"):
            parts.append(f"slow-consumer disconnects {metrics['slow_consumer_disconnects']}")
        if calls.get("client_errors"):
            parts.append(f"client errors {calls['client_errors']}")
        lines.append(f"- `{record['attack']}`: " + "; ".join(parts))
    return lines


def markdown(data: dict[str, Any]) -> str:
    """The whole ``hostile.md``."""
    meta = data["meta"]
    machine = meta.get("machine") or {}
    settings = meta.get("settings") or {}
    passed = sum(1 for r in data["attacks"] if r.get("verdict") == "PASS")
    out = [
        "# Hostile clients",
        "",
        f"`{meta.get('command', '')}`, {meta.get('started', '')}, server: {meta.get('server', '')}; "
        f"{machine.get('cores', '?')} cores ({machine.get('cpu', '?')}), Python {machine.get('python', '?')}, "
        f"webshocket {machine.get('webshocket', '?')} (commit {machine.get('commit', '?')}"
        f"{', dirty' if machine.get('dirty') else ''}), picows {machine.get('picows', '?')}, "
        f"uvloop {machine.get('uvloop', '?')}.",
        "",
        f"{settings.get('good_clients', '?')} well-behaved clients call `ping` every "
        f"{settings.get('good_interval_ms', '?'):g} ms each (open loop) while each attack runs at least "
        f"{settings.get('duration_s', '?'):g} s against a fresh server; latencies are of the calls sent from "
        f"the attack's start to {settings.get('tail_s', '?'):g} s after its end, worst and p99 of one run. "
        f"RSS sampled every {settings.get('rss_interval_ms', '?'):g} ms. PASS: every call answered, worst "
        f"latency below {settings.get('latency_limit_ms', '?'):g} ms, peak RSS below the bound, the attack's "
        "expectations met, the server idle again afterwards.",
        "",
        f"**{passed} of {len(data['attacks'])} attacks PASS.**",
        "",
        markdown_table(data),
        "",
        "## RSS bounds",
        "",
        "bound = baseline (median RSS with the well-behaved clients calling, before the attack) + allowance"
        + (" (overridden: one fixed bound, `--rss-bound-mib`)" if settings.get("rss_bound_mib") else "")
        + ".",
        "",
        bounds_table(data),
        "",
        "## Details",
        "",
        *details(data),
    ]
    if meta.get("notes"):
        out += ["", "Notes: " + "; ".join(meta["notes"])]
    return "\n".join(out) + "\n"


def finish(data: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write ``hostile.json`` and ``hostile.md`` into ``out``; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "hostile.json", "md": out / "hostile.md"}
    paths["json"].write_text(json.dumps(data, indent=1, default=str) + "\n")
    paths["md"].write_text(markdown(data))
    return paths
