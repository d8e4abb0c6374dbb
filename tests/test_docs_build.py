"""The API reference builds from the docstrings with warnings as errors (``mkdocs build --strict``).

``make lint`` builds it too; this test also checks what comes out: a page per public module with
the anchors other pages and the README link to, the docstrings' Sphinx roles turned into links
(docs/griffe_roles.py), and that the strict build does fail on an unresolved cross-reference.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, SOURCE_TREE

pytestmark = pytest.mark.skipif(
    not SOURCE_TREE, reason="builds the documentation of the source tree (mkdocs.yml, docs/ are not in the wheel)"
)

MODULE_PAGES = {
    "index": ["webshocket.run", "webshocket.SPEEDUPS"],
    "server": ["webshocket.server.WebSocketServer", "webshocket.server.WebSocketServer.close"],
    "client": ["webshocket.client.WebSocketClient", "webshocket.client.WebSocketClient.send_rpc"],
    "handler": ["webshocket.handler.WebSocketHandler.publish", "webshocket.handler.DefaultWebSocketHandler"],
    "connection": ["webshocket.connection.ClientConnection.subscribe"],
    "packets": ["webshocket.packets.Packet", "webshocket.packets.RPCResponse"],
    "rpc": ["webshocket.rpc.rpc_method", "webshocket.rpc.rate_limit"],
    "predicate": ["webshocket.predicate.IsEqual"],
    "recovery": ["webshocket.recovery.Recovery"],
    "request": ["webshocket.request.Request", "webshocket.request.Reject"],
    "presence": ["webshocket.presence.Presence"],
    "channels": ["webshocket.channels.escape", "webshocket.channels.literal_name"],
    "exceptions": ["webshocket.exceptions.ConnectionFailedError"],
    "enum": ["webshocket.enum.RPCErrorCode.METHOD_NOT_FOUND", "webshocket.enum.PacketSource.CHANNEL"],
    "testing": [
        "webshocket.testing.serve",
        "webshocket.testing.TestClient.next_push",  # inherited from a private base: documented on the class
        "webshocket.testing.JSONTestClient.call",
        "webshocket.testing.webshocket_server",
        "webshocket.testing.webshocket_client",
    ],
}


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module's tests."""
    site = tmp_path_factory.mktemp("site")
    proc = mkdocs_build(REPO / "mkdocs.yml", site)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert not re.search(r"^(WARNING|ERROR)\b", proc.stderr, re.M), proc.stderr
    return site


def anchors(page: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', page.read_text(encoding="utf-8")))


@pytest.mark.parametrize("name", MODULE_PAGES)
def test_each_public_module_has_its_page_and_anchors(site: Path, name: str) -> None:
    page = site / "api" / f"{name}.html"
    assert page.is_file(), f"no page {page.relative_to(site)}"
    missing = set(MODULE_PAGES[name]) - anchors(page)
    assert not missing, f"{page.relative_to(site)} lacks the anchors {sorted(missing)}"


def test_the_documents_and_the_index_are_built(site: Path) -> None:
    for name in ("index.html", "protocol.html", "migration.html", "objects.inv", "search/search_index.json"):
        assert (site / name).is_file(), name
    index = (site / "index.html").read_text(encoding="utf-8")
    for target in ("api/index.html", "api/testing.html", "protocol.html", "migration.html"):
        assert f'href="{target}"' in index, target
    assert "handshake" in (site / "protocol.html").read_text(encoding="utf-8")


def test_docstring_roles_become_links(site: Path) -> None:
    server = (site / "api" / "server.html").read_text(encoding="utf-8")
    # ":class:`~webshocket.Recovery`" in WebSocketServer's docstring: a link to the Recovery page
    assert re.search(
        r'<a [^>]*href="recovery\.html#webshocket\.recovery\.Recovery"[^>]*><code>Recovery</code></a>', server
    )
    leftovers = {
        page.name: found
        for page in (site / "api").glob("*.html")
        if (found := re.findall(r":(?:class|meth|func|data|attr|exc|mod):|\.\. code-block::", page.read_text()))
    }
    assert not leftovers, f"Sphinx markup left in the pages: {leftovers}"


def test_the_strict_build_fails_on_an_unresolved_cross_reference(tmp_path: Path) -> None:
    """The same configuration over a page citing an object that does not exist: the build must fail."""
    import yaml  # mkdocs's dependency (not installed where SOURCE_TREE is False)

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Broken\n\nSee [the server][webshocket.server.NoSuchServer].\n")
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    config.update(docs_dir=str(docs), nav=[{"Home": "index.md"}], exclude_docs="")
    [plugin] = [
        entry["mkdocstrings"] for entry in config["plugins"] if isinstance(entry, dict) and "mkdocstrings" in entry
    ]
    handler = plugin["handlers"]["python"]
    handler["paths"] = [str(REPO)]
    handler["options"]["extensions"] = [str(REPO / "docs" / "griffe_roles.py") + ":SphinxRoles"]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    proc = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode != 0, proc.stderr
    assert "webshocket.server.NoSuchServer" in proc.stderr
