"""``engine.pull.PullService``: leases, redelivery, lost workers, stale tasks, results (no I/O:
an in-memory store and run-service double)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from linkloom.engine import errors
from linkloom.engine.models import StepStatus
from linkloom.engine.pull import (
    ACTIVE,
    LOST,
    STOPPED,
    PullService,
    QueuedTask,
    TaskQueue,
    WorkerInfo,
)


class Clock:
    def __init__(self) -> None:
        self.current = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class MemoryPullStore:
    def __init__(self) -> None:
        self.tasks: dict[str, QueuedTask] = {}
        self.workers: dict[str, WorkerInfo] = {}

    async def enqueue(self, task: QueuedTask) -> None:
        self.tasks.setdefault(task.token, task)

    async def take(self, *, worker_id, queues, now, lease_seconds, limit):  # type: ignore[no-untyped-def]
        free = [
            t for t in sorted(self.tasks.values(), key=lambda t: t.created_at)
            if t.queue in queues and (t.worker_id is None or (t.lease_until or now) < now)
        ][:limit]  # fmt: skip
        out = []
        for t in free:
            taken = replace(
                t, worker_id=worker_id, lease_until=now + timedelta(seconds=lease_seconds),
                deliveries=t.deliveries + 1,
            )  # fmt: skip
            self.tasks[t.token] = taken
            out.append(taken)
        return out

    async def delete(self, token: str) -> None:
        self.tasks.pop(token, None)

    async def renew(self, *, worker_id, tokens, until):  # type: ignore[no-untyped-def]
        held = {t for t in tokens if t in self.tasks and self.tasks[t].worker_id == worker_id}
        for t in held:
            self.tasks[t] = replace(self.tasks[t], lease_until=until)
        return held

    async def release_worker(self, worker_id: str) -> int:
        mine = [t for t in self.tasks.values() if t.worker_id == worker_id]
        for t in mine:
            self.tasks[t.token] = replace(t, worker_id=None, lease_until=None)
        return len(mine)

    async def save_worker(self, worker: WorkerInfo) -> None:
        self.workers[worker.id] = worker

    async def touch_worker(self, worker_id: str, *, now: datetime) -> bool:
        if worker_id not in self.workers or self.workers[worker_id].status == STOPPED:
            return False
        self.workers[worker_id] = replace(
            self.workers[worker_id], last_heartbeat=now, status=ACTIVE
        )
        return True

    async def mark_lost(self, *, before: datetime) -> list[str]:
        lost = [
            w.id for w in self.workers.values() if w.status == ACTIVE and w.last_heartbeat < before
        ]
        for wid in lost:
            self.workers[wid] = replace(self.workers[wid], status=LOST)
        return lost

    async def set_status(self, worker_id: str, status: str) -> None:
        self.workers[worker_id] = replace(self.workers[worker_id], status=status)

    async def list_workers(self, *, include_stopped: bool) -> list[WorkerInfo]:
        return [w for w in self.workers.values() if include_stopped or w.status != STOPPED]

    async def leased_tasks(self) -> list[QueuedTask]:
        return [t for t in self.tasks.values() if t.worker_id]


class Runs:
    """The run service's side: which step runs wait, and completed callbacks."""

    def __init__(self) -> None:
        self.steps: dict[str, Any] = {}
        self.completed: list[tuple[str, Any]] = []
        self.store = self

    async def find_step_run(self, step_run_id: str) -> Any:
        return self.steps.get(step_run_id)

    async def complete_callback(self, token: str, payload: Any) -> None:
        if any(t == token for t, _ in self.completed):
            raise errors.CallbackAlreadyUsed()
        self.completed.append((token, payload))


@pytest.fixture
def env() -> SimpleNamespace:
    clock, store, runs = Clock(), MemoryPullStore(), Runs()
    queue = TaskQueue(store, clock)
    service = PullService(
        store=store, runs=runs, queue=queue, clock=clock, lease_seconds=10, lost_after=20
    )
    return SimpleNamespace(clock=clock, store=store, runs=runs, queue=queue, service=service)


