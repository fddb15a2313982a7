"""View models the templates draw: the DAG with step colours, the Gantt timeline, spec diffs,
the trigger form and step statuses as the UI names them.

Pure functions over domain records (no I/O), so they are unit-tested without a server.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml
from markupsafe import Markup

from linkloom.engine import dag
from linkloom.engine.models import StepStatus
from linkloom.engine.records import Attempt, FlowVersion, Run, StepRun
from linkloom.flows import loading
from linkloom.flows.spec import FlowSpec
from linkloom.web import layout

# How the UI names a step's state (the colours of the DAG and the timeline).
DISPLAY = (
    "pending",
    "queued",
    "running",
    "retrying",
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
)


def display_status(step: StepRun) -> str:
    """``retrying`` is a queued step that has already failed an attempt."""
    if step.status is StepStatus.QUEUED and step.attempt > 0:
        return "retrying"
    return step.status.value.lower()


def step_statuses(steps: Iterable[StepRun]) -> dict[str, str]:
    """Display status of each spec step (fan-out children are folded into their parent)."""
    return {s.step_id: display_status(s) for s in steps if s.item_index is None}


def item_progress(steps: Iterable[StepRun]) -> dict[str, str]:
    """``"3/5"`` (items finished / items) of every fan-out step that has items."""
    done: dict[str, int] = {}
    total: dict[str, int] = {}
    for s in steps:
        if s.item_index is not None:
            total[s.step_id] = total.get(s.step_id, 0) + 1
            done[s.step_id] = done.get(s.step_id, 0) + (1 if s.status.terminal else 0)
    return {sid: f"{done[sid]}/{n}" for sid, n in total.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class DagView:
    wide: layout.Layout  # left to right, for wide screens
    narrow: layout.Layout  # top to bottom, for phones
    statuses: Mapping[str, str]
    items: Mapping[str, str]  # fan-out progress, "3/5"


def dag_view(
    spec: FlowSpec,
    statuses: Mapping[str, str] | None = None,
    items: Mapping[str, str] | None = None,
) -> DagView:
    plan = dag.plan_from_spec(spec)
    nodes = list(plan.nodes)
    edges = [(dep, node.id) for node in plan.nodes.values() for dep in node.depends_on]
    kinds = {s.id: s.type + (" · for each" if s.for_each else "") for s in spec.steps}
    labels = {n: n if len(n) <= 22 else n[:21] + "…" for n in nodes}
    return DagView(
        wide=layout.layout(nodes, edges, labels=labels, sublabels=kinds, direction="LR"),
        narrow=layout.layout(nodes, edges, labels=labels, sublabels=kinds, direction="TB"),
        statuses=dict(statuses or {}),
        items=dict(items or {}),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    label: str
    step_id: str
    status: str
    start: float  # seconds after the run started
    length: float  # seconds
    x: float  # percent of the chart width
    width: float  # percent, at least a sliver so instant attempts stay visible
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    bars: tuple[Bar, ...]
    total: float  # seconds the chart spans
    ticks: tuple[tuple[float, str], ...]  # (percent, label)
    hidden: int = 0  # attempts past the ones drawn (a large fan-out)


TIMELINE_BARS = 300  # a 100,000-item fan-out draws its first attempts, not a 2 MB chart
ITEMS_SHOWN = 20  # fan-out children listed per step on the run page (the rest: paged)


def timeline(
    run: Run,
    attempts: Sequence[Attempt],
    steps: Sequence[StepRun],
    *,
    now: datetime,
    limit: int = TIMELINE_BARS,
) -> Timeline:
    """A Gantt chart: one bar per attempt, plus the attempts running right now (the first
    ``limit`` by start; ``hidden`` counts the others)."""
    spans: list[tuple[str, str, str, datetime, datetime, int]] = []
    done = set()
    for a in attempts:
        if a.started_at is None:
            continue
        end = a.finished_at or now
        spans.append(
            (
                a.step_id,
                _item_label(a.step_id, a.item_index),
                _att(a.status),
                a.started_at,
                end,
                a.number,
            )
        )
        done.add((a.step_run_id, a.number))
    for s in steps:
        if s.status is StepStatus.RUNNING and s.started_at and (s.id, s.attempt) not in done:
            spans.append(
                (
                    s.step_id,
                    _item_label(s.step_id, s.item_index),
                    "running",
                    s.started_at,
                    now,
                    s.attempt,
                )
            )
    if not spans:
        return Timeline(bars=(), total=0.0, ticks=())
    origin = min(run.started_at or run.created_at, *(sp[3] for sp in spans))
    end = max(sp[4] for sp in spans)
    total = max((end - origin).total_seconds(), 0.001)
    bars = []
    ordered = sorted(spans, key=lambda sp: (sp[3], sp[1]))
    hidden = max(0, len(ordered) - limit)
    for step_id, label, status, start, stop, number in ordered[:limit]:
        offset = (start - origin).total_seconds()
        length = max((stop - start).total_seconds(), 0.0)
        bars.append(
            Bar(
                label=f"{label} #{number}",
                step_id=step_id,
                status=status,
                start=offset,
                length=length,
                x=round(offset / total * 100, 2),
                width=round(max(length / total * 100, 0.6), 2),
                title=f"{label} attempt {number}: {status}, {length:.3f} s from +{offset:.3f} s",
            )
        )
    ticks = tuple((round(f * 100, 1), f"{f * total:.2f} s") for f in (0, 0.25, 0.5, 0.75, 1.0))
    return Timeline(bars=tuple(bars), total=total, ticks=ticks, hidden=hidden)


@dataclass(frozen=True, slots=True, kw_only=True)
class MoreItems:
    """A row of the run page's step list standing for a fan-out's children not listed."""

    step_id: str
    after: int  # the last item index listed
    count: int


def listed_steps(
    steps: Sequence[StepRun], *, per_fanout: int = ITEMS_SHOWN
) -> list[StepRun | MoreItems]:
    """The run page's step list: every step, and the first ``per_fanout`` children of each
    fan-out followed by a ``MoreItems`` row (the rest are paged)."""
    listed: list[StepRun | MoreItems] = []
    shown: dict[str, int] = {}
    extra: dict[str, int] = {}
    last: dict[str, int] = {}
    for step in steps:
        if step.item_index is None:
            listed.append(step)
            continue
        if shown.get(step.step_id, 0) < per_fanout:
            shown[step.step_id] = shown.get(step.step_id, 0) + 1
            last[step.step_id] = step.item_index
            listed.append(step)
        else:
            extra[step.step_id] = extra.get(step.step_id, 0) + 1
    out: list[StepRun | MoreItems] = []
    for i, entry in enumerate(listed):
        out.append(entry)
        sid = entry.step_id
        following = listed[i + 1].step_id if i + 1 < len(listed) else None
        ends_items = isinstance(entry, StepRun) and entry.item_index is not None
        if ends_items and following != sid and extra.get(sid):
            out.append(MoreItems(step_id=sid, after=last[sid], count=extra[sid]))
    return out


def _att(status: StepStatus) -> str:
    return status.value.lower()


def _item_label(step_id: str, index: int | None) -> str:
    return step_id if index is None else f"{step_id}[{index}]"


def spec_text(version: FlowVersion) -> str:
    """The version's spec as canonical YAML (plain YAML if it no longer validates)."""
    try:
        return loading.to_canonical_yaml(FlowSpec.model_validate(version.spec))
    except Exception:  # an old version the current model rejects: still show it
        return yaml.safe_dump(version.spec, sort_keys=False, allow_unicode=True)


