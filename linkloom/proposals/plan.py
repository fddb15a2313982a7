"""The plan check: what a proposal would change, in the spirit of ``terraform plan``.

``plan_flow(before=…, after=…, now=…, in_flight=[…])`` compares production's spec of one flow
with the proposed one and returns plain JSON data:

* ``spec_diff``: a unified diff of both specs as written in git when production's text is known
  (the file at the commit its version came from), else of their canonical YAML with
  production's keys in the proposal's order (a stored spec's key order is the database's);
* ``steps``: steps added, removed and changed (with the changed field paths);
* ``schedules``: per schedule, added / removed / changed / unchanged, with the next 5 fire times
  before and after, in the schedule's time zone and in UTC;
* ``triggers``: webhook and event triggers added, removed or changed;
* ``policies``: effective retry, timeout and concurrency settings that change, per step;
* ``in_flight``: runs still going on production's version (they finish on it).

``plan_lines(plan)`` renders it as text for the terminal.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

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
    before_text: str | None = None,
    after_text: str | None = None,
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
        "spec_diff": spec_diff(
            before, after, flow_id=flow_id, before_text=before_text, after_text=after_text
        ),
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


def spec_diff(
    before: FlowSpec | None,
    after: FlowSpec | None,
    *,
    flow_id: str,
    before_text: str | None = None,
    after_text: str | None = None,
) -> str:
    """The unified diff production → proposed: of the texts in git when both sides have one
    (``None`` spec: no file on that side), else of canonical YAML with aligned key order."""
    if (before is None or before_text is not None) and (after is None or after_text is not None):
        old, new = before_text or "", after_text or ""
    else:
        after_data = loading.canonical_dict(after) if after else None
        before_data = loading.canonical_dict(before) if before else None
        if before_data is not None and after_data is not None:
            before_data = _in_order_of(before_data, after_data)
        old, new = loading.dump_yaml(before_data), loading.dump_yaml(after_data)
    return "".join(
        difflib.unified_diff(
            _lines(old), _lines(new), fromfile=f"production/{flow_id}", tofile=f"proposed/{flow_id}"
        )
    )


def _lines(text: str) -> list[str]:
    """``text``'s lines, the last one ending in a newline too (a diff line per line)."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


def _in_order_of(value: Any, model: Any) -> Any:
    """``value`` with every mapping's keys in the order ``model``'s matching mapping has them
    (keys ``model`` lacks follow in their own order); list items are matched by their ``id``
    when they have one (steps, schedules), else by position."""
    if isinstance(value, dict) and isinstance(model, dict):
        keys = [k for k in model if k in value] + [k for k in value if k not in model]
        return {k: _in_order_of(value[k], model.get(k)) for k in keys}
    if isinstance(value, list) and isinstance(model, list):
        by_id = {m["id"]: m for m in model if isinstance(m, dict) and isinstance(m.get("id"), str)}
        out = []
        for i, item in enumerate(value):
            match = by_id.get(item.get("id")) if isinstance(item, dict) else None
            if match is None and not by_id:
                match = model[i] if i < len(model) else None
            out.append(_in_order_of(item, match))
        return out
    return value


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
        "timezone": schedule.timezone,
        "next": [],  # ISO 8601 in the schedule's time zone (with its offset)
        "next_utc": [],
    }
    if schedule.enabled:
        try:
            zone = ZoneInfo(schedule.timezone)
            fires = cron.next_fires(schedule, after=now, n=FIRES)
            info["next"] = [t.astimezone(zone).isoformat() for t in fires]
            info["next_utc"] = [t.astimezone(UTC).isoformat() for t in fires]
        except Exception as exc:  # an invalid schedule is validate's business; say so here too
            info["error"] = str(exc)
    return info


def _fire_times(info: Mapping[str, Any]) -> str:
    """``2026-12-08 09:00 Europe/Kyiv (07:00 UTC), …`` (UTC alone for UTC schedules)."""
    zone = info.get("timezone") or "UTC"
    out = []
    for local, utc in zip(info.get("next") or [], info.get("next_utc") or [], strict=False):
        at, at_utc = datetime.fromisoformat(local), datetime.fromisoformat(utc)
        text = f"{at:%Y-%m-%d %H:%M} {zone}"
        if zone != "UTC":
            day = "" if at_utc.date() == at.date() else f"{at_utc:%Y-%m-%d} "
            text += f" ({day}{at_utc:%H:%M} UTC)"
        out.append(text)
    return ", ".join(out) or "never"


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
                    nxt = _fire_times(info)
                    lines.append(f"    {side:6} {info['describe']}: next {nxt}")
        for trigger in plan["triggers"]:
            lines.append(f"  trigger {trigger['type']} {trigger['id']}: {trigger['change']}")
        for policy in plan["policies"]:
            lines.append(
                f"  ~ {policy['path']}: {policy['production']!r} -> {policy['proposed']!r}"
            )
        lines.append(f"  in flight: {plan['in_flight']['note']}")
    return lines
