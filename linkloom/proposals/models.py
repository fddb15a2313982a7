"""Domain types of proposals: the lifecycle (Proposal, Check, Review, Comment) and the result
diff of a proposal's sandbox run against production.

JSON-serialisable through ``to_dict``/``from_dict``: the API returns ``ProposalDiff.to_dict()``
and the proposal store keeps it as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from linkloom.flows.models import Policy
from linkloom.sandbox.bundle import BundleSettings


class StepChange(StrEnum):
    UNCHANGED = "unchanged"  # same status, output and outputs (after ignore rules)
    CHANGED = "changed"  # same pass/fail, different output, outputs or status
    ADDED = "added"  # the proposed flow ran a step production does not have (and it passed)
    REMOVED = "removed"  # production ran a step the proposed flow does not have
    NEWLY_FAILING = "newly_failing"  # passed (or did not exist) in production, fails proposed
    NEWLY_PASSING = "newly_passing"  # failed in production, passes in the proposal
    NOT_REACHED = "not_reached"  # ran in production; skipped in the proposal (upstream failed)


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
    production_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_id": self.step_id,
            "change": self.change.value,
            "production_status": self.production_status,
            "proposed_status": self.proposed_status,
            "changes": [c.to_dict() for c in self.changes],
            "proposed_error": self.proposed_error,
            "production_error": self.production_error,
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
            production_error=data.get("production_error"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Reproduction:
    """Why a case is not reproducible: replaying the version that recorded it did not give the
    recorded result (fixture drift or non-determinism), at the first differing step and path."""

    reason: str
    step_id: str | None = None
    path: str | None = None
    recorded: Any = None
    replayed: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "step_id": self.step_id,
            "path": self.path,
            "recorded": self.recorded,
            "replayed": self.replayed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reproduction:
        return cls(
            reason=str(data.get("reason") or ""),
            step_id=data.get("step_id"),
            path=data.get("path"),
            recorded=data.get("recorded"),
            replayed=data.get("replayed"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseDiff:
    """One fixture case: the current production version and the proposal, both replayed on it."""

    case: str
    production_status: str | None
    proposed_status: str
    steps: tuple[StepDiff, ...] = ()
    run_output_changes: tuple[FieldChange, ...] = ()
    unrecorded: tuple[dict[str, Any], ...] = ()  # "would have called": {method, url, body, step_id}
    # Requests the proposal sent otherwise than production: {method, url, step_id, changes: [...]}
    changed_requests: tuple[dict[str, Any], ...] = ()
    stubbed: tuple[dict[str, Any], ...] = ()  # answered by a stub: {method, url, step_id, stub}
    sandbox_error: str | None = None
    # Where the case comes from: the recorded run and version (none for a hand-written case).
    inputs: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)  # {run_id, flow_version}
    recorded_at: str | None = None
    recorded_status: str | None = None  # the run's status when it was recorded
    not_reproducible: Reproduction | None = None  # set: shown apart, never counted as a change

    @property
    def reproducible(self) -> bool:
        return self.not_reproducible is None

    @property
    def newly_failing(self) -> bool:
        """The proposal fails where production passes (a step, the run, or a new call)."""
        return bool(
            self.unrecorded
            or any(s.change is StepChange.NEWLY_FAILING for s in self.steps)
            or (self.production_status == "SUCCEEDED" and self.proposed_status != "SUCCEEDED")
        )

    @property
    def changed(self) -> bool:
        return bool(
            self.sandbox_error
            or self.unrecorded
            or self.changed_requests
            or self.stubbed
            or self.run_output_changes
            or self.production_status != self.proposed_status
            or any(s.change is not StepChange.UNCHANGED for s in self.steps)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "changed": self.changed,
            "reproducible": self.reproducible,
            "production_status": self.production_status,
            "proposed_status": self.proposed_status,
            "steps": [s.to_dict() for s in self.steps],
            "run_output_changes": [c.to_dict() for c in self.run_output_changes],
            "unrecorded": [dict(u) for u in self.unrecorded],
            "changed_requests": [dict(c) for c in self.changed_requests],
            "stubbed": [dict(c) for c in self.stubbed],
            "sandbox_error": self.sandbox_error,
            "inputs": self.inputs,
            "source": dict(self.source),
            "recorded_at": self.recorded_at,
            "recorded_status": self.recorded_status,
            "not_reproducible": self.not_reproducible.to_dict() if self.not_reproducible else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseDiff:
        reproduction = data.get("not_reproducible")
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
            stubbed=tuple(dict(c) for c in data.get("stubbed") or ()),
            sandbox_error=data.get("sandbox_error"),
            inputs=dict(data.get("inputs") or {}),
            source=dict(data.get("source") or {}),
            recorded_at=data.get("recorded_at"),
            recorded_status=data.get("recorded_status"),
            not_reproducible=Reproduction.from_dict(reproduction)
            if isinstance(reproduction, Mapping)
            else None,
        )


class Severity(StrEnum):
    FAILED = "failed"  # the proposal breaks something: a case newly fails, a call has no answer
    ATTENTION = "attention"  # results differ: a reviewer must look
    INFO = "info"  # worth knowing, not a change of the proposal (e.g. not reproducible cases)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One kind of difference, grouped over the cases that show it ("total: output.gross
    doubled in 4 of 4 cases"); ``cases`` name them, for the per-case tables."""

    severity: Severity
    kind: str  # a StepChange value, unrecorded, sent_differently, stubbed, run_outputs, …
    text: str
    step_id: str | None = None
    cases: tuple[str, ...] = ()
    of: int = 0  # out of how many (reproducible) cases

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity.value,
            "kind": self.kind,
            "text": self.text,
            "step_id": self.step_id,
            "cases": list(self.cases),
            "of": self.of,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        return cls(
            severity=Severity(data.get("severity") or "attention"),
            kind=str(data.get("kind") or ""),
            text=str(data.get("text") or ""),
            step_id=data.get("step_id"),
            cases=tuple(data.get("cases") or ()),
            of=int(data.get("of") or 0),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DiffSummary:
    """Counts over the reproducible cases of a proposal (not reproducible ones apart)."""

    cases: int = 0
    cases_changed: int = 0
    cases_failing: int = 0  # cases where the proposal newly fails
    unchanged: int = 0
    changed: int = 0
    added: int = 0
    removed: int = 0
    newly_failing: int = 0
    newly_passing: int = 0
    not_reached: int = 0
    unrecorded: int = 0
    changed_requests: int = 0
    stubbed: int = 0
    sandbox_errors: int = 0
    not_reproducible: int = 0

    @property
    def clean(self) -> bool:
        """Nothing differs from production at all."""
        return self.cases_changed == 0 and self.sandbox_errors == 0

    @property
    def severity(self) -> Severity | None:
        """``failed``, ``attention`` or None (nothing changes): what the diff check reports."""
        if self.cases_failing or self.newly_failing or self.unrecorded or self.sandbox_errors:
            return Severity.FAILED
        if self.cases_changed or (self.not_reproducible and not self.cases):
            return Severity.ATTENTION
        return None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["clean"] = self.clean
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DiffSummary:
        names = cls.__dataclass_fields__
        return cls(**{k: int(v) for k, v in data.items() if k in names})


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposalDiff:
    """The diff check of one flow: findings, per case and step, and a summary."""

    cases: tuple[CaseDiff, ...] = ()
    summary: DiffSummary = field(default_factory=DiffSummary)
    findings: tuple[Finding, ...] = ()
    backend: str = ""  # the sandbox backend that produced the results
    ignore: tuple[str, ...] = ()
    production_version: int | None = None  # the version replayed as production (None: new flow)

    def case(self, name: str) -> CaseDiff:
        for case in self.cases:
            if case.case == name:
                return case
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
            "backend": self.backend,
            "ignore": list(self.ignore),
            "production_version": self.production_version,
            "cases": [c.to_dict() for c in self.cases],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProposalDiff:
        version = data.get("production_version")
        return cls(
            cases=tuple(CaseDiff.from_dict(c) for c in data.get("cases") or ()),
            summary=DiffSummary.from_dict(data.get("summary") or {}),
            findings=tuple(Finding.from_dict(f) for f in data.get("findings") or ()),
            backend=str(data.get("backend") or ""),
            ignore=tuple(data.get("ignore") or ()),
            production_version=version if isinstance(version, int) else None,
        )


# ------------------------------------------------------------------------ the proposal lifecycle


class ProposalStatus(StrEnum):
    OPEN = "open"  # opened or revised; checks not started yet, or a check failed (needs a revision)
    VALIDATING = "validating"  # the validate and plan checks are running
    SANDBOXING = "sandboxing"  # the sandbox and diff checks are running
    READY = "ready-for-review"  # every check passed; reviewers can decide
    CHANGES_REQUESTED = "changes-requested"  # a reviewer asked for a new revision
    APPROVED = "approved"  # enough approvals on the current revision; can be promoted
    PROMOTED = "promoted"  # merged into main; its flow versions are production
    CLOSED = "closed"  # abandoned without promotion
    STALE = "stale"  # production moved past the proposal's base; rebase before promoting

    @property
    def finished(self) -> bool:
        return self in (ProposalStatus.PROMOTED, ProposalStatus.CLOSED)


class CheckName(StrEnum):
    VALIDATE = "validate"  # schema, DAG, references, cron, operator policy
    PLAN = "plan"  # spec diff, schedule/trigger/retry/timeout changes, in-flight runs
    SANDBOX = "sandbox"  # the proposed flows replayed on fixture cases, isolated
    DIFF = "diff"  # the sandbox's results against production's


CHECK_ORDER = (CheckName.VALIDATE, CheckName.PLAN, CheckName.SANDBOX, CheckName.DIFF)


class CheckStatus(StrEnum):
    PENDING = "pending"  # not started yet
    RUNNING = "running"  # started, not finished
    PASSED = "passed"  # finished green: nothing to look at
    ATTENTION = "attention"  # finished; results differ from production: a reviewer must look
    FAILED = "failed"  # finished red: the proposal needs a new revision
    SKIPPED = "skipped"  # not run because an earlier check failed
    ERROR = "error"  # the check itself could not run (sandbox backend down); retry later


class ReviewDecision(StrEnum):
    APPROVE = "approve"  # counts toward ``security.required_approvals`` for its revision
    REQUEST_CHANGES = "request_changes"  # blocks promotion until a new revision


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """A change to one or more flows, living on branch ``proposals/<id>`` of the flows repo."""

    id: str
    title: str
    author: str
    status: ProposalStatus
    branch: str
    base_commit: str  # main's head when the proposal was opened (or last rebased)
    head_commit: str  # the branch's head: the current revision
    revision: int = 1
    description: str = ""
    flows: tuple[str, ...] = ()  # ids of the flows the proposal changes
    base_versions: dict[str, int] = field(default_factory=dict)  # production versions at base
    promoted_commit: str | None = None
    promoted_versions: dict[str, int] = field(default_factory=dict)
    conflicts: tuple[str, ...] = ()  # files that conflict with main (set when stale)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    branch_pruned_at: datetime | None = None  # when the closed proposal's branch was deleted

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "author": self.author,
            "status": self.status.value,
            "branch": self.branch,
            "base_commit": self.base_commit,
            "head_commit": self.head_commit,
            "revision": self.revision,
            "description": self.description,
            "flows": list(self.flows),
            "base_versions": dict(self.base_versions),
            "promoted_commit": self.promoted_commit,
            "promoted_versions": dict(self.promoted_versions),
            "conflicts": list(self.conflicts),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "branch_pruned_at": (
                self.branch_pruned_at.isoformat() if self.branch_pruned_at else None
            ),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One check of one revision, with a one-line summary and JSON details."""

    id: str
    proposal_id: str
    revision: int
    name: CheckName
    status: CheckStatus
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def green(self) -> bool:
        return self.status is CheckStatus.PASSED

    @property
    def finished(self) -> bool:
        return self.status not in (CheckStatus.PENDING, CheckStatus.RUNNING)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "proposal_id": self.proposal_id,
            "revision": self.revision,
            "name": self.name.value,
            "status": self.status.value,
            "summary": self.summary,
            "details": self.details,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Review:
    id: str
    proposal_id: str
    reviewer: str
    decision: ReviewDecision
    revision: int
    comment: str = ""
    at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "proposal_id": self.proposal_id,
            "reviewer": self.reviewer,
            "decision": self.decision.value,
            "revision": self.revision,
            "comment": self.comment,
            "at": self.at.isoformat() if self.at else None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Comment:
    id: str
    proposal_id: str
    author: str
    body: str
    at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "proposal_id": self.proposal_id,
            "author": self.author,
            "body": self.body,
            "at": self.at.isoformat() if self.at else None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PromotionResult:
    """What a promotion (or rollback) did: the commit on main and the new flow versions."""

    commit: str
    versions: dict[str, int]
    approvers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "versions": dict(self.versions),
            "approvers": list(self.approvers),
        }


def _replay_bundle() -> BundleSettings:
    # A changed output changes every downstream request body (the task envelope carries upstream
    # outputs): answer those from production's recording of the same endpoint and report them as
    # "sent differently"; a call to an endpoint production never called stays unrecorded.
    return BundleSettings(on_body_mismatch="replay")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposalLimits:
    """Operator limits (``proposals.*`` settings); None switches a limit off."""

    max_file_bytes: int | None = 2 * 1024 * 1024  # one file's new content
    max_bytes: int | None = 8 * 1024 * 1024  # all new file contents of one open or revision
    max_files: int | None = 200  # files one request adds, changes or deletes
    author_bytes_per_hour: int | None = 32 * 1024 * 1024  # what one author commits within an hour
    author_revisions_per_hour: int | None = 120  # opens and revisions of one author in an hour
    branch_retention_days: float | None = 30.0  # closed proposals' branches are deleted after


@dataclass(frozen=True, slots=True, kw_only=True)
class Spending:
    """What one author committed through proposals within the hour before a request, as the
    proposal store recorded it (every server process sees the same)."""

    revisions: int = 0  # opens and revisions admitted
    bytes: int = 0  # the bytes their files added
    oldest: datetime | None = None  # the earliest of them: an hour later it no longer counts


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposalSettings:
    """Operator settings of the change flow (``security.*``, ``engine.recent_*fixture_runs``)."""

    required_approvals: int = 1
    fixture_runs: int = 10  # recent successful production runs replayed per flow
    failed_fixture_runs: int = 5  # recent failed production runs replayed per flow
    # Check statuses that block promotion outright (``attention`` needs a fresh approval).
    block_on: tuple[str, ...] = ("failed", "error")
    policy: Policy = field(default_factory=Policy)
    secrets: tuple[str, ...] = ()  # values scrubbed from fixture cases
    bundle: BundleSettings = field(default_factory=_replay_bundle)
    ignore: tuple[str, ...] = ()  # diff ignore rules (globs on result paths)
    limits: ProposalLimits = field(default_factory=ProposalLimits)  # sizes, rates, retention
