"""What the proposal service needs from the outside, as narrow protocols.

``ProposalStore`` persists proposals, checks, reviews and comments, and what each author
committed in the last hour (``store/proposals.py`` on SQL, ``proposals/memory.py`` in memory).
``AuditLog`` appends audit entries (``store/audit.py``). ``Publisher`` pushes promotions to
the team's git remote (``proposals/mirroring.py``). The service reads runs and stores flow
versions through the engine's ``RunService`` itself.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from linkloom.access import AuditEntry
from linkloom.proposals.models import (
    Check,
    Comment,
    Proposal,
    ProposalStatus,
    Review,
    Spending,
)


class ProposalStore(Protocol):
    async def create(self, proposal: Proposal) -> None: ...

    async def update(self, proposal: Proposal) -> None: ...

    async def get(self, proposal_id: str) -> Proposal | None: ...

    async def list(
        self,
        *,
        statuses: Sequence[ProposalStatus] = (),
        flow_id: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Proposal]: ...

    async def save_check(self, check: Check) -> None: ...

    async def list_checks(
        self, proposal_id: str, *, revision: int | None = None
    ) -> builtins.list[Check]: ...

    async def add_review(self, review: Review) -> None: ...

    async def list_reviews(self, proposal_id: str) -> builtins.list[Review]: ...

    async def add_comment(self, comment: Comment) -> None: ...

    async def list_comments(self, proposal_id: str) -> builtins.list[Comment]: ...

    async def charge(
        self,
        author: str,
        n_bytes: int,
        *,
        at: datetime,
        since: datetime,
        admit: Callable[[Spending], None],
    ) -> None:
        """Record that ``author`` committed ``n_bytes`` at ``at``, unless ``admit`` raises on
        what they committed after ``since``. Atomic per author, across every process sharing
        the store: two charges of one author never both see the spending before the other."""
        ...


class AuditLog(Protocol):
    async def record(self, entry: AuditEntry) -> int:
        """Append ``entry``; returns its id."""
        ...


T = TypeVar("T")


class Publisher(Protocol):
    async def publish(self, *, old: str, new: str) -> None:
        """Push main's new head ``new`` (a child of ``old``) to the remote, never forced."""
        ...

    async def guard(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run a promotion or rollback; when the remote moved, fetch it and try again."""
        ...
