"""Token bucket cost per call: compiled ``_ratelimit_c`` vs pure ``_ratelimit_py``.

Run::

    python -m pytest benchmarks/bench_ratelimit.py

``allow()`` reads the monotonic clock and takes a token: "granted" on a bucket
that never runs dry, "denied" on one that stays empty. ``allow_at(now)`` skips
the clock. Target for the compiled ``allow()``: under 150 ns per call (the
Python call included).
"""

from __future__ import annotations

import importlib
import os
import time
from types import ModuleType
from typing import Any

import pytest

NO_EXTENSIONS = os.environ.get("WEBSHOCKET_NO_EXTENSIONS", "") not in ("", "0")
IMPLS = ["py"] if NO_EXTENSIONS else ["c", "py"]
TARGET_NS = 150.0

# (impl, case) -> ns per call
RESULTS: dict[tuple[str, str], float] = {}


def load(impl: str) -> ModuleType:
    return importlib.import_module(f"webshocket._ratelimit_{impl}")


class Summary:
    """Prints the per-call figures after pytest-benchmark's tables."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not RESULTS:
            return
        write = terminalreporter.write_line
        terminalreporter.section("webshocket token bucket: ns per call (median)")
        for case in ("allow granted", "allow denied", "allow_at"):
            c, py = RESULTS.get(("c", case)), RESULTS.get(("py", case))
            parts = [f"{case:<14}"]
            if c is not None:
                verdict = "ok" if case == "allow_at" or c < TARGET_NS else "OVER TARGET"
                parts.append(f"compiled {c:6.1f} ns ({verdict})")
            if py is not None:
                parts.append(f"pure {py:6.1f} ns")
            if c and py:
                parts.append(f"compiled {py / c:.1f}x faster")
            write("  ".join(parts))


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> None:
    manager = request.config.pluginmanager
    if not manager.has_plugin("webshocket-bench-ratelimit"):
        manager.register(Summary(), "webshocket-bench-ratelimit")


def record(benchmark: Any, impl: str, case: str) -> None:
    if benchmark.stats is not None:
        RESULTS[(impl, case)] = benchmark.stats.stats.median * 1e9


@pytest.mark.benchmark(warmup=True, warmup_iterations=100_000)
@pytest.mark.parametrize("impl", IMPLS)
def test_allow_granted(benchmark: Any, impl: str) -> None:
    benchmark.group = "token bucket: allow() granted"
    bucket = load(impl).TokenBucket(10**9, 1.0)  # refills a billion tokens a second: never runs dry
    assert benchmark(bucket.allow) is True
    record(benchmark, impl, "allow granted")


@pytest.mark.benchmark(warmup=True, warmup_iterations=100_000)
@pytest.mark.parametrize("impl", IMPLS)
def test_allow_denied(benchmark: Any, impl: str) -> None:
    benchmark.group = "token bucket: allow() denied"
    bucket = load(impl).TokenBucket(1, 1e9)  # one token per ~30 years
    bucket.allow()
    assert benchmark(bucket.allow) is False
    record(benchmark, impl, "allow denied")


@pytest.mark.benchmark(warmup=True, warmup_iterations=100_000)
@pytest.mark.parametrize("impl", IMPLS)
def test_allow_at(benchmark: Any, impl: str) -> None:
    benchmark.group = "token bucket: allow_at(now)"
    bucket = load(impl).TokenBucket(10**9, 1.0)
    now = time.monotonic() + 1.0
    assert benchmark(bucket.allow_at, now) is True  # the stamp stays at ``now``, tokens run down slowly
    record(benchmark, impl, "allow_at")
