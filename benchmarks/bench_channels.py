"""Cost of non-matching pattern subscriptions, per index call and per publish: compiled vs pure.

Run::

    python -m pytest benchmarks/bench_channels.py     # pytest-benchmark, summary tables at the end
    python benchmarks/bench_channels.py               # the same figures without pytest (interleaved runs)
    python benchmarks/bench_channels.py --markdown    # ... as the rows of the tables in benchmarks/README.md

and the same with ``WEBSHOCKET_NO_EXTENSIONS=1`` for the pure mode. Figures are in CPU
time of the benchmarking thread (the machine is shared: other load must not skew the
ratios); ``main`` measures every case once per run, runs ``REPEATS`` times and keeps each
case's best, so that the cases of a ratio are measured under the same load.

*Per call*: ``ChannelIndex.subscribers(channel)`` (or ``matching_patterns``), the Python
loop around the calls included, with either twin of the index ("c" is only measured when
the compiled modules are in use). "py floor" is the least any pure lookup that walks the
tries does on a cache miss (the exact lookup, the cache lookup and the first step of both
walks, inline), as a ratio to ``subscribers`` with no patterns: the best a pure twin of
this algorithm could do with a cold cache.

*Per publish*: ``Hub.publish(channel, payload)``, what ``WebSocketHandler.publish`` runs:
encoding the packet, the index lookup, and the fan-out into the send queues of the
channel's 4 subscribed connections (their transport discards the bytes; the queues are
flushed every 512 publishes, as at the end of a loop iteration). The hub is the one of the
mode (compiled or pure modules); in the compiled mode it is also measured with the pure
index ("py"), the rest compiled.

For the calls, the index holds 100 exact subscriptions on the names of each family; for
the publishes, each name has 4 subscribed connections (of a pool of 64). Either holds
no pattern subscription ("none"), one pattern of each shape below ("few"), or 1,000,
10,000 or 100,000 patterns ("1k", "10k", "100k"), a fifth of each shape, none matching
(subscribed by those connections for the publishes)::

    user.<i>.*    *.<i>.events    room.<i>.?    news.*.<i>    chat.<i>.[!x]*

so some are filed by a literal prefix, some can only be filed by a literal suffix,
``news.*.<i>`` has both (and goes by its suffix), and ``chat.<i>.[!x]*`` needs a
regex once its prefix fits. Channel names are "unrelated" (``news.<k>.sports``: only
one ``news.*.<i>`` pattern, filed on the prefix ``news.``, shares their prefix), "prefix
near-miss" (``user.<k>.x``: down the prefix trie along ``user.<k>``) or "suffix
near-miss" (``svc.<k>.events``: down the suffix trie), with ``k`` from 100,000 on, so
no pattern's ``<i>`` shows up in a name. "cold" cycles through 3 x CACHE_SIZE distinct
names, so no call is ever answered from the channel -> patterns cache (which is cleared
when full); "warm" repeats 64 names, so every call can be.

The summaries give each figure as a ratio to the same case with no patterns (target,
both twins: at most 2x with 10,000 patterns per call, issue 16; with 100,000 patterns
per publish, issue 17) and, per call, to "few" (the cost does not grow with the number
of patterns that cannot match).
"""

from __future__ import annotations

import functools
import importlib
import itertools
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from webshocket._ext import NO_EXTENSIONS
from webshocket._fanout import Endpoint, Flusher, Sink
from webshocket.hub import Hub

MODE = "pure" if NO_EXTENSIONS else "compiled"
IMPLS = ["py"] if NO_EXTENSIONS else ["c", "py"]
COUNTS = {"none": 0, "few": 5, "1k": 1_000, "10k": 10_000, "100k": 100_000}
CALL_SETS = ("none", "few", "10k", "100k")
PUBLISH_SETS = ("none", "1k", "100k")
SHAPES = ("user.{}.*", "*.{}.events", "room.{}.?", "news.*.{}", "chat.{}.[!x]*")
FAMILIES = {
    "unrelated": "news.{}.sports",
    "prefix-near-miss": "user.{}.x",
    "suffix-near-miss": "svc.{}.events",
}
FIRST = 100_000  # channel numbers start here: above every pattern's
CACHES = ("cold", "warm")
CALLS = ("subscribers", "matching_patterns")
CACHE_SIZE = 4096  # both twins'
NAMES = 3 * CACHE_SIZE  # names per family, and calls (or publishes) per run of a case
CHUNK = 512  # calls per pytest-benchmark round; publishes between two flushes
POOL = 64  # connections
SUBSCRIBERS = 4  # connections subscribed to each channel name
PAYLOAD = {"symbol": "EURUSD", "bid": 1.08412, "ask": 1.08415, "seq": 0}
REPEATS = 9
TARGET_RATIO = 2.0

