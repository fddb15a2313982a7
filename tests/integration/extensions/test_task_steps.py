"""``type: task`` steps through the real engine (an embedded Loom on SQLite): queued, taken,
completed through the callback path; a task nobody takes times out and is retried as a new
attempt, the stale one never handed out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from linkloom.embed import Loom
from linkloom.engine import errors

FLOW = {
    "id": "pull-task",
    "steps": [
        {
            "id": "work",
            "type": "task",
            "queue": "q",
            "task": "double",
            "payload": {"n": "{{ inputs.n }}"},
            "timeout": 1.0,
            "retry": {"max_attempts": 2, "initial_delay": 0.05, "jitter": False},
            "outputs": {"doubled": "{{ output.value }}"},
        }
    ],
    "inputs": {"n": {"type": "integer"}},
    "outputs": {"value": "{{ steps.work.outputs.doubled }}"},
}


async def _take(loom: Loom, worker: str, *, within: float = 10.0):  # type: ignore[no-untyped-def]
    async with asyncio.timeout(within):
        while True:
            tasks = await loom.services.pull.poll(worker_id=worker, queues=["q"], wait=0.2)
            if tasks:
                return tasks


@pytest.fixture
async def loom(tmp_path: Path):  # type: ignore[no-untyped-def]
    from linkloom import config

    settings = config.load_settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"},
        engine={"poll_interval": 0.05, "lease_seconds": 1.0},
    )
    async with Loom(settings=settings, scheduler=False) as loom:
        await loom.apply(FLOW)
        await loom.services.pull.register(worker_id="w", host="h", queues=["q"], version="t")
        yield loom


async def test_task_step_is_done_by_the_worker_that_took_it(loom: Loom) -> None:
    run = await loom.trigger("pull-task", {"n": 21})
    [task] = await _take(loom, "w")
    assert task.envelope["payload"] == {"n": 21}
    assert task.envelope["idempotency_key"] == f"{run.id}:work"
    await loom.services.pull.complete(
        worker_id="w", token=task.token, payload={"status": "SUCCESS", "output": {"value": 42}}
    )
    done = await loom.wait(run.id, timeout=10)
    assert done.status.value == "SUCCEEDED"
    assert done.outputs == {"value": 42}


@pytest.mark.slow
async def test_task_nobody_finishes_times_out_and_is_retried_as_a_new_attempt(loom: Loom) -> None:
    run = await loom.trigger("pull-task", {"n": 2})
    [first] = await _take(loom, "w")
    assert first.envelope["attempt"] == 1
    # the worker sits on it past the step's timeout: the attempt fails and a new one is queued
    [second] = await _take(loom, "w", within=15)
    assert second.envelope["attempt"] == 2
    assert second.envelope["idempotency_key"] == first.envelope["idempotency_key"]
    late = loom.services.pull.complete(
        worker_id="w", token=first.token, payload={"status": "SUCCESS", "output": {"value": -1}}
    )
    with pytest.raises(errors.CallbackAlreadyUsed):  # the first attempt is over: 409
        await late
    await loom.services.pull.complete(
        worker_id="w", token=second.token, payload={"status": "SUCCESS", "output": {"value": 4}}
    )
    done = await loom.wait(run.id, timeout=10)
    assert done.status.value == "SUCCEEDED"
    assert done.outputs == {"value": 4}
    attempts = await loom.runs.list_attempts(run.id)
    work = [a for a in attempts if a.step_id == "work"]
    assert [(a.number, a.status.value) for a in work] == [(1, "FAILED"), (2, "SUCCEEDED")]
    assert work[0].error is not None
    assert work[0].error["kind"] == "timeout"
