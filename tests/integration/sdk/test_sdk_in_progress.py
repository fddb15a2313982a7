"""A backend still working on an Idempotency-Key is "not yet", not a failed attempt.

The SDK answers a second delivery of a key whose first delivery is still running with 503
``{"code": "in_progress"}``. The engine asks again with backoff, up to the step's timeout,
without using an attempt, and takes the stored answer once the first delivery finishes. The
backend here is the example backend, built with the SDK, on a real port; the engine is the
wired one on SQLite.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.backend import RunningBackend, serve
from linkloom.config import load_settings
from linkloom.engine.models import RunStatus
from linkloom.flows.spec import FlowSpec
from linkloom.wiring import Services, build_services

KEY = "in-progress-signing-key"


@pytest.fixture(scope="module")
def backend() -> Iterator[RunningBackend]:
    with serve(signing_key=KEY) as running:
        yield running


@pytest.fixture
async def loom(tmp_path: Path, backend: RunningBackend) -> AsyncIterator[Services]:
    backend.app.state.backend.calls.clear()
    settings = load_settings(
        home=tmp_path,
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"},
        security={"signing_key": KEY},
        engine={"poll_interval": 0.05},
    )
    services = build_services(settings)
    await services.start()
    try:
        yield services
    finally:
        await services.stop(grace=2)


def sleeper(flow_id: str, backend: RunningBackend, *, timeout: str, attempts: int) -> FlowSpec:
    return FlowSpec.model_validate(
        {
            "id": flow_id,
            "inputs": {"seconds": {"type": "number", "default": 1}},
            "steps": [
                {
                    "id": "work",
                    "type": "http",
                    "method": "POST",
                    "url": f"{backend.url}/api/tasks/sleep",
                    "timeout": timeout,
                    "retry": {"max_attempts": attempts, "initial_delay": "0.1s"},
                }
            ],
        }
    )


def handled(backend: RunningBackend, name: str) -> int:
    """How many deliveries the backend's handler actually ran (replays do not count)."""
    return int(backend.app.state.backend.calls[name])


async def attempts_of(loom: Services, run_id: str) -> list[Any]:
    return [a for a in await loom.runs.list_attempts(run_id) if a.step_id == "work"]


async def test_a_retry_while_the_backend_still_works_waits_for_its_answer(
    loom: Services, backend: RunningBackend
) -> None:
    """The first attempt times out after 2 s while the handler sleeps 3 s; the retry is told
    "still processing" and asks again until the stored answer is there."""
    await loom.runs.apply_flow(sleeper("slow-work", backend, timeout="2s", attempts=2))
    run = await loom.runs.trigger("slow-work", inputs={"seconds": 3})
    async with asyncio.timeout(30):
        done = await loom.runs.wait(run.id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    (step,) = await loom.runs.list_steps(run.id)
    assert step.output == {"slept": 3.0}
    assert step.attempt == 2  # the timed-out attempt, then one that waited
    assert handled(backend, "sleep") == 1  # the work ran once
    errors = [a.error for a in await attempts_of(loom, run.id) if a.error]
    assert [e["kind"] for e in errors] == ["timeout"]  # no attempt failed on the 503
    logs = [e.message for e in await loom.runs.events(run.id) if e.kind == "log"]
    assert any("still processing this Idempotency-Key" in line for line in logs)


async def test_cancel_then_retry_while_the_backend_still_works_succeeds(
    loom: Services, backend: RunningBackend
) -> None:
    """The issue's path: cancel a run mid-call, retry it while the backend still works."""
    await loom.runs.apply_flow(sleeper("cancelled-work", backend, timeout="20s", attempts=1))
    run = await loom.runs.trigger("cancelled-work", inputs={"seconds": 2.5})
    async with asyncio.timeout(10):
        while handled(backend, "sleep") == 0:  # noqa: ASYNC110 (a counter in another thread)
            await asyncio.sleep(0.05)  # the backend has started the work
    await loom.runs.cancel(run.id)
    async with asyncio.timeout(10):
        cancelled = await loom.runs.wait(run.id)
    assert cancelled.status is RunStatus.CANCELLED
    await loom.runs.retry(run.id)
    async with asyncio.timeout(30):
        done = await loom.runs.wait(run.id)
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert handled(backend, "sleep") == 1
    assert await loom.runs.list_dead_letters() == []


async def test_still_processing_past_the_step_timeout_fails_the_attempt_as_a_timeout(
    loom: Services, backend: RunningBackend
) -> None:
    await loom.runs.apply_flow(sleeper("stuck-work", backend, timeout="1s", attempts=2))
    run = await loom.runs.trigger("stuck-work", inputs={"seconds": 8})
    async with asyncio.timeout(30):
        done = await loom.runs.wait(run.id)
    assert done.status is RunStatus.FAILED
    errors = [a.error for a in await attempts_of(loom, run.id) if a.error]
    assert [e["kind"] for e in errors] == ["timeout", "timeout"]
    assert "still processing this Idempotency-Key" in errors[1]["message"]
    assert "the step's timeout is 1s" in errors[1]["message"]
    assert handled(backend, "sleep") == 1
