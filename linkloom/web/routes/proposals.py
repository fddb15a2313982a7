"""Proposals: the list and the review page (checks, plan, spec diff, result diffs, comments,
approve / request changes / promote for the roles allowed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from linkloom.access import Role
from linkloom.web import rendering, session
from linkloom.web.routing import WebRoute

router = APIRouter(route_class=WebRoute)


def proposal_service(request: Request) -> Any:
    """The proposal service, when this server has one (None otherwise)."""
    found = getattr(request.app.state, "proposals", None)
    if found is None:
        found = getattr(request.app.state.services, "proposals", None)
    return found


@router.get("/proposals")
async def proposals(request: Request) -> Response:
    await session.require(request, Role.viewer)
    service = proposal_service(request)
    items = list(await service.list()) if service is not None else []
    return rendering.page(
        request, "proposals.html", title="Proposals", items=items, available=service is not None
    )
