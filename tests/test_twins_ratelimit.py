"""Twin tests for the token bucket: compiled ``_ratelimit_c`` and pure ``_ratelimit_py``.

Both implementations are imported directly. Behaviour tests take the ``impl`` fixture and
run on each implementation available; ``test_twins_agree`` takes ``twins`` and checks that
the same calls give the same answers and bit-identical token counts (skipped, with the
reason, where the compiled twin cannot be tested, as in the pure run).
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from helpers import Twins, twin
from hypothesis import given, settings
from hypothesis import strategies as st

TWIN = "ratelimit"  # the hot module of the ``impl`` and ``twins`` fixtures

# comfortably after any bucket's creation stamp: the first call there refills a bucket to exactly ``limit``
FUTURE = float(int(time.monotonic()) + 1_000_000)


def bucket(impl: str, limit: Any, period: Any) -> Any:
    return twin(TWIN, impl).TokenBucket(limit, period)


def reference(limit: int, period: float, deltas: list[float]) -> list[tuple[bool, float]]:
    """The token bucket, spelled out: (allowed, tokens after) per call at FUTURE + cumulative delta."""
    rate = limit / float(period)
    tokens, stamp = float(limit), -math.inf  # the first call refills to ``limit`` and sets the stamp
    out = []
    now = FUTURE
    for delta in deltas:
        now += delta
        if now > stamp:
            tokens = min(tokens + (now - stamp) * rate, float(limit))
            stamp = now
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        out.append((allowed, tokens))
    return out


@pytest.mark.parametrize(
    ("limit", "period"),
    [(0, 1.0), (-1, 1.0), (-0.5, 1.0), (math.inf, 1.0), (math.nan, 1.0), (1, 0), (1, 0.0), (1, -1.0), (1, math.nan)],
)
def test_bad_arguments(impl: str, limit: Any, period: Any) -> None:
    with pytest.raises(ValueError, match="a finite limit > 0 and a period > 0"):
        bucket(impl, limit, period)


@pytest.mark.parametrize(("limit", "burst"), [(0.5, 1), (2.5, 3), (3.0, 3), (True, 1)])
def test_a_fractional_limit_counts_as_the_next_whole_call(impl: str, limit: Any, burst: int) -> None:
    """As 0.5.x, which allowed a call while fewer than ``limit`` were made: 2.5 allows 3."""
    b = bucket(impl, limit, 60.0)
    assert [b.allow_at(FUTURE) for _ in range(burst + 1)] == [True] * burst + [False]
    assert b.limit == limit and type(b.limit) is type(limit)
    assert b.allow_at(FUTURE + 60.0 / burst) is True  # refilled at burst / period


def test_attributes(impl: str) -> None:
    b = bucket(impl, 3, 2)
    assert b.limit == 3 and type(b.limit) is int
    assert b.period == 2.0 and type(b.period) is float
    assert b.tokens == 3.0 and type(b.tokens) is float
    assert twin(TWIN, impl).__all__ == ["TokenBucket"]


def test_known_sequence(impl: str) -> None:
    b = bucket(impl, 2, 1.0)  # 2 tokens, 2 per second
    assert [b.allow_at(FUTURE) for _ in range(3)] == [True, True, False]
    assert b.tokens == 0.0
    assert b.allow_at(FUTURE + 0.25) is False  # half a token
    assert b.tokens == 0.5
    assert b.allow_at(FUTURE + 0.5) is True
    assert b.tokens == 0.0
    assert b.allow_at(FUTURE + 0.4) is False  # time going backwards refills nothing
    assert b.tokens == 0.0
    assert b.allow_at(FUTURE + 100) is True  # refill is capped at limit
    assert b.tokens == 1.0
    assert b.allow_at(int(FUTURE) + 200) is True  # an int is a time too
    assert b.tokens == 1.0


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(1, 50),
    period=st.floats(1e-3, 1e3),
    deltas=st.lists(
        st.one_of(st.floats(-1.0, 5.0), st.just(0.0), st.floats(0.0, 1e-6), st.sampled_from([1e-9, 0.1, 0.3])),
        max_size=60,
    ),
)
def test_against_reference(impl: str, limit: int, period: float, deltas: list[float]) -> None:
    b = bucket(impl, limit, period)
    now = FUTURE
    got = []
    for delta in deltas:
        now += delta
        got.append((b.allow_at(now), b.tokens))
        assert 0.0 <= b.tokens <= limit
    assert got == reference(limit, period, deltas)


@settings(max_examples=300, deadline=None)
@given(
    limit=st.one_of(st.integers(1, 1000), st.floats(1.0, 100.0)),
    period=st.one_of(st.floats(1e-6, 1e6), st.integers(1, 100)),
    times=st.lists(st.floats(-1e3, 1e7), max_size=60),
)
def test_twins_agree(twins: Twins, limit: Any, period: Any, times: list[float]) -> None:
    pure, compiled = twins.py.TokenBucket(limit, period), twins.c.TokenBucket(limit, period)
    assert (pure.limit, pure.period, pure.tokens) == (compiled.limit, compiled.period, compiled.tokens)
    # every time after both creation stamps (which differ a little), some out of order
    for offset in sorted(times[: len(times) // 2]) + times[len(times) // 2 :]:
        now = FUTURE + offset
        assert pure.allow_at(now) is compiled.allow_at(now)
        assert pure.tokens == compiled.tokens  # bit for bit


def test_allow_uses_time_monotonic(impl: str) -> None:
    """allow() reads the clock behind time.monotonic(), so it mixes with allow_at(time.monotonic())."""
    b = bucket(impl, 1, 1.0)  # one token per second
    before = time.monotonic()
    assert b.allow() is True
    after = time.monotonic()
    assert b.allow_at(before) is False  # not later than the allow() stamp: no refill
    assert b.tokens == 0.0
    assert b.allow_at(after) is False
    assert 0.0 <= b.tokens <= after - before + 1e-6
    assert b.allow_at(after + 100.0) is True
    assert b.allow() is False  # the stamp is now in the future: allow() refills nothing


def test_allow_refills_over_real_time(impl: str) -> None:
    b = bucket(impl, 2, 0.02)  # 100 tokens per second
    assert b.allow() and b.allow()
    assert b.allow() is False
    time.sleep(0.03)
    assert b.allow() is True
    assert b.tokens <= 1.0
