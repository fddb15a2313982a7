"""GitOps with the team's git host: the flows remote and the forge's webhooks.

* ``GET /api/v1/repo/remote`` (viewer): the remote, the last fetch, production's commit, drift.
* ``POST /api/v1/repo/remote/fetch`` (admin): fetch now and import what is new (as a poll does).
  Both answer 404 on a server without a remote.
* ``POST /api/v1/git/webhooks/github|gitlab|gitea``: signed by the forge (no token); answer 202
  at once with ``handling`` queued or ignored (and why); a bad signature or a replay is a 401.
* ``GET /api/v1/proposals/{id}/pull-request`` (viewer): the pull request and its report state.
* ``POST /api/v1/git/ci`` (author): CI mode; ``GET /api/v1/proposals/{id}/report`` (viewer): the
  checks' outcome (``loom proposal checks --wait``'s exit codes) and the Markdown summary.

Nothing here ever returns a credential.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from linkloom.access import Role
from linkloom.api.deps import Actor, Audit, get_services, require_role
from linkloom.api.schemas.common import AUTHED, problem_responses
from linkloom.api.schemas.gitops import FetchOut, ImportedOut, RemoteStatusOut
from linkloom.errors import NotFound
from linkloom.forges import ci
from linkloom.forges.models import ForgeKind

if TYPE_CHECKING:
    from linkloom.forges.service import ForgeService
    from linkloom.wiring.gitops import GitOps

router = APIRouter(prefix="/api/v1", tags=["gitops"])


class NoRemote(NotFound):
    """This server's flows repo has no remote; set LOOM_FLOWS__REMOTE to mirror the team's repo."""

    code = "no_flows_remote"


async def _gitops(request: Request) -> GitOps:
    gitops = await get_services(request).gitops_service()
    if gitops is None:
        raise NoRemote()
    return gitops


async def _forge(request: Request) -> ForgeService | None:
    """The forge service, when this server has a flows remote and a forge configured."""
    gitops = await get_services(request).gitops_service()
    return None if gitops is None else gitops.forge


@router.get(
    "/repo/remote",
    summary="The flows remote: the last fetch, production's commit and any drift",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def remote_status(request: Request) -> RemoteStatusOut:
    return RemoteStatusOut.from_domain((await _gitops(request)).sync.status())


@router.post(
    "/repo/remote/fetch",
    summary="Fetch the flows remote now and make its new commits production",
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED, 404, 503),
)
async def fetch_remote(request: Request, audit: Audit) -> FetchOut:
    sync = (await _gitops(request)).sync
    imported = await sync.catch_up()
    await audit("flows.remote_fetch", "repo", sync.status().remote_commit,
                imported=[i.commit for i in imported])  # fmt: skip
    return FetchOut(
        imported=[
            ImportedOut(
                commit=i.commit, versions=i.versions, proposal_id=i.proposal_id, actor=i.actor,
                reviewed=i.reviewed,
            )
            for i in imported
        ],
        status=RemoteStatusOut.from_domain(sync.status()),
    )  # fmt: skip


# ---- forge webhooks ---------------------------------------------------------------------------


class NoForge(NotFound):
    """This server takes no {forge} webhooks: set LOOM_FLOWS__REMOTE, LOOM_FORGE__KIND={forge} and
    LOOM_FORGE__WEBHOOK_SECRET."""

    code = "no_forge"


async def _receive(request: Request, forge: str) -> JSONResponse:
    service = await _forge(request)
    if service is None or service.kind.value != forge:
        raise NoForge(forge=forge)
    body = await request.body()
    # The headers themselves, not a dict: a signature or token sent twice is refused.
    receipt = await service.receive(body=body, headers=request.headers)
    return JSONResponse(
        {"forge": receipt.forge, "event": receipt.event, "handling": receipt.handling,
         "reason": receipt.reason},
        status_code=202,
    )  # fmt: skip


_WEBHOOK = {
    "status_code": 202,
    "responses": {
        **problem_responses(401, 404, 422),
        202: {"description": "`handling`: `queued` (it will be acted on) or `ignored` "
              "(`reason` says why)."},
    },
}  # fmt: skip


@router.post(
    "/git/webhooks/github",
    summary="GitHub webhooks: pull_request and push (X-Hub-Signature-256)",
    **_WEBHOOK,  # type: ignore[arg-type]
)
async def github_webhook(request: Request) -> JSONResponse:
    return await _receive(request, "github")


@router.post(
    "/git/webhooks/gitlab",
    summary="GitLab webhooks: Merge Request Hook and Push Hook (X-Gitlab-Token)",
    **_WEBHOOK,  # type: ignore[arg-type]
)
async def gitlab_webhook(request: Request) -> JSONResponse:
    return await _receive(request, "gitlab")


@router.post(
    "/git/webhooks/gitea",
    summary="Gitea and Forgejo webhooks: pull_request and push (X-Hub-Signature-256)",
    **_WEBHOOK,  # type: ignore[arg-type]
)
async def gitea_webhook(request: Request) -> JSONResponse:
    return await _receive(request, "gitea")


@router.get(
    "/proposals/{proposal_id}/pull-request",
    summary="The pull request a proposal is, and the state of the report on it",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def pull_request(proposal_id: str, request: Request) -> dict[str, Any]:
    link = await _link(request, proposal_id)
    if link is None:
        raise NotFound(f"proposal {proposal_id!r} is not linked to a pull request")
    return dict(link.to_dict())


async def _link(request: Request, proposal_id: str) -> Any:
    service = await _forge(request)
    return None if service is None else await service.link_of(proposal_id)


# ---- CI mode ----------------------------------------------------------------------------------


class CiIn(BaseModel):
    """A pull request's head as a CI job checked it out (``loom proposal ci``)."""

    forge: ForgeKind
    repo: str = Field(
        min_length=1, max_length=200, description="owner/name (GitLab: group/project)"
    )
    number: int = Field(ge=1, description="The pull request's number (GitLab: the MR's iid).")
    head: str = Field(pattern=r"^[0-9a-f]{40}$", description="The head commit CI checked out.")
    title: str = Field(default="", max_length=300)
    url: str = ""
    base: str = "main"
    head_ref: str = ""
    files: dict[str, str | None] = Field(
        default_factory=dict, description="flows/… files the pull request changes (null: deleted)."
    )


