"""``SqlRunStore``: the engine's ``RunStore`` on SQLite or PostgreSQL.

Every method is one transaction written as a synchronous function of a connection and run by
``Database.run_write``/``run_read`` (SQLite: the store's own threads over pysqlite; PostgreSQL:
``run_sync`` on psycopg's async connection); ``create_run`` and ``update_run_many``, the
engine's hot path, by ``run_hot_write`` (SQLite: the writer thread's bare pysqlite connection,
``raw.Statement``s only). ``update_run_many`` starts by reading the run's
row, on PostgreSQL ``FOR NO KEY UPDATE`` (the run's row lock; on SQLite writers begin IMMEDIATE,
which already holds the database's write lock), then reads the snapshot, calls the pure
mutations and writes their changes. ``claim`` uses
``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite the single writer makes it exclusive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from linkloom.engine import errors
from linkloom.engine.cursors import decode_cursor, encode_cursor
from linkloom.engine.models import RunStatus, StepStatus
from linkloom.engine.records import (
    Attempt,
    Claim,
    DeadLetter,
    ExchangeRecord,
    Flow,
    FlowVersion,
    Page,
    Run,
    RunChanges,
    RunEvent,
    RunFilter,
    RunSnapshot,
    StepRun,
    apply_changes,
    merge_changes,
)
from linkloom.engine.store_port import CALLBACK_OWNER, FANOUT_OWNER, Mutation
from linkloom.store import flows as flow_queries
from linkloom.store import rows
from linkloom.store.raw import Conn as HotConn
from linkloom.store.raw import Statement
from linkloom.store.session import Database
from linkloom.store.tables import (
    dead_letters,
    exchanges,
    flows,
    run_events,
    runs,
    step_attempts,
    step_runs,
)

_STEP_UPDATE_COLUMNS = [c.name for c in step_runs.columns if c.name not in ("id", "run_id")]
_RUN_UPDATE_COLUMNS = ["status", "outputs", "error", "started_at", "finished_at", "trigger_info"]
_NOT_HOLDING_A_SLOT = (FANOUT_OWNER, CALLBACK_OWNER)
Conn = sa.Connection

# The statements of the engine's hot path, built once: building a statement (and its cache key)
# costs more than executing it on SQLite. Parameters are bound by name at execution. On SQLite
# they run on the pysqlite cursor (``raw.Statement``: SQLAlchemy's execution costs 3-4x what
# SQLite takes); on PostgreSQL through SQLAlchemy.
_RUN_BY_ID_SQL = runs.select().where(runs.c.id == sa.bindparam("b_run"))
_RUN_BY_ID = Statement(_RUN_BY_ID_SQL)
# The lock an UPDATE of the row would take, without writing a new row version.
_LOCK_RUN = Statement(_RUN_BY_ID_SQL.with_for_update(key_share=True))
# The updates take the dict of a record's values (``rows.run_values``, ``rows.step_values``).
_UPDATE_RUN = Statement(
    runs.update()
    .where(runs.c.id == sa.bindparam("b_id"))
    .values({name: sa.bindparam(f"b_{name}") for name in _RUN_UPDATE_COLUMNS}),
    prefix="b_",
)
_UPDATE_STEP = Statement(
    step_runs.update()
    .where(step_runs.c.id == sa.bindparam("b_id"))
    .values({name: sa.bindparam(f"b_{name}") for name in _STEP_UPDATE_COLUMNS}),
    prefix="b_",
)
_FLOW_STATE_SQL = sa.select(flows.c.current_version, flows.c.deleted_at).where(
    flows.c.id == sa.bindparam("b_flow")
)
_FLOW_STATE = Statement(_FLOW_STATE_SQL)
# PostgreSQL: FOR SHARE waits for a new version or a delete being committed meanwhile.
_FLOW_STATE_SHARED = Statement(_FLOW_STATE_SQL.with_for_update(read=True))
_INSERT_RUN = Statement(runs.insert())
_INSERT_STEPS = Statement(step_runs.insert())
_INSERT_ATTEMPTS = Statement(step_attempts.insert())
_INSERT_EXCHANGES = Statement(exchanges.insert())
_INSERT_EVENTS = Statement(run_events.insert())
_INSERT_DEAD_LETTERS = Statement(dead_letters.insert())


def _steps_of_run(*, parents_only: bool, lock: bool) -> sa.Select[Any]:
    query = step_runs.select().where(step_runs.c.run_id == sa.bindparam("b_run"))
    if parents_only:
        query = query.where(step_runs.c.item_index.is_(None))
    if lock:
        # PostgreSQL: hold the step rows too. A concurrent claim (which locks rows, never the
        # run) then skips them, or has committed before we read them. Order is always
        # run → steps, and claims never wait, so this cannot deadlock.
        query = query.with_for_update()
    return query.order_by(step_runs.c.id)


_STEPS_OF_RUN = {
    (parents_only, lock): Statement(_steps_of_run(parents_only=parents_only, lock=lock))
    for parents_only in (False, True)
    for lock in (False, True)
}


class SqlRunStore:
    """A ``RunStore`` over a ``Database`` (SQLite or PostgreSQL)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pg = db.dialect == "postgresql"

    # ---- flows -------------------------------------------------------------------------
    async def save_flow_version(self, **kwargs: Any) -> tuple[FlowVersion, bool]:
        try:
            return await self.db.run_write(
                lambda c: flow_queries.save_version(c, pg=self._pg, **kwargs)
            )
        except IntegrityError as exc:
            raise errors.Conflict(
                f"flow {kwargs.get('flow_id')!r} was changed concurrently; apply it again"
            ) from exc

    async def get_flow(self, flow_id: str) -> Flow | None:
        return await self.db.run_read(lambda c: flow_queries.get_flow(c, flow_id))

    async def list_flows(self, *, include_deleted: bool = False) -> list[Flow]:
        return await self.db.run_read(
            lambda c: flow_queries.list_flows(c, include_deleted=include_deleted)
        )

    async def get_flow_version(self, flow_id: str, version: int) -> FlowVersion | None:
        return await self.db.run_read(lambda c: flow_queries.get_version(c, flow_id, version))

    async def list_flow_versions(self, flow_id: str) -> list[FlowVersion]:
        return await self.db.run_read(lambda c: flow_queries.list_versions(c, flow_id))

    async def update_flow(self, flow: Flow) -> None:
        await self.db.run_write(lambda c: flow_queries.update_flow(c, flow))

    # ---- runs --------------------------------------------------------------------------
    async def create_run(
        self,
        run: Run,
        steps: Sequence[StepRun],
        events: Sequence[RunEvent] = (),
        *,
        if_current: bool = False,
    ) -> None:
        def tx(conn: HotConn) -> None:
            if if_current:
                check = _FLOW_STATE_SHARED if self._pg else _FLOW_STATE
                flow = check.first(conn, {"b_flow": run.flow_id})
                current = flow.current_version if flow and flow.deleted_at is None else None
                if current != run.version:
                    raise errors.FlowChanged(flow_id=run.flow_id)
            _INSERT_RUN.execute(conn, rows.run_values(run))
            if steps:
                _INSERT_STEPS.executemany(conn, [rows.step_values(s) for s in steps])
            if events:
                _INSERT_EVENTS.executemany(conn, [rows.event_values(e) for e in events])

        try:
            await self.db.run_hot_write(tx)
        except IntegrityError as exc:
            if run.schedule_id is not None and run.fire_time is not None:
                raise errors.DuplicateRun(
                    flow_id=run.flow_id, schedule_id=run.schedule_id, fire_time=run.fire_time
                ) from exc
            raise errors.Conflict(f"run {run.id!r} already exists") from exc

    async def get_run(self, run_id: str) -> Run | None:
        def q(conn: Conn) -> Run | None:
            row = _RUN_BY_ID.first(conn, {"b_run": run_id})
            return rows.run(row) if row else None

        return await self.db.run_read(q)

    async def find_scheduled_run(
        self, *, flow_id: str, schedule_id: str, fire_time: datetime
    ) -> Run | None:
        query = runs.select().where(
            runs.c.flow_id == flow_id,
            runs.c.schedule_id == schedule_id,
            runs.c.fire_time == fire_time,
        )

        def q(conn: Conn) -> Run | None:
            row = conn.execute(query).first()
            return rows.run(row) if row else None

        return await self.db.run_read(q)

    async def list_runs(
        self, filters: RunFilter, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        query = runs.select()
        for column, value in (
            (runs.c.flow_id, filters.flow_id),
            (runs.c.status, filters.status.value if filters.status else None),
            (runs.c.trigger, filters.trigger),
            (runs.c.parent_run_id, filters.parent_run_id),
            (runs.c.schedule_id, filters.schedule_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if filters.created_after is not None:
            query = query.where(runs.c.created_at >= filters.created_after)
        if filters.created_before is not None:
            query = query.where(runs.c.created_at < filters.created_before)
        if cursor:
            # A row-value comparison: both dialects seek the (…, created_at, id) index to it.
            created, run_id = decode_cursor(cursor)
            query = query.where(sa.tuple_(runs.c.created_at, runs.c.id) < (created, run_id))
        query = query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit + 1)
        found = await self.db.run_read(lambda c: [rows.run(r) for r in c.execute(query).all()])
        page = found[:limit]
        more = len(found) > limit
        return Page(items=tuple(page), next_cursor=encode_cursor(page[-1]) if more else None)

    async def recent_runs(self, flow_ids: Sequence[str], *, limit: int) -> dict[str, list[Run]]:
        """One statement per 100 flows: a UNION ALL of per-flow seeks of ix_runs_flow_created,
        read in one transaction (the dashboard's row per flow)."""
        found: dict[str, list[Run]] = {flow_id: [] for flow_id in flow_ids}
        if not flow_ids or limit <= 0:
            return found
        ordered = list(flow_ids)

        def q(conn: Conn) -> None:
            for start in range(0, len(ordered), 100):
                parts = [
                    sa.select(
                        runs.select()
                        .where(runs.c.flow_id == flow_id)
                        .order_by(runs.c.created_at.desc(), runs.c.id.desc())
                        .limit(limit)
                        .subquery()
                    )
                    for flow_id in ordered[start : start + 100]
                ]
                for row in conn.execute(sa.union_all(*parts)).all():
                    found[row.flow_id].append(rows.run(row))

        await self.db.run_read(q)
        for runs_of_flow in found.values():
            runs_of_flow.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return found

    async def count_active_runs(self, flow_id: str) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(runs)
            .where(
                runs.c.flow_id == flow_id,
                runs.c.status.in_([RunStatus.PENDING.value, RunStatus.RUNNING.value]),
            )
        )
        return await self.db.run_read(lambda c: int(c.execute(query).scalar_one()))

    async def snapshot(self, run_id: str, *, parents_only: bool = False) -> RunSnapshot | None:
        return await self.db.run_read(
            lambda c: self._snapshot(c, run_id, parents_only=parents_only)
        )

    def _snapshot(
        self,
        conn: HotConn,
        run_id: str,
        *,
        parents_only: bool = False,
        lock: bool = False,
        run_row: Any = None,
    ) -> RunSnapshot | None:
        row = run_row
        if row is None:
            row = _RUN_BY_ID.first(conn, {"b_run": run_id})
        if row is None:
            return None
        query = _STEPS_OF_RUN[parents_only, lock and self._pg]
        step_rows = query.all(conn, {"b_run": run_id})
        return RunSnapshot(run=rows.run(row), steps=tuple(rows.step_run(r) for r in step_rows))

    async def list_items(
        self, run_id: str, step_id: str, *, after: int | None = None, limit: int = 100
    ) -> list[StepRun]:
        """A seek of the (run_id, step_id, item_index) unique index: a page costs the same at
        item 0 and at item 99,000."""
        query = step_runs.select().where(
            step_runs.c.run_id == run_id,
            step_runs.c.step_id == step_id,
            step_runs.c.item_index.is_not(None),
        )
        if after is not None:
            query = query.where(step_runs.c.item_index > after)
        query = query.order_by(step_runs.c.item_index).limit(limit)
        return await self.db.run_read(lambda c: [rows.step_run(r) for r in c.execute(query)])

    async def update_run(self, run_id: str, mutate: Mutation) -> RunChanges | None:
        results = await self.update_run_many(run_id, [mutate])
        if results is None:
            return None
        if isinstance(results[0], Exception):
            raise results[0]
        return results[0]

    async def update_run_many(
        self, run_id: str, mutations: Sequence[Mutation]
    ) -> list[RunChanges | Exception] | None:
        def tx(conn: HotConn) -> list[RunChanges | Exception] | None:
            # The row lock of the run (PostgreSQL); SQLite holds the write lock since BEGIN.
            locked = (_LOCK_RUN if self._pg else _RUN_BY_ID).first(conn, {"b_run": run_id})
            if locked is None:
                return None
            snapshot = self._snapshot(conn, run_id, lock=True, run_row=locked)
            assert snapshot is not None
            before = snapshot.run
            results: list[RunChanges | Exception] = []
            merged = RunChanges()
            for mutate in mutations:
                try:
                    changes = mutate(snapshot)
                except Exception as exc:
                    results.append(exc)
                    continue
                results.append(changes)
                snapshot = apply_changes(snapshot, changes)
                merged = merge_changes(merged, changes)
            if merged.run is not None and merged.run == before:
                merged = replace(merged, run=None)  # most completions leave the run row as is
            if not merged.empty:
                self._write(conn, merged)
            return results

        return await self.db.run_hot_write(tx)

    def _write(self, conn: HotConn, changes: RunChanges) -> None:
        if changes.run is not None:
            _UPDATE_RUN.execute(conn, rows.run_values(changes.run))
        if changes.steps:
            _UPDATE_STEP.executemany(conn, [rows.step_values(s) for s in changes.steps])
        if changes.new_steps:
            _INSERT_STEPS.executemany(conn, [rows.step_values(s) for s in changes.new_steps])
        if changes.attempts:
            _INSERT_ATTEMPTS.executemany(conn, [rows.attempt_values(a) for a in changes.attempts])
        if changes.exchanges:
            _INSERT_EXCHANGES.executemany(
                conn, [rows.exchange_values(x) for x in changes.exchanges]
            )
        if changes.events:
            _INSERT_EVENTS.executemany(conn, [rows.event_values(e) for e in changes.events])
        if changes.dead_letters:
            _INSERT_DEAD_LETTERS.executemany(
                conn, [rows.dead_letter_values(d) for d in changes.dead_letters]
            )

    async def find_step_run(self, step_run_id: str) -> StepRun | None:
        def q(conn: Conn) -> StepRun | None:
            row = conn.execute(step_runs.select().where(step_runs.c.id == step_run_id)).first()
            return rows.step_run(row) if row else None

        return await self.db.run_read(q)

    async def list_attempts(self, run_id: str) -> list[Attempt]:
        query = (
            step_attempts.select()
            .where(step_attempts.c.run_id == run_id)
            .order_by(step_attempts.c.started_at, step_attempts.c.number)
        )
        return await self.db.run_read(lambda c: [rows.attempt(r) for r in c.execute(query).all()])

    async def list_exchanges(
        self, run_id: str, *, step_id: str | None = None
    ) -> list[ExchangeRecord]:
        query = exchanges.select().where(exchanges.c.run_id == run_id)
        if step_id is not None:
            query = query.where(exchanges.c.step_id == step_id)
        query = query.order_by(exchanges.c.created_at, exchanges.c.attempt, exchanges.c.seq)
        return await self.db.run_read(lambda c: [rows.exchange(r) for r in c.execute(query).all()])

    async def list_events(
        self, run_id: str, *, after_id: int = 0, limit: int = 1000
    ) -> list[RunEvent]:
        query = (
            run_events.select()
            .where(run_events.c.run_id == run_id, run_events.c.id > after_id)
            .order_by(run_events.c.id)
            .limit(limit)
        )
        return await self.db.run_read(lambda c: [rows.event(r) for r in c.execute(query).all()])

    # ---- workers -----------------------------------------------------------------------
    async def claim(
        self,
        *,
        owner: str,
        now: datetime,
        lease_seconds: float,
        limit: int,
        per_flow_limit: int | None = None,
    ) -> list[Claim]:
        if limit <= 0:
            return []
        until = now + timedelta(seconds=lease_seconds)
        candidates = (
            sa.select(step_runs.c.id, step_runs.c.run_id, runs.c.flow_id, runs.c.max_parallel)
            .join(runs, runs.c.id == step_runs.c.run_id)
            .where(step_runs.c.status == StepStatus.QUEUED.value, step_runs.c.ready_at <= now)
            .order_by(step_runs.c.ready_at)
            # Over-fetch only when a per-flow limit may reject candidates: on PostgreSQL
            # every fetched row stays locked (and skipped by other claimers) until commit.
            .limit(limit * 4 if per_flow_limit is not None else limit)
        )
        if self._pg:
            candidates = candidates.with_for_update(skip_locked=True, of=step_runs)

        def tx(conn: Conn) -> list[Claim]:
            found = conn.execute(candidates).all()
            if not found:
                return []
            chosen = self._within_limits(conn, found, limit, per_flow_limit)
            if not chosen:
                return []
            claimed = conn.execute(
                step_runs.update()
                .where(step_runs.c.id.in_(chosen), step_runs.c.status == "QUEUED")
                .values(
                    status=StepStatus.RUNNING.value,
                    attempt=step_runs.c.attempt + 1,
                    lease_owner=owner,
                    lease_expires_at=until,
                    started_at=now,
                )
                .returning(*step_runs.c)
            ).all()
            steps = [rows.step_run(r) for r in claimed]
            run_ids = sorted({s.run_id for s in steps})
            if not self._pg:
                # One writer at a time on SQLite: starting the runs here cannot deadlock, and
                # saves a transaction. PostgreSQL does it separately (mark_runs_started).
                conn.execute(
                    runs.update()
                    .where(runs.c.id.in_(run_ids), runs.c.status == RunStatus.PENDING.value)
                    .values(status=RunStatus.RUNNING.value, started_at=now)
                )
            run_rows = conn.execute(runs.select().where(runs.c.id.in_(run_ids))).all()
            by_id = {r.id: rows.run(r) for r in run_rows}
            return [Claim(step=s, run=by_id[s.run_id]) for s in steps]

        return await self.db.run_write(tx)

    def _within_limits(
        self, conn: Conn, found: Sequence[Any], limit: int, per_flow_limit: int | None
    ) -> list[str]:
        need_counts = per_flow_limit is not None or any(r.max_parallel for r in found)
        by_run: dict[str, int] = {}
        by_flow: dict[str, int] = {}
        if need_counts:
            busy = (
                sa.select(runs.c.id, runs.c.flow_id, sa.func.count())
                .select_from(step_runs.join(runs, runs.c.id == step_runs.c.run_id))
                .where(
                    step_runs.c.status == StepStatus.RUNNING.value,
                    step_runs.c.lease_owner.not_in(_NOT_HOLDING_A_SLOT),
                )
                .group_by(runs.c.id, runs.c.flow_id)
            )
            if per_flow_limit is None:
                busy = busy.where(runs.c.id.in_({r.run_id for r in found}))
            for run_id, flow_id, count in conn.execute(busy).all():
                by_run[run_id] = count
                by_flow[flow_id] = by_flow.get(flow_id, 0) + count
        chosen: list[str] = []
        for r in found:
            if len(chosen) >= limit:
                break
            if r.max_parallel is not None and by_run.get(r.run_id, 0) >= r.max_parallel:
                continue
            if per_flow_limit is not None and by_flow.get(r.flow_id, 0) >= per_flow_limit:
                continue
            by_run[r.run_id] = by_run.get(r.run_id, 0) + 1
            by_flow[r.flow_id] = by_flow.get(r.flow_id, 0) + 1
            chosen.append(r.id)
        return chosen

    async def mark_runs_started(self, run_ids: Sequence[str], *, now: datetime) -> None:
        """PENDING → RUNNING for runs whose first step was claimed (a separate, short write so
        claims never wait on a run's row lock)."""
        if not run_ids:
            return
        statement = (
            runs.update()
            .where(runs.c.id.in_(list(run_ids)), runs.c.status == RunStatus.PENDING.value)
            .values(status=RunStatus.RUNNING.value, started_at=now)
        )
        await self.db.run_write(lambda c: c.execute(statement))

    async def renew_leases(
        self, *, owner: str, step_run_ids: Sequence[str], until: datetime
    ) -> set[str]:
        if not step_run_ids:
            return set()
        statement = (
            step_runs.update()
            .where(
                step_runs.c.id.in_(list(step_run_ids)),
                step_runs.c.status == StepStatus.RUNNING.value,
                step_runs.c.lease_owner == owner,
            )
            .values(lease_expires_at=until)
            .returning(step_runs.c.id)
        )
        return await self.db.run_write(lambda c: {r[0] for r in c.execute(statement).all()})

    async def expired_leases(self, *, now: datetime, limit: int = 100) -> list[StepRun]:
        query = (
            step_runs.select()
            .where(
                step_runs.c.status == StepStatus.RUNNING.value,
                step_runs.c.lease_expires_at < now,
            )
            .limit(limit)
        )
        return await self.db.run_read(lambda c: [rows.step_run(r) for r in c.execute(query).all()])

    async def next_lease_expiry(self, *, after: datetime) -> datetime | None:
        query = sa.select(sa.func.min(step_runs.c.lease_expires_at)).where(
            step_runs.c.status == StepStatus.RUNNING.value,
            step_runs.c.lease_expires_at > after,
            step_runs.c.lease_owner != FANOUT_OWNER,
        )
        value = await self.db.run_read(lambda c: c.execute(query).scalar())
        if isinstance(value, str):  # SQLite aggregate loses the column type
            value = datetime.fromisoformat(value)
        return rows.utc(value)

    async def next_ready_at(self) -> datetime | None:
        query = sa.select(sa.func.min(step_runs.c.ready_at)).where(
            step_runs.c.status == StepStatus.QUEUED.value
        )
        value = await self.db.run_read(lambda c: c.execute(query).scalar())
        if isinstance(value, str):  # SQLite aggregate loses the column type
            value = datetime.fromisoformat(value)
        return rows.utc(value)

    # ---- dead letters ------------------------------------------------------------------
    async def list_dead_letters(
        self, *, flow_id: str | None = None, include_redriven: bool = False, limit: int = 100
    ) -> list[DeadLetter]:
        query = dead_letters.select()
        if flow_id is not None:
            query = query.where(dead_letters.c.flow_id == flow_id)
        if not include_redriven:
            query = query.where(dead_letters.c.redriven_at.is_(None))
        query = query.order_by(dead_letters.c.created_at.desc()).limit(limit)
        return await self.db.run_read(
            lambda c: [rows.dead_letter(r) for r in c.execute(query).all()]
        )

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        def q(conn: Conn) -> DeadLetter | None:
            row = conn.execute(
                dead_letters.select().where(dead_letters.c.id == dead_letter_id)
            ).first()
            return rows.dead_letter(row) if row else None

        return await self.db.run_read(q)

    async def mark_redriven(self, dead_letter_id: str, *, run_id: str, at: datetime) -> None:
        statement = (
            dead_letters.update()
            .where(dead_letters.c.id == dead_letter_id)
            .values(redriven_at=at, redrive_run_id=run_id)
        )
        result = await self.db.run_write(lambda c: c.execute(statement).rowcount)
        if result == 0:
            raise errors.DeadLetterNotFound(dead_letter_id=dead_letter_id)
