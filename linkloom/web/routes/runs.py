"""The run page: live DAG, Gantt timeline, step drawer, log tail, cancel and retry.

``GET /runs/{id}/live`` is the page's Server-Sent Events stream (the session cookie
authenticates it, which ``EventSource`` cannot do with a bearer header):

* ``event: state``  ``{"run": "RUNNING", "steps": {"fetch": "succeeded", …}}`` whenever a
  step's display status or the run's status changes (and once at the start);
* ``event: log``    ``{"id", "step_id", "level", "message", "at"}`` per new log line or event;
* ``event: end``    ``{"run": "SUCCEEDED"}`` once the run has finished; the stream closes.

Reconnecting browsers send ``Last-Event-ID`` and get only the lines they missed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import RedirectResponse
from sse_starlette import EventSourceResponse

from linkloom.access import Role
from linkloom.engine.models import RunStatus
from linkloom.engine.records import Run, RunEvent, RunFilter
from linkloom.http import feeds
from linkloom.web import rendering, session, views
from linkloom.web.routes.pages import _audit, services
from linkloom.web.routing import WebRoute

router = APIRouter(route_class=WebRoute)

POLL_SECONDS = 0.25
LOG_TAIL = 500  # lines the page shows at first


TRIGGERS = ("manual", "schedule", "webhook", "event", "subflow", "backfill", "retry", "redrive")
RUNS_PER_PAGE = 50


@router.get("/runs")
async def all_runs(
    request: Request,
    flow: str = "",
    status: str = "",
    trigger: str = "",
    since: str = "",
    until: str = "",
    cursor: str = "",
) -> Response:
    """Every run, newest first, filtered by flow, status, trigger and a time range (UTC)."""
    await session.require(request, Role.viewer)
    svc = services(request)
    problems: list[str] = []
    after = _moment(since, "From", problems)
    before = _moment(until, "To", problems)
    if status and status not in {s.value for s in RunStatus}:
        problems.append(f"Status: {status!r} is not a run status")
    if after and before and after >= before:
        problems.append("From must be earlier than To")
    page = None
    if not problems:
        filters = RunFilter(
            flow_id=flow or None,
            status=RunStatus(status) if status else None,
            trigger=trigger or None,
            created_after=after,
            created_before=before,
        )
        page = await svc.runs.list_runs(filters, limit=RUNS_PER_PAGE, cursor=cursor or None)
    flows = sorted(f.id for f in await svc.runs.list_flows() if f.deleted_at is None)
    query = {"flow": flow, "status": status, "trigger": trigger, "since": since, "until": until}
    return rendering.page(
        request,
        "runs.html",
        status_code=422 if problems else 200,
        title="Runs",
        runs=list(page.items) if page else [],
        next_cursor=page.next_cursor if page else None,
        query=query,
        flows=flows,
        statuses=[s.value for s in RunStatus],
        triggers=TRIGGERS,
        problems=problems,
    )


def _moment(text: str, label: str, problems: list[str]) -> datetime | None:
    """A ``datetime-local`` value (``2026-12-07T13:45``), read as UTC."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"{label}: {text!r} is not a date and time like 2026-12-07T13:45")
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@router.get("/runs/{run_id}")
async def run_page(request: Request, run_id: str, step: str | None = None) -> Response:
    await session.require(request, Role.viewer)
    svc = services(request)
    run = await svc.runs.get_run(run_id)
    context = await _run_context(request, run)
    drawer = await _drawer_context(request, run, step) if step else None
    events = await svc.runs.events(run_id, limit=5000)
    return rendering.page(
        request,
        "run.html",
        title=f"Run {run.id}",
        run=run,
        drawer=drawer,
        log_lines=events[-LOG_TAIL:],
        last_event=events[-1].id if events else 0,
        **context,
    )


async def _run_context(request: Request, run: Run) -> dict[str, Any]:
    svc = services(request)
    spec = await svc.runs.get_spec(run.flow_id, run.version)
    steps = await svc.runs.list_steps(run.id)
    attempts = await svc.runs.list_attempts(run.id)
    now = svc.runs.clock.now()
    return {
        "spec": spec,
        "steps": steps,
        "listed": views.listed_steps(steps),
        "dag": views.dag_view(spec, views.step_statuses(steps), views.item_progress(steps)),
        "timeline": views.timeline(run, attempts, steps, now=now),
    }


ITEMS_PAGE = 100


@router.get("/runs/{run_id}/items/{step_id}")
async def run_items(request: Request, run_id: str, step_id: str, after: int = -1) -> Response:
    """A fan-out's items, a page at a time (the run page lists the first few)."""
    await session.require(request, Role.viewer)
    svc = services(request)
    run = await svc.runs.get_run(run_id)
    found = await svc.runs.list_items(
        run_id, step_id, after=after if after >= 0 else None, limit=ITEMS_PAGE + 1
    )
    items = found[:ITEMS_PAGE]
    more = len(found) > ITEMS_PAGE and items
    return rendering.page(
        request,
        "run_items.html",
        title=f"Items of {step_id}",
        run=run,
        step_id=step_id,
        items=items,
        page_size=ITEMS_PAGE,
        next_after=items[-1].item_index if more else None,
    )


