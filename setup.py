"""Build the optional Cython speedups (``_speedups/`` -> ``webshocket._*_c``).

A missing Cython or compiler, or a failed build, never fails the install: the
package then runs on its pure-Python twins and a warning says so. Set
``WEBSHOCKET_NO_EXTENSIONS=1`` to skip building them.
"""

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
SPEEDUPS = HERE / "_speedups"
# Hot modules: each is webshocket._<name>_c (compiled) with a pure twin webshocket._<name>_py.
MODULES = ["packets", "codec", "channels", "ratelimit", "fanout", "framing", "listener"]


def warn(message: str) -> None:
    line = "*" * 78
    print(f"\n{line}\nWARNING: {message}\nwebshocket will use its pure-Python modules.\n{line}\n", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """build_ext that turns build failures into warnings."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001
            warn(f"building the compiled speedups failed: {exc}")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            warn(f"building {ext.name} failed: {exc}")


def source_of(name: str) -> Path | None:
    """``_speedups/<name>.pyx``, or ``_speedups/_<name>_c.py``: a pure twin compiled with a ``.pxd``."""
    for path in (SPEEDUPS / f"{name}.pyx", SPEEDUPS / f"_{name}_c.py"):
        if path.exists():
            return path
    return None


def extensions() -> list:
    if os.environ.get("WEBSHOCKET_NO_EXTENSIONS", "") not in ("", "0"):
        return []
    sources = [(m, path) for m in MODULES if (path := source_of(m)) is not None]
    if not sources:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        warn("Cython is not installed, so the compiled speedups were not built")
        return []
    exts = [
        Extension(f"webshocket._{name}_c", [str(path.relative_to(HERE))], extra_compile_args=["-O2"])
        for name, path in sources
    ]
    try:
        return cythonize(
            exts,
            include_path=[str(SPEEDUPS)],
            compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
            quiet=True,
        )
    except Exception as exc:  # noqa: BLE001
        warn(f"cythonizing the speedups failed: {exc}")
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
