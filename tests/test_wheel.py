"""The wheel as users get it: built for this Python, with every speedup compiled, it passes the tests.

``wheels/build.py --python <this python> --reuse`` builds the sdist and, from it, the manylinux
wheel (or reuses the one in wheels/dist/ when it is newer than every source it is built from);
``wheels/check.py`` installs it into a venv with no Cython and no compiler on PATH (cached under
tests/.venvs/, keyed on the wheel's hash) and runs this suite against the installed package.
Slow on a first run (compile ~20 s, venv ~15 s), then about the length of the suite itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / "wheels"
HOT_MODULES = ("codec", "channels", "ratelimit", "fanout", "listener")


def python_tag() -> str:
    return f"cp{sys.version_info[0]}{sys.version_info[1]}" + (
        "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    )


def tail(proc: subprocess.CompletedProcess[str], chars: int = 6000) -> str:
    return f"--- stdout ---\n{proc.stdout[-chars:]}\n--- stderr ---\n{proc.stderr[-chars:]}"


def test_wheel_is_compiled_and_passes_the_suite_installed() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBSHOCKET_")}
    build = subprocess.run(
        [sys.executable, str(WHEELS / "build.py"), "--python", sys.executable, "--reuse"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=ROOT,
    )
    assert build.returncode == 0, f"wheels/build.py failed\n{tail(build)}"
    tag = python_tag()
    wheels = sorted((WHEELS / "dist").glob(f"webshocket-*-{tag}-{tag}-manylinux*.whl"))
    assert len(wheels) == 1, f"expected one {tag} manylinux wheel in wheels/dist, found {wheels}\n{build.stdout}"
    wheel = wheels[0]

    names = zipfile.ZipFile(wheel).namelist()
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    missing = [m for m in HOT_MODULES if f"webshocket/_{m}_c{suffix}" not in names]
    assert not missing, f"{wheel.name} lacks compiled modules {missing}: {[n for n in names if n.endswith('.so')]}"

    check = subprocess.run(
        [sys.executable, str(WHEELS / "check.py"), str(wheel), "--", "-x"],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
        cwd=ROOT,
    )
    print(check.stdout[-2000:])
    assert check.returncode == 0, f"wheels/check.py failed for {wheel.name}\n{tail(check)}"
    assert "wheel check PASSED" in check.stdout  # its plugin asserted SPEEDUPS all True, from the venv
