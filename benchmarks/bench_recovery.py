"""Cost of channel history (``recovery=``) on the publish path, and its memory per channel.

Run::

    python -m pytest benchmarks/bench_recovery.py     # pytest-benchmark; ratios at the end
    python benchmarks/bench_recovery.py               # memory per channel of history, printed

``publish`` groups compare one ``Hub.publish`` to a channel with no subscribers (the part of a
publish recovery adds to: positioning, encoding, keeping) with recovery off and on; the
end-to-end fan-out figures, where that cost is shared by every subscriber, come from
``python -m benchmarks.e2e --servers ours,recovery,redis,redis-recovery``.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from typing import Any

import pytest

from webshocket.hub import Hub
from webshocket.recovery import MemoryStore, Recovery

PAYLOAD = {"symbol": "EURUSD", "bid": 1.08412, "ask": 1.08415, "seq": 0}


def make_hub(recovery: bool, history_size: int = 100) -> Hub:
    hub = Hub()
    if recovery:
        hub.enable_recovery(MemoryStore(Recovery(history_size=history_size)))
    return hub


@pytest.mark.parametrize("recovery", [False, True], ids=["off", "on"])
def test_publish_cost(benchmark: Any, ratios: Any, recovery: bool) -> None:
    hub = make_hub(recovery)
    channels = [f"prices.{i}" for i in range(100)]

    def publish_100() -> None:
        for channel in channels:
            hub.publish(channel, PAYLOAD, None, None)

    benchmark(publish_100)
    ratios.record("publish to 100 channels, no subscribers", "recovery off" if not recovery else "on", benchmark)


def history_bytes_per_channel(channels: int = 1000, history_size: int = 100, payload: Any = PAYLOAD) -> float:
    """Bytes a node holds per channel whose history is full (``history_size`` messages of ``payload``)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    hub = make_hub(True, history_size)
    for _ in range(history_size):
        for i in range(channels):
            hub.publish(f"prices.{i}", payload, None, None)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del hub
    return (after - before) / channels


def test_history_memory_per_channel(benchmark: Any) -> None:
    per_channel = benchmark.pedantic(history_bytes_per_channel, args=(200, 100), rounds=1, iterations=1)
    benchmark.extra_info["bytes_per_channel_100_messages"] = round(per_channel)
    assert per_channel > 100 * 40  # each message keeps at least its encoded packet


if __name__ == "__main__":
    for size in (10, 100, 1000):
        per_channel = history_bytes_per_channel(200, size)
        sys.stdout.write(
            f"history_size={size:5d}: {per_channel / 1024:8.1f} KiB per channel, "
            f"{per_channel / size:6.0f} bytes per message ({len(str(PAYLOAD))}-character payload)\n"
        )
