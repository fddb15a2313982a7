"""``store.pull.SqlPullStore`` on SQLite and PostgreSQL: concurrent takes never hand one task
to two workers; leases, release and the worker registry round-trip."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from linkloom.engine.pull import ACTIVE, LOST, QueuedTask, WorkerInfo
from linkloom.store import session
from linkloom.store.pull import SqlPullStore
from tests.support import databases

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlPullStore]:
    postgres = request.param == "postgres"
    url = databases.create_database("pull") if postgres else databases.sqlite_url(tmp_path / "p.db")
    try:
        await session.upgrade(url)
        db = session.Database(url)
        try:
            yield SqlPullStore(db)
        finally:
            await db.dispose()
    finally:
        if postgres:
            databases.drop_database(url)


def _task(n: int, queue: str = "q") -> QueuedTask:
    return QueuedTask(
        token=f"sr{n}.1.mac", step_run_id=f"sr{n}", attempt=1, queue=queue, task="t",
        envelope={"run_id": "r", "step_id": f"s{n}", "payload": {"n": n}},
        created_at=NOW + timedelta(milliseconds=n),
    )  # fmt: skip


async def test_pull_store_concurrent_takes_never_share_a_task(store: SqlPullStore) -> None:
    for n in range(20):
        await store.enqueue(_task(n))
    await store.enqueue(_task(0))  # the same token again: ignored
    await store.enqueue(_task(99, queue="other"))
    results = await asyncio.gather(
        *(
            store.take(worker_id=f"w{i}", queues=["q"], now=NOW, lease_seconds=30, limit=7)
            for i in range(4)
        )
    )
    tokens = [t.token for batch in results for t in batch]
    assert len(tokens) == len(set(tokens)) == 20
    assert all(t.deliveries == 1 and t.envelope["run_id"] == "r" for b in results for t in b)
    # leases: nothing free now; renew holds; after expiry the task is taken again
    assert await store.take(worker_id="x", queues=["q"], now=NOW, lease_seconds=30, limit=5) == []
    mine = [t.token for t in results[0]]
    held = await store.renew(worker_id="w0", tokens=[*mine, "nope"], until=NOW + timedelta(60))
    assert held == set(mine)
    later = NOW + timedelta(seconds=45)
    again = await store.take(worker_id="x", queues=["q"], now=later, lease_seconds=30, limit=50)
    assert {t.token for t in again} == set(tokens) - set(mine)
    assert all(t.deliveries == 2 for t in again)
    assert await store.release_worker("w0") == len(mine)
    await store.delete(mine[0])
    assert len(await store.leased_tasks()) == len(again)


async def test_pull_store_worker_registry(store: SqlPullStore) -> None:
    worker = WorkerInfo(
        id="w1", host="h", queues=("a", "b"), version="1.0", status=ACTIVE,
        started_at=NOW, last_heartbeat=NOW,
    )  # fmt: skip
    await store.save_worker(worker)
    assert await store.touch_worker("w1", now=NOW + timedelta(seconds=5))
    assert not await store.touch_worker("ghost", now=NOW)
    assert await store.mark_lost(before=NOW + timedelta(seconds=4)) == []
    assert await store.mark_lost(before=NOW + timedelta(seconds=6)) == ["w1"]
    [listed] = await store.list_workers(include_stopped=False)
    assert (listed.status, listed.queues, listed.last_heartbeat) == (
        LOST, ("a", "b"), NOW + timedelta(seconds=5)
    )  # fmt: skip
    await store.set_status("w1", "stopped")
    assert await store.list_workers(include_stopped=False) == []
    assert len(await store.list_workers(include_stopped=True)) == 1
    # a long poll still open when the worker stopped does not bring it back
    assert not await store.touch_worker("w1", now=NOW + timedelta(seconds=9))
    [stopped] = await store.list_workers(include_stopped=True)
    assert stopped.status == "stopped"
    await store.save_worker(worker)  # registering again does
    assert await store.touch_worker("w1", now=NOW + timedelta(seconds=10))
