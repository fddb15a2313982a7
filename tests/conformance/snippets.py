"""Code regions marked ``docs:start NAME`` … ``docs:end NAME`` in example and test sources, which
docs/sdk-<language>.md quote verbatim (``<!-- snippet: NAME -->`` before a fenced block), so every
snippet is code the conformance suite or an SDK's tests compile and run."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = [
    *(REPO / "examples" / "backends").rglob("*.ts"),
    *(REPO / "examples" / "backends").rglob("*.go"),
    *(REPO / "examples" / "backends").rglob("*.java"),
    *(REPO / "sdks").rglob("*.ts"),
    *(REPO / "sdks").rglob("*.go"),
    *(REPO / "sdks").rglob("*.java"),
]
START = re.compile(r"^\s*//\s*docs:start\s+(\S+)\s*$")
END = re.compile(r"^\s*//\s*docs:end\s+(\S+)\s*$")
SNIPPET = re.compile(r"<!-- snippet: (\S+) -->\n```(\w+)\n(.*?)```", re.DOTALL)


def regions() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in SOURCES:
        if "node_modules" in path.parts or path.name.endswith(".d.ts"):
            continue
        open_name, lines = None, []
        for line in path.read_text().splitlines():
            if open_name is None:
                if match := START.match(line):
                    open_name, lines = match.group(1), []
            elif END.match(line):
                found[open_name] = textwrap.dedent("\n".join(lines)).strip() + "\n"
                open_name = None
            else:
                lines.append(line)
    return found


def snippets(doc: str) -> list[tuple[str, str, str]]:
    """(name, language, code) of each quoted snippet of a doc."""
    return [(m.group(1), m.group(2), m.group(3)) for m in SNIPPET.finditer(doc)]


def render(doc: str) -> str:
    """The doc with each quoted snippet replaced by its current source region."""
    found = regions()

    def put(match: re.Match[str]) -> str:
        name, lang = match.group(1), match.group(2)
        return f"<!-- snippet: {name} -->\n```{lang}\n{found[name]}```"

    return SNIPPET.sub(put, doc)


if __name__ == "__main__":  # refresh the docs: python -m tests.conformance.snippets
    for path in sorted((REPO / "docs").glob("sdk-*.md")):
        path.write_text(render(path.read_text()))
