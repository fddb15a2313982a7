"""``raw.Statement`` on SQLite writes and reads exactly what SQLAlchemy Core does: the same
stored text (JSON, datetimes, booleans, SQL NULL vs JSON null), the same values back, and
SQLAlchemy's exception types, also on the writer thread's bare connection (``run_hot_write``)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from linkloom.store import session
from linkloom.store.raw import BareConnection, Conn, Statement
from linkloom.store.tables import runs

_AT = datetime(2026, 12, 7, 18, 1, 2, 345678, tzinfo=UTC)


def _run(run_id: str) -> dict[str, object]:
    return {
        "id": run_id, "flow_id": "f", "version": 1, "status": "RUNNING", "trigger": "api",
        "trigger_info": {"k": [1, "é", None]}, "inputs": {}, "outputs": None, "error": None,
        "schedule_id": None, "fire_time": None, "parent_run_id": None, "parent_step_id": None,
        "created_by": None, "created_at": _AT, "started_at": _AT, "finished_at": None,
        "sandbox": True, "max_parallel": None,
    }  # fmt: skip


@pytest.fixture
def database(tmp_path: Path) -> session.Database:
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    asyncio.run(session.upgrade(url))
    return session.Database(url)


def test_the_raw_path_stores_and_reads_what_sqlalchemy_does(database: session.Database) -> None:
    by_id = runs.select().where(runs.c.id == sa.bindparam("b_run"))
    with database.sync_writer.begin() as conn:
        conn.execute(runs.insert(), _run("sa"))
        Statement(runs.insert()).execute(conn, _run("raw"))
    with database.sync_reader.connect() as conn:
        stored = {
            r[0]: r[1:]
            for r in conn.exec_driver_sql(
                "SELECT id, trigger_info, outputs, created_at, sandbox FROM runs"
            )
        }
        assert stored["raw"] == stored["sa"]
        assert stored["raw"][1] == "null"  # a None of a JSON column is JSON null, as in Core
        through_sa = conn.execute(by_id, {"b_run": "sa"}).first()
        through_raw = Statement(by_id).first(conn, {"b_run": "sa"})
        assert through_raw is not None
        assert through_sa is not None
        assert tuple(through_raw) == tuple(through_sa)
        assert through_raw._fields == tuple(through_sa._fields)
        assert Statement(by_id).first(conn, {"b_run": "missing"}) is None
        assert [r.id for r in Statement(runs.select().order_by(runs.c.id)).all(conn, {})] == [
            "raw",
            "sa",
        ]
    _dispose(database)


def test_the_raw_path_raises_sqlalchemys_errors(database: session.Database) -> None:
    with pytest.raises(sa.exc.IntegrityError), database.sync_writer.begin() as conn:
        Statement(runs.insert()).executemany(conn, [_run("x"), _run("x")])
    with database.sync_reader.connect() as conn:  # rolled back with its transaction
        assert conn.exec_driver_sql("SELECT count(*) FROM runs").scalar() == 0
    _dispose(database)


def _dispose(database: session.Database) -> None:
    asyncio.run(database.dispose())


def test_a_hot_write_rolls_back_on_error_and_its_connection_serves_the_next(
    database: session.Database,
) -> None:
    insert = Statement(runs.insert())

    def twice(conn: Conn) -> None:
        insert.execute(conn, _run("a"))
        insert.execute(conn, _run("a"))

    async def scenario() -> list[str]:
        with pytest.raises(sa.exc.IntegrityError):
            await database.run_hot_write(twice)
        await database.run_hot_write(lambda conn: insert.execute(conn, _run("b")))
        # SQLAlchemy's writes and the bare connection's see each other's commits.
        await database.run_write(lambda conn: conn.execute(runs.insert(), _run("c")))
        found = await database.run_hot_write(
            lambda conn: Statement(runs.select().order_by(runs.c.id)).all(conn, {})
        )
        await database.dispose()
        return [r.id for r in found]

    assert asyncio.run(scenario()) == ["b", "c"]


def test_a_hot_write_that_cannot_take_the_write_lock_raises_sqlalchemys_error(
    database: session.Database, tmp_path: Path
) -> None:
    async def scenario() -> None:
        # Wait 50 ms for the lock instead of the usual 5 s.
        await database.run_hot_write(lambda conn: _busy_timeout(conn, 50))
        other = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
        try:
            with pytest.raises(sa.exc.OperationalError, match="database is locked"):
                await database.run_hot_write(lambda conn: None)
        finally:
            other.execute("ROLLBACK")
            other.close()
        await database.run_hot_write(lambda conn: Statement(runs.insert()).execute(conn, _run("d")))
        await database.dispose()

    asyncio.run(scenario())


def test_hot_writes_queued_when_the_database_is_disposed_are_written(
    database: session.Database,
) -> None:
    """Completions already queued on the writer thread at shutdown still reach the database."""
    insert = Statement(runs.insert())

    def slow_insert(run_id: str) -> Callable[[Conn], None]:
        def write(conn: Conn) -> None:
            time.sleep(0.05)  # the writer is busy while dispose() is called
            insert.execute(conn, _run(run_id))

        return write

    async def scenario() -> list[object]:
        queued = [
            asyncio.ensure_future(database.run_hot_write(slow_insert(f"q{i}"))) for i in range(3)
        ]
        await asyncio.sleep(0.01)  # all three are on the writer's queue
        await database.dispose()
        return await asyncio.gather(*queued, return_exceptions=True)

    assert asyncio.run(scenario()) == [None, None, None]
    reopened = session.Database(database.url)
    with reopened.sync_reader.connect() as conn:
        found = conn.exec_driver_sql("SELECT id FROM runs ORDER BY id").scalars().all()
    _dispose(reopened)
    assert found == ["q0", "q1", "q2"]


def _busy_timeout(conn: Conn, ms: int) -> None:
    assert isinstance(conn, BareConnection)
    conn.dbapi.execute(f"PRAGMA busy_timeout={ms}")


def test_a_prefixed_update_takes_the_values_an_insert_takes(database: session.Database) -> None:
    update = Statement(
        runs.update()
        .where(runs.c.id == sa.bindparam("b_id"))
        .values(status=sa.bindparam("b_status"), outputs=sa.bindparam("b_outputs")),
        prefix="b_",
    )
    with database.sync_writer.begin() as conn:
        Statement(runs.insert()).executemany(conn, [_run("u"), _run("v")])
        update.execute(conn, {**_run("u"), "status": "SUCCEEDED", "outputs": {"x": [1]}})
    with database.sync_reader.connect() as conn:
        found = conn.execute(
            sa.select(runs.c.id, runs.c.status, runs.c.outputs).order_by(runs.c.id)
        )
        assert [tuple(r) for r in found] == [
            ("u", "SUCCEEDED", {"x": [1]}),
            ("v", "RUNNING", None),
        ]
    _dispose(database)
