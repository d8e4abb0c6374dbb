"""Create (or reuse) one virtualenv per PyPI ``webshocket`` release, outside the test process.

The releases share our import name, so they live in their own venvs and run only in
subprocesses. Venvs are cached under ``$WEBSHOCKET_INTEROP_VENVS`` (default:
``tests/.venvs``); a venv is reused when its ``.ready`` marker names the same
requirements. A file lock keeps parallel test processes from building one venv twice.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = HERE.parent / ".venvs"

#: requirements installed per release (0.5.x pull msgspec and picows themselves).
REQUIREMENTS: dict[str, list[str]] = {
    "0.5.2": ["webshocket==0.5.2"],
    "0.5.0": ["webshocket==0.5.0"],
}


def cache_dir() -> Path:
    return Path(os.environ.get("WEBSHOCKET_INTEROP_VENVS") or DEFAULT_CACHE)


def clean_env() -> dict[str, str]:
    """Environment for a venv subprocess: nothing that would leak our package into it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "WEBSHOCKET_"))}
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def venv_python(version: str) -> Path:
    """Python of the venv holding ``webshocket==version`` (built on first use)."""
    return release_venv(cache_dir() / f"webshocket-{version}", REQUIREMENTS[version], version)


def release_venv(target: Path, requirements: list[str], version: str) -> Path:
    """Python of a venv at ``target`` holding ``requirements``, which must import ``webshocket``
    ``version``; built on first use, then reused while its marker names the same requirements.
    (The benchmark suite builds its 0.5.2 baseline with this too: benchmarks/e2e/venv052.py.)"""
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    python = target / "bin" / "python"
    marker = target / ".ready"
    wanted = "\n".join([sys.version.split()[0], *requirements])
    with open(root / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and python.exists() and marker.read_text() == wanted:
            return python
        shutil.rmtree(target, ignore_errors=True)
        venv.EnvBuilder(with_pip=True, clear=True, symlinks=True).create(target)
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q", *requirements],
            env=clean_env(),
            timeout=900,
            capture_output=True,
            text=True,
        )
        if install.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(requirements)} failed:\n{install.stderr[-2000:]}")
        check = subprocess.run(
            [str(python), "-c", "import webshocket, sys; sys.stdout.write(webshocket.__version__)"],
            check=True,
            env=clean_env(),
            cwd=str(root),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check.stdout != version:
            raise RuntimeError(f"venv {target} imports webshocket {check.stdout!r}, expected {version}")
        marker.write_text(wanted)
    return python
