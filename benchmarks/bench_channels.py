"""Publish-side matching cost of the channel index: compiled ``_channels_c`` vs pure ``_channels_py``.

Run::

    python -m pytest benchmarks/bench_channels.py     # pytest-benchmark, summary table at the end
    python benchmarks/bench_channels.py               # the same figures without pytest (min of runs)

Each round calls ``ChannelIndex.subscribers(channel)`` (or ``matching_patterns``)
once for each name in a list of channel names that no pattern matches, and the
figures are per call (the Python loop around the calls included), in CPU time of
the benchmarking thread (the machine is shared: other load must not skew the
ratios). The index holds 100 exact subscriptions on those names, plus either no
pattern subscription ("none"), one pattern of each shape below ("few"), or 10,000
patterns, 2,000 of each shape ("10k"), none matching::

    user.<i>.*    *.<i>.events    room.<i>.?    news.*.<i>    chat.<i>.[!x]*

so some are filed by a literal prefix, some can only be filed by a literal suffix,
``news.*.<i>`` has both (and goes by its suffix), and ``chat.<i>.[!x]*`` needs a
regex once its prefix fits. Channel names are "unrelated" (``news.<k>.sports``:
only one ``news.*.<i>`` pattern, filed on the prefix ``news.``, shares their
prefix), "prefix near-miss" (``user.<10000+k>.x``: up to 10 characters down the
prefix trie) or "suffix near-miss" (``svc.<10000+k>.events``: down the suffix
trie). "cold" cycles through 3 x CACHE_SIZE distinct names, so no call is ever
answered from the channel -> patterns cache (which is cleared when full); "warm"
repeats 64 names, so every call can be. The summary gives each figure as a ratio
to the same call with no patterns (target, both twins: <= 2x with 10k patterns)
and, to show the cost does not grow with the number of patterns, to "few".
"""

from __future__ import annotations

import importlib
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

NO_EXTENSIONS = os.environ.get("WEBSHOCKET_NO_EXTENSIONS", "") not in ("", "0")
IMPLS = ["py"] if NO_EXTENSIONS else ["c", "py"]
N_PATTERNS = 10_000
SHAPES = ("user.{}.*", "*.{}.events", "room.{}.?", "news.*.{}", "chat.{}.[!x]*")
FAMILIES = {
    "unrelated": "news.{}.sports",
    "prefix-near-miss": "user.{}.x",
    "suffix-near-miss": "svc.{}.events",
}
PATTERN_SETS = ("none", "few", "10k")
CACHES = ("cold", "warm")
CALLS = ("subscribers", "matching_patterns")
CHUNK = 512
TARGET_RATIO = 2.0

# (impl, call, patterns, family, cache) -> ns per call
RESULTS: dict[tuple[str, str, str, str, str], float] = {}


def load(impl: str) -> ModuleType:
    return importlib.import_module(f"webshocket._channels_{impl}")


def pattern_names(patterns: str) -> list[str]:
    count = {"none": 0, "few": len(SHAPES), "10k": N_PATTERNS}[patterns]
    return [SHAPES[i % len(SHAPES)].format(i) for i in range(count)]


def channel_names(family: str, count: int) -> list[str]:
    # numbers from 10,000 on: no "<i>" of a pattern (all below 10,000) shows up in a name
    return [FAMILIES[family].format(10_000 + k) for k in range(count)]


def build(impl: str, patterns: str, family: str) -> Any:
    index = load(impl).ChannelIndex()
    for k, name in enumerate(channel_names(family, 100)):
        index.add(f"exact-{k}", name)
    for i, pattern in enumerate(pattern_names(patterns)):
        index.add(f"sub-{i}", pattern)
    return index


