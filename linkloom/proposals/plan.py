"""The plan check: what a proposal would change, in the spirit of ``terraform plan``.

``plan_flow(before=…, after=…, now=…, in_flight=[…])`` compares production's spec of one flow
with the proposed one and returns plain JSON data:

* ``spec_diff``: a unified diff of the canonical YAML of both specs;
* ``steps``: steps added, removed and changed (with the changed field paths);
* ``schedules``: per schedule, added / removed / changed / unchanged, with the next 5 fire times
  before and after;
* ``triggers``: webhook and event triggers added, removed or changed;
* ``policies``: effective retry, timeout and concurrency settings that change, per step;
* ``in_flight``: runs still going on production's version (they finish on it).

``plan_lines(plan)`` renders it as text for the terminal.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from linkloom.flows import loading
from linkloom.flows.spec import FlowSpec, Schedule
from linkloom.scheduler import cron

FIRES = 5


def plan_flow(
    *,
    flow_id: str,
    before: FlowSpec | None,
    after: FlowSpec | None,
    now: datetime,
    in_flight: Iterable[Any] = (),
    before_version: int | None = None,
) -> dict[str, Any]:
    """The plan of one flow (``before`` None: a new flow; ``after`` None: a deleted flow)."""
    kind = "added" if before is None else "deleted" if after is None else "modified"
    runs = [
        {"id": r.id, "version": r.version, "status": getattr(r.status, "value", str(r.status))}
        for r in in_flight
    ]
    plan: dict[str, Any] = {
        "flow_id": flow_id,
        "kind": kind,
        "production_version": before_version,
        "spec_diff": spec_diff(before, after, flow_id=flow_id),
        "steps": step_changes(before, after),
        "schedules": schedule_changes(before, after, now=now),
        "triggers": trigger_changes(before, after),
        "policies": policy_changes(before, after),
        "in_flight": {
            "count": len(runs),
            "runs": runs[:20],
            "note": (
                f"{len(runs)} run(s) in flight finish on version {before_version}; "
                "runs started after promotion use the new version"
            )
            if runs
            else "no runs in flight",
        },
    }
    plan["summary"] = summary(plan)
    return plan


def spec_diff(before: FlowSpec | None, after: FlowSpec | None, *, flow_id: str) -> str:
    a = loading.to_canonical_yaml(before).splitlines(keepends=True) if before else []
    b = loading.to_canonical_yaml(after).splitlines(keepends=True) if after else []
    return "".join(
        difflib.unified_diff(a, b, fromfile=f"production/{flow_id}", tofile=f"proposed/{flow_id}")
    )


def _steps(spec: FlowSpec | None) -> dict[str, dict[str, Any]]:
    if spec is None:
        return {}
    return {
        s.id: s.model_dump(mode="json", by_alias=True, exclude_defaults=True) for s in spec.steps
    }


def step_changes(before: FlowSpec | None, after: FlowSpec | None) -> dict[str, Any]:
    old, new = _steps(before), _steps(after)
    changed = []
    for step_id in new:
        if step_id in old and old[step_id] != new[step_id]:
            changed.append(
                {"step_id": step_id, "fields": sorted(_diff_paths(old[step_id], new[step_id]))}
            )
    return {
        "added": [s for s in new if s not in old],
        "removed": [s for s in old if s not in new],
        "changed": changed,
    }


def _diff_paths(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                out.append(path)
            elif a[key] != b[key]:
                out.extend(_diff_paths(a[key], b[key], path))
        return out
    return [prefix or "(value)"] if a != b else []


def _schedule_key(schedule: Schedule, index: int) -> str:
    return schedule.id or f"#{index + 1}"


def _fires(schedule: Schedule, now: datetime) -> dict[str, Any]:
    info: dict[str, Any] = {
        "describe": cron.describe(schedule),
        "enabled": schedule.enabled,
        "inputs": schedule.inputs,
        "next": [],
    }
    if schedule.enabled:
        try:
            info["next"] = [t.isoformat() for t in cron.next_fires(schedule, after=now, n=FIRES)]
        except Exception as exc:  # an invalid schedule is validate's business; say so here too
            info["error"] = str(exc)
    return info


def schedule_changes(
    before: FlowSpec | None, after: FlowSpec | None, *, now: datetime
) -> list[dict[str, Any]]:
    old = {_schedule_key(s, i): s for i, s in enumerate(before.schedules if before else [])}
    new = {_schedule_key(s, i): s for i, s in enumerate(after.schedules if after else [])}
    out = []
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key), new.get(key)
        if a is None:
            change = "added"
        elif b is None:
            change = "removed"
        else:
            change = "unchanged" if a == b else "changed"
        out.append(
            {
                "id": key,
                "change": change,
                "before": _fires(a, now) if a is not None else None,
                "after": _fires(b, now) if b is not None else None,
            }
        )
    return out


def trigger_changes(before: FlowSpec | None, after: FlowSpec | None) -> list[dict[str, Any]]:
    def index(spec: FlowSpec | None) -> dict[str, dict[str, Any]]:
        if spec is None:
            return {}
        return {
            f"{t.type}:{t.id}": t.model_dump(mode="json", exclude_defaults=True)
            for t in spec.triggers
        }

    old, new = index(before), index(after)
    out = []
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key), new.get(key)
        change = "added" if a is None else "removed" if b is None else "changed" if a != b else ""
        if change:
            kind, _, trigger_id = key.partition(":")
            out.append({"id": trigger_id, "type": kind, "change": change})
    return out


def _effective(spec: FlowSpec | None) -> dict[str, Any]:
    """Retry, timeout and concurrency values as the engine applies them (defaults filled in)."""
    if spec is None:
        return {}
    out: dict[str, Any] = {
        f"concurrency.{k}": v for k, v in spec.concurrency.model_dump(mode="json").items()
    }
    for step in spec.steps:
        retry = (step.retry or spec.defaults.retry).model_dump(mode="json")
        for key, value in retry.items():
            out[f"steps.{step.id}.retry.{key}"] = value
        timeout = step.timeout if step.timeout is not None else spec.defaults.timeout
        out[f"steps.{step.id}.timeout"] = timeout
        if step.max_parallel is not None:
            out[f"steps.{step.id}.max_parallel"] = step.max_parallel
    return out


def policy_changes(before: FlowSpec | None, after: FlowSpec | None) -> list[dict[str, Any]]:
    if before is None or after is None:
        return []
    old, new = _effective(before), _effective(after)
    added_steps = {s.id for s in after.steps} - {s.id for s in before.steps}
    out = []
    for path in sorted(set(old) | set(new)):
        if path.startswith("steps.") and path.split(".")[1] in added_steps:
            continue  # a new step's settings are in the spec diff
        if path in old and path in new and old[path] == new[path]:
            continue
        if path not in new:
            continue  # a removed step
        out.append({"path": path, "production": old.get(path), "proposed": new.get(path)})
    return out


def summary(plan: Mapping[str, Any]) -> str:
    steps = plan["steps"]
    parts = [plan["kind"]]
    for key in ("added", "removed"):
        if steps[key]:
            parts.append(f"{len(steps[key])} step(s) {key}")
    if steps["changed"]:
        parts.append(f"{len(steps['changed'])} step(s) changed")
    moved = [s for s in plan["schedules"] if s["change"] != "unchanged"]
    if moved:
        parts.append(f"{len(moved)} schedule change(s)")
    if plan["triggers"]:
        parts.append(f"{len(plan['triggers'])} trigger change(s)")
    if plan["policies"]:
        parts.append(f"{len(plan['policies'])} retry/timeout/concurrency change(s)")
    if plan["in_flight"]["count"]:
        parts.append(f"{plan['in_flight']['count']} run(s) in flight")
    return ", ".join(parts)


def plan_lines(plans: Sequence[Mapping[str, Any]]) -> list[str]:
    """A readable text rendering of the plans of a proposal."""
    lines: list[str] = []
    for plan in plans:
        version = plan.get("production_version")
        lines.append(
            f"flow {plan['flow_id']} ({plan['kind']}"
            + (f", production version {version}" if version else "")
            + f"): {plan.get('summary', '')}"
        )
        steps = plan["steps"]
        for step_id in steps["added"]:
            lines.append(f"  + step {step_id}")
        for step_id in steps["removed"]:
            lines.append(f"  - step {step_id}")
        for changed in steps["changed"]:
            lines.append(f"  ~ step {changed['step_id']}: {', '.join(changed['fields'])}")
        for schedule in plan["schedules"]:
            lines.append(f"  schedule {schedule['id']}: {schedule['change']}")
            for side in ("before", "after"):
                info = schedule.get(side)
                if info and (schedule["change"] != "unchanged" or side == "after"):
                    nxt = ", ".join(info.get("next") or []) or "never"
                    lines.append(f"    {side:6} {info['describe']}: next {nxt}")
        for trigger in plan["triggers"]:
            lines.append(f"  trigger {trigger['type']} {trigger['id']}: {trigger['change']}")
        for policy in plan["policies"]:
            lines.append(
                f"  ~ {policy['path']}: {policy['production']!r} -> {policy['proposed']!r}"
            )
        lines.append(f"  in flight: {plan['in_flight']['note']}")
    return lines
