"""Proposal, check, review, comment and fixture shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from linkloom.proposals.models import Check, Comment, Proposal, Review


class ProposalIn(BaseModel):
    """Open a proposal from spec contents, repo files, or a git ref of the flows repo."""

    title: str = Field(min_length=1, max_length=300)
    description: str = ""
    specs: list[str | dict[str, Any]] = Field(
        default_factory=list, description="Flow specs (YAML/JSON text or objects), keyed by id."
    )
    files: dict[str, str | None] = Field(
        default_factory=dict,
        description="Repo files to commit, e.g. flows/x/flow.yaml or flows/x/fixtures/c.yaml; "
        "null deletes a file.",
    )
    ref: str | None = Field(default=None, description="A branch, tag or commit of the flows repo.")
    background: bool = Field(
        default=False, description="Answer at once and run the checks after the response."
    )


class RevisionIn(BaseModel):
    message: str = ""
    specs: list[str | dict[str, Any]] = Field(default_factory=list)
    files: dict[str, str | None] = Field(default_factory=dict)
    background: bool = False


class ReviewIn(BaseModel):
    comment: str = ""


class CommentIn(BaseModel):
    body: str = Field(min_length=1)


class CloseIn(BaseModel):
    reason: str = ""


class ChecksIn(BaseModel):
    background: bool = False


class ProposalOut(BaseModel):
    id: str
    title: str
    author: str
    status: str
    branch: str
    base_commit: str
    head_commit: str
    revision: int
    description: str = ""
    flows: list[str]
    base_versions: dict[str, int] = Field(default_factory=dict)
    promoted_commit: str | None = None
    promoted_versions: dict[str, int] = Field(default_factory=dict)
    conflicts: list[str] = Field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    branch_pruned_at: datetime | None = Field(
        default=None,
        description="When the closed proposal's branch was deleted from the flows repo "
        "(`proposals.branch_retention_days`); the record stays.",
    )

    @classmethod
    def from_domain(cls, p: Proposal) -> ProposalOut:
        return cls(
            id=p.id,
            title=p.title,
            author=p.author,
            status=p.status.value,
            branch=p.branch,
            base_commit=p.base_commit,
            head_commit=p.head_commit,
            revision=p.revision,
            description=p.description,
            flows=list(p.flows),
            base_versions=dict(p.base_versions),
            promoted_commit=p.promoted_commit,
            promoted_versions=dict(p.promoted_versions),
            conflicts=list(p.conflicts),
            created_at=p.created_at,
            updated_at=p.updated_at,
            branch_pruned_at=p.branch_pruned_at,
        )


class CheckOut(BaseModel):
    name: str
    status: str
    revision: int
    summary: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def from_domain(cls, c: Check, *, details: bool = True) -> CheckOut:
        return cls(
            name=c.name.value,
            status=c.status.value,
            revision=c.revision,
            summary=c.summary,
            details=c.details if details else {},
            started_at=c.started_at,
            finished_at=c.finished_at,
        )


class ReviewOut(BaseModel):
    reviewer: str
    decision: str
    revision: int
    comment: str = ""
    at: datetime | None = None

    @classmethod
    def from_domain(cls, r: Review) -> ReviewOut:
        return cls(
            reviewer=r.reviewer,
            decision=r.decision.value,
            revision=r.revision,
            comment=r.comment,
            at=r.at,
        )


class CommentOut(BaseModel):
    id: str
    author: str
    body: str
    at: datetime | None = None

    @classmethod
    def from_domain(cls, c: Comment) -> CommentOut:
        return cls(id=c.id, author=c.author, body=c.body, at=c.at)


class PromotionCheckOut(BaseModel):
    allowed: bool = Field(description="Whether the current revision may be promoted now.")
    reasons: list[str] = Field(
        default_factory=list, description="Every reason it may not: approvals, owners, checks."
    )
    required_approvals: int = 1
    owners: dict[str, list[str]] = Field(
        default_factory=dict, description="Per flow: its owners (one must approve)."
    )


class ProposalDetailOut(ProposalOut):
    checks: list[CheckOut] = Field(default_factory=list)
    reviews: list[ReviewOut] = Field(default_factory=list)
    comments: list[CommentOut] = Field(default_factory=list)
    approvers: list[str] = Field(default_factory=list)
    required_approvals: int = 1
    promotion: PromotionCheckOut | None = Field(
        default=None, description="What the promotion policy says now (unfinished proposals)."
    )


class PlanOut(BaseModel):
    status: str
    summary: str
    flows: list[dict[str, Any]] = Field(default_factory=list)
    text: list[str] = Field(default_factory=list, description="The plan as terminal lines.")


class DiffOut(BaseModel):
    status: str = Field(description="passed, attention, failed (or pending, running, skipped).")
    summary: str
    backend: str = ""
    attention: bool = False
    flows: dict[str, Any] = Field(
        default_factory=dict,
        description="Per flow: its ProposalDiff (summary, findings grouped by step and change, "
        "and the per-case diffs).",
    )
    markdown: str = Field(default="", description="The findings as Markdown (pull requests).")


class PromotionOut(BaseModel):
    commit: str
    versions: dict[str, int]
    approvers: list[str] = Field(default_factory=list)


class FixtureOut(BaseModel):
    name: str
    flow_id: str
    path: str = Field(description="Where to commit it in the flows repo.")
    yaml: str


class DriftOut(BaseModel):
    flow_id: str
    ok: bool
    cases: list[dict[str, Any]]
