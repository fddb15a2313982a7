"""The flows remote (``flows.remote``): its status and a fetch on demand.

* ``GET /api/v1/repo/remote`` (viewer): the remote, the last fetch, production's commit, drift.
* ``POST /api/v1/repo/remote/fetch`` (admin): fetch now and import what is new (as a poll does).

Both answer 404 on a server without a remote. Nothing here ever returns a credential.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from linkloom.access import Role
from linkloom.api.deps import Audit, require_role
from linkloom.api.schemas.common import AUTHED, problem_responses
from linkloom.api.schemas.gitops import FetchOut, ImportedOut, RemoteStatusOut
from linkloom.errors import NotFound

router = APIRouter(prefix="/api/v1", tags=["gitops"])


class NoRemote(NotFound):
    """This server's flows repo has no remote; set LOOM_FLOWS__REMOTE to mirror the team's repo."""

    code = "no_flows_remote"


def _gitops(request: Request) -> Any:
    gitops = getattr(request.app.state, "gitops", None)
    if gitops is None:
        raise NoRemote()
    return gitops


@router.get(
    "/repo/remote",
    summary="The flows remote: the last fetch, production's commit and any drift",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def remote_status(request: Request) -> RemoteStatusOut:
    return RemoteStatusOut.from_domain(_gitops(request).sync.status())


@router.post(
    "/repo/remote/fetch",
    summary="Fetch the flows remote now and make its new commits production",
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED, 404, 503),
)
async def fetch_remote(request: Request, audit: Audit) -> FetchOut:
    sync = _gitops(request).sync
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
