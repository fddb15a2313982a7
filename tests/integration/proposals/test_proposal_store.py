"""``SqlProposalStore`` on SQLite and PostgreSQL: round trips of every record it keeps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from linkloom.proposals.models import (
    Check,
    CheckName,
    CheckStatus,
    Comment,
    Proposal,
    ProposalStatus,
    Review,
    ReviewDecision,
)
from linkloom.store import session
from linkloom.store.proposals import SqlProposalStore
from tests.support import databases

T = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlProposalStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"
        await session.upgrade(url)
        db = session.Database(url)
        yield SqlProposalStore(db)
        await db.dispose()
        return
    with databases.fresh_database("prop") as url:
        await session.upgrade(url)
        db = session.Database(url)
        yield SqlProposalStore(db)
        await db.dispose()


def proposal(pid: str, **changes: object) -> Proposal:
    data: dict[str, object] = {
        "id": pid,
        "title": "Friendlier title",
        "author": "ann",
        "status": ProposalStatus.OPEN,
        "branch": f"proposals/{pid}",
        "base_commit": "a" * 40,
        "head_commit": "b" * 40,
        "revision": 2,
        "description": "why",
        "flows": ("daily-report", "other"),
        "base_versions": {"daily-report": 3},
        "conflicts": ("flows/daily-report/flow.yaml",),
        "created_at": T,
        "updated_at": T,
    }
    data.update(changes)
    return Proposal(**data)  # type: ignore[arg-type]


async def test_proposal_store_round_trips_everything(store: SqlProposalStore) -> None:
    p = proposal("p1")
    await store.create(p)
    assert await store.get("p1") == p
    promoted = proposal(
        "p1", status=ProposalStatus.PROMOTED, promoted_commit="c" * 40,
        promoted_versions={"daily-report": 4},
    )  # fmt: skip
    await store.update(promoted)
    assert await store.get("p1") == promoted
    assert await store.get("nope") is None
    await store.create(proposal("p2", flows=("third",), created_at=T.replace(minute=45)))
    assert [x.id for x in await store.list()] == ["p2", "p1"]
    assert [x.id for x in await store.list(flow_id="other")] == ["p1"]
    assert [x.id for x in await store.list(statuses=[ProposalStatus.OPEN])] == ["p2"]

    check = Check(
        id="p1-r2-plan", proposal_id="p1", revision=2, name=CheckName.PLAN,
        status=CheckStatus.RUNNING, started_at=T,
    )  # fmt: skip
    await store.save_check(check)
    done = Check(
        id="p1-r2-plan", proposal_id="p1", revision=2, name=CheckName.PLAN,
        status=CheckStatus.PASSED, summary="ok", details={"flows": [{"a": [1, None]}]},
        started_at=T, finished_at=T,
    )  # fmt: skip
    await store.save_check(done)
    assert await store.list_checks("p1") == [done]
    assert await store.list_checks("p1", revision=1) == []

    review = Review(
        id="r1", proposal_id="p1", reviewer="bob", decision=ReviewDecision.APPROVE,
        revision=2, comment="fine", at=T,
    )  # fmt: skip
    await store.add_review(review)
    assert await store.list_reviews("p1") == [review]
    comment = Comment(id="c1", proposal_id="p1", author="dan", body="hm", at=T)
    await store.add_comment(comment)
    assert await store.list_comments("p1") == [comment]
