"""``webshocket bench`` from an installed wheel, run where the source tree cannot be imported.

The wheel is the one tests/test_wheel.py checks: ``wheels/check.py``'s :func:`wheel_for` runs
``wheels/build.py --reuse``, which keeps the wheel in wheels/dist/ while it is newer than its
sources (and serialises builds with a lock), so a session builds it once, whichever of the two
tests comes first. It is installed, with its runtime dependencies only (no matplotlib, no redis
client), into a fresh venv in a temporary directory outside the source tree, and the command
runs from another temporary directory with an environment that points nowhere near the
clone. About 35 s once the wheel exists (venv ~10 s, each run a few seconds); building the
wheel, when no test of the session has, takes a few minutes more.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def wheels_check() -> ModuleType:
    """wheels/check.py, imported by path (wheels/ is not a package)."""
    spec = importlib.util.spec_from_file_location("webshocket_wheels_check", ROOT / "wheels" / "check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Installed:
    venv: Path
    site: Path
    work: Path  # the working directory of every command: empty, outside the source tree
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "webshocket"), *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def within(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    check = wheels_check()
    wheel = check.wheel_for(sys.executable)
    venv = tmp_path_factory.mktemp("bench-venv") / "venv"
    work = tmp_path_factory.mktemp("bench-work")
    assert not within(venv, ROOT) and not within(work, ROOT), f"temporary directories inside {ROOT}"
    env = {**check.base_env(), "PYTHONNOUSERSITE": "1"}  # no PYTHONPATH, VIRTUAL_ENV or WEBSHOCKET_*
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=env, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--disable-pip-version-check", wheel],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"  # taskset, git, redis-server stay reachable
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util, sysconfig, webshocket; "
            "print(webshocket.__file__); print(sysconfig.get_paths()['purelib']); "
            "print(importlib.util.find_spec('benchmarks'), importlib.util.find_spec('matplotlib'))",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    module, site, specs = probe.stdout.splitlines()
    assert within(Path(module), Path(site)), f"webshocket imported from {module}, not the venv's {site}"
    assert specs == "None None", f"the source tree's benchmarks/ or matplotlib is importable: {specs}"
    return Installed(venv, Path(site), work, env)


def test_bench_quick_runs_from_the_installed_wheel(installed: Installed) -> None:
    """ours and raw from the wheel, results in ./webshocket-bench-results, no chart without matplotlib."""
    proc = installed.run("bench", "--quick", "--servers", "ours,raw", "--scenarios", "rpc-1x64")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    out = installed.work / "webshocket-bench-results"
    data = json.loads((out / "e2e.json").read_text())
    runs = {(r["server"], r["scenario"]): r for r in data["runs"]}
    assert set(runs) == {("ours", "rpc-1x64"), ("raw-picows", "rpc-1x64")}
    assert all(r["ok"] and not r["errors"] and r["calls_per_s"] > 0 for r in runs.values()), runs
    ours = runs[("ours", "rpc-1x64")]["server_info"]
    assert within(Path(ours["file"]), installed.site), ours["file"]  # the installed package served
    assert ours["speedups"] and all(ours["speedups"].values())  # compiled, from the wheel
    assert ours["version"] == data["meta"]["machine"]["webshocket"]
    ratios = {r["metric"]: r for r in data["ratios"] if r["scenario"] == "rpc-1x64"}
    assert ratios["calls_per_s"]["ours/raw"] > 0 and ratios["p99_us"]["ours/raw"] > 0
    assert ratios["calls_per_s"]["ours/0.5.2"] is None  # not run
    machine = data["meta"]["machine"]
    assert machine["installed"] is True and machine["commit"] == "?"  # no clone, no commit
    assert data["meta"]["command"].startswith("webshocket bench --quick")
    table = (out / "e2e.md").read_text()
    assert "| RPC add, 1 conn x 64 in flight | calls/s |" in table and "raw picows" in table
    assert "vs raw" in proc.stdout and "written:" in proc.stdout
    assert not (out / "e2e.png").exists() and "matplotlib is not installed" in proc.stderr
    assert not list(installed.venv.rglob("e2e.json"))  # nothing written inside the venv


def test_bench_052_from_the_installed_wheel_says_how_to_enable_it(installed: Installed) -> None:
    """Without --venv-052 (and without a clone to build it) selecting 052 is one line and exit 2, not a traceback."""
    out = installed.work / "no-052"
    proc = installed.run("bench", "--quick", "--servers", "ours,052", "--scenarios", "rpc-1x64", "--out", str(out))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("webshocket bench: error: ")
    assert "--venv-052" in lines[0] and "webshocket==0.5.2" in lines[0] and "run from a clone" in lines[0]
    assert not out.exists() and proc.stdout == ""
    wrong = installed.run("bench", "--quick", "--servers", "052", "--venv-052", str(installed.venv))
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr
    assert "not 0.5.2" in wrong.stderr  # the wheel's own venv holds ours
    base = installed.run("bench", "--quick", "--servers", "base")
    assert base.returncode == 2 and len(base.stderr.strip().splitlines()) == 1, base.stderr
    assert "--baseline DIR" in base.stderr
    usage = installed.run("bench", "--help")
    assert usage.returncode == 0 and "--venv-052" in usage.stdout and "--out" in usage.stdout


def test_bench_052_from_the_installed_wheel_with_venv_052(installed: Installed) -> None:
    """--venv-052 PATH enables 052 from the wheel (the venv is the one a clone builds, cached in benchmarks/.venvs)."""
    from webshocket.bench import venv052  # this clone's: it builds the 0.5.2 venv on first use

    python = venv052.venv_python()
    out = installed.work / "with-052"
    options = ["--servers", "ours,052", "--scenarios", "rpc-1x64", "--no-chart", "--out", str(out)]
    proc = installed.run("bench", "--quick", *options, "--venv-052", str(python.parent.parent))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "e2e.json").read_text())
    runs = {r["server"]: r for r in data["runs"]}
    assert set(runs) == {"ours", "webshocket-0.5.2"} and all(r["ok"] for r in runs.values()), runs
    theirs = runs["webshocket-0.5.2"]["server_info"]
    assert theirs["version"] == "0.5.2" and theirs["uvloop"]
    assert within(Path(theirs["file"]), python.parent.parent)
    ratio = next(r for r in data["ratios"] if r["scenario"] == "rpc-1x64" and r["metric"] == "calls_per_s")
    assert ratio["ours/0.5.2"] > 0


def test_site_packages_layout(installed: Installed) -> None:
    """The wheel ships the suite (runner, load generator, server scripts), not the clone's benchmarks/."""
    bench = installed.site / "webshocket" / "bench"
    for name in ("run.py", "loadgen.py", "procs.py", "report.py", "venv052.py", "servers/common.py"):
        assert (bench / name).is_file(), name
    for script in ("raw_picows.py", "webshocket_app.py"):
        assert (bench / "servers" / script).is_file(), script
    assert not (installed.site / "benchmarks").exists()
