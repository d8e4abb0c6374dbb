"""A failed compile at install time leaves the pure-Python package working, with a warning."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_failed_compiler_falls_back_with_a_warning(tmp_path: Path) -> None:
    tree = tmp_path / "src"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".git", "build", "*.so", "*.c", ".venv*", "tests"))
    env = {**os.environ, "CC": "/bin/false"}
    env.pop("WEBSHOCKET_NO_EXTENSIONS", None)
    proc = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tree, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("codec", "channels", "ratelimit", "fanout", "listener"):
        assert f"WARNING: building webshocket._{name}_c failed" in proc.stderr
    assert "pure-Python modules" in proc.stderr
    assert not list((tree / "webshocket").glob("*.so"))


def test_missing_cython_falls_back_with_a_warning(tmp_path: Path) -> None:
    tree = tmp_path / "src"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".git", "build", "*.so", "*.c", ".venv*", "tests"))
    blocker = tmp_path / "nocython"
    (blocker / "Cython").mkdir(parents=True)
    (blocker / "Cython" / "__init__.py").write_text("raise ImportError('Cython is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    env.pop("WEBSHOCKET_NO_EXTENSIONS", None)
    proc = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tree, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "Cython is not installed" in proc.stderr
    assert not list((tree / "webshocket").glob("*.so"))