def spec_diff(old: FlowVersion, new: FlowVersion) -> Markup:
    """A side-by-side HTML table (difflib escapes every line)."""
    table = difflib.HtmlDiff(tabsize=2, wrapcolumn=60).make_table(
        spec_text(old).splitlines(),
        spec_text(new).splitlines(),
        fromdesc=f"version {old.version}",
        todesc=f"version {new.version}",
        context=True,
        numlines=3,
    )
    return Markup(table)  # difflib escapes &, < and > in every line it emits


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    name: str
    kind: str  # text | number | integer | checkbox | select | json
    required: bool
    value: str  # what the form shows
    options: tuple[str, ...] = ()
    description: str = ""
    declared: str = ""  # the declared type, for the label
    problem: str = ""


def trigger_fields(
    spec: FlowSpec, *, values: Mapping[str, Any] | None = None, problems: Sequence[str] = ()
) -> list[Field]:
    """One form field per declared input; ``problems`` (from a 422) attach to their input."""
    values = values or {}
    out = []
    for name, decl in spec.inputs.items():
        shown = values.get(name, decl.default)
        if decl.enum:
            kind, options = "select", tuple(_text(v) for v in decl.enum)
        elif decl.type == "boolean":
            kind, options = "checkbox", ()
        elif decl.type in ("integer", "number"):
            kind, options = decl.type, ()
        elif decl.type in ("object", "array"):
            kind, options = "json", ()
        else:
            kind, options = "text", ()
        mine = [p for p in problems if f"'{name}'" in p]
        out.append(
            Field(
                name=name,
                kind=kind,
                required=decl.required,
                value="" if shown is None else _text(shown),
                options=options,
                description=getattr(decl, "description", "") or "",
                declared=decl.type,
                problem="; ".join(mine),
            )
        )
    return out


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def read_trigger_form(spec: FlowSpec, form: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Form text → inputs of the declared types; returns (inputs, problems)."""
    inputs: dict[str, Any] = {}
    problems: list[str] = []
    for name, decl in spec.inputs.items():
        key = f"input.{name}"
        if decl.type == "boolean" and not decl.enum:
            inputs[name] = form.get(key) in ("on", "true", "1")
            continue
        raw = form.get(key)
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            continue  # absent: the engine applies the default or reports a missing required one
        text = str(raw).strip()
        if decl.type in ("object", "array") or (decl.enum and decl.type != "string"):
            try:
                inputs[name] = json.loads(text)
            except ValueError:
                problems.append(f"input '{name}' must be JSON ({decl.type})")
        else:
            inputs[name] = text  # the engine coerces text to the declared type
    return inputs, problems


def success_rate(runs: Sequence[Run]) -> float | None:
    finished = [r for r in runs if r.status.terminal]
    if not finished:
        return None
    return sum(1 for r in finished if r.status.value == "SUCCEEDED") / len(finished)
