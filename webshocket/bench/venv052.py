"""The python of a virtualenv holding PyPI ``webshocket==0.5.2`` (plus uvloop), for the ``052`` server.

The release shares our import name, so it lives in its own venv and runs only in
subprocesses; it needs uvloop beside it (0.5.2 does not install it, and every server in the
comparison runs on uvloop), pinned to this interpreter's version so both sides run the same
event loop.

* ``--venv-052 PATH`` names such a venv (its directory or its python): :func:`given` checks
  that it imports webshocket 0.5.2 and uvloop.
* From a clone, without it, :func:`venv_python` builds one with the test suite's builder
  (``tests/interop/venvs.py``), cached under ``$WEBSHOCKET_BENCH_VENVS`` (default
  ``benchmarks/.venvs``, git-ignored) and reused while its ``.ready`` marker names the same
  requirements.
* From an installed package there is no builder: :class:`Unavailable` says, in one line,
  how to make the venv (:func:`how_to_enable`).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from importlib import metadata
from pathlib import Path

from . import procs

VERSION = "0.5.2"


class Unavailable(Exception):
    """webshocket 0.5.2 cannot be run; the message says why and how to enable it, in one line."""


def clean_env() -> dict[str, str]:
    """Environment for the venv's processes: nothing that would leak our package into it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "WEBSHOCKET_"))}
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def requirements() -> list[str]:
    """``webshocket==0.5.2`` and this interpreter's uvloop version."""
    try:
        uvloop = f"uvloop=={metadata.version('uvloop')}"
    except metadata.PackageNotFoundError:
        uvloop = "uvloop"
    return [f"webshocket=={VERSION}", uvloop]


def how_to_enable() -> str:
    """One sentence: the commands that make the venv and the option that uses it."""
    other = "leave --venv-052 out: this clone builds one" if procs.SOURCE_TREE else "run from a clone, which builds it"
    return (
        f"make one with 'python -m venv /tmp/ws052 && /tmp/ws052/bin/pip install {' '.join(requirements())}' "
        f"and pass --venv-052 /tmp/ws052 (or {other})"
    )


def given(path: Path) -> Path:
    """The python of the venv ``path`` (its directory or its python), checked to import webshocket 0.5.2 and uvloop."""
    python = path / "bin" / "python" if path.is_dir() else path
    if not python.exists():
        raise Unavailable(f"--venv-052 {path}: no python there (give the venv's directory or its bin/python)")
    probe = "import sys, uvloop, webshocket; sys.stdout.write(webshocket.__version__)"
    try:
        found = subprocess.run(
            [str(python), "-c", probe], env=clean_env(), cwd="/", capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise Unavailable(f"--venv-052 {path}: cannot run {python}: {exc}") from None
    if found.returncode != 0:
        last = (found.stderr.strip().splitlines() or ["it failed"])[-1]
        raise Unavailable(f"--venv-052 {path}: it does not import webshocket and uvloop ({last}); {how_to_enable()}")
    if found.stdout != VERSION:
        raise Unavailable(f"--venv-052 {path}: it holds webshocket {found.stdout}, not {VERSION}; {how_to_enable()}")
    return python


def cache_dir() -> Path:
    """Where a clone keeps the venv it builds."""
    tree = procs.SOURCE_TREE or procs.REPO
    return Path(os.environ.get("WEBSHOCKET_BENCH_VENVS") or tree / "benchmarks" / ".venvs")


def venv_python() -> Path:
    """Python of the venv holding ``webshocket==0.5.2`` and uvloop, built on first use (from a clone only)."""
    tree = procs.SOURCE_TREE
    builder = tree / "tests" / "interop" / "venvs.py" if tree is not None else None
    if builder is None or not builder.is_file():
        raise Unavailable(f"the server 052 (webshocket {VERSION}) needs a virtualenv holding it: {how_to_enable()}")
    spec = importlib.util.spec_from_file_location("_interop_venvs", builder)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    python: Path = module.release_venv(cache_dir() / f"webshocket-{VERSION}-bench", requirements(), VERSION)
    return python
