"""The README's first command, ``make demo``, from a clean copy of the repository.

The copy holds what a clone would (the files git tracks, plus new ones not ignored, as they
are in the working tree: uncommitted changes are tested too) and no virtual environment.
``make`` runs with ``PATH=/usr/bin:/bin``: the system's ``python3`` (on Debian 12 and Ubuntu
24.04 externally managed, PEP 668) makes ``.venv`` and everything is installed there. The demo
needs Python packages only: no apt-get, no service. A second ``make demo`` only checks.

``make test`` itself is run from a clean checkout by CI (``.ci/run``, same PATH); running it
here would recurse into this test.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from helpers import NO_EXTENSIONS, REPO

SYSTEM_PATH = "/usr/bin:/bin"
PASSED_ON = ("HOME", "LANG", "TMPDIR", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
SKIPPED_PARTS = {".git", "node_modules"}


def copy_checkout(dest: Path) -> int:
    """Copy the files a clone would have (tracked, or new and not ignored) from the working tree; return how many."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    count = 0
    for name in filter(None, listed):
        source = REPO / name
        if SKIPPED_PARTS & set(Path(name).parts) or not (source.is_symlink() or source.is_file()):
            continue  # deleted in the working tree, or another tool's tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)
        count += 1
    return count


def make_demo(checkout: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
    env |= {name: value for name, value in os.environ.items() if name.startswith("PIP_")}  # the index to use
    env["PATH"] = SYSTEM_PATH
    if NO_EXTENSIONS:
        env["WEBSHOCKET_NO_EXTENSIONS"] = "1"  # the pure run installs without building the compiled modules
    started = time.monotonic()
    proc = subprocess.run(["make", "demo"], cwd=checkout, env=env, capture_output=True, text=True, timeout=900)
    return proc, time.monotonic() - started


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("clone")
    assert copy_checkout(dest) > 50
    assert not (dest / ".venv").exists()
    return dest


def test_make_demo_from_a_clean_clone_with_the_system_python(checkout: Path) -> None:
    assert shutil.which("python3", path=SYSTEM_PATH) == "/usr/bin/python3"
    proc, seconds = make_demo(checkout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "install: making .venv with /usr/bin/python3" in proc.stderr
    assert "home = /usr/bin" in (checkout / ".venv" / "pyvenv.cfg").read_text()
    assert "apt-get" not in output  # python3-venv is there: nothing to install system-wide
    assert "add(10, 20)            -> 30" in proc.stdout
    assert "RATE_LIMIT_EXCEEDED" in proc.stdout and "ACCESS_DENIED" in proc.stdout
    assert proc.stdout.strip().endswith("demo finished")
    match = re.search(r"speedups: (\{.*?\})", proc.stdout)
    assert match, proc.stdout
    speedups = ast.literal_eval(match.group(1))
    if NO_EXTENSIONS:
        assert not any(speedups.values())
    else:  # a compiler is there (make test installs one): every hot module was built
        assert speedups and all(speedups.values()), speedups
    print(f"first make demo: {seconds:.0f} s")

    again, seconds = make_demo(checkout)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "webshocket (runtime install) is up to date" in again.stderr
    assert "pip install" not in again.stderr
    assert again.stdout.strip().endswith("demo finished")
    print(f"second make demo: {seconds:.1f} s")
