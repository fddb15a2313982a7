"""``store.operations`` on a real database (SQLite; PostgreSQL too when configured): the queue
figures ``/metrics`` shows, the schema revision, and the worker heartbeats behind ``/readyz``
on an API server whose workers run elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from linkloom.config import load_settings
from linkloom.engine.service import RunService
from linkloom.flows.spec import FlowSpec
from linkloom.store import session
from linkloom.store.operations import ProcessHeartbeat, SqlOperations
from linkloom.store.runs import SqlRunStore
from linkloom.testing import FrozenClock, SystemClock
from linkloom.wiring import build_services
from tests.integration.crash.engine_process import fresh_database


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path) as url:
        yield url


async def test_operations_queue_stats_count_ready_steps_and_their_age(db_url: str) -> None:
    db = session.Database(db_url)
    runs = RunService(store=SqlRunStore(db), clock=SystemClock())
    later = FrozenClock()
    operations = SqlOperations(db, later)
    try:
        steps = [{"id": s, "type": "http", "url": "http://127.0.0.1:9/x"} for s in ("a", "b")]
        await runs.apply_flow(FlowSpec.model_validate({"id": "q", "steps": steps}))
        later.set(runs.clock.now())
        empty = await operations.queue_stats()
        for _ in range(3):
            await runs.trigger("q")  # no worker: both root steps of each run wait
        later.set(runs.clock.now())
        later.advance(30)
        stats = await operations.queue_stats()
        assert await operations.revision() == session.head_revision()
    finally:
        await db.dispose()
    assert (empty.ready, empty.running, empty.oldest_ready_age_seconds) == (0, 0, None)
    assert stats.ready == 6
    assert stats.running == 0
    assert stats.oldest_ready_age_seconds is not None
    assert 30 <= stats.oldest_ready_age_seconds < 60


async def test_operations_heartbeats_make_a_split_api_server_ready(db_url: str) -> None:
    api = build_services(load_settings(database={"url": db_url}))
    await api.start(worker=False, migrate=False)
    try:
        alone = await api.readiness()
        assert api.operations is not None
        beat = ProcessHeartbeat(api.operations, role="worker", interval=0.05)
        scheduler = ProcessHeartbeat(api.operations, role="scheduler")
        await beat.start()
        await scheduler.start()
        seen = await api.readiness()
        await beat.stop()
        await scheduler.stop()
        gone = await api.readiness()
        clock = FrozenClock(api.runs.clock.now())
        stale = SqlOperations(api.db, clock)
        await stale.beat(process_id="killed", role="worker", started_at=clock.now())
        clock.advance(60)  # a killed worker never deletes its row: it ages out
        aged = await stale.alive(role="worker")
    finally:
        await api.stop()
    assert alone["database"] is True
    assert alone["migrations"] is True
    assert alone["workers"] is False
    assert "loom worker" in str(alone["workers_error"])
    assert seen["workers"] is True
    assert seen["worker_processes"] == "1"
    assert alone["scheduler_processes"] == "0"
    assert seen["scheduler_processes"] == "1"
    assert gone["workers"] is False  # a clean stop removes the row at once
    assert aged == 0
