"""Domain types of proposals: the result diff of a proposal's sandbox run against production.

JSON-serialisable through ``to_dict``/``from_dict``: the API returns ``ProposalDiff.to_dict()``
and the proposal store keeps it as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class StepChange(StrEnum):
    UNCHANGED = "unchanged"  # same status, output and outputs (after ignore rules)
    CHANGED = "changed"  # same pass/fail, different output, outputs or status
    ADDED = "added"  # the proposed flow ran a step production does not have
    REMOVED = "removed"  # production ran a step the proposed flow does not have
    NEWLY_FAILING = "newly_failing"  # passed in production, fails in the proposal
    NEWLY_PASSING = "newly_passing"  # failed in production, passes in the proposal


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldChange:
    """One difference inside a step's result: ``path`` like ``output.rows[0].total``."""

    path: str
    kind: str  # changed | added | removed
    production: Any = None
    proposed: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "production": self.production,
            "proposed": self.proposed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldChange:
        return cls(
            path=str(data["path"]),
            kind=str(data.get("kind", "changed")),
            production=data.get("production"),
            proposed=data.get("proposed"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StepDiff:
    step_id: str
    change: StepChange
    production_status: str | None = None
    proposed_status: str | None = None
    changes: tuple[FieldChange, ...] = ()
    proposed_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_id": self.step_id,
            "change": self.change.value,
            "production_status": self.production_status,
            "proposed_status": self.proposed_status,
            "changes": [c.to_dict() for c in self.changes],
            "proposed_error": self.proposed_error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepDiff:
        return cls(
            step_id=str(data["step_id"]),
            change=StepChange(data["change"]),
            production_status=data.get("production_status"),
            proposed_status=data.get("proposed_status"),
            changes=tuple(FieldChange.from_dict(c) for c in data.get("changes") or ()),
            proposed_error=data.get("proposed_error"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseDiff:
    """One fixture case: production's results against the proposal's."""

    case: str
    production_status: str | None
    proposed_status: str
    steps: tuple[StepDiff, ...] = ()
    run_output_changes: tuple[FieldChange, ...] = ()
    unrecorded: tuple[dict[str, Any], ...] = ()  # "would have called": {method, url, body, step_id}
    # Requests sent with another body than production's: {method, url, step_id, changes: [...]}
    changed_requests: tuple[dict[str, Any], ...] = ()
    sandbox_error: str | None = None

    @property
    def changed(self) -> bool:
        return bool(
            self.sandbox_error
            or self.unrecorded
            or self.changed_requests
            or self.run_output_changes
            or self.production_status != self.proposed_status
            or any(s.change is not StepChange.UNCHANGED for s in self.steps)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "changed": self.changed,
            "production_status": self.production_status,
            "proposed_status": self.proposed_status,
            "steps": [s.to_dict() for s in self.steps],
            "run_output_changes": [c.to_dict() for c in self.run_output_changes],
            "unrecorded": [dict(u) for u in self.unrecorded],
            "changed_requests": [dict(c) for c in self.changed_requests],
            "sandbox_error": self.sandbox_error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseDiff:
        return cls(
            case=str(data["case"]),
            production_status=data.get("production_status"),
            proposed_status=str(data.get("proposed_status", "")),
            steps=tuple(StepDiff.from_dict(s) for s in data.get("steps") or ()),
            run_output_changes=tuple(
                FieldChange.from_dict(c) for c in data.get("run_output_changes") or ()
            ),
            unrecorded=tuple(dict(u) for u in data.get("unrecorded") or ()),
            changed_requests=tuple(dict(c) for c in data.get("changed_requests") or ()),
            sandbox_error=data.get("sandbox_error"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DiffSummary:
    """Counts over every case of a proposal."""

    cases: int = 0
    cases_changed: int = 0
    unchanged: int = 0
    changed: int = 0
    added: int = 0
    removed: int = 0
    newly_failing: int = 0
    newly_passing: int = 0
    unrecorded: int = 0
    changed_requests: int = 0
    sandbox_errors: int = 0

    @property
    def clean(self) -> bool:
        """Nothing differs from production at all."""
        return self.cases_changed == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "cases_changed": self.cases_changed,
            "unchanged": self.unchanged,
            "changed": self.changed,
            "added": self.added,
            "removed": self.removed,
            "newly_failing": self.newly_failing,
            "newly_passing": self.newly_passing,
            "unrecorded": self.unrecorded,
            "changed_requests": self.changed_requests,
            "sandbox_errors": self.sandbox_errors,
            "clean": self.clean,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DiffSummary:
        names = cls.__dataclass_fields__
        return cls(**{k: int(v) for k, v in data.items() if k in names})


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposalDiff:
    """The diff check of a proposal: per case, per step, plus a summary."""

    cases: tuple[CaseDiff, ...] = ()
    summary: DiffSummary = field(default_factory=DiffSummary)
    backend: str = ""  # the sandbox backend that produced the proposed results
    ignore: tuple[str, ...] = ()

    def case(self, name: str) -> CaseDiff:
        for case in self.cases:
            if case.case == name:
                return case
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary.to_dict(),
            "backend": self.backend,
            "ignore": list(self.ignore),
            "cases": [c.to_dict() for c in self.cases],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProposalDiff:
        return cls(
            cases=tuple(CaseDiff.from_dict(c) for c in data.get("cases") or ()),
            summary=DiffSummary.from_dict(data.get("summary") or {}),
            backend=str(data.get("backend") or ""),
            ignore=tuple(data.get("ignore") or ()),
        )