# (impl, call, patterns, family, cache) -> ns per call; call "publish": ns per publish
RESULTS: dict[tuple[str, str, str, str, str], float] = {}


def load(impl: str) -> ModuleType:
    return importlib.import_module(f"webshocket._channels_{impl}")


def pattern_names(patterns: str) -> list[str]:
    return [SHAPES[i % len(SHAPES)].format(i) for i in range(COUNTS[patterns])]


def channel_names(family: str, count: int = NAMES) -> list[str]:
    return [FAMILIES[family].format(FIRST + k) for k in range(count)]


class NullTransport:
    """A picows transport (and its asyncio transport) that discards what it is given."""

    is_close_frame_sent = False
    is_disconnected = False

    def __init__(self) -> None:
        self.underlying_transport = self

    def write(self, data: bytes) -> None:
        pass

    def writelines(self, data: list[bytes]) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class NullLoop:
    """Where a flusher schedules its flush: nowhere (the benchmark flushes)."""

    def call_soon(self, callback: Callable[[], object]) -> None:
        pass


class Connection(Endpoint):
    """A connection as the hub sees it: its send queue."""

    __slots__ = ()
    is_connected = True
    max_subscribed_channels = None


@dataclass
class Setup:
    hub: Hub
    flusher: Flusher


@functools.cache
def index(impl: str, patterns: str) -> Any:
    """An index (of twin ``impl``) holding 100 exact subscriptions of each family and the ``patterns``."""
    built = load(impl).ChannelIndex()
    for family in FAMILIES:
        for k, name in enumerate(channel_names(family, 100)):
            built.add(f"exact-{k}", name)
    for i, pattern in enumerate(pattern_names(patterns)):
        built.add(f"sub-{i}", pattern)
    return built


@functools.cache
def setup(impl: str, patterns: str) -> Setup:
    """A hub (with an index of twin ``impl``) where each channel name has 4 subscribed connections,
    which also subscribe to the ``patterns``."""
    hub = Hub()
    if impl != ("py" if NO_EXTENSIONS else "c"):
        hub.index = load(impl).ChannelIndex()
    flusher = Flusher(NullLoop())  # type: ignore[arg-type]
    pool = [Connection(Sink(NullTransport(), False, flusher=flusher)) for _ in range(POOL)]
    step = POOL // SUBSCRIBERS
    for family in FAMILIES:
        names = channel_names(family)
        for c, connection in enumerate(pool):  # name k: connections k % step + step * j
            hub.subscribe(connection, names[c % step :: step], limited=False)
    names = pattern_names(patterns)
    for c, connection in enumerate(pool):
        hub.subscribe(connection, names[c::POOL], limited=False)
    return Setup(hub, flusher)


