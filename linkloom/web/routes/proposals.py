"""Proposals: the list and the review page (checks, plan, spec diff, per-case per-step result
diffs side by side, comments, approve / request changes / promote / close for the roles allowed),
and the revise form (a new revision from edited spec files) and the rebase button.

Roles as in the API: a viewer reads; an author comments, revises, rebases and closes; a reviewer
approves and requests changes; a reviewer or admin promotes. A revision and a rebase answer at
once and run the checks after the response (the page shows them running). The proposal service
enforces the rest itself (an author never approves their own proposal; promotion needs what the
promotion policy asks) and writes the audit entries; a refusal comes back on the page as a
problem next to the buttons.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from markupsafe import Markup
from starlette.background import BackgroundTask

from linkloom.access import Role
from linkloom.errors import LinkloomError, NotFound, Unavailable
from linkloom.http import context
from linkloom.web import rendering, session
from linkloom.web.routing import STATUS, WebRoute

router = APIRouter(route_class=WebRoute)

# The statuses the list filters by (the service's ProposalStatus values).
STATUSES = (
    "open",
    "validating",
    "sandboxing",
    "ready-for-review",
    "changes-requested",
    "approved",
    "promoted",
    "closed",
    "stale",
)
REVIEWABLE = ("ready-for-review", "approved", "changes-requested")


async def proposal_service(request: Request) -> Any:
    """The services' proposal service (the one the API uses; a first use builds it off the
    event loop)."""
    return await context.services(request).proposal_service()


async def _require_service(request: Request) -> Any:
    service = await proposal_service(request)
    if service is None:
        raise Unavailable("this server has no proposal service (the flows repo is not configured)")
    return service


@router.get("/proposals")
async def proposals(request: Request, status: str = "", flow: str = "") -> Response:
    await session.require(request, Role.viewer)
    service = await proposal_service(request)
    items: list[Any] = []
    if service is not None:
        items = list(await service.list(flow_id=flow or None, limit=200))
        if status:
            items = [p for p in items if _value(p.status) == status]
    return rendering.page(
        request,
        "proposals.html",
        title="Proposals",
        items=items,
        available=service is not None,
        status=status,
        flow=flow,
        statuses=STATUSES,
    )


@router.get("/proposals/{proposal_id}")
async def proposal_page(request: Request, proposal_id: str) -> Response:
    actor = await session.require(request, Role.viewer)
    return await _page(request, proposal_id, actor=actor)


async def _page(
    request: Request,
    proposal_id: str,
    *,
    actor: Any,
    problem: str = "",
    status_code: int = 200,
) -> Response:
    service = await _require_service(request)
    proposal = await service.get(proposal_id)
    checks = list(await service.checks(proposal_id))
    by_name = {_value(c.name): c for c in checks}
    plans = list((getattr(by_name.get("plan"), "details", None) or {}).get("flows") or [])
    result_diffs = _result_diffs(by_name.get("diff"))
    decision = await service.decision(proposal)
    approvers = list(decision.approvers)
    status = _value(proposal.status)
    role = actor.role
    return rendering.page(
        request,
        "proposal.html",
        status_code=status_code,
        title=f"Proposal {proposal.title}",
        proposal=proposal,
        status=status,
        checks=checks,
        plans=plans,
        plan_text=_plan_text(plans),
        result_diffs=result_diffs,
        reviews=list(await service.reviews(proposal_id)),
        comments=list(await service.comments(proposal_id)),
        approvers=approvers,
        required=decision.needed,
        blockers=[] if status in ("promoted", "closed") else list(decision.reasons),
        owners={f: p.owners for f, p in decision.policies.items() if p.owners},
        problem=problem,
        own=actor.name == proposal.author,
        may_review=role.allows(Role.reviewer) and status in (*REVIEWABLE, "stale"),
        may_promote=role.allows(Role.reviewer) and status == "approved",
        may_comment=role.allows(Role.author) and status not in ("promoted", "closed"),
        may_close=role.allows(Role.author) and status not in ("promoted", "closed"),
        may_revise=role.allows(Role.author) and status not in ("promoted", "closed"),
        may_rebase=role.allows(Role.author) and status == "stale",
        pull=await _pull_request(request, proposal_id),
    )


async def _pull_request(request: Request, proposal_id: str) -> Any:
    """The pull request the proposal is (``forges.models.PullLink``), on a forge-backed server."""
    gitops = await context.services(request).gitops_service()
    forge = None if gitops is None else gitops.forge
    return None if forge is None else await forge.link_of(proposal_id)


def _value(item: Any) -> str:
    return str(getattr(item, "value", item))


def _plan_text(plans: list[dict[str, Any]]) -> str:
    if not plans:
        return ""
    try:
        from linkloom.proposals import plan

        return "\n".join(plan.plan_lines(plans))
    except Exception:  # a plan written by another version: show its summaries
        return "\n".join(f"{p.get('flow_id')}: {p.get('summary', '')}" for p in plans)


def _result_diffs(check: Any) -> list[dict[str, Any]]:
    """Per flow: the proposal diff rendered as escaped HTML (``proposals.render.render_html``):
    the grouped findings first, each expandable to its cases, then the per-case tables."""
    if check is None:
        return []
    from linkloom.proposals import render
    from linkloom.proposals.models import ProposalDiff

    out = []
    for flow_id, data in ((check.details or {}).get("flows") or {}).items():
        parsed = ProposalDiff.from_dict(data)
        out.append(
            {
                "flow_id": flow_id,
                "summary": render.summary_line(parsed.summary),
                "clean": parsed.summary.clean,
                "unrecorded": parsed.summary.unrecorded,
                # render_html escapes every value it writes; it emits classes, no styles.
                "html": Markup(render.render_html(parsed, show_unchanged=True)),
            }
        )
    return out


def unified_lines(text: str) -> list[tuple[str, str]]:
    """A unified diff as (css class, line) pairs for colouring."""
    out = []
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            kind = "meta"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append((kind, line))
    return out


rendering.env.globals["unified_lines"] = unified_lines


async def _act(request: Request, proposal_id: str, role: Role, action: str) -> Response:
    actor = await session.require(request, role)
    form = await session.form(request)
    service = await _require_service(request)
    text = str(form.get("comment") or form.get("body") or "").strip()
    try:
        if action == "comment":
            await service.comment(proposal_id, author=actor.name, body=text)
        elif action == "approve":
            await service.approve(proposal_id, reviewer=actor.name, comment=text)
        elif action == "request-changes":
            await service.request_changes(proposal_id, reviewer=actor.name, comment=text)
        elif action == "promote":
            await service.promote(proposal_id, actor=actor.name)
        elif action == "close":
            await service.close(proposal_id, actor=actor.name, reason=text)
    except NotFound:
        raise
    except LinkloomError as exc:
        code = next((c for cat, c, _ in STATUS if isinstance(exc, cat)), 500)
        return await _page(request, proposal_id, actor=actor, problem=str(exc), status_code=code)
    return RedirectResponse(f"/proposals/{proposal_id}#{action}", status_code=303)


@router.post("/proposals/{proposal_id}/comment")
async def comment(request: Request, proposal_id: str) -> Response:
    return await _act(request, proposal_id, Role.author, "comment")


@router.post("/proposals/{proposal_id}/approve")
async def approve(request: Request, proposal_id: str) -> Response:
    return await _act(request, proposal_id, Role.reviewer, "approve")


@router.post("/proposals/{proposal_id}/request-changes")
async def request_changes(request: Request, proposal_id: str) -> Response:
    return await _act(request, proposal_id, Role.reviewer, "request-changes")


@router.post("/proposals/{proposal_id}/promote")
async def promote(request: Request, proposal_id: str) -> Response:
    return await _act(request, proposal_id, Role.reviewer, "promote")


@router.post("/proposals/{proposal_id}/close")
async def close(request: Request, proposal_id: str) -> Response:
    return await _act(request, proposal_id, Role.author, "close")


@router.get("/proposals/{proposal_id}/revise")
async def revise_form(request: Request, proposal_id: str) -> Response:
    """The proposal's spec files as committed on its branch, each in a text area to edit."""
    await session.require(request, Role.author)
    return await _revise_page(request, proposal_id)