def rounds(family: str, cache: str) -> Iterator[list[str]]:
    """The name lists of successive rounds."""
    if cache == "warm":
        return itertools.repeat(channel_names(family, 64) * (CHUNK // 64))
    names = channel_names(family, 3 * load("py").CACHE_SIZE)
    return itertools.cycle([names[i : i + CHUNK] for i in range(0, len(names), CHUNK)])


def publish_round(call: Callable[[str], Any], chunks: Iterator[list[str]]) -> Callable[[], None]:
    def run() -> None:
        for channel in next(chunks):
            call(channel)

    return run


def check_no_pattern_matches(index: Any, family: str) -> None:
    names = channel_names(family, 100)
    for k, channel in enumerate(names[:5]):
        assert set(index.subscribers(channel)) == {f"exact-{k}"}
    assert index.matching_patterns(channel_names(family, 200)[150]) == ()
    assert all(index.matching_patterns(channel) == () for channel in channel_names(family, 3 * 4096)[::97])


def cases() -> Iterator[tuple[str, str, str, str, str]]:
    """(impl, call, patterns, family, cache): matching_patterns only with a cold cache."""
    for impl, call, patterns, family, cache in itertools.product(IMPLS, CALLS, PATTERN_SETS, FAMILIES, CACHES):
        if call == "subscribers" or cache == "cold":
            yield impl, call, patterns, family, cache


def summary_lines() -> list[str]:
    lines = [
        f"{'impl':<5} {'call':<18} {'names':<17} {'cache':<5} {'none':>8} {'few':>8} {'10k':>8}"
        f" {'10k/none':>9} {'10k/few':>8}"
    ]
    for impl, call, patterns, family, cache in cases():
        if patterns != "none":
            continue
        row = [RESULTS.get((impl, call, p, family, cache)) for p in PATTERN_SETS]
        if any(value is None for value in row):
            continue
        base, few, full = (value or 0.0 for value in row)
        ratio = full / base
        flag = "ok" if ratio <= TARGET_RATIO else "OVER TARGET"
        lines.append(
            f"{impl:<5} {call:<18} {family:<17} {cache:<5} {base:>8.1f} {few:>8.1f} {full:>8.1f}"
            f" {ratio:>8.2f}x {full / few:>7.2f}x  {flag}"
        )
    for call, family, cache in itertools.product(CALLS, FAMILIES, CACHES):
        c, py = RESULTS.get(("c", call, "10k", family, cache)), RESULTS.get(("py", call, "10k", family, cache))
        if c and py:
            lines.append(f"compiled vs pure, {call}, 10k patterns, {family}/{cache}: {py / c:.1f}x faster")
    return lines


class Summary:
    """Prints the per-call figures and ratios after pytest-benchmark's tables."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not RESULTS:
            return
        terminalreporter.section("webshocket channel index: ns per call (median, thread CPU time)")
        for line in summary_lines():
            terminalreporter.write_line(line)


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> None:
    manager = request.config.pluginmanager
    if not manager.has_plugin("webshocket-bench-channels"):
        manager.register(Summary(), "webshocket-bench-channels")


@pytest.mark.benchmark(timer=time.thread_time)
@pytest.mark.parametrize(("impl", "call", "patterns", "family", "cache"), list(cases()))
def test_publish_no_match(benchmark: Any, impl: str, call: str, patterns: str, family: str, cache: str) -> None:
    benchmark.group = f"channels: {call}, {family} names, {cache} cache"
    index = build(impl, patterns, family)
    run = publish_round(getattr(index, call), rounds(family, cache))
    for _ in range(2):  # warm up (and fill the cache, for the warm case)
        run()
    benchmark(run)
    check_no_pattern_matches(index, family)
    if benchmark.stats is not None:
        RESULTS[(impl, call, patterns, family, cache)] = benchmark.stats.stats.median / CHUNK * 1e9


def main() -> int:
    """The same figures without pytest-benchmark: the best of a few runs of 3 x CACHE_SIZE calls each."""
    repeats = 7
    for impl, call, patterns, family, cache in cases():
        index = build(impl, patterns, family)
        chunks = rounds(family, cache)
        batch = [next(chunks) for _ in range(3 * load("py").CACHE_SIZE // CHUNK)]
        bound = getattr(index, call)
        publish_round(bound, iter(batch))()  # warm up
        best = float("inf")
        for _ in range(repeats):
            start = time.thread_time_ns()
            for names in batch:
                for channel in names:
                    bound(channel)
            best = min(best, (time.thread_time_ns() - start) / (len(batch) * CHUNK))
        check_no_pattern_matches(index, family)
        RESULTS[(impl, call, patterns, family, cache)] = best
    print("webshocket channel index: ns per call (best of runs, thread CPU time)")
    for line in summary_lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
