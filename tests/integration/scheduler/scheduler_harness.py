"""Helpers and fixtures: the scheduler on real databases (SQLite, and PostgreSQL if set)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
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
from linkloom.store.schedules import SqlSchedulerStore, leader_lock
from linkloom.testing import FrozenClock
from tests.support.real import POSTGRES_URL, require

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SIGNING_KEY = "test-signing-key"


def create_pg_database() -> tuple[str, str]:
    """Create an empty PostgreSQL database; return (url, admin url)."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(POSTGRES_URL)
    name = f"loom_s_{uuid.uuid4().hex[:10]}"
    admin = base.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.set(database=name).render_as_string(False), admin


def drop_pg_database(url: str, admin: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str | None]:
    if not POSTGRES_URL:
        yield None
        return
    url, admin = create_pg_database()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, session.upgrade(url)).result()
    yield url
    drop_pg_database(url, admin)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"
        await session.upgrade(url)
        yield url
        return
    url = request.getfixturevalue("pg_url")
    require(bool(url), "LOOM_TEST_POSTGRES_URL is not set")
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
