"""Pull-mode workers: the server side of ``linkloom.sdk.Worker``.

``task`` steps (``engine.steps.task``) put their attempt on a queue (``TaskQueue.enqueue``) and
wait like an async ``http`` step. ``PullService`` hands queued tasks to polling workers under a
lease (``poll``), renews the leases of the tasks a worker still holds (``heartbeat``), completes
the step through ``RunService.complete_callback`` (``complete``: the same path, and the same
409 for a second result, as async callbacks), and keeps the worker registry: a worker whose last
heartbeat is older than ``lost_after`` is marked lost and its tasks go back on the queue at
once; a task whose lease expires is handed to the next poller anyway. Redelivery keeps the
attempt and its idempotency key, so delivery is at-least-once and a handler can make it
exactly-once in effect. A task whose attempt ended meanwhile (timeout, cancel) is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from linkloom.engine import errors
from linkloom.engine.models import StepStatus
from linkloom.engine.ports import Clock

log = structlog.get_logger(__name__)

ACTIVE, LOST, STOPPED = "active", "lost", "stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedTask:
    token: str
    step_run_id: str
    attempt: int
    queue: str
    task: str
    envelope: dict[str, Any]
    created_at: datetime
    worker_id: str | None = None
    lease_until: datetime | None = None
    deliveries: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerInfo:
    id: str
    host: str
    queues: tuple[str, ...]
    version: str
    status: str
    started_at: datetime
    last_heartbeat: datetime
    current_tasks: tuple[str, ...] = field(default=())  # "<run_id>:<step_id>[<index>]"


class PullStore(Protocol):
    """Persistence of queued tasks and workers (``linkloom.store.pull.SqlPullStore``)."""

    async def enqueue(self, task: QueuedTask) -> None:
        """Insert the task unless one with its token exists."""
        ...

    async def take(
        self, *, worker_id: str, queues: list[str], now: datetime, lease_seconds: float, limit: int
    ) -> list[QueuedTask]:
        """Lease up to ``limit`` oldest tasks of ``queues`` that are free or whose lease
        expired; never hands one task to two workers at once."""
        ...

    async def delete(self, token: str) -> None: ...

    async def renew(self, *, worker_id: str, tokens: list[str], until: datetime) -> set[str]:
        """Extend the leases ``worker_id`` still holds; return those tokens."""
        ...

    async def release_worker(self, worker_id: str) -> int:
        """Put the worker's leased tasks back on their queues; return how many."""
        ...

    async def save_worker(self, worker: WorkerInfo) -> None: ...

    async def touch_worker(self, worker_id: str, *, now: datetime) -> bool:
        """Record a heartbeat (a lost worker becomes active again); False if unknown or
        stopped (a stopped worker must register again)."""
        ...

    async def mark_lost(self, *, before: datetime) -> list[str]:
        """Active workers whose last heartbeat is older than ``before`` become lost."""
        ...

    async def set_status(self, worker_id: str, status: str) -> None: ...

    async def list_workers(self, *, include_stopped: bool) -> list[WorkerInfo]: ...

    async def leased_tasks(self) -> list[QueuedTask]: ...


class StepLookup(Protocol):
    """What the service reads of the engine: the run service (``engine.service.RunService``)."""

    store: Any

    async def complete_callback(self, token: str, payload: Any) -> None: ...


