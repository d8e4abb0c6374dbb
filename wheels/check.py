#!/usr/bin/env python3
"""Check a built wheel the way a user gets it: installed, compiled, and passing the test suite.

    python wheels/check.py wheels/dist/webshocket-0.6.0-cp311-cp311-manylinux_2_17_x86_64.whl
    python wheels/check.py <wheel> -- -x -k rpc      # extra arguments after -- go to pytest

1. The wheel's file list holds every compiled module ``webshocket._<name>_c`` (setup.py's
   MODULES) for its own Python; otherwise the check fails before installing anything.
2. A fresh venv (cached under ``tests/.venvs/wheel-<tag>-<sha256 of the wheel>``; any older one
   for the same tag is removed) gets ``<wheel>[test,redis]`` plus TEST_REQUIREMENTS, binary
   wheels only (``--only-binary=:all:``), with a PATH that has no compiler on it. No Cython:
   the check fails if Cython is importable in that venv.
3. The project's tests run AGAINST THE INSTALLED WHEEL: tests/, examples/, README.md and
   pyproject.toml (for the pytest settings) are copied into a temp dir and pytest runs there
   with the venv's python, so ``import webshocket`` can only resolve to the venv's
   site-packages. A small pytest plugin (``-p _wheel_check``) asserts that, asserts every
   ``webshocket.SPEEDUPS`` entry is True with each ``_X_c`` module loaded from a ``.so`` in the
   venv, that no C compiler is on PATH and Cython is not importable; check.py re-checks its
   report after the run. WEBSHOCKET_REQUIRE_EXTENSIONS=1 is set, so tests/test_speedups.py
   asserts the compiled modules too.

PATH for the install and the test run: the venv's bin/ and a temp dir of symlinks to TOOLS
(the external programs the tests drive, and the few shell utilities Debian's chromium
launcher script needs). None of them is a compiler; the check asserts gcc/cc/... are absent.

Tests that are not run, on purpose, each with its reason (printed by every run):
EXCLUDED_FILES and DESELECTED_TESTS test the source tree itself, not the installed package;
EXCLUDED_BEFORE cannot run on older Pythons for reasons outside this package.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path
from types import ModuleType
from typing import IO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENVS = ROOT / "tests" / ".venvs"

#: Test files not run against the wheel, and why.
EXCLUDED_FILES: dict[str, str] = {
    "tests/test_build_fallback.py": "runs `setup.py build_ext` on a copy of the source tree (the build, not the wheel)",
    "tests/test_wheel.py": "builds a wheel and runs this check: it would recurse",
    "tests/test_bench_suite.py": (
        "runs the benchmark suite from the clone (python -m benchmarks.e2e); the installed one: test_bench_installed.py"
    ),
    "tests/test_bench_installed.py": "builds the wheel and installs it in a venv of its own (it would recurse)",
    "tests/test_hostile_suite.py": "runs the hostile-client suite, in the source tree (benchmarks/), not the wheel",
    "tests/test_install.py": "runs `make demo` on a copy of the source tree (the install from a clone, not the wheel)",
    "tests/test_docs_links.py": "checks the links of the repository's documents (docs/ is not copied for the wheel)",
}
#: Single tests not run against the wheel, and why.
DESELECTED_TESTS: dict[str, str] = {
    "tests/test_interop_052.py::test_venvs_hold_the_pypi_releases": (
        "asserts that `webshocket` is imported from the source tree (the rest of the interop tests run)"
    ),
}
#: Test files not run when the wheel's Python is older than the version given, and why.
EXCLUDED_BEFORE: dict[str, tuple[tuple[int, int], str]] = {
    "tests/test_interop_052.py": (
        (3, 11),
        "the PyPI releases webshocket 0.5.0/0.5.2 it runs import typing.Self (Python 3.11+) although "
        "they declare Requires-Python >=3.10: they cannot run on 3.10",
    ),
}
#: Installed next to ``<wheel>[test,redis]``: what the tests import, named explicitly so the
#: check does not depend on the extras being complete (playwright: tests/test_browser.py).
TEST_REQUIREMENTS = [
    "pytest",
    "pytest-asyncio",
    "hypothesis",
    "websockets",
    "trustme",
    "msgpack",
    "redis",
    "prometheus-client",
    "playwright",
]
#: External programs put on the test run's PATH (when this machine has them).
TOOLS = [
    "node",  # tests/test_generic_clients.py: the README's JavaScript example; clients/js's tests
    "npm",  # tests/test_js_client.py: npm ci / npm pack of clients/js
    "redis-server",  # tests/redis_server.py, examples/scale_out.py
    "chromium",  # tests/test_browser.py (through playwright)
    # what /usr/bin/chromium (a shell script) and /etc/chromium.d/* run:
    "sh",
    "uname",
    "grep",
    "find",
    "expr",
    "tr",
    "cut",
    "mktemp",
    "findmnt",
    "ls",
    "cat",
    "rm",
    "dirname",
]
#: Must not be on the PATH of the install or of the test run.
COMPILERS = ["gcc", "cc", "c++", "g++", "clang", "clang++", "tcc", "x86_64-linux-gnu-gcc", "cython", "cythonize"]
#: Copied from the source tree into the directory the tests run in.
COPIED = ["tests", "examples", "clients", "README.md", "pyproject.toml"]
COPY_IGNORE = shutil.ignore_patterns(".venvs", "__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache", ".hypothesis")

PLUGIN = '''
"""Loaded with -p _wheel_check: the run really tests the installed wheel, compiled."""
import importlib.util, json, os, shutil, sys, sysconfig
from pathlib import Path

import pytest

VENV = Path(os.environ["WHEEL_CHECK_VENV"]).resolve()
REPORT = Path(os.environ["WHEEL_CHECK_REPORT"])
MODULES = json.loads(os.environ["WHEEL_CHECK_MODULES"])
COMPILERS = json.loads(os.environ["WHEEL_CHECK_COMPILERS"])


def _state():
    import webshocket
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    compiled = {m: getattr(sys.modules.get(f"webshocket._{m}_c"), "__file__", None) for m in MODULES}
    return {
        "python": sys.executable,
        "prefix": sys.prefix,
        "site_packages": str(site),
        "webshocket_file": webshocket.__file__,
        "webshocket_version": webshocket.__version__,
        "speedups": dict(webshocket.SPEEDUPS),
        "compiled_files": compiled,
        "cython_importable": importlib.util.find_spec("Cython") is not None,
        "compilers_on_path": {c: shutil.which(c) for c in COMPILERS if shutil.which(c)},
        "cwd": os.getcwd(),
    }


def _problems(state):
    site = Path(state["site_packages"])
    problems = []
    if not Path(sys.prefix).resolve() == VENV:
        problems.append(f"running in {sys.prefix}, not the venv {VENV}")
    if not Path(state["webshocket_file"]).resolve().is_relative_to(site):
        problems.append(f"webshocket imported from {state['webshocket_file']}, not from {site}")
    if set(state["speedups"]) != set(MODULES) or not all(state["speedups"].values()):
        problems.append(f"webshocket.SPEEDUPS is {state['speedups']}: not every hot module is compiled")
    for module, path in state["compiled_files"].items():
        if path is None or not path.endswith(".so") or not Path(path).resolve().is_relative_to(site):
            problems.append(f"webshocket._{module}_c is {path!r}, not a .so in {site}")
    if state["cython_importable"]:
        problems.append("Cython is importable in the venv")
    if state["compilers_on_path"]:
        problems.append(f"compilers on PATH: {state['compilers_on_path']}")
    return problems


def pytest_configure(config):
    state = _state()
    print(f"\\nwheel-check: webshocket {state['webshocket_version']} from {state['webshocket_file']}")
    print(f"wheel-check: SPEEDUPS = {state['speedups']}")
    problems = _problems(state)
    REPORT.write_text(json.dumps({"start": state, "start_problems": problems}))
    if problems:
        raise pytest.UsageError("wheel check: " + "; ".join(problems))


def pytest_sessionfinish(session, exitstatus):
    report = json.loads(REPORT.read_text())
    report["end"] = state = _state()
    report["end_problems"] = _problems(state)
    REPORT.write_text(json.dumps(report))
'''


class CheckError(RuntimeError):
    pass


def build_module() -> ModuleType:
    """wheels/build.py, imported under another name (``build`` is also PyPA's build package)."""
    name = "webshocket_wheels_build"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "build.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def hot_modules() -> list[str]:
    return build_module().hot_modules()  # type: ignore[no-any-return]


def wheel_python_tag(wheel: Path) -> str:
    parts = wheel.name[: -len(".whl")].split("-")
    if len(parts) < 5 or not re.fullmatch(r"cp3\d+t?", parts[-3]):
        raise CheckError(f"{wheel.name}: not a CPython wheel name (name-version-cpXY-cpXY-platform.whl)")
    return parts[-3]


def check_wheel_contents(wheel: Path, modules: list[str]) -> list[str]:
    """The compiled members, one per hot module, for the wheel's own Python; raises if any is missing."""
    tag = wheel_python_tag(wheel)
    digits = tag[2:].rstrip("t")
    names = zipfile.ZipFile(wheel).namelist()
    found: list[str] = []
    missing: list[str] = []
    for module in modules:
        pattern = re.compile(rf"^webshocket/_{module}_c\.cpython-{digits}t?-[^/]*\.so$")
        member = next((n for n in names if pattern.match(n)), None)
        (found if member else missing).append(member or f"webshocket._{module}_c")
    if missing:
        raise CheckError(f"{wheel.name} lacks compiled modules for {tag}: {', '.join(missing)}")
    return found


TAG_PROBE = (
    "import sys, sysconfig; v = sys.version_info; "
    "print(f'cp{v[0]}{v[1]}' + ('t' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''))"
)


def wheel_for(python: str) -> Path:
    """The manylinux wheel of ``python`` in wheels/dist/, built by ``wheels/build.py --python PYTHON --reuse``
    (which keeps the one there when it is newer than its sources, and takes build.py's lock); raises CheckError.

    What tests/test_bench_installed.py installs: the wheel tests/test_wheel.py builds and checks, built once.
    """
    build = subprocess.run(
        [sys.executable, str(HERE / "build.py"), "--python", python, "--reuse"],
        capture_output=True,
        text=True,
        timeout=900,
        env=base_env(),
        cwd=ROOT,
    )
    if build.returncode != 0:
        raise CheckError(f"wheels/build.py failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}")
    tag = subprocess.run([python, "-c", TAG_PROBE], capture_output=True, text=True, check=True).stdout.strip()
    wheels = sorted((HERE / "dist").glob(f"webshocket-*-{tag}-{tag}-manylinux*.whl"))
    if len(wheels) != 1:
        raise CheckError(f"expected one {tag} manylinux wheel in wheels/dist, found {wheels}\n{build.stdout[-3000:]}")
    return wheels[0]


def python_for(tag: str, given: str | None) -> str:
    """An interpreter matching the wheel's tag: --python, this one, or one of build.py's."""
    candidates = [given] if given else [sys.executable]
    if not given:
        candidates += [i.executable for i in build_module().discover()[0]]
    for candidate in candidates:
        try:
            out = subprocess.run(
                [candidate, "-c", TAG_PROBE], capture_output=True, text=True, timeout=60, check=True
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        if out.strip() == tag:
            return candidate
    raise CheckError(f"no {tag} interpreter found (tried {candidates}); pass --python")


def base_env() -> dict[str, str]:
    """os.environ without anything that would point into the source tree or change the run."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV", "WEBSHOCKET_", "PYTEST_", "PIP_REQUIRE_VIRTUALENV", "__PYVENV"))
        and k not in ("CC", "CXX", "LDSHARED", "CFLAGS", "CPPFLAGS", "LDFLAGS")
    }


def tool_dir(target: Path) -> Path:
    """``target`` with a symlink to each of TOOLS found on this machine's PATH."""
    target.mkdir(parents=True, exist_ok=True)
    for name in TOOLS:
        found = shutil.which(name)
        if found and not (target / name).exists():
            (target / name).symlink_to(found)
    return target


def stripped_path(venv: Path, tools: Path) -> str:
    path = f"{venv / 'bin'}{os.pathsep}{tools}"
    present = {c: shutil.which(c, path=path) for c in COMPILERS if shutil.which(c, path=path)}
    if present:
        raise CheckError(f"the stripped PATH still has compilers: {present}")
    return path


def use(venv: Path) -> IO[str]:
    """A shared lock on ``venv`` for as long as the returned file is open: no other check removes it."""
    handle = open(venv / ".in-use", "a")  # kept open: the lock lives as long as the handle
    fcntl.flock(handle, fcntl.LOCK_SH)
    return handle


def remove_unless_used(venv: Path) -> None:
    with open(venv / ".in-use", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"note: not removing {venv}: another check is using it")
            return
        shutil.rmtree(venv, ignore_errors=True)


def ensure_venv(wheel: Path, python: str, tag: str, tools: Path, fresh: bool) -> tuple[Path, IO[str]]:
    """The cached venv holding ``wheel`` and the test requirements (created when missing or stale),
    and a shared lock on it that keeps other checks from removing it while it is in use."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    venv = VENVS / f"wheel-{tag}-{digest[:16]}"
    py = venv / "bin" / "python"
    marker = venv / ".ready"
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    wanted = json.dumps({"python": version, "wheel": wheel.name, "sha256": digest, "requirements": TEST_REQUIREMENTS})
    VENVS.mkdir(parents=True, exist_ok=True)
    with open(VENVS / f".wheel-{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not fresh and marker.exists() and py.exists() and marker.read_text() == wanted:
            print(f"reusing the venv {venv}", flush=True)
            return venv, use(venv)
        for old in VENVS.glob(f"wheel-{tag}-*"):  # older wheels' venvs for this tag, unless being used
            if old.is_dir():
                remove_unless_used(old)
        print(f"creating the venv {venv} ({python}, {version})", flush=True)
        started = time.monotonic()
        env = {**base_env(), "PATH": stripped_path(venv, tools), "PYTHONNOUSERSITE": "1"}
        subprocess.run([python, "-m", "venv", str(venv)], check=True, env={**env, "PATH": os.environ["PATH"]})
        install = [
            str(py),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-q",
            "--only-binary=:all:",
            f"{wheel}[test,redis]",
            *TEST_REQUIREMENTS,
        ]
        proc = subprocess.run(install, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise CheckError(f"installing into the venv failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        cython = subprocess.run([str(py), "-c", "import Cython"], env=env, capture_output=True)
        if cython.returncode == 0:
            raise CheckError("Cython got installed into the check venv (a test requirement pulls it in)")
        marker.write_text(wanted)
        handle = use(venv)
        print(f"venv ready in {time.monotonic() - started:.0f}s", flush=True)
    return venv, handle


def interop_cache(version: str) -> Path:
    """Where tests/interop/venvs.py keeps the 0.5.x venvs for Python ``version`` (e.g. ``3.12.1``):
    the source tree's cache when it was made by that version (no rebuild), else one of its own."""
    marker = VENVS / "webshocket-0.5.2" / ".ready"
    if marker.exists() and marker.read_text().splitlines()[:1] == [version]:
        return VENVS
    return VENVS / f"interop-{version}"


def exclusions(python_version: tuple[int, int]) -> tuple[list[str], list[str]]:
    """(files to --ignore, node ids to --deselect) for a wheel of ``python_version``; prints why."""
    ignored = list(EXCLUDED_FILES)
    reasons = dict(EXCLUDED_FILES)
    for path, (minimum, reason) in EXCLUDED_BEFORE.items():
        if python_version < minimum:
            ignored.append(path)
            reasons[path] = reason
    for item, reason in [*reasons.items(), *DESELECTED_TESTS.items()]:
        exists = (ROOT / item.split("::")[0]).exists()
        print(f"not run: {item}: {reason}" + ("" if exists else " [no such file any more]"))
    return ignored, list(DESELECTED_TESTS)


def venv_python_version(venv: Path) -> str:
    """The full version of the venv's Python, e.g. ``3.12.1``."""
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def run_suite(venv: Path, tools: Path, modules: list[str], pytest_args: list[str]) -> int:
    version = venv_python_version(venv)
    major, minor = version.split(".")[:2]
    ignored, deselected = exclusions((int(major), int(minor)))
    with tempfile.TemporaryDirectory(prefix="webshocket-wheel-check-") as tmp:
        work = Path(tmp)
        for name in COPIED:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, work / name, ignore=COPY_IGNORE, symlinks=True)
            elif src.exists():
                shutil.copy2(src, work / name)
        if (work / "webshocket").exists():
            raise CheckError("the test directory holds a webshocket/ package: it would shadow the wheel")
        (work / "_wheel_check.py").write_text(textwrap.dedent(PLUGIN))
        report = work / "wheel-check.json"
        env = {
            **base_env(),
            "PATH": stripped_path(venv, tools),
            "VIRTUAL_ENV": str(venv),
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "WEBSHOCKET_REQUIRE_EXTENSIONS": "1",
            "WEBSHOCKET_INTEROP_VENVS": str(interop_cache(version)),
            "WHEEL_CHECK_VENV": str(venv),
            "WHEEL_CHECK_REPORT": str(report),
            "WHEEL_CHECK_MODULES": json.dumps(modules),
            "WHEEL_CHECK_COMPILERS": json.dumps(COMPILERS),
        }
        cmd = [
            str(venv / "bin" / "python"),
            "-m",
            "pytest",
            "-p",
            "_wheel_check",
            "-p",
            "no:cacheprovider",
            *[f"--ignore={p}" for p in ignored],
            *[f"--deselect={n}" for n in deselected],
            "-q",
            *pytest_args,
        ]
        print(f"running the tests in {work}: {' '.join(cmd[2:])}", flush=True)
        code = subprocess.run(cmd, cwd=work, env=env).returncode
        if not report.exists():
            raise CheckError(f"pytest exited {code} without running the wheel-check plugin")
        result = json.loads(report.read_text())
        problems = result.get("start_problems", []) + result.get("end_problems", [])
        if "end" not in result:
            problems.append("pytest did not finish its session")
        if problems:
            raise CheckError("; ".join(dict.fromkeys(problems)))
        start = result["start"]
        print(f"wheel-check: webshocket {start['webshocket_version']} imported from {start['webshocket_file']}")
        print(f"wheel-check: SPEEDUPS {start['speedups']}")
        return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pytest_args: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, pytest_args = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--python", help="interpreter for the venv (default: one matching the wheel's tag)")
    parser.add_argument("--fresh", action="store_true", help="recreate the venv even if a cached one matches")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        wheel = args.wheel.resolve()
        if not wheel.is_file():
            raise CheckError(f"no such wheel: {wheel}")
        modules = hot_modules()
        members = check_wheel_contents(wheel, modules)
        print(
            f"{wheel.name}: {len(members)}/{len(modules)} compiled modules: " + ", ".join(Path(m).name for m in members)
        )
        tag = wheel_python_tag(wheel)
        python = python_for(tag, args.python)
        with tempfile.TemporaryDirectory(prefix="webshocket-wheel-tools-") as tmp:
            tools = tool_dir(Path(tmp))
            venv, lock = ensure_venv(wheel, python, tag, tools, args.fresh)
            with lock:
                code = run_suite(venv, tools, modules, pytest_args)
    except CheckError as exc:
        print(f"\nWHEEL CHECK FAILED: {exc}", file=sys.stderr)
        return 1
    verdict = "PASSED" if code == 0 else f"FAILED (pytest exit {code})"
    print(f"wheel check {verdict}: {wheel.name} in {time.monotonic() - started:.0f}s")
    return code


if __name__ == "__main__":
    sys.exit(main())
