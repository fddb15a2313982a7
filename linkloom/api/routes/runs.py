"""Runs: list and filter, read with steps and logs, attempts, events, logs, recorded exchanges,
cancel and retry."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from linkloom.access import Role
from linkloom.api.deps import Audit, Services, require_role
from linkloom.api.schemas.common import AUTHED, Page, problem_responses
from linkloom.api.schemas.runs import (
    AttemptOut,
    EventOut,
    ExchangeOut,
    RunDetailOut,
    RunOut,
    StepOut,
)
from linkloom.engine.models import RunStatus
from linkloom.engine.records import RunFilter
from linkloom.engine.service import TRIGGERS
from linkloom.errors import InvalidInput

router = APIRouter(prefix="/api/v1", tags=["runs"])

RunStatusName = Annotated[
    str | None,
    Query(description="PENDING, RUNNING, SUCCEEDED, FAILED or CANCELLED."),
]


@router.get(
    "/runs",
    summary="List runs, newest first",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED),
)
async def list_runs(
    services: Services,
    flow: Annotated[str | None, Query(description="Only runs of this flow.")] = None,
    status: RunStatusName = None,
    trigger: Annotated[
        str | None, Query(description="manual, schedule, webhook, event, subflow, …")
    ] = None,
    since: Annotated[datetime | None, Query(description="Created at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Created before (ISO 8601).")] = None,
    parent: Annotated[str | None, Query(description="Only sub-runs of this run.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> Page[RunOut]:
    filters = RunFilter(
        flow_id=flow,
        status=parse_status(status),
        trigger=_trigger(trigger),
        parent_run_id=parent,
        created_after=_utc(since),
        created_before=_utc(until),
    )
    page = await services.runs.list_runs(filters, limit=limit, cursor=cursor)
    return Page(items=[RunOut.from_domain(r) for r in page.items], next_cursor=page.next_cursor)


@router.get(
    "/runs/{run_id}",
    summary="A run with its steps and their logs",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def get_run(run_id: str, services: Services) -> RunDetailOut:
    run = await services.runs.get_run(run_id)
    steps = await services.runs.list_steps(run_id)
    return RunDetailOut.build(run, steps, await _logs_by_step(services, run_id))


@router.get(
    "/runs/{run_id}/steps",
    summary="The run's steps in spec order (fan-out items after their parent)",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def list_steps(run_id: str, services: Services) -> list[StepOut]:
    steps = await services.runs.list_steps(run_id)
    return [StepOut.from_domain(s) for s in steps]


@router.get(
    "/runs/{run_id}/steps/{step_id}/items",
    summary="A fan-out step's items (its children), a page at a time in index order",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404, 422),
)
async def list_items(
    run_id: str,
    step_id: str,
    services: Services,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> Page[StepOut]:
    after = None
    if cursor is not None:
        if not cursor.isdigit():
            raise InvalidInput("invalid cursor; pass the next_cursor of a previous page")
        after = int(cursor)
    items = await services.runs.list_items(run_id, step_id, after=after, limit=limit + 1)
    page = items[:limit]
    more = len(items) > limit and page
    return Page(
        items=[StepOut.from_domain(s) for s in page],
        next_cursor=str(page[-1].item_index) if more else None,
    )


@router.get(
    "/runs/{run_id}/attempts",
    summary="Every attempt of every step (for timelines)",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def list_attempts(run_id: str, services: Services) -> list[AttemptOut]:
    return [AttemptOut.from_domain(a) for a in await services.runs.list_attempts(run_id)]


@router.get(
    "/runs/{run_id}/events",
    summary="The run's events (status changes and log lines) after a cursor",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def list_events(
    run_id: str,
    services: Services,
    after: Annotated[int, Query(ge=0, description="Return events with a larger id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[EventOut]:
    events = await services.runs.events(run_id, after_id=after, limit=limit)
    return [EventOut.from_domain(e) for e in events]


@router.get(
    "/runs/{run_id}/logs",
    summary="The run's log lines (events of type 'log'), optionally of one step",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def list_logs(
    run_id: str,
    services: Services,
    step: Annotated[str | None, Query(description="Only this step's lines.")] = None,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[EventOut]:
    events = await services.runs.events(run_id, after_id=after, limit=limit)
    return [
        EventOut.from_domain(e)
        for e in events
        if e.kind == "log" and (step is None or e.step_id == step)
    ]


@router.get(
    "/runs/{run_id}/exchanges",
    summary="The HTTP exchanges the run's steps made (recorded, secrets redacted)",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404),
)
async def list_exchanges(
    run_id: str,
    services: Services,
    step: Annotated[str | None, Query(description="Only this step's exchanges.")] = None,
) -> list[ExchangeOut]:
    records = await services.runs.list_exchanges(run_id, step_id=step)
    return [ExchangeOut.from_domain(r) for r in records]


@router.post(
    "/runs/{run_id}/cancel",
    summary="Cancel a run: unfinished steps become CANCELLED",
    dependencies=[require_role(Role.author)],
    responses=problem_responses(*AUTHED, 404, 409),
)
async def cancel_run(run_id: str, services: Services, audit: Audit, request: Request) -> RunOut:
    run = await services.runs.cancel(run_id, actor=request.state.actor.name)
    await audit("run.cancel", "run", run_id, flow_id=run.flow_id)
    return RunOut.from_domain(run)


@router.post(
    "/runs/{run_id}/retry",
    summary="Run a failed or cancelled run again from its failed steps",
    dependencies=[require_role(Role.author)],
    responses=problem_responses(*AUTHED, 404, 409),
)
async def retry_run(run_id: str, services: Services, audit: Audit, request: Request) -> RunOut:
    run = await services.runs.retry(run_id, actor=request.state.actor.name)
    await audit("run.retry", "run", run_id, flow_id=run.flow_id)
    return RunOut.from_domain(run)


def parse_status(status: str | None) -> RunStatus | None:
    if status is None:
        return None
    try:
        return RunStatus(status.upper())
    except ValueError:
        names = ", ".join(s.value for s in RunStatus)
        raise InvalidInput(f"unknown run status {status!r}; use one of {names}") from None


def _trigger(trigger: str | None) -> str | None:
    if trigger is not None and trigger not in TRIGGERS:
        raise InvalidInput(f"unknown trigger {trigger!r}; use one of {', '.join(TRIGGERS)}")
    return trigger


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def _logs_by_step(services: Services, run_id: str) -> dict[str, list[str]]:
    logs: dict[str, list[str]] = defaultdict(list)
    after = 0
    while True:
        batch = await services.runs.events(run_id, after_id=after, limit=5000)
        for event in batch:
            if event.kind == "log" and event.step_id:
                logs[event.step_id].append(event.message)
        if len(batch) < 5000:
            return logs
        after = batch[-1].id
