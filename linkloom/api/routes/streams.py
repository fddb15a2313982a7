"""Server-Sent Events: one run's events and log lines, and the global feed of run status changes.

``GET /api/v1/runs/{run_id}/stream`` sends every event of the run (``event: <type>``, ``id:``
the event id, ``data:`` the event as JSON) and ends after the run has finished. Reconnecting
clients send ``Last-Event-ID`` (or ``?after=``) and get only what they missed.

``GET /api/v1/stream`` sends ``event: run`` with ``{run_id, flow_id, status, at}`` whenever a run
is created or changes status; it reads the database, so it sees runs of every process
(``http.feeds``: the web UI serves the same feed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse

from linkloom.access import Role
from linkloom.api.deps import Services, require_role
from linkloom.api.schemas.common import AUTHED, problem_responses
from linkloom.api.schemas.runs import EventOut
from linkloom.http import feeds

router = APIRouter(prefix="/api/v1", tags=["streams"])

PING_SECONDS = feeds.PING_SECONDS
_SSE = {"content": {"text/event-stream": {"schema": {"type": "string"}}}}


@router.get(
    "/runs/{run_id}/stream",
    summary="Live events and log lines of one run (Server-Sent Events)",
    response_class=EventSourceResponse,
    dependencies=[require_role(Role.viewer)],
    responses={200: {"description": "An event stream.", **_SSE}, **problem_responses(*AUTHED, 404)},
)
async def run_stream(
    run_id: str,
    services: Services,
    after: Annotated[int, Query(ge=0, description="Start after this event id.")] = 0,
    last_event_id: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> EventSourceResponse:
    await services.runs.get_run(run_id)  # 404 before the stream starts
    start = int(last_event_id) if last_event_id and last_event_id.isdigit() else after

    async def events() -> AsyncIterator[dict[str, Any]]:
        async for event in services.runs.follow(run_id, after_id=start):
            out = EventOut.from_domain(event)
            yield {"event": out.type, "id": str(out.id), "data": out.model_dump_json()}
        run = await services.runs.get_run(run_id)
        yield {"event": "end", "data": f'{{"run_id": "{run.id}", "status": "{run.status.value}"}}'}

    return EventSourceResponse(events(), ping=PING_SECONDS)


@router.get(
    "/stream",
    summary="Live run status changes of every flow (Server-Sent Events)",
    response_class=EventSourceResponse,
    dependencies=[require_role(Role.viewer)],
    responses={200: {"description": "An event stream.", **_SSE}, **problem_responses(*AUTHED)},
)
async def global_stream(
    services: Services,
    flow: Annotated[str | None, Query(description="Only runs of this flow.")] = None,
) -> EventSourceResponse:
    return feeds.status_changes(services, flow=flow)
