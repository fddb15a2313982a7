"""Turning findings into ``Problem``s that point at the source, and pydantic errors into words.

``Reporter`` maps a canonical path back through the shape rewrite to the source path and its
line and column. ``schema_problems`` rewrites pydantic's validation errors: it drops the union
tags pydantic adds to locations, merges the errors of one union into one problem, and adds
"did you mean" hints for unknown fields, step types and literal values.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import TYPE_CHECKING, Any, Union

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from linkloom.flows.models import Problem, Severity
from linkloom.flows.shapes import Normalised
from linkloom.flows.source import Document, Path
from linkloom.flows.spec import BUILTIN_STEP_TYPES, STEP_TYPES, FlowSpec

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def json_path(path: Path) -> str:
    """``('steps', 2, 'depends_on', 0)`` → ``$.steps[2].depends_on[0]``."""
    out = ["$"]
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENT.match(part):
            out.append(f".{part}")
        else:
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'["{escaped}"]')
    return "".join(out)


def did_you_mean(word: object, choices: typing.Iterable[str]) -> str | None:
    if not isinstance(word, str):
        return None
    options = list(choices)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        lowered = {o.lower(): o for o in options}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return f"did you mean {close[0]!r}?" if close else None


class Reporter:
    """Collects problems for one file, locating canonical paths in the source."""

    def __init__(self, *, file: str, document: Document, shapes: Normalised | None) -> None:
        self.file = file
        self.document = document
        self.shapes = shapes
        self.problems: list[Problem] = []

    def source_path(self, path: Path) -> Path:
        return self.shapes.source_path(path) if self.shapes else path

    def add(
        self,
        path: Path,
        message: str,
        *,
        code: str,
        hint: str | None = None,
        severity: Severity = "error",
        key: bool = False,
        source: bool = False,
        line_in_value: int | None = None,
        column_in_value: int | None = None,
    ) -> None:
        """Record a problem at a canonical ``path`` (or a source path when ``source``).

        ``line_in_value`` (1-based) points inside a multi-line YAML literal block;
        ``column_in_value`` (0-based) at a character of a one-line value.
        """
        where = path if source else self.source_path(path)
        line, column = self.document.position(where, key=key)
        block = self.document.literal_blocks.get(where)
        if block is not None and line_in_value is not None:
            line, column = block[0] + line_in_value - 1, block[1]
        elif column_in_value is not None and (line_in_value or 1) == 1:
            line, column = self.document.column_inside((line, column), column_in_value)
        self.problems.append(
            Problem(
                file=self.file,
                line=line,
                column=column,
                path=json_path(where),
                message=message,
                hint=hint,
                severity=severity,
                code=code,
            )
        )

    def sorted(self) -> list[Problem]:
        order = {"error": 0, "warning": 1}
        return sorted(self.problems, key=lambda p: (p.line, p.column, order[p.severity]))


def schema_problems(exc: ValidationError, data: Any, reporter: Reporter) -> None:
    """Report each of pydantic's errors once, at the node the user wrote."""
    grouped: dict[Path, list[ErrorDetails]] = {}
    for error in exc.errors(include_url=False):
        path = _clean_loc(error["loc"], data, error["type"])
        grouped.setdefault(path, []).append(error)
    for path, errors in grouped.items():
        if len(errors) > 1 and all(e["type"] not in ("missing", "extra_forbidden") for e in errors):
            tags = [e for e in errors if e["type"].startswith("union_tag")]
            if not tags:
                messages = list(dict.fromkeys(_plain(e["msg"]) for e in errors))
                reporter.add(path, _about(path, " or ".join(messages)), code="schema")
                continue
            errors = tags
        for error in errors:
            _one(error, path, data, reporter)