async def _revise_page(
    request: Request,
    proposal_id: str,
    *,
    edited: dict[str, str] | None = None,
    message: str = "",
    problem: str = "",
    status_code: int = 200,
) -> Response:
    service = await _require_service(request)
    proposal = await service.get(proposal_id)
    files = []
    for flow_id in proposal.flows:
        found = await service.spec_file(flow_id, ref=proposal.branch)
        if found is not None:
            text = (edited or {}).get(found.path, found.text)
            files.append({"flow_id": flow_id, "path": found.path, "text": text})
    return rendering.page(
        request,
        "proposal_revise.html",
        status_code=status_code,
        title=f"Revise {proposal.title}",
        proposal=proposal,
        status=_value(proposal.status),
        files=files,
        message=message,
        problem=problem,
    )


@router.post("/proposals/{proposal_id}/revise")
async def revise(request: Request, proposal_id: str) -> Response:
    actor = await session.require(request, Role.author)
    form = await session.form(request)
    service = await _require_service(request)
    files = {k[len("file:") :]: str(v) for k, v in form.items() if k.startswith("file:")}
    message = str(form.get("message") or "").strip()
    try:
        await service.revise(
            proposal_id, actor=actor.name, files=files, message=message, run_checks=False
        )
    except NotFound:
        raise
    except LinkloomError as exc:
        code = next((c for cat, c, _ in STATUS if isinstance(exc, cat)), 500)
        return await _revise_page(
            request,
            proposal_id,
            edited=files,
            message=message,
            problem=str(exc),
            status_code=code,
        )
    return _checks_after(service, proposal_id, actor.name, "#checks-h")


@router.post("/proposals/{proposal_id}/rebase")
async def rebase(request: Request, proposal_id: str) -> Response:
    actor = await session.require(request, Role.author)
    await session.form(request)
    service = await _require_service(request)
    try:
        await service.rebase(proposal_id, actor=actor.name, run_checks=False)
    except NotFound:
        raise
    except LinkloomError as exc:
        code = next((c for cat, c, _ in STATUS if isinstance(exc, cat)), 500)
        return await _page(request, proposal_id, actor=actor, problem=str(exc), status_code=code)
    return _checks_after(service, proposal_id, actor.name, "#checks-h")


def _checks_after(service: Any, proposal_id: str, actor: str, anchor: str) -> Response:
    """Back to the proposal page at once; its checks run after the response."""
    return RedirectResponse(
        f"/proposals/{proposal_id}{anchor}",
        status_code=303,
        background=BackgroundTask(service.run_checks, proposal_id, actor=actor),
    )
