"""Server-Sent Events: one run's events and log lines, and the global feed of run status changes.

``GET /api/v1/runs/{run_id}/stream`` sends every event of the run (``event: <type>``, ``id:``
the event id, ``data:`` the event as JSON) and ends after the run has finished. Reconnecting
clients send ``Last-Event-ID`` (or ``?after=``) and get only what they missed.

``GET /api/v1/stream`` sends ``event: run`` with ``{run_id, flow_id, status, at}`` whenever a run
is created or changes status; it reads the database, so it sees runs of every process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse

from linkloom.access import Role
from linkloom.api.deps import Services, require_role
from linkloom.api.schemas.common import AUTHED, problem_responses
from linkloom.api.schemas.runs import EventOut, RunStatusChange
from linkloom.engine.records import RunFilter

router = APIRouter(prefix="/api/v1", tags=["streams"])

PING_SECONDS = 15
GLOBAL_POLL_SECONDS = 0.5
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
    async def changes() -> AsyncIterator[dict[str, Any]]:
        known: dict[str, str] = {}
        first = True
        while True:
            page = await services.runs.list_runs(RunFilter(flow_id=flow), limit=200)
            runs = {r.id: r for r in page.items}
            for run_id, status in list(known.items()):
                if run_id not in runs and status in ("PENDING", "RUNNING"):
                    runs[run_id] = await services.runs.get_run(run_id)
            for run in sorted(runs.values(), key=lambda r: r.created_at):
                status = run.status.value
                if known.get(run.id) != status:
                    known[run.id] = status
                    if not first:
                        at = run.finished_at or run.started_at or run.created_at
                        change = RunStatusChange(
                            run_id=run.id, flow_id=run.flow_id, status=status, at=at
                        )
                        yield {"event": "run", "data": change.model_dump_json()}
            # Forget finished runs that dropped off the page (the map stays bounded).
            for run_id in [k for k, v in known.items() if k not in runs]:
                known.pop(run_id)
            if first:
                first = False
                yield {"event": "ready", "data": "{}"}
            await asyncio.sleep(GLOBAL_POLL_SECONDS)

    return EventSourceResponse(changes(), ping=PING_SECONDS)
