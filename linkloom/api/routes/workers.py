"""Pull-mode workers: register, long-poll a queue, heartbeat, report results; the registry.

A worker's token needs the ``author`` role (it completes steps); listing needs ``viewer``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from linkloom.access import Role
from linkloom.api.deps import Services, require_role
from linkloom.api.schemas.common import AUTHED, problem_responses
from linkloom.api.schemas.workers import (
    HeartbeatIn,
    HeartbeatOut,
    PollIn,
    PollOut,
    RegisteredOut,
    ResultIn,
    TaskOut,
    WorkerIn,
    WorkerList,
    WorkerOut,
)

router = APIRouter(prefix="/api/v1", tags=["workers"])


def _worker(w: Any) -> WorkerOut:
    return WorkerOut(
        id=w.id, host=w.host, queues=list(w.queues), version=w.version, status=w.status,
        started_at=w.started_at, last_heartbeat=w.last_heartbeat,
        current_tasks=list(w.current_tasks),
    )  # fmt: skip


@router.get(
    "/workers",
    summary="Pull-mode workers: queues, version, last heartbeat, current tasks",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED),
)
async def list_workers(
    services: Services,
    include_stopped: Annotated[bool, Query(description="Also those that stopped.")] = False,
) -> WorkerList:
    workers = await services.pull.list_workers(include_stopped=include_stopped)
    return WorkerList(items=[_worker(w) for w in workers])


@router.post(
    "/workers",
    summary="Register a pull-mode worker",
    status_code=201,
    dependencies=[require_role(Role.author)],
    responses=problem_responses(*AUTHED, 422),
)
async def register_worker(body: WorkerIn, services: Services) -> RegisteredOut:
    pull = services.pull
    w = await pull.register(
        worker_id=body.id, host=body.host, queues=body.queues, version=body.version
    )
    return RegisteredOut(
        **_worker(w).model_dump(),
        lease_seconds=pull.lease_seconds,
        heartbeat_interval=pull.heartbeat_interval,
    )


@router.post(
    "/workers/{worker_id}/heartbeat",
    summary="Renew a worker's registration and the leases of its tasks",
    dependencies=[require_role(Role.author)],
    responses=problem_responses(*AUTHED, 404),
)
async def heartbeat(worker_id: str, body: HeartbeatIn, services: Services) -> HeartbeatOut:
    held = await services.pull.heartbeat(worker_id=worker_id, tokens=body.tasks)
    return HeartbeatOut(
        held=[t for t in body.tasks if t in held], lease_seconds=services.pull.lease_seconds
    )


@router.delete(
    "/workers/{worker_id}",
    summary="A worker stops cleanly: its tasks go back on the queue now",
    status_code=204,
    dependencies=[require_role(Role.author)],
    responses=problem_responses(*AUTHED),
)
async def stop_worker(worker_id: str, services: Services) -> Response:
    await services.pull.stop_worker(worker_id)
    return Response(status_code=204)


@router.post(
    "/queues/poll",
    summary="Long-poll queues for tasks (leased to the worker until it heartbeats no more)",
    dependencies=[require_role(Role.author)],
    responses=problem_responses(*AUTHED, 404, 422),
)
async def poll(body: PollIn, services: Services, request: Request) -> PollOut:
    wait = min(body.wait, services.settings.pull.max_wait)
    tasks = await services.pull.poll(
        worker_id=body.worker_id, queues=body.queues, limit=body.max_tasks, wait=wait
    )
    return PollOut(
        tasks=[
            TaskOut(
                token=t.token,
                queue=t.queue,
                task=t.task,
                deliveries=t.deliveries,
                lease_until=t.lease_until,
                envelope=t.envelope,
            )
            for t in tasks
        ]
    )


@router.post(
    "/tasks/{token}/result",
    summary="Report a task's result ({status, output, logs, error}); a second one is 409",
    status_code=204,
    dependencies=[require_role(Role.author)],
    responses=problem_responses(*AUTHED, 404, 409, 422),
)
async def report_result(token: str, body: ResultIn, services: Services) -> Response:
    payload = body.model_dump(exclude={"worker_id"})
    await services.pull.complete(worker_id=body.worker_id, token=token, payload=payload)
    return Response(status_code=204)
