"""Which implementation of each hot module is in use, as the test run asked for.

The compiled run (``WEBSHOCKET_REQUIRE_EXTENSIONS=1``) must use every compiled module, the
pure run (``WEBSHOCKET_NO_EXTENSIONS=1``) every pure twin; a run with neither must at least
report in ``webshocket.SPEEDUPS`` what it really uses. The hot modules are setup.py's list.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import (
    HOT_MODULES,
    NO_EXTENSIONS,
    REPO,
    REQUIRE_EXTENSIONS,
    SOURCE_TREE,
    compiled_problem,
    in_use,
    is_compiled,
    selector,
    twin,
)

import webshocket
import webshocket._packets


def test_every_hot_module_is_selected() -> None:
    assert HOT_MODULES
    assert set(webshocket.SPEEDUPS) == set(HOT_MODULES)


@pytest.mark.skipif(not SOURCE_TREE, reason="the sources are not here: the tests run against an installed wheel")
@pytest.mark.parametrize("name", HOT_MODULES)
def test_both_twins_have_sources(name: str) -> None:
    """setup.py compiles ``_speedups/<name>.pyx`` or ``_speedups/_<name>_c.py``; the pure twin is ``_<name>_py.py``."""
    assert (REPO / "_speedups" / f"{name}.pyx").exists() or (REPO / "_speedups" / f"_{name}_c.py").exists()
    assert (REPO / "webshocket" / f"_{name}_py.py").exists()


@pytest.mark.parametrize("name", HOT_MODULES)
def test_the_selector_exports_the_implementation_in_use(name: str) -> None:
    """The selecting module re-exports every name of its ``__all__`` from the implementation it chose
    (``origin`` where that is not its twin: the packet classes are msgspec's Structs when msgspec is installed)."""
    module = selector(name)
    chosen = getattr(module, "origin", in_use(name))
    assert module.__all__
    for export in module.__all__:
        assert getattr(module, export) is getattr(chosen, export), export


@pytest.mark.parametrize("name", HOT_MODULES)
def test_implementation_in_use(name: str) -> None:
    module = in_use(name)
    compiled = is_compiled(module)
    assert webshocket.SPEEDUPS[name] is compiled, (webshocket.SPEEDUPS, module)
    assert module.__name__ == f"webshocket._{name}_{'c' if compiled else 'py'}"
    if REQUIRE_EXTENSIONS:
        assert compiled, f"{module.__name__} ({module.__file__}) is not the compiled module"
        assert module is twin(name, "c")
    if NO_EXTENSIONS:
        assert not compiled, f"{module.__name__} ({module.__file__}) is compiled in the pure run"
        assert module is twin(name, "py")


@pytest.mark.parametrize("impl", ["c", "py"])
@pytest.mark.parametrize("name", HOT_MODULES)
def test_twins_are_what_their_names_say(name: str, impl: str) -> None:
    """``_<name>_c`` is a compiled extension, ``_<name>_py`` Python source."""
    if impl == "c" and (reason := compiled_problem(name)) is not None:
        pytest.skip(reason)
    module = twin(name, impl)
    assert is_compiled(module) is (impl == "c"), module.__file__
    assert module.__file__ is not None and module.__file__.endswith(".py") is (impl == "py"), module.__file__


def test_the_package_exports_only_the_implementations_in_use() -> None:
    """A public name of ``webshocket`` defined by a twin comes from the twin in use, never the other one."""
    twin_names = {f"webshocket._{name}_{impl}": name for name in HOT_MODULES for impl in ("c", "py")}
    for export in webshocket.__all__:
        origin = getattr(getattr(webshocket, export), "__module__", None)
        if origin in twin_names:
            assert origin == in_use(twin_names[origin]).__name__, (export, origin)
    # The packet classes name webshocket.packets as their module (as in 0.5.x, and in pickles), whichever
    # twin made them.
    for export in ("Packet", "RPCRequest", "RPCResponse"):
        cls = getattr(webshocket, export)
        assert cls is getattr(webshocket._packets.origin, export), export
        assert (cls.__module__, cls.__qualname__) == ("webshocket.packets", export)


def test_the_packet_classes_are_msgspec_structs_exactly_when_msgspec_is_there() -> None:
    """msgspec installed: its Structs (as 0.5.x's); WEBSHOCKET_NO_MSGSPEC=1 or no msgspec: our own classes."""
    import importlib.util

    wanted = importlib.util.find_spec("msgspec") is not None and os.environ.get("WEBSHOCKET_NO_MSGSPEC", "") in (
        "",
        "0",
    )
    assert webshocket._packets.STRUCTS is wanted
    if wanted:
        import msgspec

        assert all(
            issubclass(cls, msgspec.Struct)
            for cls in (webshocket.Packet, webshocket.RPCRequest, webshocket.RPCResponse)
        )
        assert "webshocket._structs" in sys.modules
    else:
        assert webshocket._packets.origin is in_use("packets")
        assert "webshocket._structs" not in sys.modules


@pytest.mark.parametrize("no_msgspec", ["0", "1"])
def test_a_process_without_msgspec_uses_our_own_classes(no_msgspec: str) -> None:
    """msgspec made unimportable: our classes, msgspec never loaded, the codec still round-trips (either env)."""
    code = (
        "import sys; sys.modules['msgspec'] = None\n"
        "import webshocket, webshocket._packets as p\n"
        "from webshocket._codec import decode_packet, encode_packet\n"
        "pk = webshocket.Packet(webshocket.PacketSource.RPC, rpc=webshocket.RPCResponse('c', [1]))\n"
        "assert decode_packet(encode_packet(pk, False), False) == pk\n"
        "print(p.STRUCTS, p.origin.__name__, sys.modules.get('msgspec'), webshocket.SPEEDUPS['codec'])\n"
    )
    env = {**os.environ, "WEBSHOCKET_NO_MSGSPEC": no_msgspec}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    structs, origin, loaded, compiled = done.stdout.split()
    assert (structs, loaded) == ("False", "None")
    assert origin == in_use("packets").__name__ and compiled == str(not NO_EXTENSIONS)
