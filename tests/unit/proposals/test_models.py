"""Proposal lifecycle types and the in-memory store the service is tested with."""

from __future__ import annotations

from datetime import UTC, datetime

from linkloom.proposals import errors
from linkloom.proposals.memory import InMemoryProposalStore
from linkloom.proposals.models import (
    Check,
    CheckName,
    CheckStatus,
    Proposal,
    ProposalSettings,
    ProposalStatus,
)

T = datetime(2026, 11, 22, tzinfo=UTC)


def proposal(pid: str = "p1", **changes: object) -> Proposal:
    data: dict[str, object] = {
        "id": pid,
        "title": "t",
        "author": "ann",
        "status": ProposalStatus.OPEN,
        "branch": f"proposals/{pid}",
        "base_commit": "a" * 40,
        "head_commit": "b" * 40,
        "flows": ("report",),
        "created_at": T,
    }
    data.update(changes)
    return Proposal(**data)  # type: ignore[arg-type]


def test_proposal_statuses_finished_only_promoted_and_closed() -> None:
    finished = {s for s in ProposalStatus if s.finished}
    assert finished == {ProposalStatus.PROMOTED, ProposalStatus.CLOSED}
    assert ProposalStatus.READY.value == "ready-for-review"


def test_proposal_settings_replay_changed_bodies_by_default() -> None:
    assert ProposalSettings().bundle.on_body_mismatch == "replay"


def test_proposal_to_dict_is_json_data() -> None:
    data = proposal().to_dict()
    assert data["status"] == "open"
    assert data["created_at"] == "2026-11-22T00:00:00+00:00"
    assert data["flows"] == ["report"]


async def test_memory_store_filters_by_status_and_flow() -> None:
    store = InMemoryProposalStore()
    await store.create(proposal("p1"))
    await store.create(proposal("p2", status=ProposalStatus.CLOSED, flows=("other",)))
    assert [p.id for p in await store.list(statuses=[ProposalStatus.OPEN])] == ["p1"]
    assert [p.id for p in await store.list(flow_id="other")] == ["p2"]
    check = Check(
        id="c", proposal_id="p1", revision=1, name=CheckName.PLAN, status=CheckStatus.PASSED
    )
    await store.save_check(check)
    assert [c.green for c in await store.list_checks("p1", revision=1)] == [True]
    assert await store.list_checks("p1", revision=2) == []


def test_errors_say_what_to_do() -> None:
    assert "loom proposal rebase p1" in errors.ProposalStale(proposal_id="p1").message
    refused = errors.SelfApproval(actor="ann", proposal_id="p1")
    assert refused.exit_code == 5
    assert "ask another reviewer" in refused.message
