"""Small helpers shared by the test modules (the raw-socket client lives in ``rawws``)."""

from __future__ import annotations

from typing import Any

from websockets.asyncio.client import connect as ws_connect


def raw_connect(uri: str, **kwargs: Any) -> Any:
    """A generic (JSON) client from the ``websockets`` library, no proxy, short timeouts."""
    return ws_connect(uri, proxy=None, compression=None, open_timeout=2, close_timeout=1, **kwargs)
