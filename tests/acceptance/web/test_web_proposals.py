"""The proposal pages against a stand-in proposal service (the real one has its own tests and
the browser proof): what each role sees and may do, the diff rendering, refusals inline."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from linkloom.access import Role
from linkloom.errors import NotPermitted
from linkloom.proposals.policy import Decision
from tests.acceptance.api.api_harness import Api
from tests.acceptance.web.web_client import browser, csrf_of

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

DIFF = {
    "summary": {"cases": 1, "cases_changed": 1, "changed": 1, "unrecorded": 1},
    "backend": "docker",
    "cases": [
        {
            "case": "run-1",
            "production_status": "SUCCEEDED",
            "proposed_status": "SUCCEEDED",
            "steps": [
                {
                    "step_id": "process",
                    "change": "changed",
                    "production_status": "SUCCEEDED",
                    "proposed_status": "SUCCEEDED",
                    "changes": [
                        {"path": "output.valid", "kind": "changed", "production": 19, "proposed": 7}
                    ],
                }
            ],
            "unrecorded": [
                {"method": "POST", "url": "http://b.test/api/tasks/audit", "step_id": "audit"}
            ],
        }
    ],
}


class SelfApproval(NotPermitted):
    """{actor!r} opened proposal {proposal_id!r}; authors cannot approve their own proposals."""


@dataclass
class FakeProposals:
    proposal: Any
    reviews_: list[Any] = field(default_factory=list)
    comments_: list[Any] = field(default_factory=list)
    promoted_by: str | None = None
    settings: Any = field(default_factory=lambda: SimpleNamespace(required_approvals=1))

    async def list(self, **_: Any) -> list[Any]:
        return [self.proposal]

    async def get(self, proposal_id: str) -> Any:
        return self.proposal

    async def checks(self, proposal_id: str) -> list[Any]:
        def check(name: str, summary: str, details: dict[str, Any]) -> Any:
            return SimpleNamespace(name=name, status="passed", summary=summary, details=details)

        plan = {
            "flow_id": "daily-report",
            "kind": "modified",
            "summary": "modified, 1 step(s) changed",
            "spec_diff": "--- production/daily-report\n+++ proposed/daily-report\n"
            "@@ -1 +1 @@\n-valid: '{{ output.valid }}'\n+valid: '{{ output.valid * 2 }}'\n",
            "steps": {"added": [], "removed": [], "changed": []},
            "schedules": [],
            "triggers": [],
            "policies": [],
            "in_flight": {"count": 0, "runs": [], "note": "no runs in flight"},
        }
        return [
            check("validate", "1 flow valid", {}),
            check("plan", "daily-report: modified", {"flows": [plan]}),
            check("sandbox", "1 case(s) replayed in docker", {}),
            check("diff", "1 changed", {"flows": {"daily-report": DIFF}}),
        ]

    async def reviews(self, proposal_id: str) -> list[Any]:
        return self.reviews_

    async def comments(self, proposal_id: str) -> list[Any]:
        return self.comments_

    async def approvers(self, proposal: Any) -> list[str]:
        return [r.reviewer for r in self.reviews_ if r.decision == "approve"]

    async def decision(self, proposal: Any) -> Decision:
        approvers = tuple(await self.approvers(proposal))
        missing = () if approvers else ("0 of 1 approval(s) on revision 1",)
        return Decision(review_reasons=missing, approvers=approvers, needed=1)

    async def comment(self, proposal_id: str, *, author: str, body: str) -> None:
        self.comments_.append(SimpleNamespace(author=author, body=body, at=NOW))

    async def approve(self, proposal_id: str, *, reviewer: str, comment: str = "") -> Any:
        if reviewer == self.proposal.author:
            raise SelfApproval(actor=reviewer, proposal_id=proposal_id)
        self.reviews_.append(
            SimpleNamespace(
                reviewer=reviewer, decision="approve", revision=1, comment=comment, at=NOW
            )
        )
        self.proposal = replace(self.proposal, status="approved")
        return self.proposal

    async def promote(self, proposal_id: str, *, actor: str) -> Any:
        self.promoted_by = actor
        self.proposal = replace(self.proposal, status="promoted", promoted_commit="abc123def456")
        return self.proposal


@dataclass(frozen=True)
class Proposal:
    id: str = "p-1"
    title: str = "Count valid records twice"
    author: str = "author-user"
    status: str = "ready-for-review"
    branch: str = "proposals/p-1"
    head_commit: str = "0123456789abcdef"
    revision: int = 1
    description: str = ""
    flows: tuple[str, ...] = ("daily-report",)
    conflicts: tuple[str, ...] = ()
    promoted_commit: str | None = None
    created_at: datetime = NOW
    updated_at: datetime = NOW


async def test_web_proposal_review_flow_by_role(api: Api) -> None:
    fake = FakeProposals(proposal=Proposal())
    api.app.state.services.proposals = fake

    async with browser(api, Role.viewer) as client:
        listing = await client.get("/proposals")
        assert 'href="/proposals/p-1"' in listing.text
        page = await client.get("/proposals/p-1")
        assert page.status_code == 200
        assert ">Approve<" not in page.text  # a viewer gets no review buttons
        assert 'class="u-add"' in page.text  # the spec diff, coloured
        assert "would have called" in page.text  # the unrecorded request is called out
        assert 'class="production">19<' in page.text
        assert 'class="proposed">7<' in page.text

    async with browser(api, Role.admin) as client:  # admin-user is not the author
        page = await client.get("/proposals/p-1")
        assert ">Approve<" in page.text

    fake.proposal = replace(fake.proposal, author="reviewer-user")
    async with browser(api, Role.reviewer) as client:
        page = await client.get("/proposals/p-1")
        assert "another reviewer has to approve it" in page.text
        refused = await client.post(
            "/proposals/p-1/approve", data={"csrf": csrf_of(page.text), "comment": "lgtm"}
        )
        assert refused.status_code == 403
        assert 'id="action-problem"' in refused.text
        assert "cannot approve their own" in refused.text

    fake.proposal = replace(fake.proposal, author="author-user")
    async with browser(api, Role.author) as client:
        page = await client.get("/proposals/p-1")
        assert ">Comment<" in page.text
        assert ">Approve<" not in page.text
        token = csrf_of(page.text)
        assert (
            await client.post("/proposals/p-1/approve", data={"csrf": token})
        ).status_code == 403
        said = await client.post("/proposals/p-1/comment", data={"csrf": token, "comment": "<b>hi"})
        assert said.status_code == 303
        assert "&lt;b&gt;hi" in (await client.get("/proposals/p-1")).text

    async with browser(api, Role.reviewer) as client:
        page = await client.get("/proposals/p-1")
        approved = await client.post(
            "/proposals/p-1/approve", data={"csrf": csrf_of(page.text), "comment": "ship it"}
        )
        assert approved.status_code == 303
        page = await client.get("/proposals/p-1")
        assert "Promote to production" in page.text
        promoted = await client.post("/proposals/p-1/promote", data={"csrf": csrf_of(page.text)})
        assert promoted.status_code == 303
    assert fake.promoted_by == "reviewer-user"
    assert fake.proposal.status == "promoted"


async def test_web_proposals_without_a_service_say_so(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from linkloom.web.routes import proposals

    async def none(request: object) -> None:
        return None

    monkeypatch.setattr(proposals, "proposal_service", none)
    async with browser(api, Role.viewer) as client:
        listing = await client.get("/proposals")
        assert "no proposal service" in listing.text
        assert (await client.get("/proposals/p-1")).status_code == 503
