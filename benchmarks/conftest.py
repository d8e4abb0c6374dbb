"""Benchmark helpers: compiled-vs-pure ratios printed at the end of the run.

A benchmark calls ``ratios.record(group, label, benchmark)`` after running; the
summary prints, per group, each label's median and its ratio to the group's
baseline label (the first one recorded, usually ``pure``).
"""

from __future__ import annotations

from typing import Any

import pytest


class Ratios:
    def __init__(self) -> None:
        self.groups: dict[str, dict[str, float]] = {}

    def record(self, group: str, label: str, benchmark: Any) -> None:
        stats = getattr(benchmark, "stats", None)
        if stats is None:  # --benchmark-disable
            return
        self.groups.setdefault(group, {})[label] = stats.stats.median


_RATIOS = Ratios()


@pytest.fixture
def ratios() -> Ratios:
    return _RATIOS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RATIOS.groups:
        return
    terminalreporter.section("medians and ratios (same run)")
    for group, labels in _RATIOS.groups.items():
        baseline_label, baseline = next(iter(labels.items()))
        for label, median in labels.items():
            ratio = baseline / median if median else float("nan")
            terminalreporter.write_line(
                f"{group:<52} {label:<10} {median * 1e9:>10.0f} ns   {ratio:>6.2f}x vs {baseline_label}"
            )
