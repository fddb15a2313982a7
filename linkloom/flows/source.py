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

import math
from typing import Any

import yaml

from linkloom.flows.documents import (
    _FALSE,
    _FLOAT,
    _HEX,
    _INF,
    _INT,
    _NAN,
    _NULLS,
    _OCT,
    _TAGS,
    _TRUE,
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    Builder,
    Document,
    Path,
    Position,
    SourceProblem,
    Stop,
    number_too_long,
    plain_is_string,
)
from linkloom.flows.json_reader import JsonReader

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "Document",
    "Path",
    "Position",
    "SourceProblem",
    "plain_is_string",
    "read_source",
]


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
    doc.text = text
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
    _read(JsonReader(text, doc), doc)
    if not json_only and any(p.code == "json-syntax" for p in doc.problems):
        # Perhaps a YAML flow mapping ({id: x, steps: [...]}) rather than broken JSON.
        yaml_doc = Document(text=text)
        _read(_YamlReader(text, yaml_doc), yaml_doc)
        if not yaml_doc.problems:
            return yaml_doc
    return doc


def _read(reader: JsonReader | _YamlReader, doc: Document) -> None:
    try:
        reader.read()
    except Stop:
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


class _YamlReader(Builder):
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
            # Events are told apart by their exact class (``type(event) is``: the hot path), which
            # mypy does not narrow on; each branch reads what its event kind carries.
            event: Any
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
                    container = {} if kind is yaml.MappingStartEvent else []
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
            if "maximum nesting depth" in message:
                # libyaml (PyYAML >= 6.0.3 wheels) refuses deep flow nesting while scanning,
                # before the events reach our own depth check: the same problem.
                self.check_depth(MAX_DEPTH + 1, position)
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
        value, size = found
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
                self.fail(position, number_too_long(text), "number-too-long")
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
