"""Which implementation of each hot module is in use, as the test run asked for."""

from __future__ import annotations

import os

import webshocket
from webshocket._ext import NO_EXTENSIONS

HOT_MODULES = {"codec", "channels", "ratelimit", "fanout", "listener"}


def test_every_hot_module_is_selected() -> None:
    assert set(webshocket.SPEEDUPS) == HOT_MODULES


def test_no_extensions_selects_the_pure_twins() -> None:
    if NO_EXTENSIONS:
        assert not any(webshocket.SPEEDUPS.values())
        assert type(webshocket.Packet).__module__ != "webshocket._codec_c"


def test_required_extensions_are_compiled() -> None:
    """``make test`` sets WEBSHOCKET_REQUIRE_EXTENSIONS=1 for its compiled run."""
    if os.environ.get("WEBSHOCKET_REQUIRE_EXTENSIONS") == "1":
        assert all(webshocket.SPEEDUPS.values()), webshocket.SPEEDUPS
        assert webshocket.Packet.__module__ == "webshocket._codec_c"
