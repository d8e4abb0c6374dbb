"""The package's modules import each other in one direction: no import circles.

Read from the source with :mod:`ast`, so it covers both implementations of every
twin. Imports at module level count; those under ``if TYPE_CHECKING:`` are checked
separately (a type-only circle is a sign that a responsibility sits in the wrong
module); imports inside functions are deliberate late imports and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import webshocket

PACKAGE = Path(webshocket.__file__).resolve().parent  # the package under test (source tree or installed wheel)


def _target(module: str, node: ast.ImportFrom) -> list[str]:
    """Modules of the package a ``from ... import`` statement in ``module`` reads."""
    if node.level == 0:
        base = node.module or ""
        if not base.startswith("webshocket"):
            return []
    else:
        parts = module.split(".")[: -node.level]
        base = ".".join([*parts, node.module] if node.module else parts)
    names = [f"{base}.{alias.name}" for alias in node.names]
    return [name for name in names if _exists(name)] or ([base] if _exists(base) else [])


def _exists(name: str) -> bool:
    rel = name.split(".")[1:]
    if not rel:
        return (PACKAGE / "__init__.py").exists()
    path = PACKAGE.joinpath(*rel)
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_graph(type_only: bool) -> dict[str, set[str]]:
    """module -> package modules it imports at module level (``type_only``: also under TYPE_CHECKING)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        module = ".".join(parts)
        edges: set[str] = set()

        def visit(body: list[ast.stmt], typing_block: bool, module: str = module, edges: set[str] = edges) -> None:
            for node in body:
                if isinstance(node, ast.If):
                    checking = _is_type_checking(node.test)
                    if checking and not type_only:
                        visit(node.orelse, typing_block)
                        continue
                    visit(node.body, typing_block or checking)
                    visit(node.orelse, typing_block)
                elif isinstance(node, (ast.Try,)):
                    visit(node.body, typing_block)
                    for handler in node.handlers:
                        visit(handler.body, typing_block)
                    visit(node.orelse, typing_block)
                    visit(node.finalbody, typing_block)
                elif isinstance(node, ast.ImportFrom):
                    edges.update(t for t in _target(module, node) if t != module)
                elif isinstance(node, ast.Import):
                    edges.update(a.name for a in node.names if a.name.startswith("webshocket.") and _exists(a.name))

        visit(ast.parse(path.read_text()).body, False)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_the_graph_is_read() -> None:
    graph = import_graph(type_only=False)
    assert graph["webshocket._listener"] == {"webshocket._ext"}  # the twin itself only for type hints
    assert "webshocket._listener_py" in import_graph(type_only=True)["webshocket._listener"]
    assert "webshocket.connection" in graph["webshocket._listener_py"]
    assert "webshocket.hub" in graph["webshocket.handler"]


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_at_run_time() -> None:
    assert cycles(import_graph(type_only=False)) == []


def test_no_import_circles_in_type_hints_either() -> None:
    assert cycles(import_graph(type_only=True)) == []
