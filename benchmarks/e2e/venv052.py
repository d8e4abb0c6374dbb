"""A virtualenv holding PyPI ``webshocket==0.5.2`` (plus uvloop) for the benchmark's baseline.

Built by ``tests/interop/venvs.py`` (the release shares our import name, so it lives in its
own venv and runs only in subprocesses), in a cache of its own because the benchmark also
needs uvloop in it: 0.5.2 does not install uvloop, and every server in the comparison runs
on uvloop. uvloop is pinned to the version of this interpreter so both sides run the same
event loop. Cached under ``$WEBSHOCKET_BENCH_VENVS`` (default ``benchmarks/.venvs``,
git-ignored) and reused while its ``.ready`` marker names the same requirements.
"""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata
from pathlib import Path
from types import ModuleType

from .procs import REPO

VERSION = "0.5.2"
DEFAULT_CACHE = Path(__file__).resolve().parent.parent / ".venvs"


def _venvs() -> ModuleType:
    """tests/interop/venvs.py of this checkout (the suite runs from a source tree)."""
    spec = importlib.util.spec_from_file_location("_interop_venvs", REPO / "tests" / "interop" / "venvs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_VENVS = _venvs()
clean_env = _VENVS.clean_env


def cache_dir() -> Path:
    """Where the venv lives."""
    return Path(os.environ.get("WEBSHOCKET_BENCH_VENVS") or DEFAULT_CACHE)


def requirements() -> list[str]:
    """``webshocket==0.5.2`` and this interpreter's uvloop version."""
    return [f"webshocket=={VERSION}", f"uvloop=={metadata.version('uvloop')}"]


def venv_python() -> Path:
    """Python of the venv holding ``webshocket==0.5.2`` and uvloop (built on first use)."""
    python: Path = _VENVS.release_venv(cache_dir() / f"webshocket-{VERSION}-bench", requirements(), VERSION)
    return python
