"""The scheduler's store and leader lock on SQLite and PostgreSQL.

``SqlSchedulerStore`` implements ``linkloom.scheduler.ports.SchedulerStore`` over the
``schedule_state``, ``schedule_queue``, ``webhook_deliveries``, ``flows``, ``flow_versions`` and
``runs`` tables. ``advance_state`` is a compare-and-set on ``next_fire_time``; deliveries are
inserted once (``ON CONFLICT DO NOTHING`` on the unique ``delivery_key``).

``AdvisoryLeaderLock`` holds ``pg_try_advisory_lock`` on a dedicated autocommit connection. The
lock belongs to that database session, so when the leader process dies (even by SIGKILL) the
server ends the session and the lock is free for the next follower's attempt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from linkloom.scheduler.models import FinishedRun, FlowHead, QueuedFire, ScheduleState
from linkloom.scheduler.policies import ActiveRun
from linkloom.store import tables
from linkloom.store.session import Database, utc

# "LOOMSCHD" as a signed 64-bit integer: the advisory lock key of the scheduler leader.
LEADER_LOCK_KEY = int.from_bytes(b"LOOMSCHD", "big", signed=True)
_ACTIVE = ("PENDING", "RUNNING")
_FINISHED = ("SUCCEEDED", "FAILED", "CANCELLED")


def _db(value: datetime | None) -> datetime | None:
    """Store UTC (SQLite keeps the wall-clock fields only, so they must be UTC's)."""
    return None if value is None else value.astimezone(UTC)


class SqlSchedulerStore:
    """The scheduler's persistence over a ``Database``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert

    async def flow_heads(self) -> list[FlowHead]:
        f = tables.flows
        query = sa.select(f.c.id, f.c.current_version, f.c.paused).where(f.c.deleted_at.is_(None))
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            FlowHead(flow_id=r.id, version=r.current_version, paused=bool(r.paused)) for r in rows
        ]

    async def flow_spec(self, flow_id: str, version: int) -> dict[str, Any] | None:
        v = tables.flow_versions
        query = sa.select(v.c.spec).where(v.c.flow_id == flow_id, v.c.version == version)
        async with self.db.read() as conn:
            spec = (await conn.execute(query)).scalar_one_or_none()
        return spec if isinstance(spec, dict) else None

    async def flow_specs(
        self, keys: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], dict[str, Any]]:
        v = tables.flow_versions
        out: dict[tuple[str, int], dict[str, Any]] = {}
        wanted = set(keys)
        flow_ids = sorted({flow_id for flow_id, _version in wanted})
        async with self.db.read() as conn:
            for start in range(0, len(flow_ids), 500):
                chunk = flow_ids[start : start + 500]
                query = sa.select(v.c.flow_id, v.c.version, v.c.spec).where(v.c.flow_id.in_(chunk))
                for row in (await conn.execute(query)).all():
                    key = (row.flow_id, row.version)
                    if key in wanted and isinstance(row.spec, dict):
                        out[key] = row.spec
        return out

    async def flows_fingerprint(self) -> object:
        f = tables.flows
        query = sa.select(
            sa.func.count(),
            sa.func.max(f.c.updated_at),
            sa.func.sum(f.c.current_version),
            sa.func.count(f.c.deleted_at),
            sa.func.sum(sa.case((f.c.paused, 1), else_=0)),
        )
        async with self.db.read() as conn:
            return tuple((await conn.execute(query)).one())

    async def schedule_states(self, *, due_before: datetime | None = None) -> list[ScheduleState]:
        s = tables.schedule_state
        query = sa.select(s)
        if due_before is not None:
            query = query.where(s.c.next_fire_time <= _db(due_before))
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            ScheduleState(
                flow_id=r.flow_id,
                schedule_id=r.schedule_id,
                next_fire_time=utc(r.next_fire_time),
                last_fire_time=utc(r.last_fire_time),
                paused=bool(r.paused),
            )
            for r in rows
        ]

    async def init_states(self, states: Sequence[ScheduleState]) -> None:
        if not states:
            return
        s = tables.schedule_state
        rows = [
            {
                "flow_id": state.flow_id,
                "schedule_id": state.schedule_id,
                "next_fire_time": _db(state.next_fire_time),
                "last_fire_time": _db(state.last_fire_time),
                "paused": state.paused,
            }
            for state in states
        ]
        insert = self._insert(s).on_conflict_do_nothing(index_elements=["flow_id", "schedule_id"])
        fill = (
            s.update()
            .where(
                s.c.flow_id == sa.bindparam("b_flow"),
                s.c.schedule_id == sa.bindparam("b_schedule"),
                s.c.next_fire_time.is_(None),
            )
            .values(next_fire_time=sa.bindparam("b_next"))
        )
        async with self.db.begin() as conn:
            await conn.execute(insert, rows)
            await conn.execute(
                fill,
                [
                    {
                        "b_flow": r["flow_id"],
                        "b_schedule": r["schedule_id"],
                        "b_next": r["next_fire_time"],
                    }
                    for r in rows
                ],
            )

    async def advance_state(
        self,
        *,
        flow_id: str,
        schedule_id: str,
        expected_next: datetime | None,
        next_fire_time: datetime,
        last_fire_time: datetime | None,
    ) -> bool:
        s = tables.schedule_state
        current = (
            s.c.next_fire_time.is_(None)
            if expected_next is None
            else s.c.next_fire_time == _db(expected_next)
        )
        update = (
            s.update()
            .where(s.c.flow_id == flow_id, s.c.schedule_id == schedule_id, current)
            .values(next_fire_time=_db(next_fire_time), last_fire_time=_db(last_fire_time))
        )
        async with self.db.begin() as conn:
            return bool((await conn.execute(update)).rowcount)

    async def set_paused(self, flow_id: str, *, paused: bool) -> bool:
        f = tables.flows
        update = (
            f.update()
            .where(f.c.id == flow_id, f.c.deleted_at.is_(None))
            .values(paused=paused, updated_at=datetime.now(UTC))
        )
        async with self.db.begin() as conn:
            return bool((await conn.execute(update)).rowcount)

    async def active_runs(self, flow_id: str) -> list[ActiveRun]:
        r = tables.runs
        query = (
            sa.select(r.c.id, r.c.created_at)
            .where(r.c.flow_id == flow_id, r.c.status.in_(_ACTIVE), r.c.sandbox.is_(False))
            .order_by(r.c.created_at, r.c.id)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [ActiveRun(id=row.id, created_at=utc(row.created_at) or _epoch()) for row in rows]

    async def queue_fire(self, fire: QueuedFire) -> None:
        q = tables.schedule_queue
        insert = (
            self._insert(q)
            .values(
                flow_id=fire.flow_id,
                schedule_id=fire.schedule_id,
                fire_time=_db(fire.fire_time),
                queued_at=_db(fire.queued_at),
            )
            .on_conflict_do_nothing(index_elements=["flow_id", "schedule_id", "fire_time"])
        )
        async with self.db.begin() as conn:
            await conn.execute(insert)

    async def queued_fires(self) -> list[QueuedFire]:
        q = tables.schedule_queue
        query = sa.select(q).order_by(q.c.fire_time, q.c.schedule_id)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            QueuedFire(
                flow_id=row.flow_id,
                schedule_id=row.schedule_id,
                fire_time=utc(row.fire_time) or _epoch(),
                queued_at=utc(row.queued_at) or _epoch(),
            )
            for row in rows
        ]

    async def dequeue_fire(self, *, flow_id: str, schedule_id: str, fire_time: datetime) -> None:
        q = tables.schedule_queue
        delete = q.delete().where(
            q.c.flow_id == flow_id, q.c.schedule_id == schedule_id, q.c.fire_time == _db(fire_time)
        )
        async with self.db.begin() as conn:
            await conn.execute(delete)

    async def finished_runs(
        self, *, flow_ids: Sequence[str], since: datetime, limit: int = 1000
    ) -> list[FinishedRun]:
        r = tables.runs
        query = (
            sa.select(r.c.id, r.c.flow_id, r.c.status, r.c.outputs, r.c.inputs, r.c.finished_at)
            .where(
                r.c.flow_id.in_(list(flow_ids)),
                r.c.status.in_(_FINISHED),
                r.c.finished_at > _db(since),
                r.c.sandbox.is_(False),
            )
            .order_by(r.c.finished_at)
            .limit(limit)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            FinishedRun(
                id=row.id,
                flow_id=row.flow_id,
                status=row.status,
                outputs=row.outputs or {},
                inputs=row.inputs or {},
                finished_at=utc(row.finished_at),
            )
            for row in rows
        ]

    async def record_delivery(
        self,
        *,
        flow_id: str,
        trigger_id: str,
        delivery_key: str,
        received_at: datetime,
        seen_since: datetime | None = None,
    ) -> bool:
        d = tables.webhook_deliveries
        insert = self._insert(d).values(
            id=delivery_key[:64],
            flow_id=flow_id,
            trigger_id=trigger_id,
            delivery_key=delivery_key,
            received_at=_db(received_at),
        )
        if seen_since is None:
            insert = insert.on_conflict_do_nothing()
        else:  # one statement, so two replicas cannot both take an expired key
            insert = insert.on_conflict_do_update(
                index_elements=[d.c.delivery_key],
                set_={"received_at": _db(received_at)},
                where=d.c.received_at < _db(seen_since),
            )
        statement = insert.returning(d.c.id)
        async with self.db.begin() as conn:
            return (await conn.execute(statement)).first() is not None

    async def forget_delivery(self, delivery_key: str) -> None:
        d = tables.webhook_deliveries
        async with self.db.begin() as conn:
            await conn.execute(d.delete().where(d.c.delivery_key == delivery_key))

    async def forget_deliveries(self, *, before: datetime) -> int:
        """Delete delivery keys older than ``before`` (their signatures are stale by then)."""
        d = tables.webhook_deliveries
        async with self.db.begin() as conn:
            result = await conn.execute(d.delete().where(d.c.received_at < _db(before)))
        return int(result.rowcount or 0)


class AdvisoryLeaderLock:
    """Leadership through a PostgreSQL session advisory lock on its own connection."""

    def __init__(self, db: Database, *, key: int = LEADER_LOCK_KEY) -> None:
        self._db = db
        self._key = key
        self._conn: AsyncConnection | None = None
        self._held = False

    async def acquire(self) -> bool:
        try:
            if self._conn is None:
                conn = await self._db.writer.connect()
                self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            if self._held:
                await self._conn.execute(sa.text("SELECT 1"))  # still our session?
                return True
            result = await self._conn.execute(
                sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
            )
            self._held = bool(result.scalar())
        except Exception:  # the connection died: the lock died with it
            await self._drop()
            return False
        return self._held

    async def release(self) -> None:
        if self._conn is not None and self._held:
            with contextlib.suppress(Exception):
                await self._conn.execute(
                    sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key}
                )
        await self._drop()

    async def _drop(self) -> None:
        self._held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def _epoch() -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC)
