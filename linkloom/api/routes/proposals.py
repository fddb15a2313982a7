"""Proposals (the GitOps change flow), promotion of flow versions, history and repo sync.

Roles: viewers read; authors open, revise, comment, rebase, close and re-run checks; reviewers
approve, request changes, promote and roll back; admins sync the repo into flow versions. Every
action is audited by ``ProposalService`` with the caller as actor.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Query, Request

from linkloom import wiring
from linkloom.access import Role
from linkloom.api.deps import Actor, require_role
from linkloom.api.schemas.common import AUTHED, Page, problem_responses
from linkloom.api.schemas.proposals import (
    CheckOut,
    ChecksIn,
    CloseIn,
    CommentIn,
    CommentOut,
    DiffOut,
    PlanOut,
    PromotionCheckOut,
    PromotionOut,
    ProposalDetailOut,
    ProposalIn,
    ProposalOut,
    ReviewIn,
    ReviewOut,
    RevisionIn,
)
from linkloom.proposals import plan as plans
from linkloom.proposals import render
from linkloom.proposals.models import CheckName, ProposalDiff, ProposalStatus
from linkloom.proposals.service import ProposalService

router = APIRouter(prefix="/api/v1", tags=["proposals"])


async def proposal_service(app: Any) -> ProposalService:
    """The app's proposal service (a first use builds it off the event loop)."""
    services: wiring.Services = app.state.services
    return await services.proposal_service()


async def _service(request: Request) -> ProposalService:
    return await proposal_service(request.app)


Proposals = Annotated[ProposalService, Depends(_service)]
ONE = problem_responses(*AUTHED, 404)
CHANGE = problem_responses(*AUTHED, 404, 409)


def _texts(specs: list[str | dict[str, Any]]) -> list[str]:
    return [s if isinstance(s, str) else json.dumps(s) for s in specs]


async def _detail(service: ProposalService, proposal_id: str) -> ProposalDetailOut:
    proposal = await service.get(proposal_id)
    base = ProposalOut.from_domain(proposal).model_dump()
    decision = await service.decision(proposal)
    promotion = None
    if not proposal.status.finished:
        promotion = PromotionCheckOut(
            allowed=decision.allowed and proposal.status is ProposalStatus.APPROVED,
            reasons=list(decision.reasons),
            required_approvals=decision.needed,
            owners={f: list(p.owners) for f, p in decision.policies.items() if p.owners},
        )
    return ProposalDetailOut(
        **base,
        checks=[CheckOut.from_domain(c, details=False) for c in await service.checks(proposal_id)],
        reviews=[ReviewOut.from_domain(r) for r in await service.reviews(proposal_id)],
        comments=[CommentOut.from_domain(c) for c in await service.comments(proposal_id)],
        approvers=list(decision.approvers),
        required_approvals=decision.needed,
        promotion=promotion,
    )


