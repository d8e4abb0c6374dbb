"""Publish-side matching cost of the channel index: compiled ``_channels_c`` vs pure ``_channels_py``.

Run::

    python -m pytest benchmarks/bench_channels.py

Each round calls ``ChannelIndex.subscribers(channel)`` once for each name in a
list of channel names that no pattern matches, and the figures are per call
(the Python loop around the calls included). The index holds 100 exact
subscriptions on those names, plus either no pattern subscription at all or
10,000 pattern subscriptions, none matching, 2,000 each of five shapes::

    user.<i>.*    *.alerts.<i>    room.<i>.[ab]?    feed.*.<i>.*    news.*.<i>

Channel names are either "unrelated" (``news.<k>.sports``: only the
``news.*.<i>`` patterns share their prefix) or "near misses"
(``user.<10000+k>.x``, sharing up to a 10-character prefix with the
``user.<i>.*`` patterns). "cold" cycles through 3 x CACHE_SIZE distinct names,
so no call is ever answered from a channel -> patterns cache; "warm" repeats 64
names, so every call can be. The summary at the end gives each figure as a
ratio to the same call with no patterns (target for the compiled twin: <= 2x).
"""

from __future__ import annotations

import importlib
import itertools
import os
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

NO_EXTENSIONS = os.environ.get("WEBSHOCKET_NO_EXTENSIONS", "") not in ("", "0")
IMPLS = ["py"] if NO_EXTENSIONS else ["c", "py"]
N_PATTERNS = 10_000
CHUNK = 512
TARGET_RATIO = 2.0

# (impl, patterns, names, cache) -> ns per call
RESULTS: dict[tuple[str, str, str, str], float] = {}


def load(impl: str) -> ModuleType:
    return importlib.import_module(f"webshocket._channels_{impl}")


def pattern_names() -> list[str]:
    shapes = ["user.{}.*", "*.alerts.{}", "room.{}.[ab]?", "feed.*.{}.*", "news.*.{}"]
    return [shapes[i % 5].format(i) for i in range(N_PATTERNS)]


def channel_names(family: str, count: int) -> list[str]:
    if family == "unrelated":
        return [f"news.{k}.sports" for k in range(count)]
    return [f"user.{10_000 + k}.x" for k in range(count)]


def build(impl: str, patterns: str, family: str) -> Any:
    index = load(impl).ChannelIndex()
    for k, name in enumerate(channel_names(family, 100)):
        index.add(f"exact-{k}", name)
    if patterns == "10k":
        for i, pattern in enumerate(pattern_names()):
            index.add(f"sub-{i}", pattern)
    return index


def rounds(family: str, cache: str) -> Iterator[list[str]]:
    """The name lists of successive rounds."""
    if cache == "warm":
        return itertools.repeat(channel_names(family, 64) * (CHUNK // 64))
    names = channel_names(family, 3 * load("py").CACHE_SIZE)
    return itertools.cycle([names[i : i + CHUNK] for i in range(0, len(names), CHUNK)])


def publish_round(subscribers: Callable[[str], Any], chunks: Iterator[list[str]]) -> Callable[[], None]:
    def run() -> None:
        for channel in next(chunks):
            subscribers(channel)

    return run


class Summary:
    """Prints the per-call figures and ratios after pytest-benchmark's tables."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not RESULTS:
            return
        write = terminalreporter.write_line
        terminalreporter.section("webshocket channel index: ns per subscribers() call (median)")
        write(f"{'impl':<5} {'names':<10} {'cache':<5} {'0 patterns':>11} {'10k patterns':>13} {'ratio':>8}")
        for impl in IMPLS:
            for family in ("unrelated", "near-miss"):
                for cache in ("cold", "warm"):
                    base = RESULTS.get((impl, "none", family, cache))
                    full = RESULTS.get((impl, "10k", family, cache))
                    if base is None or full is None:
                        continue
                    ratio = full / base
                    flag = "" if impl != "c" else ("  ok" if ratio <= TARGET_RATIO else "  OVER TARGET")
                    write(f"{impl:<5} {family:<10} {cache:<5} {base:>11.1f} {full:>13.1f} {ratio:>7.2f}x{flag}")
        for family in ("unrelated", "near-miss"):
            for cache in ("cold", "warm"):
                c, py = RESULTS.get(("c", "10k", family, cache)), RESULTS.get(("py", "10k", family, cache))
                if c and py:
                    write(f"compiled vs pure, 10k patterns, {family}/{cache}: {py / c:.1f}x faster")


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> None:
    manager = request.config.pluginmanager
    if not manager.has_plugin("webshocket-bench-channels"):
        manager.register(Summary(), "webshocket-bench-channels")


@pytest.mark.parametrize("cache", ["cold", "warm"])
@pytest.mark.parametrize("family", ["unrelated", "near-miss"])
@pytest.mark.parametrize("patterns", ["none", "10k"])
@pytest.mark.parametrize("impl", IMPLS)
def test_publish_no_match(benchmark: Any, impl: str, patterns: str, family: str, cache: str) -> None:
    benchmark.group = f"channels: {family} names, {cache} cache"
    index = build(impl, patterns, family)
    chunks = rounds(family, cache)
    run = publish_round(index.subscribers, chunks)
    for _ in range(2):  # warm up (and fill the cache, for the warm case)
        run()
    benchmark(run)
    # nobody matched by a pattern: only the exact subscribers come back
    for channel in channel_names(family, 100)[:5]:
        assert set(index.subscribers(channel)) == {f"exact-{channel_names(family, 100).index(channel)}"}
    assert index.matching_patterns(channel_names(family, 200)[150]) == ()
    if benchmark.stats is not None:
        RESULTS[(impl, patterns, family, cache)] = benchmark.stats.stats.median / CHUNK * 1e9
