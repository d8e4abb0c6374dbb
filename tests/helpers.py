"""Helpers shared by the test modules (fixtures live in ``conftest``; the raw-socket client in ``rawws``).

Test modules import these with ``from helpers import ...`` (``tests/`` is on ``sys.path``
because pytest inserts the directory of ``conftest.py``).
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import importlib.machinery
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import pytest
from rawws import HOST
from websockets.asyncio.client import connect as ws_connect

import webshocket
from webshocket import ClientConnection, WebSocketHandler, WebSocketServer, rpc_method
from webshocket._ext import NO_EXTENSIONS

# The test client kit users get (webshocket.testing) is ours too: a server for a handler on a free
# port of 127.0.0.1 (``running_server``), a connected client (``connected_client``), ``wait_until``.
from webshocket.testing import connect as connected_client
from webshocket.testing import serve as running_server
from webshocket.testing import wait_until

__all__ = [
    "FAST_RETRY",
    "HOST",
    "HOT_MODULES",
    "NO_EXTENSIONS",
    "REPO",
    "REQUIRE_EXTENSIONS",
    "SOURCE_TREE",
    "Adder",
    "Twins",
    "compiled_problem",
    "connected_client",
    "extension_problems",
    "impl_params",
    "in_use",
    "is_compiled",
    "raw_connect",
    "running_server",
    "selector",
    "twin",
    "uri_of",
    "wait_until",
]

# ---------------------------------------------------------------------------- servers and clients

#: Client options that notice a cut link after ~0.4 s of silence and reconnect fast (recovery tests).
FAST_RETRY: dict[str, Any] = {
    "retry": True,
    "max_retry_attempt": 100,
    "retry_interval": 0.05,
    "max_retry_interval": 0.2,
    "auto_ping_idle_timeout": 0.2,
    "auto_ping_reply_timeout": 0.2,
}


class Adder(WebSocketHandler[Any]):
    """A handler with the ``add(a, b)`` RPC that many tests call; their handlers derive from it."""

    @rpc_method()
    async def add(self, connection: ClientConnection[Any], a: int, b: int) -> int:
        return a + b


def uri_of(server: WebSocketServer[Any], scheme: str = "ws") -> str:
    """URI of a started server."""
    return f"{scheme}://{HOST}:{server.port}"


def raw_connect(uri: str, **kwargs: Any) -> Any:
    """A generic (JSON) client from the ``websockets`` library, no proxy, short timeouts."""
    return ws_connect(uri, proxy=None, compression=None, open_timeout=2, close_timeout=1, **kwargs)


# ---------------------------------------------------------------------------- compiled and pure twins

REPO = Path(__file__).resolve().parents[1]
#: False when the tests run against an installed wheel (wheels/check.py copies tests/ without the sources).
SOURCE_TREE: bool = (REPO / "setup.py").exists()


def _hot_modules() -> tuple[str, ...]:
    """setup.py's ``MODULES`` (the hot modules it builds); without the sources, what the package selects."""
    if not SOURCE_TREE:
        return tuple(webshocket.SPEEDUPS)  # wheels/check.py checks these against setup.py's list
    for node in ast.parse((REPO / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "MODULES" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise LookupError("setup.py has no MODULES list")


#: The hot modules: each is ``webshocket._<name>_c`` (compiled) with a pure twin
#: ``webshocket._<name>_py``; ``webshocket._<name>`` or ``webshocket.<name>`` selects one.
HOT_MODULES: tuple[str, ...] = _hot_modules()

#: ``make test`` sets WEBSHOCKET_REQUIRE_EXTENSIONS=1 for its compiled run (same spelling rule as NO_EXTENSIONS).
REQUIRE_EXTENSIONS: bool = os.environ.get("WEBSHOCKET_REQUIRE_EXTENSIONS", "") not in ("", "0")


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` was loaded from a compiled extension (not from Python source)."""
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


def twin(name: str, impl: str) -> ModuleType:
    """The ``impl`` ("c" or "py") twin of hot module ``name``, imported directly; an ImportError propagates."""
    return importlib.import_module(f"webshocket._{name}_{impl}")


def selector(name: str) -> ModuleType:
    """The module that selects the implementation of hot module ``name`` (it holds it as ``_impl``)."""
    for candidate in (f"webshocket._{name}", f"webshocket.{name}"):
        try:
            module = importlib.import_module(candidate)
        except ModuleNotFoundError as exc:
            if exc.name != candidate:
                raise
            continue
        if hasattr(module, "_impl"):
            return module
    raise LookupError(f"no webshocket._{name} or webshocket.{name} selecting an implementation of {name!r}")


def in_use(name: str) -> ModuleType:
    """The implementation of hot module ``name`` that the package actually selected."""
    impl: ModuleType = selector(name)._impl
    return impl


class Twins(NamedTuple):
    """Both implementations of one hot module, the pure one first."""

    py: ModuleType
    c: ModuleType


def compiled_problem(name: str) -> str | None:
    """Why the compiled twin of ``name`` cannot be tested in this run; None when it can."""
    if NO_EXTENSIONS:
        return "WEBSHOCKET_NO_EXTENSIONS is set: the pure run does not test the compiled twins"
    try:
        module = twin(name, "c")
    except Exception as exc:  # ImportError, or a binary incompatibility
        return f"webshocket._{name}_c is not built or does not load ({type(exc).__name__}: {exc})"
    if not is_compiled(module):
        return f"webshocket._{name}_c is not a compiled extension: {module.__file__}"
    return None


def impl_params(name: str) -> list[Any]:
    """``parametrize`` values "c" and "py" for hot module ``name``; "c" skips, with the reason, when untestable."""
    reason = compiled_problem(name)
    return [pytest.param("c", marks=pytest.mark.skipif(reason is not None, reason=reason or "")), "py"]


def extension_problems() -> list[str]:
    """What keeps this run from using every hot module compiled (empty: nothing)."""
    problems = []
    for name in HOT_MODULES:
        reason = compiled_problem(name)
        if reason is not None:
            problems.append(f"{name}: {reason}")
            continue
        try:
            module = in_use(name)
        except Exception as exc:
            problems.append(f"{name}: cannot tell which implementation the package uses ({exc})")
            continue
        if module is not twin(name, "c") or not webshocket.SPEEDUPS.get(name):
            problems.append(f"{name}: the package uses {module.__name__} (SPEEDUPS={webshocket.SPEEDUPS.get(name)})")
    return problems


class Proxy:
    """A TCP proxy to ``port``. :meth:`cut` black-holes the connections it carries (no FIN,
    no RST: bytes just stop arriving), as a network cut does; later connections pass."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.generation = 0
        self.writers: list[asyncio.StreamWriter] = []

    def cut(self) -> None:
        self.generation += 1

    async def _pump(self, generation: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if generation == self.generation:
                    writer.write(data)
        except OSError:
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        generation = self.generation
        up_reader, up_writer = await asyncio.open_connection(HOST, self.port)
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pump(generation, reader, up_writer), self._pump(generation, up_reader, writer))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._serve, HOST, 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()
            for writer in self.writers:
                writer.close()
            await server.wait_closed()
