"""``InMemoryProposalStore``: the ``ProposalStore`` double for tests and embedded use."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import datetime

from linkloom.access import AuditEntry
from linkloom.proposals.models import (
    Check,
    Comment,
    Proposal,
    ProposalStatus,
    Review,
    Spending,
)


class InMemoryProposalStore:
    def __init__(self) -> None:
        self.proposals: dict[str, Proposal] = {}
        self.checks: dict[str, Check] = {}
        self.reviews: list[Review] = []
        self.comments: list[Comment] = []
        self.charges: dict[str, list[tuple[datetime, int]]] = {}  # author: [(at, bytes)]

    async def create(self, proposal: Proposal) -> None:
        self.proposals[proposal.id] = proposal

    async def update(self, proposal: Proposal) -> None:
        self.proposals[proposal.id] = proposal

    async def get(self, proposal_id: str) -> Proposal | None:
        return self.proposals.get(proposal_id)

    async def list(
        self,
        *,
        statuses: Sequence[ProposalStatus] = (),
        flow_id: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Proposal]:
        found = [
            p
            for p in self.proposals.values()
            if (not statuses or p.status in statuses) and (flow_id is None or flow_id in p.flows)
        ]
        found.sort(key=lambda p: (p.created_at is None, p.created_at), reverse=True)
        return found[:limit]

    async def save_check(self, check: Check) -> None:
        self.checks[check.id] = check

    async def list_checks(
        self, proposal_id: str, *, revision: int | None = None
    ) -> builtins.list[Check]:
        return [
            c
            for c in self.checks.values()
            if c.proposal_id == proposal_id and (revision is None or c.revision == revision)
        ]

    async def add_review(self, review: Review) -> None:
        self.reviews.append(review)

    async def list_reviews(self, proposal_id: str) -> builtins.list[Review]:
        return [r for r in self.reviews if r.proposal_id == proposal_id]

    async def add_comment(self, comment: Comment) -> None:
        self.comments.append(comment)

    async def list_comments(self, proposal_id: str) -> builtins.list[Comment]:
        return [c for c in self.comments if c.proposal_id == proposal_id]

    async def charge(
        self,
        author: str,
        n_bytes: int,
        *,
        at: datetime,
        since: datetime,
        admit: Callable[[Spending], None],
    ) -> None:
        # No await between reading and appending: atomic within the one event loop.
        window = [c for c in self.charges.get(author, []) if c[0] > since]
        admit(
            Spending(
                revisions=len(window),
                bytes=sum(n for _, n in window),
                oldest=min((when for when, _ in window), default=None),
            )
        )
        self.charges[author] = [*window, (at, n_bytes)]


class InMemoryAuditLog:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    async def record(self, entry: AuditEntry) -> int:
        self.entries.append(entry)
        return len(self.entries)
