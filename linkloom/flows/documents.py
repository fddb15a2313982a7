"""The parsed form of spec text: data plus the source position of every node.

``Document`` is what the readers (``source`` for YAML, ``json_reader`` for JSON) produce;
``Builder`` is their shared bookkeeping: limits, positions and duplicate keys. Plain scalars
resolve by the YAML 1.2 core schema (``plain_is_string``), as JSON does.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

MAX_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 500_000

Path = tuple[str | int, ...]
Position = tuple[int, int]  # 1-based line and column


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceProblem:
    """Something that stops the text from being read, at a 1-based line and column."""

    line: int
    column: int
    message: str
    code: str
    hint: str | None = None
    path: Path = ()


@dataclass(slots=True, kw_only=True)
class Document:
    """The parsed value and the source position of each node (values and mapping keys)."""

    value: Any = None
    format: str = "yaml"
    # JSON stores character offsets (converted on demand, which keeps reading fast).
    positions: dict[Path, Position | int] = field(default_factory=dict)
    key_positions: dict[Path, Position | int] = field(default_factory=dict)
    problems: list[SourceProblem] = field(default_factory=list)
    line_starts: list[int] = field(default_factory=list)
    # YAML literal block scalars (``key: |``): where their first content line starts.
    literal_blocks: dict[Path, Position] = field(default_factory=dict)
    text: str = ""  # the decoded source, for pointing inside a value

    def column_inside(self, position: Position, offset: int) -> Position:
        """The position of character ``offset`` of the one-line value starting at ``position``
        (after its quote, if quoted); ``position`` itself when that cannot be known (escapes,
        several lines)."""
        line, column = position
        lines = self.text.splitlines()
        if not 0 < line <= len(lines):
            return position
        source = lines[line - 1]
        start = column - 1
        if start >= len(source):
            return position
        quoted = source[start] in "\"'"
        segment = source[start + quoted : start + quoted + offset]
        if len(segment) < offset or "\\" in segment:
            return position
        return (line, column + quoted + offset)

    def position(self, path: Path, *, key: bool = False) -> Position:
        """Where ``path`` starts; for a missing node, where its nearest ancestor starts."""
        if key and path in self.key_positions:
            return self._line_column(self.key_positions[path])
        for cut in range(len(path), -1, -1):
            found = self.positions.get(path[:cut])
            if found is not None:
                return self._line_column(found)
        return (1, 1)

    def _line_column(self, found: Position | int) -> Position:
        if isinstance(found, tuple):
            return found
        line = bisect.bisect_right(self.line_starts, found)
        return (line, found - self.line_starts[line - 1] + 1)


class Stop(Exception):
    """Reading cannot go on; the problem has already been recorded."""


class Builder:
    """Shared bookkeeping of both readers: limits, positions, duplicate keys."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.nodes = 0
        self.key_at: Position | int = (1, 1)  # where the latest mapping key starts

    def fail(
        self, position: Position | int, message: str, code: str, hint: str | None = None
    ) -> None:
        position = self.doc._line_column(position)
        self.doc.problems.append(
            SourceProblem(
                line=position[0], column=position[1], message=message, code=code, hint=hint
            )
        )

    def stop(
        self, position: Position | int, message: str, code: str, hint: str | None = None
    ) -> NoReturn:
        self.fail(position, message, code, hint)
        raise Stop

    def count(self, position: Position | int, amount: int = 1) -> None:
        self.nodes += amount
        if self.nodes > MAX_NODES:
            self.stop(
                position,
                f"the spec has more than {MAX_NODES:,} nodes (counting alias expansions)",
                "too-many-nodes",
                "YAML aliases that expand to huge documents are refused",
            )

    def check_depth(self, depth: int, position: Position | int) -> None:
        if depth > MAX_DEPTH:
            self.stop(
                position,
                f"the spec is nested more than {MAX_DEPTH} levels deep",
                "too-deep",
            )

    def put(
        self, container: Any, path: Path, key: Any, value: Any, position: Position | int
    ) -> None:
        if isinstance(container, list):
            container.append(value)
            return
        if key in container:
            first = self.doc.position((*path, key), key=True)
            self.fail(
                self.key_at,
                f"duplicate key {key!r} (first defined at line {first[0]})",
                "duplicate-key",
                "remove one of them; only one value can be kept",
            )
            return
        container[key] = value


_INT = re.compile(r"[-+]?[0-9]+")
_OCT = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(?:inf|Inf|INF)")
_NAN = re.compile(r"\.(?:nan|NaN|NAN)")
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "!",
}


def plain_is_string(text: str) -> bool:
    """Whether ``text`` written as a plain (unquoted) YAML scalar reads back as that string."""
    if text in _NULLS or text in _TRUE or text in _FALSE:
        return False
    patterns = (_INT, _OCT, _HEX, _FLOAT, _INF, _NAN)
    return not any(p.fullmatch(text) for p in patterns)


def number_too_long(text: str) -> str:
    return f"the number {text[:20]}… has {len(text):,} digits; numbers may have at most 4,300"
