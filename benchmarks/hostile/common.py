"""What every process of the hostile suite shares: the open-file limit, writing its result."""

from __future__ import annotations

import os
import resource
import sys

NOFILE = 20_000
"""Soft open-file limit of every process the suite starts (or the hard limit, when lower)."""


def set_nofile(limit: int = NOFILE) -> int:
    """Set the soft RLIMIT_NOFILE to ``limit`` (at most the hard limit); returns the new soft limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def emit(line: str) -> None:
    """Write ``line`` and a newline to stdout whole: blocking, and again after a short write.

    ``print`` on an unbuffered stdout (``PYTHONUNBUFFERED``) makes one ``write`` call and
    does not retry a short one, so a large JSON line to a pipe could arrive truncated.
    """
    fd = sys.stdout.fileno()
    os.set_blocking(fd, True)
    data = memoryview((line + "\n").encode())
    while data:
        data = data[os.write(fd, data) :]
