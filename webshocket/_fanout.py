"""The send path in use (compiled ``_fanout_c`` or pure ``_fanout_py``)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # both implementations have the pure twin's API
    from ._fanout_py import (
        CLOSE_SLOW_CONSUMER,
        FLUSH_FRAMES,
        SLOW_CONSUMER_GRACE,
        Endpoint,
        Flusher,
        Outgoing,
        Sink,
        fan_out,
    )
else:
    from ._ext import load

    _impl = load("fanout")
    CLOSE_SLOW_CONSUMER = _impl.CLOSE_SLOW_CONSUMER
    FLUSH_FRAMES = _impl.FLUSH_FRAMES
    SLOW_CONSUMER_GRACE = _impl.SLOW_CONSUMER_GRACE
    Endpoint = _impl.Endpoint
    Flusher = _impl.Flusher
    Outgoing = _impl.Outgoing
    Sink = _impl.Sink
    fan_out = _impl.fan_out

__all__ = [
    "CLOSE_SLOW_CONSUMER",
    "FLUSH_FRAMES",
    "SLOW_CONSUMER_GRACE",
    "Endpoint",
    "Flusher",
    "Outgoing",
    "Sink",
    "fan_out",
]
