"""docs/sdk-<language>.md quote only code that runs: every fenced block in the SDK's language is
a snippet whose text is, verbatim, a ``docs:start``/``docs:end`` region of an example backend or
an SDK test (which the conformance suite and the SDK tests compile and run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conformance.snippets import regions, snippets

DOCS = Path(__file__).resolve().parents[2] / "docs"
LANGS = {"typescript": "ts", "go": "go", "java": "java"}


@pytest.mark.parametrize("language", sorted(LANGS))
def test_sdk_doc_snippets_are_verbatim_running_code(language: str) -> None:
    path = DOCS / f"sdk-{language}.md"
    doc = path.read_text()
    quoted = snippets(doc)
    assert quoted, f"{path.name} quotes no code"
    found = regions()
    for name, _lang, code in quoted:
        assert name in found, f"{path.name}: no source region {name!r}"
        assert code == found[name], (
            f"{path.name}: snippet {name!r} differs from its source; "
            "refresh with: .venv/bin/python -m tests.conformance.snippets"
        )
    fence = LANGS[language]
    blocks = len(re.findall(rf"^```{fence}\n", doc, re.MULTILINE))
    assert blocks == len([q for q in quoted if q[1] == fence]), (
        f"{path.name} has {fence} code outside a quoted snippet"
    )
