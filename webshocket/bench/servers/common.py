"""What every benchmark server script and the load generator share (standard library only:
the webshocket 0.5.2 venv runs ``webshocket_app.py`` too)."""

from __future__ import annotations

import asyncio
import resource
import signal
import sys
import threading


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def until_stopped(loop: asyncio.AbstractEventLoop) -> None:
    """Return on SIGTERM or when stdin closes (the runner died or is done with us)."""
    stop = loop.create_future()

    def done() -> None:
        if not stop.done():
            stop.set_result(None)

    def watch_stdin() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(done)

    loop.add_signal_handler(signal.SIGTERM, done)
    threading.Thread(target=watch_stdin, daemon=True).start()  # a daemon: never joined at exit
    await stop
