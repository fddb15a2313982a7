"""Findings: a proposal's diff read at a glance, one line per kind of difference.

Ten cases with the same change read as one finding, not ten tables: ``group(cases)`` gathers the
reproducible cases' differences by step and change ("total: output.gross doubled in 4 of 4
cases", "notify: newly failing in 3 of 10 cases — would have called POST …/notify") and names the
cases behind each, so the per-case tables stay one click away. Failures come first, then changes;
cases that are not reproducible get a finding of their own and count nowhere else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from linkloom.proposals.models import (
    CaseDiff,
    FieldChange,
    Finding,
    Severity,
    StepChange,
    StepDiff,
)

_ORDER = {Severity.FAILED: 0, Severity.ATTENTION: 1, Severity.INFO: 2}


@dataclass(slots=True)
class _Group:
    severity: Severity
    kind: str
    step_id: str | None
    label: str  # what happened, without the case count
    cases: list[str] = field(default_factory=list)
    pairs: list[tuple[Any, Any]] = field(default_factory=list)  # (production, proposed) per case
    path: str | None = None


_Adder = Callable[..., None]


class _Groups(dict[tuple[Any, ...], _Group]):
    def add(
        self, key: tuple[Any, ...], case: str, make: _Group, pair: tuple[Any, Any] | None = None
    ) -> None:
        found = self.setdefault(key, make)
        if case not in found.cases:
            found.cases.append(case)
            if pair is not None:
                found.pairs.append(pair)


def group(cases: Sequence[CaseDiff]) -> tuple[Finding, ...]:
    """The findings of a flow's case diffs, most severe first, then in step order."""
    groups = _Groups()
    add = groups.add
    reproducible = [c for c in cases if c.reproducible or c.sandbox_error]
    total = len(reproducible)
    for case in reproducible:
        if case.sandbox_error:
            add(("error", case.sandbox_error), case.case,
                _Group(Severity.FAILED, "sandbox_error", None,
                       f"the sandbox could not finish: {case.sandbox_error}"))  # fmt: skip
            continue
        failing = {s.step_id for s in case.steps if s.change is StepChange.NEWLY_FAILING}
        calls = {str(u.get("step_id")): u for u in case.unrecorded}
        for step in case.steps:
            _step_findings(step, case.case, calls, add)
        for step_id, call in calls.items():
            if step_id in failing:
                continue  # told with the step's failure
            label = f"would have called {call.get('method')} {call.get('url')} (no recording)"
            add(("unrecorded", step_id, call.get("method"), call.get("url")), case.case,
                _Group(Severity.FAILED, "unrecorded", step_id, label))  # fmt: skip
        if not case.steps and case.production_status != case.proposed_status:
            label = f"the run ends {case.proposed_status} instead of {case.production_status}"
            add(("run", label), case.case, _Group(Severity.FAILED, "run_status", None, label))
        for change in case.run_output_changes:
            add(("outputs", change.path, change.kind), case.case,
                _Group(Severity.ATTENTION, "run_outputs", None, "", path=change.path),
                (change.production, change.proposed))  # fmt: skip
        for request in case.changed_requests:
            paths = ", ".join(c.get("path", "") for c in request.get("changes") or [])
            sender: str | None = request.get("step_id")
            label = f"sent differently ({paths}): {request.get('method')} {request.get('url')}"
            add(("sent", sender, paths), case.case,
                _Group(Severity.ATTENTION, "sent_differently", sender, label))  # fmt: skip
        for request in case.stubbed:
            sender = request.get("step_id")
            label = (
                f"answered by stub {request.get('stub')!r}: "
                f"{request.get('method')} {request.get('url')}"
            )
            add(("stub", sender, request.get("stub")), case.case,
                _Group(Severity.ATTENTION, "stubbed", sender, label))  # fmt: skip

    out = [_finding(g, total) for g in groups.values()]
    apart = [c for c in cases if not c.reproducible and not c.sandbox_error]
    if apart:
        reasons = sorted({_reproduction_text(c) for c in apart})
        out.append(
            Finding(
                severity=Severity.INFO,
                kind="not_reproducible",
                text=f"{len(apart)} case(s) not reproducible, shown apart and not counted: "
                + "; ".join(reasons[:3])
                + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else ""),
                cases=tuple(c.case for c in apart),
                of=len(cases),
            )
        )
    order = {c.step_id: n for case in cases for n, c in enumerate(case.steps)}
    out.sort(key=lambda f: (_ORDER[f.severity], order.get(f.step_id or "", 1_000_000), f.text))
    return tuple(out)


