"""``SqlProposalStore``: proposals, their checks, reviews and comments, and the authors' hourly
budget (``ProposalStore``).

The ``proposals.flows`` JSON column holds the flow ids and the lifecycle fields that have no
column of their own (revision, description, base versions, promotion, conflicts).

``charge`` reads an author's last hour from ``proposal_charges`` and adds the new row in one
write transaction that no other charge of the same author interleaves with, in any process: on
PostgreSQL it first takes a transaction advisory lock keyed by the author, on SQLite the
writer's ``BEGIN IMMEDIATE`` already serialises every write.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from linkloom.proposals.models import (
    Check,
    CheckName,
    CheckStatus,
    Comment,
    Proposal,
    ProposalStatus,
    Review,
    ReviewDecision,
    Spending,
)
from linkloom.store import rows
from linkloom.store.session import Database
from linkloom.store.tables import (
    proposal_charges,
    proposal_checks,
    proposal_comments,
    proposal_reviews,
    proposals,
)


def _values(p: Proposal) -> dict[str, Any]:
    return {
        "id": p.id,
        "title": p.title[:300],
        "author": p.author,
        "status": p.status.value,
        "base_commit": p.base_commit,
        "head_commit": p.head_commit,
        "branch": p.branch,
        "flows": {
            "ids": list(p.flows),
            "revision": p.revision,
            "description": p.description,
            "base_versions": dict(p.base_versions),
            "promoted_commit": p.promoted_commit,
            "promoted_versions": dict(p.promoted_versions),
            "conflicts": list(p.conflicts),
            "branch_pruned_at": p.branch_pruned_at.isoformat() if p.branch_pruned_at else None,
        },
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def _proposal(row: Any) -> Proposal:
    # The JSON column: the lifecycle fields (older rows hold only the list of flow ids).
    extra: dict[str, Any] = (
        row.flows if isinstance(row.flows, dict) else {"ids": list(row.flows or [])}
    )
    return Proposal(
        id=row.id,
        title=row.title,
        author=row.author,
        status=ProposalStatus(row.status),
        branch=row.branch or "",
        base_commit=row.base_commit or "",
        head_commit=row.head_commit or "",
        revision=int(extra.get("revision") or 1),
        description=extra.get("description") or "",
        flows=tuple(extra.get("ids") or ()),
        base_versions={k: int(v) for k, v in (extra.get("base_versions") or {}).items()},
        promoted_commit=extra.get("promoted_commit"),
        promoted_versions={k: int(v) for k, v in (extra.get("promoted_versions") or {}).items()},
        conflicts=tuple(extra.get("conflicts") or ()),
        branch_pruned_at=_when(extra.get("branch_pruned_at")),
        created_at=rows.utc(row.created_at),
        updated_at=rows.utc(row.updated_at),
    )


def _when(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None


def _budget_lock_key(author: str) -> int:
    """The advisory lock of ``author``'s budget: a signed 64-bit key (two authors sharing one
    only wait for each other)."""
    digest = hashlib.blake2b(b"loom-author-budget\0" + author.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _check(row: Any) -> Check:
    return Check(
        id=row.id,
        proposal_id=row.proposal_id,
        revision=row.revision,
        name=CheckName(row.name),
        status=CheckStatus(row.status),
        summary=row.summary or "",
        details=dict(row.details or {}),
        started_at=rows.utc(row.started_at),
        finished_at=rows.utc(row.finished_at),
    )


class SqlProposalStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, proposal: Proposal) -> None:
        async with self.db.begin() as conn:
            await conn.execute(proposals.insert().values(**_values(proposal)))

    async def update(self, proposal: Proposal) -> None:
        values = _values(proposal)
        values.pop("id")
        async with self.db.begin() as conn:
            await conn.execute(
                proposals.update().where(proposals.c.id == proposal.id).values(**values)
            )

    async def get(self, proposal_id: str) -> Proposal | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(proposals.select().where(proposals.c.id == proposal_id))
            ).first()
        return _proposal(row) if row else None

    async def list(
        self,
        *,
        statuses: Sequence[ProposalStatus] = (),
        flow_id: str | None = None,
        limit: int = 100,
    ) -> list[Proposal]:
        query = proposals.select().order_by(proposals.c.created_at.desc(), proposals.c.id)
        if statuses:
            query = query.where(proposals.c.status.in_([s.value for s in statuses]))
        if flow_id is None:
            query = query.limit(limit)
        async with self.db.read() as conn:
            found = [_proposal(r) for r in (await conn.execute(query)).all()]
        if flow_id is not None:  # flow ids sit in JSON: filter here, portable on both dialects
            found = [p for p in found if flow_id in p.flows][:limit]
        return found

    async def save_check(self, check: Check) -> None:
        values = {
            "proposal_id": check.proposal_id,
            "revision": check.revision,
            "name": check.name.value,
            "status": check.status.value,
            "summary": check.summary,
            "details": check.details,
            "started_at": check.started_at,
            "finished_at": check.finished_at,
        }
        async with self.db.begin() as conn:
            result = await conn.execute(
                proposal_checks.update().where(proposal_checks.c.id == check.id).values(**values)
            )
            if result.rowcount == 0:
                await conn.execute(proposal_checks.insert().values(id=check.id, **values))

    async def list_checks(
        self, proposal_id: str, *, revision: int | None = None
    ) -> builtins.list[Check]:
        query = proposal_checks.select().where(proposal_checks.c.proposal_id == proposal_id)
        if revision is not None:
            query = query.where(proposal_checks.c.revision == revision)
        async with self.db.read() as conn:
            return [_check(r) for r in (await conn.execute(query)).all()]

    async def add_review(self, review: Review) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                proposal_reviews.insert().values(
                    id=review.id,
                    proposal_id=review.proposal_id,
                    reviewer=review.reviewer,
                    decision=review.decision.value,
                    comment=review.comment,
                    revision=review.revision,
                    at=review.at,
                )
            )

    async def list_reviews(self, proposal_id: str) -> builtins.list[Review]:
        query = (
            proposal_reviews.select()
            .where(proposal_reviews.c.proposal_id == proposal_id)
            .order_by(proposal_reviews.c.at, proposal_reviews.c.id)
        )
        async with self.db.read() as conn:
            found = (await conn.execute(query)).all()
        return [
            Review(
                id=r.id,
                proposal_id=r.proposal_id,
                reviewer=r.reviewer,
                decision=ReviewDecision(r.decision),
                revision=r.revision,
                comment=r.comment or "",
                at=rows.utc(r.at),
            )
            for r in found
        ]

    async def add_comment(self, comment: Comment) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                proposal_comments.insert().values(
                    id=comment.id,
                    proposal_id=comment.proposal_id,
                    author=comment.author,
                    body=comment.body,
                    at=comment.at,
                )
            )

    async def list_comments(self, proposal_id: str) -> builtins.list[Comment]:
        query = (
            proposal_comments.select()
            .where(proposal_comments.c.proposal_id == proposal_id)
            .order_by(proposal_comments.c.at, proposal_comments.c.id)
        )
        async with self.db.read() as conn:
            found = (await conn.execute(query)).all()
        return [
            Comment(
                id=r.id,
                proposal_id=r.proposal_id,
                author=r.author,
                body=r.body,
                at=rows.utc(r.at),
            )
            for r in found
        ]

    async def charge(
        self,
        author: str,
        n_bytes: int,
        *,
        at: datetime,
        since: datetime,
        admit: Callable[[Spending], None],
    ) -> None:
        c = proposal_charges.c
        async with self.db.begin() as conn:
            if self.db.dialect == "postgresql":
                await conn.execute(
                    sa.select(sa.func.pg_advisory_xact_lock(_budget_lock_key(author)))
                )
            await conn.execute(proposal_charges.delete().where(c.author == author, c.at <= since))
            count, total, oldest = (
                await conn.execute(
                    sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(c.bytes), 0),
                              sa.func.min(c.at)).where(c.author == author, c.at > since)
                )
            ).one()  # fmt: skip
            # Raises to refuse: the transaction rolls back and nothing is charged.
            admit(Spending(revisions=int(count), bytes=int(total), oldest=rows.utc(oldest)))
            await conn.execute(
                proposal_charges.insert().values(author=author, at=at, bytes=n_bytes)
            )