def name_lists(family: str, cache: str) -> list[list[str]]:
    """The names of one run of a case, in chunks of CHUNK."""
    names = channel_names(family) if cache == "cold" else channel_names(family, 64) * (NAMES // 64)
    return [names[i : i + CHUNK] for i in range(0, NAMES, CHUNK)]


def call_round(call: Callable[[str], Any], names: list[str]) -> None:
    for channel in names:
        call(channel)


def publish_round(state: Setup, names: list[str]) -> None:
    publish = state.hub.publish
    for channel in names:
        publish(channel, PAYLOAD, None, None)
    state.flusher.flush()


def check_no_pattern_matches(impl: str, call: str, patterns: str, family: str) -> None:
    names = channel_names(family)
    if call != "publish":
        built = index(impl, patterns)
        for k, channel in enumerate(names[:3]):
            assert set(built.subscribers(channel)) == {f"exact-{k}"}
        assert all(built.matching_patterns(channel) == () for channel in names[::97])
        return
    state = setup(impl, patterns)
    for channel in names[:3] + names[-3:]:
        assert len(state.hub.index.subscribers(channel)) == SUBSCRIBERS
        before = state.hub.stats["deliveries"]
        publish_round(state, [channel])
        assert state.hub.stats["deliveries"] == before + SUBSCRIBERS
    assert all(state.hub.index.matching_patterns(channel) == () for channel in names[::97])


def call_cases() -> Iterator[tuple[str, str, str, str, str]]:
    """(impl, call, patterns, family, cache): matching_patterns only with a cold cache. The cases of
    one ratio come one after the other: ``main`` measures them under the same load."""
    for impl, call, family, cache, patterns in itertools.product(IMPLS, CALLS, FAMILIES, CACHES, CALL_SETS):
        if call == "subscribers" or cache == "cold":
            yield impl, call, patterns, family, cache
        if (impl, call, cache, patterns) == ("py", "subscribers", "cold", CALL_SETS[-1]):
            yield impl, "floor", patterns, family, cache


def floor(built: Any) -> Callable[[str], object]:
    """The least a pure ``subscribers`` that walks the tries can do on a cache miss, inline (no
    method call, no result): the exact lookup, the cache lookup and the first step of both walks."""
    channels, cache, prefix, suffix = built.channels, built._cache, built._prefix.kids, built._suffix.kids

    def call(channel: str) -> object:
        exact = channels.get(channel)
        if cache.get(channel) is None:
            prefix.get(channel[0])
            suffix.get(channel[-1])
        return exact

    return call


def publish_cases() -> Iterator[tuple[str, str, str, str, str]]:
    """(impl, "publish", patterns, family, cache); the cases of one ratio next to each other, as in call_cases."""
    for impl, family, cache, patterns in itertools.product(IMPLS, FAMILIES, CACHES, PUBLISH_SETS):
        yield impl, "publish", patterns, family, cache


def runner(case: tuple[str, str, str, str, str]) -> Callable[[list[str]], None]:
    """What one round of ``case`` runs on a list of names."""
    impl, call, patterns, _, _ = case
    if call == "publish":
        return functools.partial(publish_round, setup(impl, patterns))
    built = index(impl, patterns)
    return functools.partial(call_round, floor(built) if call == "floor" else getattr(built, call))


def rows(cases: Iterator[tuple[str, str, str, str, str]], sets: tuple[str, ...]) -> Iterator[tuple[Any, ...]]:
    """(impl, call, family, cache, figures by pattern set) for each case measured with every set."""
    for impl, call, patterns, family, cache in cases:
        if patterns == sets[0]:
            figures = [RESULTS.get((impl, call, p, family, cache)) for p in sets]
            if all(figures):
                yield impl, call, family, cache, figures


def summary_lines() -> list[str]:
    lines = [
        f"per call, ns ({MODE} modules)",
        f"{'impl':<5} {'call':<18} {'names':<17} {'cache':<5} {'none':>8} {'few':>8} {'10k':>8} {'100k':>8}"
        f" {'10k/none':>9} {'100k/none':>9} {'100k/few':>9}",
    ]
    for impl, call, family, cache, (none, few, p10k, p100k) in rows(call_cases(), CALL_SETS):
        flag = "ok" if max(p10k, p100k) / none <= TARGET_RATIO else "OVER TARGET"
        lines.append(
            f"{impl:<5} {call:<18} {family:<17} {cache:<5} {none:>8.1f} {few:>8.1f} {p10k:>8.1f} {p100k:>8.1f}"
            f" {p10k / none:>8.2f}x {p100k / none:>8.2f}x {p100k / few:>8.2f}x  {flag}"
        )
    for family in FAMILIES:
        least, none = (
            RESULTS.get(("py", "floor", "100k", family, "cold")),
            RESULTS.get(("py", "subscribers", "none", family, "cold")),
        )
        if least and none:
            lines.append(f"py floor, {family}, cold: {least:.1f} ns, {least / none:.2f}x subscribers with no patterns")
    lines += [
        f"per publish (4 subscribers), ns ({MODE} modules; impl: the index's)",
        f"{'impl':<5} {'names':<17} {'cache':<5} {'none':>8} {'1k':>8} {'100k':>8} {'1k/none':>9} {'100k/none':>9}",
    ]
    for impl, _, family, cache, (none, p1k, p100k) in rows(publish_cases(), PUBLISH_SETS):
        flag = "ok" if p100k / none <= TARGET_RATIO else "OVER TARGET"
        lines.append(
            f"{impl:<5} {family:<17} {cache:<5} {none:>8.0f} {p1k:>8.0f} {p100k:>8.0f}"
            f" {p1k / none:>8.2f}x {p100k / none:>8.2f}x  {flag}"
        )
    return lines


def markdown_lines() -> list[str]:
    """The rows of the README tables: (impl, patterns, cache, family) -> ns and ratio to no patterns."""
    impl_names = {"c": "compiled", "py": "pure"}
    lines = ["| impl | names | cache | none | few | 10k | 100k |", "|---|---|---|---|---|---|---|"]
    for impl, call, family, cache, figures in rows(call_cases(), CALL_SETS):
        if call == "subscribers":
            cells = [f"{figures[0]:.0f} ns"] + [f"{f:.0f} ns ({f / figures[0]:.2f}x)" for f in figures[1:]]
            lines.append(f"| {impl_names.get(impl, impl)} | {family} | {cache} | " + " | ".join(cells) + " |")
    for family in FAMILIES:
        least, none = (
            RESULTS.get(("py", "floor", "100k", family, "cold")),
            RESULTS.get(("py", "subscribers", "none", family, "cold")),
        )
        if least and none:
            lines.append(f"| pure floor | {family} | cold | {none:.0f} ns | | | {least:.0f} ns ({least / none:.2f}x) |")
    lines += ["", "| mode | index | names | cache | none | 1k | 100k |", "|---|---|---|---|---|---|---|"]
    for impl, _, family, cache, figures in rows(publish_cases(), PUBLISH_SETS):
        cells = [f"{figures[0] / 1000:.2f} µs"] + [f"{f / 1000:.2f} µs ({f / figures[0]:.2f}x)" for f in figures[1:]]
        lines.append(f"| {MODE} | {impl_names.get(impl, impl)} | {family} | {cache} | " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------- pytest-benchmark


class Summary:
    """Prints the figures and ratios after pytest-benchmark's tables."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not RESULTS:
            return
        terminalreporter.section("webshocket channel index (median, thread CPU time)")
        for line in summary_lines():
            terminalreporter.write_line(line)


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> None:
    manager = request.config.pluginmanager
    if not manager.has_plugin("webshocket-bench-channels"):
        manager.register(Summary(), "webshocket-bench-channels")


def bench(benchmark: Any, case: tuple[str, str, str, str, str]) -> None:
    impl, call, patterns, family, cache = case
    benchmark.group = f"channels: {call}, {family} names, {cache} cache"
    run, chunks = runner(case), itertools.cycle(name_lists(family, cache))
    for _ in range(2 * NAMES // CHUNK):  # warm up (and fill the cache, for the warm case)
        run(next(chunks))
    benchmark(lambda: run(next(chunks)))
    check_no_pattern_matches(impl, call, patterns, family)
    if benchmark.stats is not None:
        RESULTS[case] = benchmark.stats.stats.median / CHUNK * 1e9


@pytest.mark.benchmark(timer=time.thread_time)
@pytest.mark.parametrize("case", list(call_cases()), ids="-".join)
def test_call_no_match(benchmark: Any, case: tuple[str, str, str, str, str]) -> None:
    bench(benchmark, case)


@pytest.mark.benchmark(timer=time.thread_time)
@pytest.mark.parametrize("case", list(publish_cases()), ids="-".join)
def test_publish_no_match(benchmark: Any, case: tuple[str, str, str, str, str]) -> None:
    bench(benchmark, case)


# ---------------------------------------------------------------- without pytest


def main() -> int:
    """Every case once per run, ``REPEATS`` runs (each of NAMES calls or publishes); the best of each case."""
    cases = [*call_cases(), *publish_cases()]
    runs = {case: (runner(case), name_lists(case[3], case[4])) for case in cases}
    for case, (run, chunks) in runs.items():  # warm up (and fill the cache, for the warm case)
        for names in chunks:
            run(names)
        check_no_pattern_matches(case[0], case[1], case[2], case[3])
    for _ in range(REPEATS):
        for case, (run, chunks) in runs.items():
            start = time.thread_time_ns()
            for names in chunks:
                run(names)
            RESULTS[case] = min(RESULTS.get(case, float("inf")), (time.thread_time_ns() - start) / NAMES)
    print(f"webshocket channel index: best of {REPEATS} interleaved runs, thread CPU time")
    for line in markdown_lines() if "--markdown" in sys.argv else summary_lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
