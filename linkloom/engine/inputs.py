"""Checking trigger inputs against a flow's declared inputs: types, required, enum, defaults.

Text values (from the CLI's ``--input key=value`` or query strings) are coerced to the declared
type when they parse; every problem is reported, not just the first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from linkloom.engine.errors import InputsInvalid
from linkloom.flows.spec import FlowSpec, InputSpec

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def validate_inputs(spec: FlowSpec, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the inputs with defaults applied and text coerced.

    Raises:
        InputsInvalid: naming each bad input.
    """
    given = dict(given or {})
    problems: list[str] = []
    out: dict[str, Any] = {}
    if spec.inputs:
        for name in sorted(set(given) - set(spec.inputs)):
            declared = ", ".join(sorted(spec.inputs))
            problems.append(f"unknown input {name!r} (declared: {declared})")
    else:
        out.update(given)
    for name, decl in spec.inputs.items():
        if name not in given or given[name] is None:
            if decl.required and decl.default is None:
                problems.append(f"missing required input {name!r} ({decl.type})")
            elif decl.default is not None:
                out[name] = decl.default
            continue
        value, problem = _coerce(name, decl, given[name])
        if problem:
            problems.append(problem)
            continue
        if decl.enum is not None and value not in decl.enum:
            allowed = ", ".join(json.dumps(v) for v in decl.enum)
            problems.append(f"input {name!r} must be one of {allowed}, got {json.dumps(value)}")
            continue
        out[name] = value
    if problems:
        raise InputsInvalid(flow_id=spec.id, problems=problems)
    return out


def _coerce(name: str, decl: InputSpec, value: Any) -> tuple[Any, str | None]:
    if _is(value, decl.type):
        return value, None
    if isinstance(value, str):
        parsed = _parse_text(value, decl.type)
        if parsed is not _NO and _is(parsed, decl.type):
            return parsed, None
    return None, f"input {name!r} must be {_KIND_WORDS[decl.type]}, got {json.dumps(value)}"


_NO = object()


def _parse_text(text: str, kind: str) -> Any:
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        return _NO
    try:
        return json.loads(text)
    except ValueError:
        return _NO


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[kind])


# What each declared type is called in messages people read (forms, the CLI, the API's 422).
_KIND_WORDS = {
    "integer": "a whole number (integer)",
    "number": "a number",
    "boolean": "true or false (boolean)",
    "string": "text (string)",
    "object": "a mapping (JSON object)",
    "array": "a list (JSON array)",
}