@router.get(
    "/proposals",
    summary="List proposals, newest first",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED),
)
async def list_proposals(
    service: Proposals,
    status: Annotated[list[ProposalStatus] | None, Query(description="Only these.")] = None,
    flow_id: Annotated[str | None, Query(description="Only proposals changing this flow.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[ProposalOut]:
    found = await service.list(statuses=status or (), flow_id=flow_id, limit=limit)
    return Page(items=[ProposalOut.from_domain(p) for p in found], next_cursor=None)


@router.post(
    "/proposals",
    summary="Open a proposal (a branch proposals/<id> with a real commit) and run its checks",
    status_code=201,
    dependencies=[require_role(Role.author)],
    responses=problem_responses(*AUTHED, 404, 409),
)
async def open_proposal(
    body: ProposalIn, service: Proposals, actor: Actor, background: BackgroundTasks
) -> ProposalDetailOut:
    proposal = await service.open(
        title=body.title,
        author=actor.name,
        files=body.files,
        specs=_texts(body.specs),
        ref=body.ref,
        description=body.description,
        run_checks=not body.background,
    )
    if body.background:
        background.add_task(service.run_checks, proposal.id, actor=actor.name)
    return await _detail(service, proposal.id)


@router.get(
    "/proposals/{proposal_id}",
    summary="A proposal with its checks (summaries), reviews and comments",
    dependencies=[require_role(Role.viewer)],
    responses=ONE,
)
async def get_proposal(proposal_id: str, service: Proposals) -> ProposalDetailOut:
    return await _detail(service, proposal_id)


@router.post(
    "/proposals/{proposal_id}/revisions",
    summary="Commit a new revision on the proposal's branch and run the checks again",
    dependencies=[require_role(Role.author)],
    responses=CHANGE,
)
async def revise(
    proposal_id: str,
    body: RevisionIn,
    service: Proposals,
    actor: Actor,
    background: BackgroundTasks,
) -> ProposalDetailOut:
    await service.revise(
        proposal_id,
        actor=actor.name,
        files=body.files,
        specs=_texts(body.specs),
        message=body.message,
        run_checks=not body.background,
    )
    if body.background:
        background.add_task(service.run_checks, proposal_id, actor=actor.name)
    return await _detail(service, proposal_id)


@router.get(
    "/proposals/{proposal_id}/checks",
    summary="The current revision's checks with their details",
    dependencies=[require_role(Role.viewer)],
    responses=ONE,
)
async def get_checks(
    proposal_id: str,
    service: Proposals,
    revision: Annotated[int | None, Query(ge=1, description="Default: the current one.")] = None,
) -> list[CheckOut]:
    return [CheckOut.from_domain(c) for c in await service.checks(proposal_id, revision=revision)]


@router.post(
    "/proposals/{proposal_id}/checks",
    summary="Run the checks of the current revision again (e.g. after a sandbox outage)",
    dependencies=[require_role(Role.author)],
    responses=CHANGE,
)
async def rerun_checks(
    proposal_id: str,
    service: Proposals,
    actor: Actor,
    background: BackgroundTasks,
    body: ChecksIn | None = None,
) -> ProposalDetailOut:
    if body is not None and body.background:
        await service.get(proposal_id)
        background.add_task(service.run_checks, proposal_id, actor=actor.name)
    else:
        await service.run_checks(proposal_id, actor=actor.name)
    return await _detail(service, proposal_id)


@router.get(
    "/proposals/{proposal_id}/plan",
    summary="The plan: spec diff, schedule/trigger/retry/timeout changes, in-flight runs",
    dependencies=[require_role(Role.viewer)],
    responses=ONE,
)
async def get_plan(proposal_id: str, service: Proposals) -> PlanOut:
    check = await service.check(proposal_id, CheckName.PLAN)
    if check is None:
        return PlanOut(status="pending", summary="the plan has not run yet")
    flows = list(check.details.get("flows") or [])
    return PlanOut(
        status=check.status.value,
        summary=check.summary,
        flows=flows,
        text=plans.plan_lines(flows),
    )


@router.get(
    "/proposals/{proposal_id}/diff",
    summary="The result diff per flow, case and step against production",
    dependencies=[require_role(Role.viewer)],
    responses=ONE,
)
async def get_diff(proposal_id: str, service: Proposals) -> DiffOut:
    check = await service.check(proposal_id, CheckName.DIFF)
    if check is None:
        return DiffOut(status="pending", summary="the diff has not run yet")
    flows = dict(check.details.get("flows") or {})
    parsed = {flow_id: ProposalDiff.from_dict(data) for flow_id, data in flows.items()}
    return DiffOut(
        status=check.status.value,
        summary=check.summary,
        backend=str(check.details.get("backend") or ""),
        attention=bool(check.details.get("attention")),
        flows=flows,
        markdown=render.render_markdown(parsed, title=f"Proposal {proposal_id}: diff")
        if parsed
        else "",
    )


@router.post(
    "/proposals/{proposal_id}/comments",
    summary="Comment on a proposal",
    status_code=201,
    dependencies=[require_role(Role.author)],
    responses=ONE,
)
async def comment(
    proposal_id: str, body: CommentIn, service: Proposals, actor: Actor
) -> CommentOut:
    return CommentOut.from_domain(
        await service.comment(proposal_id, author=actor.name, body=body.body)
    )


@router.post(
    "/proposals/{proposal_id}/approve",
    summary="Approve the current revision (never your own proposal)",
    dependencies=[require_role(Role.reviewer)],
    responses=CHANGE,
)
async def approve(
    proposal_id: str, service: Proposals, actor: Actor, body: ReviewIn | None = None
) -> ProposalDetailOut:
    await service.approve(proposal_id, reviewer=actor.name, comment=body.comment if body else "")
    return await _detail(service, proposal_id)


@router.post(
    "/proposals/{proposal_id}/request-changes",
    summary="Ask for a new revision",
    dependencies=[require_role(Role.reviewer)],
    responses=CHANGE,
)
async def request_changes(
    proposal_id: str, service: Proposals, actor: Actor, body: ReviewIn | None = None
) -> ProposalDetailOut:
    await service.request_changes(
        proposal_id, reviewer=actor.name, comment=body.comment if body else ""
    )
    return await _detail(service, proposal_id)


@router.post(
    "/proposals/{proposal_id}/rebase",
    summary="Rebase onto main (conflicts answer 409 and are listed on the proposal)",
    dependencies=[require_role(Role.author)],
    responses=CHANGE,
)
async def rebase(proposal_id: str, service: Proposals, actor: Actor) -> ProposalDetailOut:
    await service.rebase(proposal_id, actor=actor.name)
    return await _detail(service, proposal_id)


@router.post(
    "/proposals/{proposal_id}/promote",
    summary="Merge into main and make the specs production (approvals, green checks, not stale)",
    dependencies=[require_role(Role.reviewer)],
    responses=CHANGE,
)
async def promote(proposal_id: str, service: Proposals, actor: Actor) -> ProposalDetailOut:
    await service.promote(proposal_id, actor=actor.name)
    return await _detail(service, proposal_id)


@router.post(
    "/proposals/{proposal_id}/close",
    summary="Close without promoting",
    dependencies=[require_role(Role.author)],
    responses=CHANGE,
)
async def close(
    proposal_id: str, service: Proposals, actor: Actor, body: CloseIn | None = None
) -> ProposalDetailOut:
    await service.close(proposal_id, actor=actor.name, reason=body.reason if body else "")
    return await _detail(service, proposal_id)


@router.post(
    "/flows/{flow_id}/versions/{version}/promote",
    summary="Roll back: promote an earlier version again (a commit on main and a new version)",
    dependencies=[require_role(Role.reviewer)],
    responses=CHANGE,
)
async def promote_version(
    flow_id: str,
    version: Annotated[int, Path(ge=1, le=2**31 - 1, description="The earlier version.")],
    service: Proposals,
    actor: Actor,
) -> PromotionOut:
    result = await service.rollback(flow_id, to_version=version, actor=actor.name)
    return PromotionOut(commit=result.commit, versions=result.versions)


@router.get(
    "/flows/{flow_id}/history",
    summary="The flow's versions, newest first, with their git commits",
    dependencies=[require_role(Role.viewer)],
    responses=ONE,
)
async def history(flow_id: str, service: Proposals) -> list[dict[str, Any]]:
    return await service.history(flow_id)


@router.post(
    "/repo/sync",
    summary="Import the flows repo's main branch into flow versions (loom sync)",
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED),
)
async def sync(service: Proposals, actor: Actor) -> dict[str, Any]:
    return await service.sync(actor=actor.name)
