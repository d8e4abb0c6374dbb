"""Small helpers: call ids, duration strings, on/off options, awaiting several things at once."""

import asyncio
import os
import time
from collections.abc import Awaitable
from itertools import count
from typing import TypeVar

_Option = TypeVar("_Option")
_Result = TypeVar("_Result")

_id_counter = count(1)
_id_prefix = f"{os.getpid():x}{int(time.time()) & 0xFFFF:x}"

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def generate_uuid() -> str:
    """Return a process-unique call id (cheap: a prefix and a counter)."""
    return _id_prefix + format(next(_id_counter), "x")


def parse_duration(duration: str | float | int) -> float:
    """Turn ``"10s"``, ``"5m"``, ``"1h"``, ``"2d"`` (or a number of seconds) into seconds.

    As in 0.5.x, a string needs its unit (``"5"`` and ``"5/1m"`` raise ``ValueError``), and
    zero or a negative duration is accepted (a rate limit over it does not limit).
    """
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        seconds = float(duration)
    else:
        if not isinstance(duration, str) or not duration:
            raise ValueError("Duration cannot be empty.")
        unit = duration[-1]
        if unit not in _UNITS:
            raise ValueError("Invalid duration unit. Expected one of s, m, h, d (e.g '10s', '5m', '1h', '2d')")
        try:
            seconds = float(duration[:-1]) * _UNITS[unit]
        except ValueError:
            raise ValueError(f"Invalid duration {duration!r}: expected a number before the unit") from None
    if seconds != seconds:  # NaN
        raise ValueError(f"Invalid duration {duration!r}")
    return seconds


def optional_config(value: bool | _Option | None, kind: type[_Option], name: str) -> _Option | None:
    """A server option that is off (None, False), on with defaults (True) or a ``kind`` instance."""
    if value is None or value is False:
        return None
    if value is True:
        return kind()
    if isinstance(value, kind):
        return value
    raise TypeError(f"{name} must be True, False or a webshocket.{kind.__name__}, got {value!r}")


async def gather_all(*work: Awaitable[_Result]) -> list[_Result]:
    """Await ``work`` at once; once every one is done, raise the first error (else return the results).

    Unlike ``asyncio.gather``, an error does not leave the others running unobserved.
    """
    results = await asyncio.gather(*work, return_exceptions=True)
    done: list[_Result] = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        done.append(result)
    return done