def _one(error: ErrorDetails, path: Path, data: Any, reporter: Reporter) -> None:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "missing":
        reporter.add(
            path[:-1], f"missing required field {path[-1]!r}", code="missing-field", hint=None
        )
    elif kind == "extra_forbidden":
        allowed = _fields_at(path[:-1], data)
        reporter.add(
            path,
            f"unknown field {path[-1]!r}",
            code="unknown-field",
            hint=did_you_mean(path[-1], allowed) if allowed else None,
            key=True,
        )
    elif kind == "union_tag_invalid":
        if path[:1] == ("steps",):
            reporter.add(
                (*path, "type"),
                f"unknown step type {ctx.get('tag')!r}",
                code="unknown-step-type",
                hint=did_you_mean(ctx.get("tag"), STEP_TYPES)
                or f"use one of: {', '.join(BUILTIN_STEP_TYPES)}",
            )
        else:
            reporter.add(
                (*path, "type"),
                f"unknown type {ctx.get('tag')!r}; expected {ctx.get('expected_tags')}",
                code="schema",
            )
    elif kind == "union_tag_not_found":
        what = "step" if path[:1] == ("steps",) else "trigger"
        reporter.add(
            path,
            f"a {what} needs a 'type'",
            code="missing-field",
            hint=f"use one of: {', '.join(BUILTIN_STEP_TYPES)}" if what == "step" else None,
        )
    elif kind == "literal_error":
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        reporter.add(
            path,
            f"{value!r} is not allowed here; expected {ctx.get('expected')}",
            code="invalid-value",
            hint=did_you_mean(value, expected),
        )
    elif kind == "string_pattern_mismatch":
        reporter.add(path, _pattern_message(path, value), code="invalid-id")
    elif kind == "too_short" and path == ("steps",):
        reporter.add(path, "a flow needs at least one step", code="schema")
    elif kind in ("value_error", "assertion_error"):
        reporter.add(path, _plain(error["msg"]), code="schema")
    else:
        reporter.add(path, _about(path, error["msg"]), code="schema")


def _about(path: Path, message: str) -> str:
    """Pydantic's "Input should be …" said about the field: "timeout: input should be …"."""
    names = [p for p in path if isinstance(p, str)]
    if not names:
        return _plain(message)
    subject = names[-1] + "".join(f"[{p}]" for p in path[path.index(names[-1]) + 1 :])
    text = _plain(message)
    return f"{subject}: {text[:1].lower()}{text[1:]}"


def _plain(message: str) -> str:
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _pattern_message(path: Path, value: object) -> str:
    if len(path) == 3 and path[0] == "steps" and path[2] == "id":
        return (
            f"{value!r} is not a valid step id: use letters, digits, '_' and '-', "
            "starting with a letter or '_' (at most 64 characters)"
        )
    return (
        f"{value!r} is not a valid slug: use lowercase letters, digits, '-' and '_' "
        "(at most 64 characters)"
    )


def _clean_loc(loc: tuple[Any, ...], data: Any, kind: str) -> Path:
    """Keep the parts of pydantic's location that exist in the data (drop union tags)."""
    path: list[str | int] = []
    node = data
    for n, part in enumerate(loc):
        last = n == len(loc) - 1
        if _has(node, part):
            path.append(part)
            node = node[part]
        elif last and kind == "missing" and isinstance(part, str):
            path.append(part)
    return tuple(path)


def _has(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return isinstance(part, str) and part in node
    if isinstance(node, list):
        return isinstance(part, int) and 0 <= part < len(node)
    return False


def _fields_at(path: Path, data: Any) -> list[str]:
    """The field names the model at ``path`` accepts (empty when it is not a model)."""
    annotation: Any = FlowSpec
    node = data
    for part in path:
        model = _model_of(annotation, node)
        if model is not None:
            field = _field(model, part)
            if field is None:
                return []
            annotation = field.annotation
        else:
            annotation = _container_item(annotation)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return []
    model = _model_of(annotation, node)
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _field(model: type[BaseModel], name: str | int) -> FieldInfo | None:
    for field_name, field in model.model_fields.items():
        if name in (field_name, field.alias):
            return field
    return None


def _model_of(annotation: Any, node: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            tag = node.get("type") if isinstance(node, dict) else None
            type_field = member.model_fields.get("type")
            if type_field is None or tag in typing.get_args(type_field.annotation):
                return member
    return None


def _members(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_members(arg))
        return out
    return [annotation]


def _container_item(annotation: Any) -> Any:
    for member in _members(annotation):
        origin = typing.get_origin(member)
        if origin is list:
            return typing.get_args(member)[0]
        if origin is dict:
            return typing.get_args(member)[1]
    return None
