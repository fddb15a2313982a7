"""The wired services: migrate on start, run a flow end to end, and (PostgreSQL) wake a worker
in another set of services through LISTEN/NOTIFY instead of waiting for its poll."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from engine_harness import Backend, _require, step

from linkloom.config import load_settings
from linkloom.engine.models import RunStatus
from linkloom.flows.spec import FlowSpec
from linkloom.wiring import build_services


async def test_build_services_migrates_runs_and_stops(tmp_path: Path, backend: Backend) -> None:
    settings = load_settings(
        home=tmp_path, engine={"poll_interval": 0.05}, security={"signing_key": "k" * 32}
    )
    services = build_services(settings)
    await services.start()
    try:
        ready = await services.readiness()
        assert ready["database"] is True
        assert ready["migrations"] is True
        await services.runs.apply_flow(
            FlowSpec.model_validate({"id": "wired", "steps": [step("a", backend)]})
        )
        run = await services.runs.trigger("wired", inputs={})
        async with asyncio.timeout(10):
            done = await services.runs.wait(run.id)
        assert done.status is RunStatus.SUCCEEDED
    finally:
        await services.stop()
    assert (tmp_path / "loom.db").exists()


async def test_notify_wakes_a_worker_in_other_services(pg_database: str, backend: Backend) -> None:
    _require(bool(pg_database), "PostgreSQL not configured: set LOOM_TEST_POSTGRES_URL")
    api_side = build_services(load_settings(database={"url": pg_database}))
    worker_side = build_services(
        load_settings(database={"url": pg_database}, engine={"poll_interval": 30})
    )
    await api_side.start(worker=False, migrate=False)
    await worker_side.start(migrate=False)
    try:
        await api_side.runs.apply_flow(
            FlowSpec.model_validate({"id": "notified", "steps": [step("n", backend)]})
        )
        await asyncio.sleep(0.3)  # the worker is now asleep for up to 30 s
        started = time.perf_counter()
        run = await api_side.runs.trigger("notified", inputs={})
        async with asyncio.timeout(10):
            done = await api_side.runs.wait(run.id, poll=0.05)
        assert done.status is RunStatus.SUCCEEDED
        assert time.perf_counter() - started < 5, "the worker slept through the NOTIFY"
    finally:
        await worker_side.stop()
        await api_side.stop()


async def test_embedded_restart_requeues_steps_of_the_dead_process(
    tmp_path: Path, backend: Backend
) -> None:
    """After a crash the embedded server does not wait for old leases to expire."""
    settings = load_settings(home=tmp_path, engine={"poll_interval": 0.05, "lease_seconds": 600})
    first = build_services(settings)
    await first.start(worker=False)
    await first.runs.apply_flow(
        FlowSpec.model_validate(
            {"id": "crashy", "steps": [step("a", backend), step("b", backend, depends_on=["a"])]}
        )
    )
    run = await first.runs.trigger("crashy", inputs={})
    claims = await first.store.claim(
        owner="dead-process", now=first.runs.clock.now(), lease_seconds=600, limit=5
    )
    assert [c.step.step_id for c in claims] == ["a"]
    await first.stop()  # the "dead" process never finishes step a

    second = build_services(settings)
    await second.start()
    try:
        async with asyncio.timeout(10):
            done = await second.runs.wait(run.id, poll=0.05)
        assert done.status is RunStatus.SUCCEEDED
        [call] = backend.calls_to("/a")
        assert call["headers"]["Idempotency-Key"] == f"{run.id}:a"
    finally:
        await second.stop()
