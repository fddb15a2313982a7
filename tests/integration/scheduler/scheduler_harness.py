"""Helpers and fixtures: the scheduler on real databases (SQLite, and PostgreSQL if set)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from linkloom.engine.service import RunService
from linkloom.flows.spec import FlowSpec
from linkloom.scheduler.service import Scheduler
from linkloom.store import session
from linkloom.store.runs import SqlRunStore
from linkloom.store.schedules import SqlSchedulerStore
from linkloom.testing import FrozenClock
from linkloom.wiring.scheduler import leader_lock
from tests.support import databases
from tests.support.real import POSTGRES_URL

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SIGNING_KEY = "test-signing-key"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str | None]:
    if not POSTGRES_URL:
        yield None
        return
    with databases.fresh_database("s", migrate=True) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"
        await session.upgrade(url)
        yield url
        return
    databases.require_postgres()
    url = request.getfixturevalue("pg_url")
    yield url
    db = session.Database(url)
    try:
        async with db.begin() as conn:
            from linkloom.store import tables

            for table in reversed(tables.metadata.sorted_tables):
                await conn.execute(table.delete())
    finally:
        await db.dispose()


@dataclass
class Env:
    db: session.Database
    clock: FrozenClock
    runs: RunService
    store: SqlSchedulerStore
    run_store: SqlRunStore

    def scheduler(self, **kwargs: Any) -> Scheduler:
        return Scheduler(
            store=self.store,
            runs=self.runs,
            clock=self.clock,
            leader=leader_lock(self.db),
            signing_key=SIGNING_KEY,
            **kwargs,
        )

    async def apply(self, spec: dict[str, Any]) -> None:
        full = {"steps": [{"id": "s", "type": "transform", "template": 1}], **spec}
        await self.runs.apply_flow(FlowSpec.model_validate(full))


@pytest.fixture
async def env(db_url: str) -> AsyncIterator[Env]:
    db = session.Database(db_url)
    clock = FrozenClock(T0)
    run_store = SqlRunStore(db)
    runs = RunService(store=run_store, clock=clock, signing_key=SIGNING_KEY)
    yield Env(db=db, clock=clock, runs=runs, store=SqlSchedulerStore(db), run_store=run_store)
    await db.dispose()