@router.get("/runs/{run_id}/panels")
async def run_panels(request: Request, run_id: str) -> Response:
    """The parts of the run page that change as it runs (re-fetched on each ``state`` event)."""
    await session.require(request, Role.viewer)
    run = await services(request).runs.get_run(run_id)
    context = await _run_context(request, run)
    return rendering.fragment("_run_panels.html", run=run, **context)


@router.get("/runs/{run_id}/steps/{step_id}")
async def step_drawer(request: Request, run_id: str, step_id: str) -> Response:
    """The step drawer's content (the page shows it with ``?step=`` when scripts are off)."""
    await session.require(request, Role.viewer)
    run = await services(request).runs.get_run(run_id)
    drawer = await _drawer_context(request, run, step_id)
    return rendering.fragment("_drawer.html", run=run, drawer=drawer)


async def _drawer_context(request: Request, run: Run, step_id: str) -> dict[str, Any]:
    svc = services(request)
    steps = [s for s in await svc.runs.list_steps(run.id) if s.step_id == step_id]
    attempts = [a for a in await svc.runs.list_attempts(run.id) if a.step_id == step_id]
    exchanges = await svc.runs.list_exchanges(run.id, step_id=step_id)
    events = [e for e in await svc.runs.events(run.id, limit=5000) if e.step_id == step_id]
    spec = await svc.runs.get_spec(run.flow_id, run.version)
    declared = next((s for s in spec.steps if s.id == step_id), None)
    return {
        "step_id": step_id,
        "declared": declared,
        "steps": steps,
        "main": next((s for s in steps if s.item_index is None), steps[0] if steps else None),
        "status": views.display_status(steps[0]) if steps else "pending",
        "attempts": attempts,
        "exchanges": exchanges,
        "logs": [e for e in events if e.kind == "log"],
        "events": events,
    }


@router.get("/runs/{run_id}/live")
async def live(
    request: Request,
    run_id: str,
    after: int = 0,
    last_event_id: str | None = Header(default=None),
) -> Response:
    await session.require(request, Role.viewer)
    svc = services(request)
    await svc.runs.get_run(run_id)  # 404 before the stream starts
    start = int(last_event_id) if last_event_id and last_event_id.isdigit() else after

    async def stream() -> AsyncIterator[dict[str, Any]]:
        last_id = start
        previous: dict[str, Any] | None = None
        while True:
            # The run first, then its events: once the run reads as finished, every event
            # written with (or before) that change is visible to the read that follows.
            run = await svc.runs.get_run(run_id)
            events = await svc.runs.events(run_id, after_id=last_id, limit=1000)
            for event in events:
                last_id = event.id
                yield {"event": "log", "id": str(event.id), "data": _log_json(event)}
            steps = await svc.runs.list_steps(run_id)
            state = {
                "run": run.status.value,
                "steps": views.step_statuses(steps),
                "items": views.item_progress(steps),
            }
            if state != previous:
                previous = state
                yield {"event": "state", "data": json.dumps(state)}
            if run.status.terminal and not events:
                yield {"event": "end", "data": json.dumps({"run": run.status.value})}
                return
            if not events:
                await asyncio.sleep(POLL_SECONDS)

    return EventSourceResponse(stream(), ping=15, headers={"Cache-Control": "no-store"})


def _log_json(event: RunEvent) -> str:
    return json.dumps(
        {
            "id": event.id,
            "step_id": event.step_id,
            "kind": event.kind,
            "level": event.level,
            "message": event.message,
            "at": rendering.when(event.at),
        }
    )


@router.post("/runs/{run_id}/cancel")
async def cancel(request: Request, run_id: str) -> Response:
    actor = await session.require(request, Role.author)
    await session.form(request)
    run = await services(request).runs.cancel(run_id, actor=actor.name)
    await _audit(request, "run.cancel", "run", run_id, flow_id=run.flow_id)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


@router.post("/runs/{run_id}/retry")
async def retry(request: Request, run_id: str) -> Response:
    actor = await session.require(request, Role.author)
    await session.form(request)
    run = await services(request).runs.retry(run_id, actor=actor.name)
    await _audit(request, "run.retry", "run", run_id, flow_id=run.flow_id)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


@router.get("/live")
async def live_runs(request: Request) -> Response:
    """Run status changes of every flow (the dashboard notifies about watched runs)."""
    await session.require(request, Role.viewer)  # the API's feed, authenticated here by cookie
    return feeds.status_changes(services(request), flow=None)
