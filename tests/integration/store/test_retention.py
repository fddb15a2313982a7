"""Retention on SQLite and PostgreSQL: old finished runs go with everything that hangs off them,
in batches; unfinished runs, newer runs and the runs proposals replay stay; per-flow limits win
over the default; a purge never stops the engine from running a flow meanwhile."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import sqlalchemy as sa
from click.testing import Result
from typer.testing import CliRunner

from linkloom import logs
from linkloom.engine.models import RunStatus, StepStatus
from linkloom.engine.ports import StepServices
from linkloom.engine.records import (
    Attempt,
    DeadLetter,
    ExchangeRecord,
    Run,
    RunChanges,
    RunEvent,
    StepRun,
)
from linkloom.engine.service import RunService
from linkloom.engine.steps import builtin_executors
from linkloom.engine.worker import Worker
from linkloom.errors import InvalidInput
from linkloom.flows.spec import FlowSpec
from linkloom.store import session, tables
from linkloom.store.retention import PURGE_LOCK_KEY, RetentionJob, RetentionPolicy, SqlRetention
from linkloom.store.runs import SqlRunStore
from linkloom.testing import FrozenClock, StaticSecrets, SystemClock
from tests.support import databases

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
T = TypeVar("T")
PER_RUN = (
    tables.step_runs,
    tables.step_attempts,
    tables.exchanges,
    tables.run_events,
    tables.dead_letters,
)


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[session.Database]:
    if request.param == "sqlite":
        url = databases.sqlite_url(tmp_path / "loom.db")
        await session.upgrade(url)
        database = session.Database(url)
        yield database
        await database.dispose()
        return
    with databases.fresh_database("retention", migrate=True) as url:
        database = session.Database(url)
        yield database
        await database.dispose()


async def seed_run(
    store: SqlRunStore,
    flow_id: str,
    *,
    age_days: float,
    status: RunStatus = RunStatus.SUCCEEDED,
    sandbox: bool = False,
) -> str:
    """A run of two steps created ``age_days`` before NOW, with an attempt, an exchange, a log
    line and a dead letter per step: one row in every table retention empties."""
    created = NOW - timedelta(days=age_days)
    run_id = str(uuid.uuid4())
    finished = created + timedelta(seconds=1) if status.terminal else None
    run = Run(
        id=run_id, flow_id=flow_id, version=1, status=status, trigger="manual",
        created_at=created, started_at=created, finished_at=finished, sandbox=sandbox,
    )  # fmt: skip
    steps = [
        StepRun(
            id=str(uuid.uuid4()),
            run_id=run_id,
            step_id=f"s{i}",
            idempotency_key=f"{run_id}:s{i}",
            status=StepStatus.SUCCEEDED if status.terminal else StepStatus.RUNNING,
            output={"n": i},
            started_at=created,
            finished_at=finished,
        )
        for i in range(2)
    ]
    events = [RunEvent(run_id=run_id, kind="run_created", message="created", at=created)]
    await store.create_run(run, steps, events)

    def extra(_snapshot: Any) -> RunChanges:
        return RunChanges(
            attempts=tuple(
                Attempt(
                    id=str(uuid.uuid4()),
                    step_run_id=s.id,
                    run_id=run_id,
                    step_id=s.step_id,
                    number=1,
                    status=StepStatus.SUCCEEDED,
                    started_at=created,
                    finished_at=finished,
                )
                for s in steps
            ),
            exchanges=tuple(
                ExchangeRecord(
                    id=str(uuid.uuid4()),
                    run_id=run_id,
                    step_id=s.step_id,
                    attempt=1,
                    seq=0,
                    method="POST",
                    url="http://backend/x",
                    request={"body": {"q": 1}},
                    response={"body": {"ok": True}},
                    status=200,
                    created_at=created,
                )
                for s in steps
            ),
            events=tuple(
                RunEvent(run_id=run_id, step_id=s.step_id, kind="log", message="hi", at=created)
                for s in steps
            ),
            dead_letters=(
                DeadLetter(
                    id=str(uuid.uuid4()),
                    run_id=run_id,
                    flow_id=flow_id,
                    version=1,
                    step_id="s1",
                    created_at=created,
                ),
            ),
        )

    await store.update_run(run_id, extra)
    return run_id


async def rows_of(db: session.Database, run_id: str) -> dict[str, int]:
    async with db.read() as conn:
        found = {
            "runs": (
                await conn.execute(sa.select(sa.func.count()).where(tables.runs.c.id == run_id))
            ).scalar_one()
        }
        for table in PER_RUN:
            query = sa.select(sa.func.count()).where(table.c.run_id == run_id)
            found[table.name] = (await conn.execute(query)).scalar_one()
    return found


async def add_flow(db: session.Database, flow_id: str) -> None:
    """The flow's row: its newest successful runs count as its fixture cases only if it exists."""
    async with db.begin() as conn:
        await conn.execute(
            tables.flows.insert().values(
                id=flow_id, name=flow_id, current_version=1, created_at=NOW, updated_at=NOW
            )
        )


