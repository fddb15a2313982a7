"""The feed of run status changes, as Server-Sent Events: ``event: run`` with
``{run_id, flow_id, status, at}`` whenever a run is created or changes status (after a first
``event: ready``). It reads the database, so it sees the runs of every process. The API serves
it at ``/api/v1/stream``; the web UI at ``/live``, authenticated by its session cookie.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sse_starlette import EventSourceResponse

from linkloom import wiring
from linkloom.engine.records import RunFilter

PING_SECONDS = 15
GLOBAL_POLL_SECONDS = 0.5


class RunStatusChange(BaseModel):
    """An item of the global stream: a run changed status."""

    run_id: str
    flow_id: str
    status: str
    at: datetime


def status_changes(services: wiring.Services, *, flow: str | None) -> EventSourceResponse:
    """The run status changes of ``flow`` (of every flow when None), as they happen."""

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
