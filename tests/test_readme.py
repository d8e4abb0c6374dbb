"""Every Python block of the README is a complete program: run each one."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_the_feature_tour() -> None:
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int, tmp_path: Path) -> None:
    script = tmp_path / f"block{index}.py"
    script.write_text(BLOCKS[index])
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"README block {index} failed:\n{BLOCKS[index]}\n--- stderr ---\n{proc.stderr}"
    assert proc.stdout.strip(), "each README example prints what it shows"


def test_demo_runs() -> None:
    demo = README.parent / "examples" / "demo.py"
    proc = subprocess.run([sys.executable, str(demo)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "add(10, 20)            -> 30" in proc.stdout
    assert "RATE_LIMIT_EXCEEDED" in proc.stdout and "ACCESS_DENIED" in proc.stdout
    assert proc.stdout.strip().endswith("demo finished")


def pip_installs(text: str) -> list[str]:
    """The arguments of every ``pip install`` command in ``text`` (code blocks and inline code)."""
    commands = re.findall(r"pip install ([^`\n#]*)", text)
    return [argument for command in commands for argument in shlex.split(command, posix=True)]


def test_install_commands_install_this_package_not_pypi() -> None:
    """``pip install webshocket`` from PyPI is the unrelated 0.5.2: the README installs from the repository."""
    text = README.read_text()
    assert "## Install" in text
    arguments = pip_installs(text)
    assert ".[redis]" in arguments or "'.[redis]'" in arguments or any(a.startswith(".") for a in arguments)
    from_pypi = [a for a in arguments if re.fullmatch(r"webshocket(\[[\w,]*\])?([<>=!~]=?\S*)?", a.strip())]
    assert not from_pypi, f"README installs webshocket from PyPI (0.5.2): {from_pypi}"
    assert pip_installs("x `pip install 'webshocket[jwt]'`, y") == ["webshocket[jwt]"]