@router.post(
    "/git/ci",
    summary="CI mode: a pull request's changed flows as a revision of its proposal; checks run",
    dependencies=[require_role(Role.author)],
    responses=problem_responses(*AUTHED, 409, 422, 503),
)
async def ci_revision(body: CiIn, request: Request, actor: Actor, audit: Audit) -> dict[str, Any]:
    proposals = await get_services(request).proposal_service()
    forge = await _forge(request)
    proposal = await ci.ci_revision(
        ci.CiRequest(
            forge=body.forge, repo=body.repo, number=body.number, head=body.head,
            title=body.title or f"Pull request #{body.number}", author=actor.name, url=body.url,
            base=body.base, head_ref=body.head_ref, files=body.files or None,
        ),
        proposals=proposals, store=get_services(request).forge_links, forge=forge,
        clock=get_services(request).runs.clock,
    )  # fmt: skip
    await audit("proposal.ci", "proposal", proposal.id, pull=f"{body.repo}#{body.number}",
                head=body.head)  # fmt: skip
    return await _ci_report(request, proposal.id)


@router.get(
    "/proposals/{proposal_id}/report",
    summary="The outcome of the current revision's checks and its Markdown summary",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def proposal_report(proposal_id: str, request: Request) -> dict[str, Any]:
    return await _ci_report(request, proposal_id)


async def _ci_report(request: Request, proposal_id: str) -> dict[str, Any]:
    proposals = await get_services(request).proposal_service()
    public_url = get_services(request).settings.public_url
    proposal = await proposals.get(proposal_id)
    checks = await proposals.checks(proposal_id)
    found = ci.outcome(proposal, checks)
    return {
        "proposal_id": proposal.id,
        "revision": proposal.revision,
        "status": proposal.status.value,
        "outcome": found,
        "exit_code": ci.OUTCOME_EXIT[found],
        "statuses": ci.statuses(proposal, checks),
        "problems": ci.problems(checks),
        "markdown": ci.summary(proposal, checks, public_url=public_url),
        "url": f"{public_url.rstrip('/')}/proposals/{proposal.id}",
    }
