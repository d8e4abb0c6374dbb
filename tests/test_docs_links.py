"""Every relative link of the documentation resolves inside the repository, anchors included.

A clone must be complete: no link leaves the repository (the protocol document used to be
cited from a directory beside it), and no tracked file cites such a path any more.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest
from helpers import REPO

SKIPPED_PARTS = {"node_modules"}


def repository_files(*patterns: str) -> list[Path]:
    """Files a clone has (tracked, or new and not ignored) matching git ``patterns``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *patterns],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    return sorted(
        REPO / name
        for name in filter(None, listed)
        if not SKIPPED_PARTS & set(Path(name).parts) and (REPO / name).is_file()
    )


DOCUMENTS = repository_files("*.md")
FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=[\"']([^\"']+)[\"']", re.I)
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.M)
HTML_ANCHOR = re.compile(r"<a\b[^>]*?\b(?:name|id)=[\"']([^\"']+)[\"']", re.I)


def prose(text: str) -> str:
    """``text`` without fenced code blocks and code spans (links there are examples, not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(document: Path) -> list[str]:
    text = prose(document.read_text(encoding="utf-8"))
    return [m.group(1) for pattern in (INLINE_LINK, REFERENCE, HTML_LINK) for m in pattern.finditer(text)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    """The anchors GitHub makes for ``document`` (duplicates numbered), and explicit HTML ones."""
    text = FENCE.sub("", document.read_text(encoding="utf-8"))
    found: set[str] = set(HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for heading in HEADING.findall(text):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken(document: Path, target: str) -> str | None:
    """Why the link ``target`` of ``document`` does not resolve inside the repository (None: it does)."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:", target) or target.startswith("//"):
        return None  # an absolute URL (https:, mailto:): not checked here
    path_part, _, anchor = target.partition("#")
    path_part = unquote(path_part.split("?", 1)[0])
    if path_part.startswith("/"):
        resolved = (REPO / path_part.lstrip("/")).resolve()
    elif path_part:
        resolved = (document.parent / path_part).resolve()
    else:
        resolved = document.resolve()
    if not resolved.is_relative_to(REPO.resolve()):
        return f"{target}: outside the repository"
    if not resolved.exists():
        return f"{target}: no such file in the repository"
    if anchor and resolved.suffix == ".md" and unquote(anchor).lower() not in anchors(resolved):
        return f"{target}: no heading with the anchor #{anchor} in {resolved.relative_to(REPO.resolve())}"
    return None


def test_the_documents_are_found() -> None:
    names = {str(path.relative_to(REPO)) for path in DOCUMENTS}
    assert {"README.md", "CONTRIBUTING.md", "docs/protocol.md", "benchmarks/README.md"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(REPO)))
def test_relative_links_resolve_inside_the_repository(document: Path) -> None:
    problems = [problem for target in links(document) if (problem := broken(document, target))]
    assert not problems, f"{document.relative_to(REPO)}:\n  " + "\n  ".join(problems)


def test_link_checker_catches_bad_links(tmp_path: Path) -> None:
    """The checker itself: what it must reject and accept."""
    readme = REPO / "README.md"
    assert broken(readme, "docs/protocol.md") is None
    assert broken(readme, "#scaling-out") is None
    assert broken(readme, "benchmarks/README.md#scale-out-through-redis") is None
    assert broken(readme, "https://example.com/x") is None
    assert broken(readme, "../outside.md") == "../outside.md: outside the repository"
    assert broken(readme, "docs/nope.md") == "docs/nope.md: no such file in the repository"
    assert "no heading with the anchor #nope" in (broken(readme, "#nope") or "")
    assert slug("6. Serving") == "6-serving" and slug("`webshocket serve` options") == "webshocket-serve-options"
    document = tmp_path / "x.md"
    document.write_text('See [a](a.md), ![b](b.png "title"), `[c](c.md)` and\n```\n[d](d.md)\n```\n[e]: e.md\n')
    assert links(document) == ["a.md", "b.png", "e.md"]


def test_no_file_cites_a_path_beside_the_repository() -> None:
    """No tracked file points at the parent directory's shared folder or its protocol document."""
    needles = ["../" + "shared", "PROTOCOL" + ".md"]
    offenders = []
    for path in repository_files():
        data = path.read_bytes()
        for needle in needles:
            if needle.encode() in data:
                offenders.append(f"{path.relative_to(REPO)}: {needle}")
    assert not offenders, "cite docs/protocol.md instead:\n  " + "\n  ".join(offenders)
