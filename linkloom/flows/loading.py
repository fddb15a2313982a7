"""Loading and checking flow specs: the entry points everyone else calls.

``check_flow`` reads any accepted shape, rewrites it into the canonical shape, validates the
schema and the semantics, and returns every problem with its file, line and column.
``load_flow`` does the same and raises ``SpecInvalid`` unless the spec is valid (warnings are
fine). Neither raises anything else, whatever the input.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Any

import yaml
from pydantic import ValidationError

from linkloom.flows import checks, diagnostics, shapes
from linkloom.flows import source as reader
from linkloom.flows.errors import SpecInvalid
from linkloom.flows.models import CheckResult, Policy, Problem
from linkloom.flows.spec import FlowSpec

__all__ = [
    "CheckResult",
    "Policy",
    "Problem",
    "SpecInvalid",
    "canonical_dict",
    "check_flow",
    "content_hash",
    "load_flow",
    "spec_json_schema",
    "to_canonical_yaml",
]

SCHEMA_ID = "https://linkloom.dev/schemas/flow.schema.json"


def check_flow(
    source: str | bytes, *, filename: str = "<spec>", policy: Policy | None = None
) -> CheckResult:
    """Check a spec in any accepted shape; never raises for bad input.

    Returns:
        The canonical ``FlowSpec`` when there are no errors (else ``None``) and every problem,
        errors and warnings, ordered by position.
    """
    document = reader.read_source(source, json_only=filename.lower().endswith(".json"))
    reporter = diagnostics.Reporter(file=filename, document=document, shapes=None)
    for found in document.problems:
        reporter.problems.append(
            Problem(
                file=filename,
                line=found.line,
                column=found.column,
                path=diagnostics.json_path(found.path),
                message=found.message,
                hint=found.hint,
                code=found.code,
            )
        )
    if document.value is None and document.problems:
        return CheckResult(spec=None, problems=reporter.sorted())
    spec: FlowSpec | None = None
    try:
        normalised = shapes.normalise(document.value)
        reporter.shapes = normalised
        for shaped in normalised.problems:
            reporter.add(
                shaped.path,
                shaped.message,
                code=shaped.code,
                hint=shaped.hint,
                key=shaped.key,
                source=True,
            )
        if normalised.value is not None:
            try:
                spec = FlowSpec.model_validate(normalised.value)
            except ValidationError as exc:
                diagnostics.schema_problems(exc, normalised.value, reporter)
            checks.check(normalised.value, reporter=reporter, policy=policy)
    except Exception as exc:  # a bug must not crash CI or the server; report it as a problem
        spec = None
        reporter.add(
            (),
            f"internal error while validating: {type(exc).__name__}: {exc}",
            code="internal-error",
            hint="please report this spec as a Link Loom bug",
        )
    problems = reporter.sorted()
    if any(p.severity == "error" for p in problems):
        spec = None
    return CheckResult(spec=spec, problems=problems)


def load_flow(source: str | bytes, *, filename: str = "<spec>") -> FlowSpec:
    """Load a spec in any accepted shape into the canonical model.

    Raises:
        SpecInvalid: with ``problems`` listing every problem (errors and warnings).
    """
    result = check_flow(source, filename=filename)
    if result.spec is None:
        raise SpecInvalid(problems=result.problems)
    return result.spec


def canonical_dict(spec: FlowSpec) -> dict[str, Any]:
    """The spec as plain JSON data, without fields left at their defaults."""
    data = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data["steps"] = [_step_order(step) for step in data.get("steps", [])]
    if "outputs" in data:  # after the steps that produce them
        data["outputs"] = data.pop("outputs")
    return data


# Canonical key order of a step: what it is and when it runs, its type's fields, then policies.
_STEP_HEAD = ("id", "type", "name", "description", "depends_on", "join", "when", "for_each")
_STEP_TAIL = ("max_parallel", "retry", "timeout", "outputs")


def _step_order(step: dict[str, Any]) -> dict[str, Any]:
    head = {k: step[k] for k in _STEP_HEAD if k in step}
    if step.get("type") == "http":  # the method is worth seeing even when it is the default
        head["method"] = step.get("method", "POST")
    tail = {k: step[k] for k in _STEP_TAIL if k in step}
    middle = {k: v for k, v in step.items() if k not in head and k not in tail}
    return {**head, **middle, **tail}


def content_hash(spec: FlowSpec) -> str:
    """SHA-256 of the canonical JSON: equal for specs that mean the same, whatever their shape."""
    text = json.dumps(canonical_dict(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings as ``|`` blocks, lists indented under their key."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


_BREAKS = re.compile("[\x85\u2028\u2029\r]")


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Quote what our YAML 1.2 reader would not read back as a string (PyYAML's 1.1 rules
    # leave ``1e3`` plain, which reads back as a number).
    if _BREAKS.search(value):
        style: str | None = '"'  # PyYAML would fold these line breaks inside '…' quotes
    else:
        style = "|" if "\n" in value else None if reader.plain_is_string(value) else "'"
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    # Short lists of plain words (depends_on, tags) read best inline: [a, b].
    short = (
        all(
            isinstance(v, bool | int | float) or (isinstance(v, str) and "\n" not in v)
            for v in value
        )
        and sum(len(str(v)) + 2 for v in value) <= 60
    )
    return dumper.represent_sequence(
        "tag:yaml.org,2002:seq", value, flow_style=short and bool(value)
    )


_Dumper.add_representer(str, _str)
_Dumper.add_representer(list, _list)


def to_canonical_yaml(spec: FlowSpec) -> str:
    """The spec in the canonical shape as YAML (what ``loom convert`` prints)."""
    return dump_yaml(canonical_dict(spec))


def dump_yaml(data: Any) -> str:
    """Data as YAML the way canonical specs are written (keys in their order); None: empty."""
    if data is None:
        return ""
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )


@functools.cache
def _schema() -> str:
    schema = FlowSpec.model_json_schema(by_alias=True)
    out = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Link Loom flow spec",
        **{k: v for k, v in schema.items() if k != "title"},
    }
    return json.dumps(out)


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the canonical spec, for editors and CI."""
    return json.loads(_schema())  # type: ignore[no-any-return]
