"""A strict JSON reader with an explicit stack that records each node's position."""

from __future__ import annotations

import json
import re
from typing import Any

from linkloom.flows.documents import Builder, Document, Path, Position, number_too_long

_WS = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_WORDS = {"true": True, "false": False, "null": None}


class JsonReader(Builder):
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
            return self._unquote(match.group(), pos), match.end()
        match = _NUMBER.match(text, pos)
        if match is not None and match.end() > pos:
            token = match.group()
            if match.group(1) is None and match.group(2) is None:
                try:
                    return int(token), match.end()
                except ValueError:
                    self.fail(position, number_too_long(token), "number-too-long")
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
