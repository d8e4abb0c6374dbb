"""A virtualenv holding PyPI ``webshocket==0.5.2`` (plus uvloop) for the benchmark's baseline.

Same approach as ``tests/interop/venvs.py`` (the release shares our import name, so it lives
in its own venv and runs only in subprocesses), with its own cache because the benchmark
also needs uvloop in it: 0.5.2 does not install uvloop, and every server in the comparison
runs on uvloop. uvloop is pinned to the version of this interpreter so both sides run the
same event loop. Cached under ``$WEBSHOCKET_BENCH_VENVS`` (default ``benchmarks/.venvs``,
git-ignored) and reused while its ``.ready`` marker names the same requirements.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

VERSION = "0.5.2"
DEFAULT_CACHE = Path(__file__).resolve().parent.parent / ".venvs"


def cache_dir() -> Path:
    """Where the venv lives."""
    return Path(os.environ.get("WEBSHOCKET_BENCH_VENVS") or DEFAULT_CACHE)


def requirements() -> list[str]:
    """``webshocket==0.5.2`` and this interpreter's uvloop version."""
    from importlib import metadata

    return [f"webshocket=={VERSION}", f"uvloop=={metadata.version('uvloop')}"]


def clean_env() -> dict[str, str]:
    """Environment for a venv subprocess: nothing that would leak our package into it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "WEBSHOCKET_"))}
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def venv_python() -> Path:
    """Python of the venv holding ``webshocket==0.5.2`` and uvloop (built on first use)."""
    wanted_requirements = requirements()
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"webshocket-{VERSION}-bench"
    python = target / "bin" / "python"
    marker = target / ".ready"
    wanted = "\n".join([sys.version.split()[0], *wanted_requirements])
    with open(root / f".webshocket-{VERSION}-bench.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and python.exists() and marker.read_text() == wanted:
            return python
        shutil.rmtree(target, ignore_errors=True)
        venv.EnvBuilder(with_pip=True, clear=True, symlinks=True).create(target)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q"]
        install = subprocess.run(
            [*pip, *wanted_requirements],
            env=clean_env(),
            timeout=900,
            capture_output=True,
            text=True,
        )
        if install.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(wanted_requirements)} failed:\n{install.stderr[-2000:]}")
        check = subprocess.run(
            [str(python), "-c", "import webshocket, uvloop, sys; sys.stdout.write(webshocket.__version__)"],
            check=True,
            env=clean_env(),
            cwd=str(root),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check.stdout != VERSION:
            raise RuntimeError(f"venv {target} imports webshocket {check.stdout!r}, expected {VERSION}")
        marker.write_text(wanted)
    return python
