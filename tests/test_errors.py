"""The error catalogue is the one source of error codes: the code spells none elsewhere, the docs list exactly it."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

from processor.errors import CATALOGUE, F5BatchError, PermanentError, TransientError

from tests.support.paths import REPO

CODE_ROW = re.compile(r"^\| `([a-z_]+)` \|")


def string_literals(path: Path) -> list[tuple[int, str]]:
    literals = []
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if token.type == tokenize.STRING and not token.string.lstrip("rbuRBU").startswith(("f", "F")):
            value = ast.literal_eval(token.string)
            if isinstance(value, str):
                literals.append((token.start[0], value))
    return literals


def test_no_source_line_outside_the_catalogue_spells_an_error_code() -> None:
    spelled = [f"{path.relative_to(REPO)}:{line}: {value!r}"
               for path in sorted((REPO / "processor").rglob("*.py")) if path.name != "errors.py"
               for line, value in string_literals(path) if value in CATALOGUE]
    assert spelled == []


def test_every_code_is_one_class_with_a_meaning_and_a_kind() -> None:
    assert len(CATALOGUE) == len(set(CATALOGUE.values()))
    for code, cls in CATALOGUE.items():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", code) and cls.code == code
        assert cls.meaning and issubclass(cls, F5BatchError)
        assert cls.transient == issubclass(cls, TransientError)
        assert not (issubclass(cls, PermanentError) and cls.transient)


def test_a_code_cannot_be_defined_twice() -> None:
    with pytest.raises(TypeError, match="defined twice"):
        type("Again", (PermanentError,), {"code": "voice_not_found", "meaning": "again"})


def code_tables(markdown: Path) -> list[set[str]]:
    """The codes of each table in `markdown` whose first column is headed `code`."""
    tables: list[set[str]] = []
    inside = False
    for line in markdown.read_text().splitlines():
        if line.startswith("| code |"):
            tables.append(set())
            inside = True
        elif inside and (found := CODE_ROW.match(line)):
            tables[-1].add(found.group(1))
        elif inside and not line.startswith("|"):
            inside = False
    return tables


def test_the_readme_and_the_docs_list_exactly_the_catalogue() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    listed = {code for page in pages for table in code_tables(page) for code in table}
    assert listed == set(CATALOGUE), {"missing": set(CATALOGUE) - listed, "unknown": listed - set(CATALOGUE)}
    in_results = {code for code, cls in CATALOGUE.items() if cls.where == "result"}
    for page in (REPO / "README.md", REPO / "docs" / "outbox.md"):
        assert in_results in code_tables(page), f"{page.name}: its table of result codes"
