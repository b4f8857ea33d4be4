"""The operator docs stay true to the code: the generated manifest reference is current, links resolve."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

DOCS = REPO / "docs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_manifest_reference_matches_the_schema() -> None:
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "manifest_reference.py"), "--check"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_architecture_picture_is_committed_with_its_source() -> None:
    picture, source = DOCS / "architecture.png", DOCS / "architecture.dot"
    assert picture.read_bytes()[:8] == PNG_SIGNATURE
    assert "dot -Tpng" in source.read_text() and "digraph" in source.read_text()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in markdown.read_text().splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_relative_links_resolve(page: str) -> None:
    broken = []
    for target in LINK.findall((DOCS / page).read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        file = (DOCS / path).resolve() if path else DOCS / page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page}: {broken}"
