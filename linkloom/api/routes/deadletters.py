"""Dead letters: steps that failed for good, listed and re-driven on a version chosen explicitly."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from linkloom.access import Role
from linkloom.api.deps import Audit, Services, require_role
from linkloom.api.schemas.common import AUTHED, Page, problem_responses
from linkloom.api.schemas.runs import DeadLetterOut, RedriveIn, RedriveOut, RunOut
from linkloom.errors import InvalidInput

router = APIRouter(prefix="/api/v1", tags=["dead letters"])


@router.get(
    "/dead-letters",
    summary="Dead letters, newest first",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED),
)
async def list_dead_letters(
    services: Services,
    flow: Annotated[str | None, Query(description="Only this flow's.")] = None,
    step: Annotated[str | None, Query(description="Only this step's.")] = None,
    run: Annotated[str | None, Query(description="Only this run's.")] = None,
    include_redriven: Annotated[bool, Query(description="Also those already re-driven.")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> Page[DeadLetterOut]:
    offset = _offset(cursor)
    # Dead letters are few (each is a step that failed for good): filter, then slice.
    letters = await services.runs.list_dead_letters(
        flow_id=flow, include_redriven=include_redriven, limit=100_000
    )
    chosen = [
        d
        for d in letters
        if (step is None or d.step_id == step) and (run is None or d.run_id == run)
    ]
    page = chosen[offset : offset + limit]
    more = len(chosen) > offset + limit
    return Page(
        items=[DeadLetterOut.from_domain(d) for d in page],
        next_cursor=str(offset + limit) if more else None,
    )


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    if not cursor.isdigit():
        raise InvalidInput("invalid cursor; pass the next_cursor of a previous page")
    return int(cursor)


@router.post(
    "/dead-letters/redrive",
    summary="Re-drive dead letters: one new run per original run",
    description="`on: failed_version` re-runs the version that failed and keeps the steps that "
    "succeeded; `on: current_version` starts a fresh run of the flow's current version.",
    dependencies=[require_role(Role.author)],
    responses=problem_responses(*AUTHED, 404),
)
async def redrive(
    body: RedriveIn, services: Services, audit: Audit, request: Request
) -> RedriveOut:
    runs = await services.runs.redrive(body.ids, on=body.on, actor=request.state.actor.name)
    for dead_letter_id in body.ids:
        await audit(
            "dead_letter.redrive",
            "dead_letter",
            dead_letter_id,
            on=body.on,
            runs=[r.id for r in runs],
        )
    return RedriveOut(runs=[RunOut.from_domain(r) for r in runs])
