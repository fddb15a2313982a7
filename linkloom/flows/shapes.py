"""Every accepted spec shape, rewritten into the canonical shape.

Accepted shapes (see docs/spec-reference.md):

* canonical: ``id``, ``steps`` with ``depends_on`` and the type's fields on the step;
* Link Loom: top-level ``tasks``, ``dependsOn``, a ``schedule`` cron string;
* Automata: ``name`` without ``id``, the type's fields under ``config``, ``timeout_sec``,
  Go-template references (``{{ .steps.fetch.outputs.orders }}``);
* MBFlow: ``{"workflow": {"id", "name", "nodes": [...], "edges": [...]}}`` with node types
  HTTP, DATA_ADAPTER, CONDITIONAL, MERGE, LLM and edges ``source → target``.

The rewrite never mutates its input and records, for every node it moves or renames, the
source path it came from (``origin``), so that problems found in the canonical shape point at
what the user wrote.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from linkloom.flows import references
from linkloom.flows.source import Path

STEP_KEY_ALIASES = {
    "dependsOn": "depends_on",
    "depends": "depends_on",
    "timeout_sec": "timeout",
    "timeoutSec": "timeout",
    "forEach": "for_each",
    "maxParallel": "max_parallel",
    "expectedStatus": "expected_status",
}
FLOW_KEY_ALIASES = {"tasks": "steps"}
DEFAULTS_KEY_ALIASES = {"timeout_sec": "timeout", "timeoutSec": "timeout"}
MBFLOW_NODE_TYPES = {
    "HTTP": "http",
    "DATA_ADAPTER": "transform",
    "TRANSFORM": "transform",
    "CONDITIONAL": "condition",
    "CONDITION": "condition",
    "MERGE": "merge",
    "LLM": "llm",
    "DELAY": "delay",
    "SHELL": "shell",
    "SUBFLOW": "flow",
    "FLOW": "flow",
}
MBFLOW_EDGE_TYPES = {
    "DIRECT": None,
    "DEFAULT": None,
    "TRUE": "then",
    "THEN": "then",
    "YES": "then",
    "FALSE": "else",
    "ELSE": "else",
    "NO": "else",
}
MBFLOW_NODE_DROPPED = ("position", "ui")  # visual-editor layout, not behaviour


@dataclass(frozen=True, slots=True, kw_only=True)
class ShapeProblem:
    """A problem found while rewriting; ``path`` is a source path."""

    path: Path
    message: str
    code: str
    hint: str | None = None
    key: bool = False  # point at the key rather than the value


@dataclass(slots=True, kw_only=True)
class Normalised:
    """The canonical data, which shape it came from, and where each node came from."""

    value: Any
    shape: str
    origin: dict[Path, Path] = field(default_factory=dict)
    problems: list[ShapeProblem] = field(default_factory=list)

    def source_path(self, path: Path) -> Path:
        """The source path of a canonical path (through its longest moved prefix)."""
        for cut in range(len(path), -1, -1):
            found = self.origin.get(path[:cut])
            if found is not None:
                return found + path[cut:]
        return path


def normalise(raw: Any) -> Normalised:
    """Rewrite any accepted shape into canonical data (still unvalidated)."""
    out = Normalised(value=raw, shape="canonical", origin={(): ()})
    if not isinstance(raw, dict):
        kind = "a list" if isinstance(raw, list) else f"a {type(raw).__name__}"
        out.problems.append(
            ShapeProblem(
                path=(),
                message=f"a flow spec must be a mapping at the top level, not {kind}",
                code="not-a-mapping",
                hint="start the file with 'id: my-flow' and 'steps:'",
            )
        )
        out.value = None
        return out
    workflow = raw.get("workflow")
    if isinstance(workflow, dict) and ("nodes" in workflow or "edges" in workflow):
        out.shape = "mbflow"
        out.value = _mbflow(raw, workflow, out)
    else:
        if "tasks" in raw:
            out.shape = "linkloom"
        elif _automata_like(raw):
            out.shape = "automata"
        out.value = _flow(raw, (), out)
    out.value = _templates(out.value)
    return out


def _automata_like(raw: dict[str, Any]) -> bool:
    steps = raw.get("steps")
    configs = isinstance(steps, list) and any(isinstance(s, dict) and "config" in s for s in steps)
    return configs or ("id" not in raw and "name" in raw)


def _flow(raw: dict[str, Any], prefix: Path, out: Normalised) -> dict[str, Any]:
    flow: dict[str, Any] = {}
    for key, value in raw.items():
        canonical = FLOW_KEY_ALIASES.get(key, key)
        if canonical != key:
            out.origin[(canonical,)] = (*prefix, key)
        elif prefix:
            out.origin[(key,)] = (*prefix, key)
        if canonical in flow:
            out.problems.append(
                ShapeProblem(
                    path=(*prefix, key),
                    message=f"'{key}' and '{canonical}' mean the same; use only '{canonical}'",
                    code="duplicate-field",
                    key=True,
                )
            )
            continue
        flow[canonical] = value
    if "id" not in flow and isinstance(flow.get("name"), str):
        slug = re.sub(r"[^a-z0-9_-]+", "-", flow["name"].lower()).strip("-_")[:64]
        if slug:
            flow = {"id": slug, **flow}
            out.origin[("id",)] = out.source_path(("name",))
    if "schedule" in flow:
        _schedule(flow, out)
    defaults = flow.get("defaults")
    if isinstance(defaults, dict):
        flow["defaults"] = _renamed(
            defaults, ("defaults",), out.source_path(("defaults",)), DEFAULTS_KEY_ALIASES, out
        )
    steps = flow.get("steps")
    if isinstance(steps, list):
        source = out.source_path(("steps",))
        flow["steps"] = [
            _step(step, ("steps", n), (*source, n), out) for n, step in enumerate(steps)
        ]
    return flow


def _schedule(flow: dict[str, Any], out: Normalised) -> None:
    value = flow.pop("schedule")
    source = out.source_path(("schedule",))
    schedules = flow.get("schedules")
    if schedules is None:
        schedules = []
    if not isinstance(schedules, list):
        return
    items = value if isinstance(value, list) else [value]
    schedules = list(schedules)
    for n, item in enumerate(items):
        index = len(schedules)
        where = (*source, n) if isinstance(value, list) else source
        out.origin[("schedules", index)] = where
        if isinstance(item, str):
            out.origin[("schedules", index, "cron")] = where
            schedules.append({"cron": item})
        else:
            schedules.append(item)
    flow["schedules"] = schedules


def _renamed(
    raw: dict[str, Any], path: Path, source: Path, aliases: dict[str, str], out: Normalised
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in raw.items():
        canonical = aliases.get(key, key)
        if canonical != key:
            out.origin[(*path, canonical)] = (*source, key)
        if canonical in result:
            out.problems.append(
                ShapeProblem(
                    path=(*source, key),
                    message=f"'{key}' and '{canonical}' mean the same; use only '{canonical}'",
                    code="duplicate-field",
                    key=True,
                )
            )
            continue
        result[canonical] = value
    return result


def _step(raw: Any, path: Path, source: Path, out: Normalised) -> Any:
    out.origin[path] = source
    if not isinstance(raw, dict):
        return raw
    step = _renamed(
        {k: v for k, v in raw.items() if k != "config"}, path, source, STEP_KEY_ALIASES, out
    )
    config = raw.get("config")
    if "config" in raw and not isinstance(config, dict):
        out.problems.append(
            ShapeProblem(
                path=(*source, "config"),
                message="'config' must be a mapping of the step type's fields",
                code="invalid-config",
            )
        )
    elif isinstance(config, dict):
        for key, value in config.items():
            canonical = STEP_KEY_ALIASES.get(key) or key
            if step.get("type") == "condition" and key == "expression":
                canonical = "condition"
            if canonical in step:
                out.problems.append(
                    ShapeProblem(
                        path=(*source, "config", key),
                        message=f"'{canonical}' is set both on the step and in its 'config'",
                        code="duplicate-field",
                        key=True,
                    )
                )
                continue
            step[canonical] = value
            out.origin[(*path, canonical)] = (*source, "config", key)
    if isinstance(step.get("method"), str):
        step["method"] = step["method"].upper()
    return step


def _mbflow(raw: dict[str, Any], workflow: dict[str, Any], out: Normalised) -> dict[str, Any]:
    body: dict[str, Any] = {k: v for k, v in raw.items() if k != "workflow"}
    prefix = ("workflow",)
    for key in body:
        out.origin[(key,)] = (key,)
    for key, value in workflow.items():
        if key in ("nodes", "edges"):
            continue
        if key in body:
            out.problems.append(
                ShapeProblem(
                    path=(*prefix, key),
                    message=f"'{key}' is set both inside and outside 'workflow'",
                    code="duplicate-field",
                    key=True,
                )
            )
            continue
        body[key] = value
        out.origin[(key,)] = (*prefix, key)
    nodes = workflow.get("nodes", [])
    if not isinstance(nodes, list):
        out.problems.append(
            ShapeProblem(path=(*prefix, "nodes"), message="'nodes' must be a list", code="type")
        )
        nodes = []
    steps: list[Any] = []
    for n, node in enumerate(nodes):
        if isinstance(node, dict):
            node = {k: v for k, v in node.items() if k not in MBFLOW_NODE_DROPPED}
            kind = node.get("type")
            if isinstance(kind, str):
                node["type"] = MBFLOW_NODE_TYPES.get(kind.upper(), kind)
        steps.append(_step(node, ("steps", n), (*prefix, "nodes", n), out))
    body["steps"] = steps
    out.origin[("steps",)] = (*prefix, "nodes")
    _edges(workflow.get("edges", []), steps, out)
    return _flow(body, (), out)


def _edges(edges: Any, steps: list[Any], out: Normalised) -> None:
    where = ("workflow", "edges")
    if not isinstance(edges, list):
        out.problems.append(ShapeProblem(path=where, message="'edges' must be a list", code="type"))
        return
    index = {
        s["id"]: n
        for n, s in enumerate(steps)
        if isinstance(s, dict) and isinstance(s.get("id"), str)
    }
    for e, edge in enumerate(edges):
        path = (*where, e)
        if not isinstance(edge, dict) or not all(
            isinstance(edge.get(k), str) for k in ("source", "target")
        ):
            out.problems.append(
                ShapeProblem(
                    path=path,
                    message="an edge needs 'source' and 'target' node ids",
                    code="invalid-edge",
                )
            )
            continue
        kind = str(edge.get("type", "DIRECT")).upper()
        if kind not in MBFLOW_EDGE_TYPES:
            close = difflib.get_close_matches(kind, list(MBFLOW_EDGE_TYPES), n=1)
            out.problems.append(
                ShapeProblem(
                    path=(*path, "type"),
                    message=f"unknown edge type {edge.get('type')!r}",
                    code="invalid-edge",
                    hint=f"did you mean {close[0]!r}?" if close else "use DIRECT, TRUE or FALSE",
                )
            )
            continue
        target = index.get(edge["target"])
        if target is None:
            out.problems.append(
                ShapeProblem(
                    path=(*path, "target"),
                    message=f"edge target {edge['target']!r} is not a node of this workflow",
                    code="unknown-step",
                    hint=_did_you_mean(edge["target"], list(index)),
                )
            )
            continue
        step = steps[target]
        deps = list(step.get("depends_on") or [])
        out.origin[("steps", target, "depends_on", len(deps))] = (*path, "source")
        deps.append(edge["source"])
        step["depends_on"] = deps
        branch = MBFLOW_EDGE_TYPES[kind]
        source = index.get(edge["source"])
        if branch and source is not None:
            owner = steps[source]
            names = list(owner.get(branch) or [])
            out.origin[("steps", source, branch, len(names))] = (*path, "target")
            names.append(edge["target"])
            owner[branch] = names


def _did_you_mean(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean {close[0]!r}?" if close else None


def _templates(value: Any) -> Any:
    """Normalise Go-style template references in every string (``{{ .x }}`` → ``{{ x }}``)."""
    if isinstance(value, str):
        return references.normalize(value) if ("{{" in value or "{%" in value) else value
    if isinstance(value, dict):
        return {k: _templates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_templates(v) for v in value]
    return value
