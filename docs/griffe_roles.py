"""Griffe extension for the API reference (mkdocs.yml): the package's docstrings are written for
Sphinx-like readers, so before mkdocstrings renders them (as Markdown) this turns

- ``:class:`Name``` / ``:meth:`~a.b.name``` (and ``:func:``, ``:data:``, ``:attr:``, ``:exc:``,
  ``:mod:``, ``:obj:``) into cross-references, resolved as Python would in the docstring's scope:
  a link where the target is documented, plain code where it is not (a private module);
- ``.. code-block:: python`` directives into the indented code blocks that follow them, and a
  paragraph's closing ``::`` into ``:``.
"""

from __future__ import annotations

import html
import re
from typing import Any

from griffe import Alias, Extension, GriffeLoader, Module, Object

ROLE = re.compile(r":(?:class|meth|func|data|attr|exc|mod|obj):`(~?)([\w.]+?)(?:\(\))?`")
DIRECTIVE = re.compile(r"^[ \t]*\.\. code-block::[ \t]*\w*[ \t]*\n", re.M)
LITERAL_MARKER = re.compile(r"(?<=\S)::[ \t]*$", re.M)


def _identifier(scope: Object, name: str, loader: GriffeLoader) -> str:
    """The canonical path of ``name`` as ``scope`` sees it (``name`` itself if it cannot be resolved)."""
    first, _, rest = name.partition(".")
    try:
        if first == scope.package.name:
            path = name
        elif scope.is_class and first in scope.all_members:  # inherited members too: documented on the subclass
            path = f"{scope.path}.{name}"
        else:
            path = scope.resolve(first) + (f".{rest}" if rest else "")
    except Exception:  # griffe's NameResolutionError: not a name of that scope
        return name
    try:
        return str(loader.modules_collection.get_member(path).canonical_path)
    except Exception:  # not loaded, or an alias that does not resolve: keep the path
        return path


class SphinxRoles(Extension):
    """Rewrite the docstrings of every object of the loaded package (see the module docstring)."""

    def on_package(self, *, pkg: Module, loader: GriffeLoader, **kwargs: Any) -> None:
        self._visit(pkg, loader, set())

    def _visit(self, obj: Object, loader: GriffeLoader, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            scope = obj if obj.is_module or obj.is_class else (obj.parent or obj)
            text = DIRECTIVE.sub("", obj.docstring.value)
            text = LITERAL_MARKER.sub(":", text)

            def cross_reference(match: re.Match[str]) -> str:
                tilde, name = match.group(1), match.group(2)
                title = name.rsplit(".", 1)[-1] if tilde else name
                identifier = html.escape(_identifier(scope, name, loader), quote=True)
                return f'<autoref identifier="{identifier}" optional><code>{html.escape(title)}</code></autoref>'

            obj.docstring.value = ROLE.sub(cross_reference, text)
        for member in obj.members.values():
            if not isinstance(member, Alias):
                self._visit(member, loader, seen)