def _step_findings(step: StepDiff, case: str, calls: dict[str, Any], add: _Adder) -> None:
    sid = step.step_id
    if step.change is StepChange.NEWLY_FAILING:
        call = calls.get(sid)
        if call is not None:
            why = f"would have called {call.get('method')} {call.get('url')} (no recording)"
        else:
            why = _clip(step.proposed_error or step.proposed_status or "failed", 160)
        what = "added and failing" if step.production_status is None else "newly failing"
        add(("failing", sid, why), case, _Group(Severity.FAILED, "newly_failing", sid,
                                                f"{what} — {why}"))  # fmt: skip
    elif step.change is StepChange.NOT_REACHED:
        add(("not_reached", sid), case, _Group(Severity.ATTENTION, "not_reached", sid,
                                               "not run: an upstream step now fails"))  # fmt: skip
    elif step.change is StepChange.NEWLY_PASSING:
        add(("passing", sid), case, _Group(Severity.ATTENTION, "newly_passing", sid,
                                           "newly passing (failed in production)"))  # fmt: skip
    elif step.change is StepChange.ADDED:
        state = "added" if step.proposed_status == "SUCCEEDED" else "added, skipped"
        add(("added", sid, state), case, _Group(Severity.ATTENTION, "added", sid, state))
    elif step.change is StepChange.REMOVED:
        add(("removed", sid), case, _Group(Severity.ATTENTION, "removed", sid, "removed"))
    elif step.change is StepChange.CHANGED:
        for change in step.changes or (_status_change(step),):
            add(("changed", sid, change.path, change.kind), case,
                _Group(Severity.ATTENTION, "changed", sid, "", path=change.path),
                (change.production, change.proposed))  # fmt: skip


def _status_change(step: StepDiff) -> FieldChange:
    return FieldChange(
        path="status", kind="changed", production=step.production_status,
        proposed=step.proposed_status,
    )  # fmt: skip


def _finding(g: _Group, total: int) -> Finding:
    label = g.label or f"{g.path} {describe(g.pairs)}"
    subject = g.step_id or "(run)"
    return Finding(
        severity=g.severity,
        kind=g.kind,
        text=f"{subject}: {label} in {len(g.cases)} of {total} case(s)",
        step_id=g.step_id,
        cases=tuple(g.cases),
        of=total,
    )


def describe(pairs: Iterable[tuple[Any, Any]]) -> str:
    """How a value changed across cases: the same ``a → b``, a constant factor ("doubled",
    "×1.2"), a constant shift ("+5"), added/removed, or just "changed"."""
    pairs = list(pairs)
    if not pairs:
        return "changed"
    if all(p is None for p, _ in pairs):
        return "added" if len({_key(q) for _, q in pairs}) > 1 else f"added: {_short(pairs[0][1])}"
    if all(q is None for _, q in pairs):
        return "removed"
    if len({(_key(p), _key(q)) for p, q in pairs}) == 1:
        return f"{_short(pairs[0][0])} → {_short(pairs[0][1])}"
    if all(_number(p) and _number(q) for p, q in pairs):
        ratios = {round(q / p, 6) for p, q in pairs if p} if all(p for p, _ in pairs) else set()
        if len(ratios) == 1:
            ratio = next(iter(ratios))
            return {2.0: "doubled", 0.5: "halved", 3.0: "tripled"}.get(ratio, f"×{ratio:g}")
        shifts = {round(q - p, 6) for p, q in pairs}
        if len(shifts) == 1:
            shift = next(iter(shifts))
            return f"{'+' if shift > 0 else '−'}{abs(shift):g}"
    return "changed"


def _number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value: Any, limit: int = 60) -> str:
    """A value as JSON (strings quoted), clipped."""
    return _clip(json.dumps(value, ensure_ascii=False, default=str), limit)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reproduction_text(case: CaseDiff) -> str:
    r = case.not_reproducible
    if r is None:
        return ""
    where = f" at {r.step_id}" + (f" {r.path}" if r.path else "") if r.step_id else ""
    return f"{r.reason}{where}"