class TaskQueue:
    """What ``task`` steps enqueue through (``services.extra["task_queue"]``)."""

    def __init__(self, store: PullStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.arrived = asyncio.Event()  # wakes pollers in this process at once

    async def enqueue(
        self,
        *,
        token: str,
        step_run_id: str,
        attempt: int,
        queue: str,
        task: str,
        envelope: dict[str, Any],
    ) -> None:
        await self.store.enqueue(
            QueuedTask(
                token=token,
                step_run_id=step_run_id,
                attempt=attempt,
                queue=queue,
                task=task,
                envelope=envelope,
                created_at=self.clock.now(),
            )
        )
        self.arrived.set()


class PullService:
    """Polls, heartbeats, results and the worker registry (the API's ``/workers`` routes)."""

    def __init__(
        self,
        *,
        store: PullStore,
        runs: StepLookup,
        queue: TaskQueue,
        clock: Clock,
        lease_seconds: float = 30.0,
        lost_after: float | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        self.store = store
        self.runs = runs
        self.queue = queue
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.lost_after = lost_after if lost_after is not None else 2 * lease_seconds
        self.poll_interval = poll_interval

    @property
    def heartbeat_interval(self) -> float:
        return max(0.1, self.lease_seconds / 3)

    async def register(
        self, *, worker_id: str | None, host: str, queues: list[str], version: str
    ) -> WorkerInfo:
        now = self.clock.now()
        worker = WorkerInfo(
            id=worker_id or f"{host}-{uuid.uuid4().hex[:8]}",
            host=host,
            queues=tuple(queues),
            version=version,
            status=ACTIVE,
            started_at=now,
            last_heartbeat=now,
        )
        await self.store.save_worker(worker)
        log.info("pull_worker_registered", worker_id=worker.id, queues=queues, host=host)
        return worker

    async def poll(
        self, *, worker_id: str, queues: list[str], limit: int = 1, wait: float = 0.0
    ) -> list[QueuedTask]:
        """Tasks for this worker, waiting up to ``wait`` seconds for one to arrive."""
        deadline = self.clock.now() + timedelta(seconds=max(0.0, wait))
        while True:
            await self._seen(worker_id)
            await self.sweep()
            taken = await self.store.take(
                worker_id=worker_id,
                queues=queues,
                now=self.clock.now(),
                lease_seconds=self.lease_seconds,
                limit=limit,
            )
            live = [t for t in taken if await self._still_waiting(t)]
            if live or self.clock.now() >= deadline:
                for t in live:
                    log.info(
                        "pull_task_delivered", worker_id=worker_id, token=t.token,
                        queue=t.queue, deliveries=t.deliveries,
                    )  # fmt: skip
                return live
            remaining = (deadline - self.clock.now()).total_seconds()
            self.queue.arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.01, min(self.poll_interval, remaining))):
                    await self.queue.arrived.wait()

    async def heartbeat(self, *, worker_id: str, tokens: list[str]) -> set[str]:
        """Renew the worker's registration and the leases of the tasks it still holds."""
        await self._seen(worker_id)
        until = self.clock.now() + timedelta(seconds=self.lease_seconds)
        return await self.store.renew(worker_id=worker_id, tokens=tokens, until=until)

    async def complete(self, *, worker_id: str, token: str, payload: Any) -> None:
        """Complete the task's step with the worker's result.

        Raises:
            CallbackAlreadyUsed: this attempt already has its result (409).
            CallbackTokenInvalid, CallbackNotFound.
        """
        await self._seen(worker_id)
        try:
            await self.runs.complete_callback(token, payload)
        except (errors.CallbackAlreadyUsed, errors.CallbackNotFound):
            await self.store.delete(token)
            raise
        await self.store.delete(token)

    async def stop_worker(self, worker_id: str) -> None:
        """A clean shutdown: its tasks go back on the queue now."""
        await self.store.set_status(worker_id, STOPPED)
        await self.store.release_worker(worker_id)

    async def sweep(self) -> list[str]:
        """Mark workers that stopped heartbeating as lost and requeue their tasks."""
        before = self.clock.now() - timedelta(seconds=self.lost_after)
        lost = await self.store.mark_lost(before=before)
        for worker_id in lost:
            released = await self.store.release_worker(worker_id)
            log.warning("pull_worker_lost", worker_id=worker_id, tasks_requeued=released)
        return lost

    async def list_workers(self, *, include_stopped: bool = False) -> list[WorkerInfo]:
        await self.sweep()
        workers = await self.store.list_workers(include_stopped=include_stopped)
        now = self.clock.now()
        held: dict[str, list[str]] = {}
        for t in await self.store.leased_tasks():
            if t.worker_id and t.lease_until is not None and t.lease_until > now:
                label = f"{t.envelope.get('run_id')}:{t.envelope.get('step_id')}"
                if t.envelope.get("index") is not None:
                    label += f"[{t.envelope['index']}]"
                held.setdefault(t.worker_id, []).append(label)
        return [replace(w, current_tasks=tuple(held.get(w.id, ()))) for w in workers]

    async def _seen(self, worker_id: str) -> None:
        if not await self.store.touch_worker(worker_id, now=self.clock.now()):
            raise errors.WorkerNotRegistered(worker_id=worker_id)

    async def _still_waiting(self, task: QueuedTask) -> bool:
        step = await self.runs.store.find_step_run(task.step_run_id)
        if step is None or step.status is not StepStatus.RUNNING or step.attempt != task.attempt:
            await self.store.delete(task.token)  # its attempt ended: timed out, cancelled, done
            return False
        return True
