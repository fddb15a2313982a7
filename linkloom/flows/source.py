"""Reading spec text into plain data that remembers where every node came from.

YAML is read from libyaml's event stream (never from PyYAML's recursive composer) and JSON by a
small iterative parser, so hostile input cannot exhaust the stack, and every value's line and
column is kept. Both paths enforce the same limits on size, nesting depth and node count (alias
expansions included), reject duplicate keys, and turn every failure into a ``SourceProblem``
instead of an exception.

Plain YAML scalars resolve by the YAML 1.2 core schema (as JSON does): only ``true``/``false``
are booleans, so ``country: NO`` stays a string; mapping keys are always strings.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

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


class _Stop(Exception):
    """Reading cannot go on; the problem has already been recorded."""


def read_source(source: str | bytes, *, json_only: bool = False) -> Document:
    """Parse spec text (YAML or JSON, as ``str`` or UTF-8 ``bytes``) into a ``Document``.

    Text starting with ``{`` or ``[`` is read as JSON; if it is not valid JSON but is valid
    YAML (a flow mapping), it is read as YAML unless ``json_only`` (for ``*.json`` files).
    Never raises for bad input: the problems are in ``Document.problems``.
    """
    doc = Document()
    text = _decode(source, doc)
    if text is None:
        return doc
    if not text.strip():
        doc.problems.append(
            SourceProblem(
                line=1,
                column=1,
                message="the spec is empty",
                code="empty",
                hint="a flow spec is a mapping with at least 'id' and 'steps'",
            )
        )
        return doc
    if not text.lstrip().startswith(("{", "[")):
        _read(_YamlReader(text, doc), doc)
        return doc
    doc.format = "json"
    _read(_JsonReader(text, doc), doc)
    if not json_only and any(p.code == "json-syntax" for p in doc.problems):
        # Perhaps a YAML flow mapping ({id: x, steps: [...]}) rather than broken JSON.
        yaml_doc = Document()
        _read(_YamlReader(text, yaml_doc), yaml_doc)
        if not yaml_doc.problems:
            return yaml_doc
    return doc


def _read(reader: _JsonReader | _YamlReader, doc: Document) -> None:
    try:
        reader.read()
    except _Stop:
        doc.value = None


def _decode(source: str | bytes, doc: Document) -> str | None:
    size = len(source) if isinstance(source, bytes) else len(source.encode("utf-8", "replace"))
    if size > MAX_BYTES:
        doc.problems.append(
            SourceProblem(
                line=1,
                column=1,
                message=f"the spec is {size:,} bytes; the limit is {MAX_BYTES:,} bytes",
                code="too-large",
                hint="split the flow into smaller flows called with 'type: flow' steps",
            )
        )
        return None
    if isinstance(source, str):
        return source.removeprefix("\ufeff")
    try:
        return source.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = source.count(b"\n", 0, exc.start) + 1
        column = exc.start - (source.rfind(b"\n", 0, exc.start) + 1) + 1
        doc.problems.append(
            SourceProblem(
                line=line,
                column=column,
                message=f"the file is not valid UTF-8 (byte 0x{source[exc.start]:02x})",
                code="encoding",
                hint="save the spec as UTF-8",
            )
        )
        return None


class _Builder:
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
    ) -> None:
        self.fail(position, message, code, hint)
        raise _Stop

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


def _number_too_long(text: str) -> str:
    return f"the number {text[:20]}… has {len(text):,} digits; numbers may have at most 4,300"


class _YamlReader(_Builder):
    def __init__(self, text: str, doc: Document) -> None:
        super().__init__(doc)
        self.text = text
        self.anchors: dict[str, tuple[Any, int]] = {}

    def read(self) -> None:
        # frames: [container, path, pending key, anchor, nodes at start]
        stack: list[list[Any]] = []
        documents = 0
        root: Any = None
        try:
            positions = self.doc.positions
            for event in yaml.parse(self.text, Loader=_Loader):
                kind = type(event)
                if kind is _SCALAR and stack and not event.anchor:
                    # The hot path: a plain key or value inside a container.
                    mark = event.start_mark
                    position = (mark.line + 1, mark.column + 1)
                    self.nodes += 1
                    if self.nodes > MAX_NODES:
                        self.count(position, 0)
                    frame = stack[-1]
                    container = frame[0]
                    if type(container) is dict and frame[2] is _NO_KEY:
                        key = event.value
                        frame[2] = key
                        self.key_at = position
                        if key not in container:
                            self.doc.key_positions[(*frame[1], key)] = position
                        continue
                    text = event.value
                    if event.tag is None and (not event.implicit[0] or _plain_text(text)):
                        value = text
                    else:
                        value = self._scalar(event, position)
                    if event.style == "|" and "\n" in text:
                        self.doc.literal_blocks[self._child_path(frame)] = self._block_start(event)
                    if type(container) is dict:
                        path = (*frame[1], frame[2])
                        if frame[2] in container:
                            self.put(container, frame[1], frame[2], value, position)
                        else:
                            container[frame[2]] = value
                        frame[2] = _NO_KEY
                    else:
                        path = (*frame[1], len(container))
                        container.append(value)
                    positions[path] = position
                    continue
                if kind is yaml.DocumentStartEvent:
                    documents += 1
                    if documents > 1:
                        self.stop(
                            _mark(event.start_mark),
                            "the file holds more than one YAML document",
                            "multiple-documents",
                            "put one flow per file",
                        )
                    continue
                if kind in (yaml.StreamStartEvent, yaml.StreamEndEvent, yaml.DocumentEndEvent):
                    continue
                position = _mark(event.start_mark)
                if kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                    container, path, _, anchor, started = stack.pop()
                    if anchor:
                        self.anchors[anchor] = (container, self.nodes - started)
                    if not stack:
                        root = container
                    continue
                parent = stack[-1] if stack else None
                if parent is not None and isinstance(parent[0], dict) and parent[2] is _NO_KEY:
                    self._take_key(event, parent, position)
                    continue
                path = self._child_path(parent)
                if kind is yaml.ScalarEvent:
                    value = self._scalar(event, position)
                    if event.style == "|" and "\n" in event.value:
                        self.doc.literal_blocks[path] = self._block_start(event)
                    self.count(position)
                    if event.anchor:
                        self.anchors[event.anchor] = (value, 1)
                elif kind is yaml.AliasEvent:
                    value = self._alias(event, position)
                else:  # a mapping or a sequence starts
                    self.check_depth(len(stack) + 1, position)
                    self.count(position)
                    container: Any = {} if kind is yaml.MappingStartEvent else []
                    if event.tag not in (None, "!", _MAP_TAG, _SEQ_TAG):
                        self.fail(position, f"unsupported YAML tag {event.tag}", "yaml-tag")
                    self.doc.positions[path] = position
                    self._attach(parent, path, container, position)
                    stack.append([container, path, _NO_KEY, event.anchor, self.nodes])
                    continue
                self.doc.positions[path] = position
                self._attach(parent, path, value, position)
                if parent is None:
                    root = value
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            position = _mark(mark) if mark is not None else (1, 1)
            hint = None
            if "\t" in self._line(position[0]):
                hint = "indent with spaces; YAML does not allow tabs for indentation"
            message = (exc.problem or "invalid YAML").strip()
            if exc.context:
                message = f"{message} ({exc.context.strip()})"
            self.stop(position, f"YAML syntax error: {message}", "yaml-syntax", hint)
        except yaml.YAMLError as exc:  # reader errors: characters YAML does not allow
            offset = getattr(exc, "position", 0) or 0
            self.stop(
                _offset_position(self.text, offset),
                f"the text cannot be read as YAML: {getattr(exc, 'reason', exc)}",
                "yaml-syntax",
            )
        self.doc.value = root

    def _block_start(self, event: Any) -> Position:
        """The first content line of a literal block and its indentation."""
        line = event.start_mark.line + 2
        text = self._line(line)
        return (line, len(text) - len(text.lstrip(" ")) + 1)

    def _line(self, number: int) -> str:
        lines = self.text.splitlines()
        return lines[number - 1] if 0 < number <= len(lines) else ""

    def _take_key(self, event: Any, parent: list[Any], position: Position) -> None:
        if type(event) is not yaml.ScalarEvent:
            what = "an alias" if type(event) is yaml.AliasEvent else "a mapping or list"
            self.stop(position, f"a mapping key must be a plain text, not {what}", "yaml-key")
        key = event.value
        self.count(position)
        parent[2] = key
        self.key_at = position
        path = (*parent[1], key)
        if key not in parent[0]:
            self.doc.key_positions[path] = position

    def _child_path(self, parent: list[Any] | None) -> Path:
        if parent is None:
            return ()
        container, path, key = parent[0], parent[1], parent[2]
        if isinstance(container, list):
            return (*path, len(container))
        return (*path, key)

    def _attach(self, parent: list[Any] | None, path: Path, value: Any, pos: Position) -> None:
        if parent is None:
            return
        self.put(parent[0], parent[1], parent[2], value, pos)
        if isinstance(parent[0], dict):
            parent[2] = _NO_KEY

    def _alias(self, event: Any, position: Position) -> Any:
        found = self.anchors.get(event.anchor)
        if found is None:
            self.stop(
                position,
                f"unknown or recursive alias *{event.anchor}",
                "yaml-alias",
                "define the anchor (&name) before the alias, and not around it",
            )
        value, size = found  # type: ignore[misc]
        self.count(position, size)
        return value

    def _scalar(self, event: Any, position: Position) -> Any:
        text = event.value
        tag = event.tag
        if tag is not None and tag not in _TAGS:
            self.fail(position, f"unsupported YAML tag {tag}", "yaml-tag")
            return text
        if tag in ("!", "tag:yaml.org,2002:str") or (tag is None and not event.implicit[0]):
            return text  # quoted, or explicitly a string
        return self._resolve(text, tag, position)

    def _resolve(self, text: str, tag: str | None, position: Position) -> Any:
        if tag in (None, "tag:yaml.org,2002:null") and text in _NULLS:
            return None
        if tag in (None, "tag:yaml.org,2002:bool"):
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
        if tag in (None, "tag:yaml.org,2002:int"):
            try:
                if _INT.fullmatch(text):
                    return int(text)
                if _OCT.fullmatch(text):
                    return int(text[2:], 8)
                if _HEX.fullmatch(text):
                    return int(text[2:], 16)
            except ValueError:
                self.fail(position, _number_too_long(text), "number-too-long")
                return None
        if tag in (None, "tag:yaml.org,2002:float"):
            if _FLOAT.fullmatch(text):
                return float(text)
            if _INF.fullmatch(text):
                return -math.inf if text.startswith("-") else math.inf
            if _NAN.fullmatch(text):
                return math.nan
        if tag is not None:
            self.fail(position, f"{text!r} is not a valid {tag.rsplit(':', 1)[-1]}", "yaml-tag")
        return text


_NO_KEY = object()
_SCALAR = yaml.ScalarEvent
_SPECIAL_WORDS = _NULLS | _TRUE | _FALSE


def _plain_text(text: str) -> bool:
    """A plain scalar that surely reads as a string (cheap test before full resolution)."""
    return bool(text) and text[0] not in "0123456789+-.~" and text not in _SPECIAL_WORDS


_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _mark(mark: Any) -> Position:
    return (mark.line + 1, mark.column + 1)


def _offset_position(text: str, offset: int) -> Position:
    line = text.count("\n", 0, offset) + 1
    return (line, offset - (text.rfind("\n", 0, offset) + 1) + 1)


_WS = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_WORDS = {"true": True, "false": False, "null": None}


class _JsonReader(_Builder):
    """A strict JSON parser with an explicit stack, recording each node's position."""

    def __init__(self, text: str, doc: Document) -> None:
        super().__init__(doc)
        self.text = text
        doc.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def where(self, offset: int) -> Position:
        return self.doc._line_column(offset)

    def read(self) -> None:
        text = self.text
        end = len(text)
        pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
        # frames: [container, path, pending key or None]
        stack: list[list[Any]] = []
        root: Any = None
        done = False
        while True:
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
            if done:
                if pos < end:
                    self.stop(self.where(pos), "extra text after the JSON document", "json-syntax")
                break
            if pos >= end:
                self.stop(self.where(pos), "the JSON document ends too early", "json-syntax")
            frame = stack[-1] if stack else None
            char = text[pos]
            if frame is not None and isinstance(frame[0], dict) and frame[2] is None:
                # expecting a key, or '}' when the object is empty
                if char == "}" and not frame[0]:
                    stack.pop()
                    pos = self._after_value(stack, pos + 1)
                    done = not stack
                    continue
                match = _STRING.match(text, pos)
                if match is None:
                    self.stop(self.where(pos), "expected a quoted key", "json-syntax")
                key = self._unquote(match.group(), pos)
                key_path = (*frame[1], key)
                self.key_at = pos
                if key not in frame[0]:
                    self.doc.key_positions[key_path] = pos
                frame[2] = key
                pos = _WS.match(text, match.end()).end()  # type: ignore[union-attr]
                if pos >= end or text[pos] != ":":
                    self.stop(self.where(pos), "expected ':' after the key", "json-syntax")
                pos += 1
                continue
            if frame is not None and isinstance(frame[0], list) and char == "]" and not frame[0]:
                stack.pop()
                pos = self._after_value(stack, pos + 1)
                done = not stack
                continue
            # a value
            position = pos  # an offset: converted only when a problem needs it
            path = self._path(frame)
            self.count(position)
            self.doc.positions[path] = pos
            if char in "{[":
                self.check_depth(len(stack) + 1, position)
                container: Any = {} if char == "{" else []
                self._attach(frame, container, position)
                if frame is None:
                    root = container
                stack.append([container, path, None])
                pos += 1
                continue
            value, pos = self._scalar(pos, position)
            self._attach(frame, value, position)
            if frame is None:
                root = value
                done = True
                continue
            pos = self._after_value(stack, pos)
            done = not stack
        self.doc.value = root

    def _path(self, frame: list[Any] | None) -> Path:
        if frame is None:
            return ()
        if isinstance(frame[0], list):
            return (*frame[1], len(frame[0]))
        return (*frame[1], frame[2])

    def _attach(self, frame: list[Any] | None, value: Any, position: int) -> None:
        if frame is None:
            return
        self.put(frame[0], frame[1], frame[2], value, position)

    def _scalar(self, pos: int, position: int) -> tuple[Any, int]:
        text = self.text
        if text[pos] == '"':
            match = _STRING.match(text, pos)
            if match is None:
                self.stop(position, "unterminated or invalid string", "json-syntax")
            return self._unquote(match.group(), pos), match.end()  # type: ignore[union-attr]
        match = _NUMBER.match(text, pos)
        if match is not None and match.end() > pos:
            token = match.group()
            if match.group(1) is None and match.group(2) is None:
                try:
                    return int(token), match.end()
                except ValueError:
                    self.fail(position, _number_too_long(token), "number-too-long")
                    return None, match.end()
            return float(token), match.end()
        for word, value in _WORDS.items():
            if text.startswith(word, pos):
                return value, pos + len(word)
        self.stop(position, f"unexpected character {text[pos]!r}", "json-syntax")
        raise AssertionError  # unreachable: stop() raises

    def _after_value(self, stack: list[list[Any]], pos: int) -> int:
        """After a value inside a container: a ',' or the container's closing bracket."""
        text = self.text
        while stack:
            frame = stack[-1]
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
            closing = "}" if isinstance(frame[0], dict) else "]"
            if pos < len(text) and text[pos] == ",":
                if isinstance(frame[0], dict):
                    frame[2] = None
                return pos + 1
            if pos < len(text) and text[pos] == closing:
                pos += 1
                stack.pop()
                continue
            self.stop(self.where(pos), f"expected ',' or '{closing}'", "json-syntax")
        return pos

    def _unquote(self, token: str, offset: int) -> str:
        if "\\" not in token:
            return token[1:-1]  # no escapes (and so no surrogates): the text itself
        value: str = json.loads(token)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.fail(self.where(offset), "the string holds an unpaired surrogate", "encoding")
            return value.encode("utf-8", "replace").decode("utf-8")
        return value
