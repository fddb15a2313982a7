"""Every code block of the user documentation, found by a Markdown parser and classified.

The documentation is README.md, every ``*.md`` under ``docs/`` and ``examples/``. A block's
info string says what it is: its first word is the language, the next words are tags
(```` ```yaml partial ````). GitHub shows only the language, so tags cost readers nothing.
What the tests do with each kind of block, and the tags, are in ``tests/README.md``; the
tables below are the source of truth. A block the tables do not know fails the tests, so no
new snippet is skipped silently.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[2]

SPEC_LANGS = frozenset({"yaml", "yml", "json"})
SHELL_LANGS = frozenset({"bash", "sh", "shell", "console"})
PYTHON_LANGS = frozenset({"python", "py"})
TOML_LANGS = frozenset({"toml"})
# Code in other languages, output and diagrams: not Link Loom's to check here (the SDKs' own
# tests build and run their code), and never read as YAML.
UNCHECKED_LANGS = frozenset(
    {
        "text",
        "sql",
        "go",
        "java",
        "kotlin",
        "typescript",
        "ts",
        "javascript",
        "js",
        "http",
        "ini",
        "dockerfile",
        "diff",
        "mermaid",
        "xml",
        "html",
        "csharp",
        "rust",
        "ruby",
        "codeowners",  # GitHub's format; proposals/policy.py's tests read it
    }
)

# Tags a YAML/JSON block may carry, and what it then is. No tag: a complete flow spec that
# validates with no errors and no warnings, and runs against the example backend.
SPEC_TAGS = {
    "norun": "a complete flow spec that validates but is not run (say why next to it)",
    "partial": "a fragment of a flow spec: it must parse",
    "invalid": "a flow spec shown for its errors: validation must report at least one",
    "fixture-case": "a fixture case file (flows/<id>/fixtures/*.yaml): it must load",
    "stubs": "a stubs file (flows/<id>/fixtures/stubs.yaml): it must load",
    "policy": "a flow's promotion policy (flows/<id>/policy.yaml): it must load",
    "other": "not a Link Loom file (Kubernetes, Prometheus, a payload): it must parse",
}
SHELL_TAGS = {
    "norun": "loom commands are checked against the CLI but not run",
    "run": "every command runs against a real server with the example flows and backend",
}
TOML_TAGS = {"settings": "a Link Loom settings file: it must load into Settings"}
# loom commands that need no server: run for real (in a directory with the example flows
# under flows/) unless the block is tagged norun.
OFFLINE_COMMANDS = frozenset({"validate", "convert", "schema"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Snippet:
    doc: str  # path relative to the repository root
    line: int  # 1-based line of the opening fence
    lang: str  # the info string's first word, lower-cased; "" when there is none
    tags: tuple[str, ...]
    text: str
    indented: bool = False  # an indented code block: it cannot say what it is

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    def tagged(self, tag: str) -> bool:
        return tag in self.tags


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    files += sorted((ROOT / "examples").rglob("*.md"))
    return [f for f in files if ".venv" not in f.parts and "node_modules" not in f.parts]


def extract(path: Path, *, root: Path = ROOT) -> Iterator[Snippet]:
    doc = path.relative_to(root).as_posix()
    for token in MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8")):
        if token.type not in ("fence", "code_block") or token.map is None:
            continue
        words = token.info.split()
        yield Snippet(
            doc=doc,
            line=token.map[0] + 1,
            lang=words[0].lower() if words else "",
            tags=tuple(words[1:]),
            text=token.content,
            indented=token.type == "code_block",
        )


@cache
def all_snippets() -> tuple[Snippet, ...]:
    return tuple(s for path in doc_files() for s in extract(path))


def of(langs: frozenset[str]) -> list[Snippet]:
    return [s for s in all_snippets() if s.lang in langs]


def known_tags(snippet: Snippet) -> dict[str, str]:
    if snippet.lang in SPEC_LANGS:
        return SPEC_TAGS
    if snippet.lang in SHELL_LANGS:
        return SHELL_TAGS
    if snippet.lang in TOML_LANGS:
        return TOML_TAGS
    return {}


def spec_role(snippet: Snippet) -> str:
    """``spec`` (validate and run), or the first tag of ``SPEC_TAGS`` the block has."""
    for tag in ("partial", "invalid", "fixture-case", "stubs", "policy", "other", "norun"):
        if snippet.tagged(tag):
            return tag
    return "spec"


# ---------------------------------------------------------------------------- shell commands


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    snippet: Snippet
    line: int  # line in the document
    args: tuple[str, ...]  # after ``loom``

    @property
    def where(self) -> str:
        return f"{self.snippet.doc}:{self.line}"

    @property
    def text(self) -> str:
        return shlex.join(("loom", *self.args))


_LOOM = ("loom", ".venv/bin/loom")
_SEPARATORS = frozenset({"|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "2>&1"})


def loom_commands(snippet: Snippet) -> list[Command]:
    """Every ``loom …`` command of a shell block: continuation lines joined, comments,
    ``VAR=value`` prefixes, ``$ `` prompts and anything after a pipe or ``&&`` dropped."""
    out: list[Command] = []
    lines = snippet.text.splitlines()
    index = 0
    while index < len(lines):
        first = index
        text = lines[index]
        while text.rstrip().endswith("\\") and index + 1 < len(lines):
            index += 1
            text = text.rstrip()[:-1] + " " + lines[index]
        index += 1
        words = shlex.split(text, comments=True)
        if words[:1] == ["$"]:
            words = words[1:]
        while words and "=" in words[0] and not words[0].startswith("-"):
            words = words[1:]
        if not words or words[0] not in _LOOM:
            continue
        args: list[str] = []
        for word in words[1:]:
            if word in _SEPARATORS:
                break
            args.append(word)
        out.append(Command(snippet=snippet, line=snippet.line + 1 + first, args=tuple(args)))
    return out
