"""The Node.js ``ws`` peer (``servers/node_ws.mjs``): where node and its packages are, how to start it.

The server needs ``node`` on the PATH and a ``node_modules`` directory holding ``ws``,
``bufferutil`` and ``msgpackr``: ``--node-modules DIR`` (or ``$WEBSHOCKET_BENCH_NODE_MODULES``),
else ``benchmarks/node_modules`` of the clone this package runs from, which ``npm ci --prefix
benchmarks`` installs at the versions pinned in ``benchmarks/package.json``. :func:`locate`
finds both or raises :class:`Unavailable`, whose message says how to enable the server in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import procs
from .servers.common import raise_nofile

ENV = "WEBSHOCKET_BENCH_NODE_MODULES"
PACKAGES = ("ws", "bufferutil", "msgpackr")
INSTALL = "npm ci --prefix benchmarks"


class Unavailable(Exception):
    """The Node ws server cannot run here; the message says why and how to enable it, in one line."""


@dataclass(frozen=True)
class NodeWs:
    """A node executable and the node_modules directory the server imports from."""

    node: str
    modules: Path
    versions: dict[str, str]  # node, ws, bufferutil, msgpackr

    def command(self, script: Path) -> tuple[list[str], dict[str, str]]:
        """``node script`` and its environment (the modules directory, also as NODE_PATH for ws's own imports).

        Node cannot raise its RLIMIT_NOFILE; it inherits this process's, raised here to the hard limit.
        """
        raise_nofile()
        env = {**os.environ, ENV: str(self.modules), "NODE_PATH": str(self.modules)}
        return [self.node, str(script)], env

    def problem(self, info: dict[str, Any]) -> str | None:
        """Why the server that said ``info`` is not node + ws with native bufferutil from :attr:`modules`."""
        if info.get("impl") != "node-ws":
            return f"expected the Node ws server, got {info.get('impl')!r}"
        for name, version in self.versions.items():
            if info.get(name) != version:
                return f"expected {name} {version}, got {info.get(name)!r}"
        if not info.get("bufferutil_native"):
            return "ws runs without the native bufferutil"
        if info.get("modules") != str(self.modules):
            return f"expected the packages of {self.modules}, got {info.get('modules')!r}"
        return None

    def describe(self) -> str:
        """``node 20.20.2, ws 8.23.0, bufferutil 4.1.0, msgpackr 2.1.4 (from DIR)``."""
        return ", ".join(f"{name} {version}" for name, version in self.versions.items()) + f" (from {self.modules})"


def default_modules() -> Path | None:
    """``$WEBSHOCKET_BENCH_NODE_MODULES``, else ``benchmarks/node_modules`` of the clone (None when installed)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    if procs.SOURCE_TREE is not None:
        return procs.SOURCE_TREE / "benchmarks" / "node_modules"
    return None


def locate(modules: Path | None) -> NodeWs:
    """node and the packages (``modules``: ``--node-modules``, None for :func:`default_modules`)."""
    given = modules is not None
    modules = modules if given else default_modules()
    where = f"pass --node-modules DIR, a node_modules directory made by '{INSTALL}' in a clone of webshocket"
    if procs.SOURCE_TREE is not None:
        where = f"run '{INSTALL}' in {procs.SOURCE_TREE} (or pass --node-modules DIR)"
    node = shutil.which("node")
    if node is None:
        raise Unavailable(f"the server node needs Node.js: install node and npm (apt install nodejs npm), then {where}")
    if modules is None:
        raise Unavailable(f"the server node needs ws, bufferutil and msgpackr: {where}")
    modules = modules.resolve()
    missing = [name for name in PACKAGES if not (modules / name / "package.json").is_file()]
    if missing:
        how = f"install them with '{INSTALL}' in a clone of webshocket and pass its benchmarks/node_modules"
        raise Unavailable(f"the server node needs {', '.join(missing)} in {modules}: {how if given else where}")
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise Unavailable(f"the server node needs Node.js: '{node} --version' failed ({exc})") from None
    versions = {"node": out.strip().lstrip("v")}
    for name in PACKAGES:
        versions[name] = str(json.loads((modules / name / "package.json").read_text())["version"])
    return NodeWs(node, modules, versions)