async def add_proposal(db: session.Database, *, status: str, replaying: str) -> None:
    """A proposal in ``status`` whose sandbox check replayed the run ``replaying``."""
    proposal_id = str(uuid.uuid4())
    async with db.begin() as conn:
        await conn.execute(
            tables.proposals.insert().values(
                id=proposal_id,
                title="t",
                author="ann",
                status=status,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        await conn.execute(
            tables.proposal_checks.insert().values(
                id=str(uuid.uuid4()),
                proposal_id=proposal_id,
                revision=1,
                name="sandbox",
                status="passed",
                details={"orders": {"cases": [{"case": f"run-{replaying}", "steps": {}}]}},
            )
        )


def retention(db: session.Database, **policy: Any) -> SqlRetention:
    options = {"fixture_runs": 0, "pause_seconds": 0, **policy}
    return SqlRetention(db, clock=FrozenClock(NOW), policy=RetentionPolicy(**options))


async def test_purge_deletes_old_finished_runs_with_all_their_rows_in_batches(
    db: session.Database,
) -> None:
    store = SqlRunStore(db)
    old = [await seed_run(store, "orders", age_days=40 + i) for i in range(7)]
    failed = await seed_run(store, "orders", age_days=45, status=RunStatus.FAILED)
    running = await seed_run(store, "orders", age_days=60, status=RunStatus.RUNNING)
    recent = await seed_run(store, "orders", age_days=5)
    assert (await rows_of(db, old[0])) == {
        "runs": 1, "step_runs": 2, "step_attempts": 2, "exchanges": 2, "run_events": 3,
        "dead_letters": 1,
    }  # fmt: skip

    report = await retention(db, runs_days=30, batch_size=3).purge()

    assert report.runs == 8
    assert report.batches == 3  # 3 + 3 + 2 old finished runs (the RUNNING one is skipped)
    assert report.by_flow == {"orders": 8}
    for run_id in [*old, failed]:
        assert set((await rows_of(db, run_id)).values()) == {0}, run_id
    assert (await rows_of(db, running))["runs"] == 1  # unfinished: never deleted
    assert (await rows_of(db, recent))["step_runs"] == 2
    again = await retention(db, runs_days=30, batch_size=3).purge()
    assert again.runs == 0


async def test_per_flow_days_win_over_the_default_and_null_keeps_forever(
    db: session.Database,
) -> None:
    store = SqlRunStore(db)
    noisy = await seed_run(store, "noisy-poller", age_days=3)
    normal = await seed_run(store, "billing", age_days=3)
    ancient_normal = await seed_run(store, "billing", age_days=100)
    forever = await seed_run(store, "audit-trail", age_days=400)

    report = await retention(
        db, runs_days=30, flows={"noisy-poller": 2, "audit-trail": None}
    ).purge()

    assert report.by_flow == {"noisy-poller": 1, "billing": 1}
    assert (await rows_of(db, noisy))["runs"] == 0
    assert (await rows_of(db, ancient_normal))["runs"] == 0
    assert (await rows_of(db, normal))["runs"] == 1
    assert (await rows_of(db, forever))["runs"] == 1


async def test_runs_that_proposals_replay_are_kept(db: session.Database) -> None:
    store = SqlRunStore(db)
    await add_flow(db, "orders")
    oldest = [await seed_run(store, "orders", age_days=90 + i) for i in range(3)]
    used_by_open = oldest[2]
    used_by_closed = oldest[1]
    newest_success = await seed_run(store, "orders", age_days=50)
    newest_sandbox = await seed_run(store, "orders", age_days=45, sandbox=True)
    newest_failed = await seed_run(store, "orders", age_days=40, status=RunStatus.FAILED)
    await add_proposal(db, status="ready-for-review", replaying=used_by_open)
    await add_proposal(db, status="closed", replaying=used_by_closed)

    report = await retention(db, runs_days=30, fixture_runs=1).purge()

    kept = {newest_success, used_by_open}
    gone = {oldest[0], used_by_closed, newest_sandbox, newest_failed}
    for run_id in kept:
        assert (await rows_of(db, run_id))["runs"] == 1, run_id
    for run_id in gone:
        assert (await rows_of(db, run_id))["runs"] == 0, run_id
    assert (report.kept_replayed, report.kept_newest, report.kept) == (1, 1, 2)
    assert report.runs == 4


@pytest.fixture
def logged() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Every log line as the server writes it (JSON, debug and up). Through ``logs.configure``,
    not structlog's ``capture_logs``: a module logger an earlier test used is cached with the
    configuration of that moment, and ``capture_logs`` cannot reach it."""
    out = io.StringIO()
    logs.configure(fmt="json", level="DEBUG", stream=out)
    yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    logs.reset()


async def test_the_retention_job_logs_its_settings_when_it_starts(
    db: session.Database, logged: Callable[[], list[dict[str, Any]]]
) -> None:
    """The sign that retention is on: its settings, once, without the per-flow rules' names."""
    job = RetentionJob(
        retention(db, runs_days=30, flows={"noisy-poller": 2, "audit-trail": None}, batch_size=50),
        interval_seconds=600,
    )
    job.start()
    await job.stop()

    started = [e for e in logged() if e["event"] == "retention_started"]
    assert [{k: e[k] for k in e if k not in ("timestamp", "logger")} for e in started] == [
        {
            "event": "retention_started", "level": "info", "runs_days": 30, "flow_rules": 2,
            "interval_seconds": 600, "batch_size": 50, "fixture_runs": 0,
        }
    ]  # fmt: skip


async def test_every_purge_is_logged_at_info_when_it_deleted_something_else_at_debug(
    db: session.Database, logged: Callable[[], list[dict[str, Any]]]
) -> None:
    await seed_run(SqlRunStore(db), "orders", age_days=40)
    await retention(db, runs_days=30).purge()
    await retention(db, runs_days=30).purge()

    purged = [(e["level"], e["runs"]) for e in logged() if e["event"] == "runs_purged"]
    assert purged == [("info", 1), ("debug", 0)]


@pytest.mark.parametrize("db", ["postgres"], indirect=True)  # SQLite: one writer anyway
async def test_a_second_purging_process_steps_aside_on_postgresql(db: session.Database) -> None:
    store = SqlRunStore(db)
    run_id = await seed_run(store, "orders", age_days=40)
    async with db.writer.connect() as holder:
        await holder.execute(sa.select(sa.func.pg_advisory_lock(PURGE_LOCK_KEY)))
        report = await retention(db, runs_days=30).purge()
        await holder.execute(sa.select(sa.func.pg_advisory_unlock(PURGE_LOCK_KEY)))
    assert report.interrupted
    assert report.runs == 0
    assert (await rows_of(db, run_id))["runs"] == 1
    assert (await retention(db, runs_days=30).purge()).runs == 1


async def test_the_engine_runs_flows_while_a_purge_deletes_in_batches(
    db: session.Database,
) -> None:
    """A purge of 300 runs in batches of 10 (6 s of pauses at least) and a 3-step flow
    triggered meanwhile: the run finishes while the purge is still deleting."""
    store = SqlRunStore(db)
    for i in range(300):
        await seed_run(store, "history", age_days=40 + i / 1000)
    clock = SystemClock()
    svc = RunService(store=store, clock=clock)
    spec = {
        "id": "live",
        "steps": [
            {"id": "a", "type": "transform", "template": "{{ 1 }}"},
            {"id": "b", "type": "transform", "template": "{{ 2 }}", "depends_on": ["a"]},
            {"id": "c", "type": "transform", "template": "{{ 3 }}", "depends_on": ["b"]},
        ],
    }
    await svc.apply_flow(FlowSpec.model_validate(spec))
    async with httpx.AsyncClient() as http:
        worker = Worker(
            store=store,
            executors=builtin_executors(),
            services=StepServices(http=http, clock=clock, secrets=StaticSecrets({})),
            poll_interval=0.02,
        )
        svc._wake = worker.wake
        await worker.start()
        purge = asyncio.create_task(
            SqlRetention(
                db,
                clock=FrozenClock(NOW),
                policy=RetentionPolicy(runs_days=30, batch_size=10, pause_seconds=0.2),
            ).purge()
        )
        try:
            await asyncio.sleep(0.05)  # the purge is under way
            run = await svc.trigger("live")
            async with asyncio.timeout(30):
                done = await svc.wait(run.id, poll=0.02)
            purging_when_done = not purge.done()
            report = await purge
        finally:
            await worker.stop()
    assert done.status is RunStatus.SUCCEEDED
    assert report.runs == 300
    assert report.batches == 30
    assert purging_when_done, "the run should have finished before the purge did"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database for ``loom db purge`` (which opens its own connections)."""
    if request.param == "sqlite":
        url = databases.sqlite_url(tmp_path / "cli.db")
        asyncio.run(session.upgrade(url))
        yield url
        return
    with databases.fresh_database("retention_cli", migrate=True) as url:
        yield url


def on_database(url: str, work: Callable[[session.Database], Awaitable[T]]) -> T:
    async def run() -> T:
        database = session.Database(url)
        try:
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(run())


def seed_days_ago(store: SqlRunStore, days: float) -> Awaitable[str]:
    """A finished run created ``days`` before the real now (``loom db purge`` reads the clock)."""
    return seed_run(
        store, "orders", age_days=days + (NOW - datetime.now(UTC)).total_seconds() / 86400
    )


def left_in(db: session.Database) -> Awaitable[set[str]]:
    async def ids() -> set[str]:
        async with db.read() as conn:
            return set((await conn.execute(sa.select(tables.runs.c.id))).scalars())

    return ids()


def loom_db_purge(*args: str, env: dict[str, str] | None = None) -> Result:
    from linkloom.cli.main import app

    try:
        return CliRunner().invoke(app, ["db", "purge", *args], env=env)
    finally:
        logs.reset()  # the command sends log lines to the standard error of the moment


def test_loom_db_purge_deletes_what_is_older_than_days(db_url: str) -> None:
    async def seed(db: session.Database) -> list[str]:
        store = SqlRunStore(db)
        return [await seed_days_ago(store, days) for days in (3, 90)]

    recent, _old = on_database(db_url, seed)
    done = loom_db_purge("--days", "30", "--url", db_url)
    assert done.exit_code == 0, done.output
    assert done.stdout == "deleted 1 run(s) in 1 batch(es) (orders: 1); kept 0 old run(s)\n"
    assert on_database(db_url, left_in) == {recent}


def test_loom_db_purge_says_which_settings_it_needs_and_wants_days_above_zero(
    db_url: str,
) -> None:
    shown = loom_db_purge("--help")
    assert "--days" in shown.stdout
    assert "default: 0" not in shown.stdout
    assert "x>=0" not in shown.stdout

    unset = loom_db_purge("--url", db_url)
    assert isinstance(unset.exception, InvalidInput)  # `loom` exits 2 with this message
    for named in ("--days N", "LOOM_RETENTION__RUNS_DAYS", "LOOM_RETENTION__FLOWS"):
        assert named in str(unset.exception), named
    for days in ("0", "-1", "nan"):
        refused = loom_db_purge("--days", days, "--url", db_url)
        assert isinstance(refused.exception, InvalidInput), (days, refused.output)
        assert "--days must be a number of days more than 0" in str(refused.exception)

    per_flow = loom_db_purge("--url", db_url, env={"LOOM_RETENTION__FLOWS": '{"orders": 30}'})
    assert per_flow.exit_code == 0, per_flow.output
    assert per_flow.stdout.startswith("deleted 0 run(s)")


def test_loom_db_purge_says_why_it_kept_old_runs(db_url: str) -> None:
    """Two reasons to keep a run, counted apart: a proposal still open replays it, or it is
    one of its flow's newest successful production runs (the next proposal's cases)."""

    async def seed(db: session.Database) -> None:
        store = SqlRunStore(db)
        await add_flow(db, "orders")
        replayed, _gone, _newest = [await seed_days_ago(store, days) for days in (92, 91, 90)]
        await add_proposal(db, status="ready-for-review", replaying=replayed)

    on_database(db_url, seed)
    done = loom_db_purge(
        "--days", "30", "--url", db_url, env={"LOOM_ENGINE__RECENT_FIXTURE_RUNS": "1"}
    )
    assert done.exit_code == 0, done.output
    assert done.stdout == (
        "deleted 1 run(s) in 1 batch(es) (orders: 1); kept 2 old run(s): 1 case(s) open "
        "proposals replay, 1 among each flow's newest successful runs\n"
    )
    help_text = " ".join(loom_db_purge("--help").stdout.split())
    assert "the cases open proposals replay and each flow's newest successful runs" in help_text