async def _queue_task(env: SimpleNamespace, n: int = 1, *, attempt: int = 1) -> str:
    sid = f"sr{n}"
    env.runs.steps[sid] = SimpleNamespace(status=StepStatus.RUNNING, attempt=attempt)
    token = f"{sid}.{attempt}.mac"
    await env.queue.enqueue(
        token=token, step_run_id=sid, attempt=attempt, queue="q", task="t",
        envelope={"run_id": "r", "step_id": f"s{n}", "index": None},
    )  # fmt: skip
    return token


async def _register(env: SimpleNamespace, name: str) -> None:
    await env.service.register(worker_id=name, host="h", queues=["q"], version="1")


async def test_pull_task_is_leased_to_one_worker_and_redelivered_after_its_lease(env) -> None:  # type: ignore[no-untyped-def]
    await _register(env, "a")
    await _register(env, "b")
    token = await _queue_task(env)
    got = await env.service.poll(worker_id="a", queues=["q"])
    assert [t.token for t in got] == [token]
    assert got[0].deliveries == 1
    assert await env.service.poll(worker_id="b", queues=["q"]) == []
    env.clock.advance(11)  # a's lease expired (no heartbeat), a not yet lost
    again = await env.service.poll(worker_id="b", queues=["q"])
    assert [(t.token, t.deliveries, t.worker_id) for t in again] == [(token, 2, "b")]


async def test_pull_heartbeat_keeps_the_lease_and_reports_held_tasks(env) -> None:  # type: ignore[no-untyped-def]
    await _register(env, "a")
    await _register(env, "b")
    token = await _queue_task(env)
    await env.service.poll(worker_id="a", queues=["q"])
    for _ in range(3):
        env.clock.advance(6)
        assert await env.service.heartbeat(worker_id="a", tokens=[token, "other"]) == {token}
        await env.service.heartbeat(worker_id="b", tokens=[])
        assert await env.service.poll(worker_id="b", queues=["q"]) == []


async def test_pull_worker_without_heartbeats_is_lost_and_its_tasks_requeued(env) -> None:  # type: ignore[no-untyped-def]
    await _register(env, "a")
    await _register(env, "b")
    token = await _queue_task(env)
    await env.service.poll(worker_id="a", queues=["q"])
    env.clock.advance(21)
    await env.service.heartbeat(worker_id="b", tokens=[])
    workers = {w.id: w for w in await env.service.list_workers()}
    assert workers["a"].status == LOST
    assert workers["b"].status == ACTIVE
    assert env.store.tasks[token].worker_id is None  # back on the queue
    taken = await env.service.poll(worker_id="b", queues=["q"])
    assert [t.token for t in taken] == [token]
    assert [w.current_tasks for w in await env.service.list_workers() if w.id == "b"] == [("r:s1",)]


async def test_pull_task_whose_attempt_ended_is_dropped_not_delivered(env) -> None:  # type: ignore[no-untyped-def]
    await _register(env, "a")
    token = await _queue_task(env)
    env.runs.steps["sr1"] = SimpleNamespace(status=StepStatus.QUEUED, attempt=2)  # timed out
    assert await env.service.poll(worker_id="a", queues=["q"]) == []
    assert token not in env.store.tasks


async def test_pull_result_completes_once_and_a_second_is_a_conflict(env) -> None:  # type: ignore[no-untyped-def]
    await _register(env, "a")
    token = await _queue_task(env)
    await env.service.poll(worker_id="a", queues=["q"])
    await env.service.complete(worker_id="a", token=token, payload={"status": "SUCCESS"})
    assert env.runs.completed == [(token, {"status": "SUCCESS"})]
    assert token not in env.store.tasks
    with pytest.raises(errors.CallbackAlreadyUsed):
        await env.service.complete(worker_id="a", token=token, payload={"status": "SUCCESS"})


async def test_pull_unregistered_worker_is_told_to_register(env) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.WorkerNotRegistered, match="register"):
        await env.service.poll(worker_id="ghost", queues=["q"])


async def test_pull_stopped_worker_returns_its_tasks_at_once(env) -> None:  # type: ignore[no-untyped-def]
    await _register(env, "a")
    await _register(env, "b")
    token = await _queue_task(env)
    await env.service.poll(worker_id="a", queues=["q"])
    await env.service.stop_worker("a")
    assert [t.token for t in await env.service.poll(worker_id="b", queues=["q"])] == [token]
    assert "a" not in {w.id for w in await env.service.list_workers()}
