"""Async steps' deadlines are kept when they pass, not at the next lease-renewal tick.

A worker renews its leases every ``lease_seconds / 3`` (10 s by default); an async step's
heartbeat timeout is often a few seconds. The worker sleeps until the earliest deadline ahead,
so a missed heartbeat fails the attempt about when it is due, on SQLite and on PostgreSQL; and a
late callback is refused whatever the worker is doing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from engine_harness import SIGNING_KEY, Backend, Reply, step

from linkloom.engine import callbacks
from linkloom.engine.errors import CallbackAlreadyUsed
from linkloom.engine.models import RunStatus
from linkloom.engine.ports import StepServices
from linkloom.engine.service import RunService
from linkloom.engine.steps import builtin_executors
from linkloom.engine.worker import Worker
from linkloom.flows.spec import FlowSpec
from linkloom.store import session
from linkloom.store.runs import SqlRunStore
from linkloom.testing import StaticSecrets, SystemClock
from linkloom.wiring import make_http_client, make_outbound

LEASE_SECONDS = 60.0  # renewals every 10 s: far longer than the heartbeat timeout below


@pytest.fixture
async def slow_renewing(db_url: str, backend: Backend) -> AsyncIterator[RunService]:
    db = session.Database(db_url)
    store = SqlRunStore(db)
    clock = SystemClock()
    holder: dict[str, Worker] = {}
    runs = RunService(
        store=store,
        clock=clock,
        secrets=StaticSecrets({}),
        signing_key=SIGNING_KEY,
        wake=lambda: holder["w"].wake() if "w" in holder else None,
    )
    http = make_http_client(concurrency=4)
    outbound = make_outbound(concurrency=4)
    worker = Worker(
        store=store,
        executors=builtin_executors(),
        services=StepServices(
            http=http,
            outbound=outbound,
            clock=clock,
            secrets=StaticSecrets({}),
            signing_key=SIGNING_KEY,
            public_url="http://127.0.0.1:9",
        ),
        lease_seconds=LEASE_SECONDS,
        poll_interval=0.05,
        specs=runs.specs,
        on_run_finished=runs.notify_finished,
    )
    holder["w"] = worker
    await worker.start()
    yield runs
    await worker.stop(grace=1)
    await http.aclose()
    await outbound.aclose()
    await db.dispose()


async def test_a_missed_heartbeat_fails_the_attempt_when_its_deadline_passes(
    slow_renewing: RunService, backend: Backend
) -> None:
    backend.on("/job", Reply(status=202, body={}))
    flow = {
        "id": "deadline-kept",
        "steps": [
            step("job", backend, mode="async", heartbeat_timeout=0.5, retry={"max_attempts": 1})
        ],
    }
    await slow_renewing.apply_flow(FlowSpec.model_validate(flow))
    started = time.monotonic()
    run = await slow_renewing.trigger("deadline-kept", inputs={})
    async with asyncio.timeout(8):  # before: the next renewal tick, 10 s later
        done = await slow_renewing.wait(run.id, poll=0.1)
    assert done.status is RunStatus.FAILED
    assert time.monotonic() - started < 8
    [job] = await slow_renewing.list_steps(run.id)
    assert job.error is not None
    assert job.error["kind"] == "timeout"
    token = backend.calls_to("/job")[0]["body"]["callback"]["url"].rsplit("/", 1)[1]
    assert callbacks.parse_token(SIGNING_KEY, token)[0] == job.id
    with pytest.raises(CallbackAlreadyUsed):  # the attempt is over: 409
        await slow_renewing.complete_callback(token, {"status": "SUCCESS"})
