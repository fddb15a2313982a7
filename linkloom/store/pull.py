"""``SqlPullStore``: queued ``task`` steps and pull-mode workers on SQLite/PostgreSQL
(implements ``linkloom.engine.pull.PullStore``; tables ``pull_tasks`` and ``pull_workers``).

Taking tasks locks candidate rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent
polls never hand one task to two workers; SQLite's single writer gives the same.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from linkloom.engine.pull import ACTIVE, LOST, STOPPED, QueuedTask, WorkerInfo
from linkloom.store.rows import utc
from linkloom.store.session import Database
from linkloom.store.tables import pull_tasks as T
from linkloom.store.tables import pull_workers as W


def _task(row: Any) -> QueuedTask:
    return QueuedTask(
        token=row.token,
        step_run_id=row.step_run_id,
        attempt=row.attempt,
        queue=row.queue,
        task=row.task,
        envelope=row.envelope,
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        worker_id=row.worker_id,
        lease_until=utc(row.lease_until),
        deliveries=row.deliveries,
    )


def _worker(row: Any) -> WorkerInfo:
    return WorkerInfo(
        id=row.id,
        host=row.host,
        queues=tuple(row.queues or ()),
        version=row.version,
        status=row.status,
        started_at=utc(row.started_at),  # type: ignore[arg-type]
        last_heartbeat=utc(row.last_heartbeat),  # type: ignore[arg-type]
    )


class SqlPullStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def enqueue(self, task: QueuedTask) -> None:
        def write(conn: sa.Connection) -> None:
            if conn.execute(sa.select(T.c.token).where(T.c.token == task.token)).first():
                return
            conn.execute(
                T.insert().values(
                    token=task.token,
                    step_run_id=task.step_run_id,
                    attempt=task.attempt,
                    queue=task.queue,
                    task=task.task,
                    envelope=task.envelope,
                    created_at=task.created_at,
                    deliveries=0,
                )
            )

        await self.db.run_write(write)

    async def take(
        self, *, worker_id: str, queues: list[str], now: datetime, lease_seconds: float, limit: int
    ) -> list[QueuedTask]:
        from datetime import timedelta

        until = now + timedelta(seconds=lease_seconds)
        postgres = self.db.dialect == "postgresql"

        def write(conn: sa.Connection) -> list[QueuedTask]:
            query = (
                sa.select(T.c.token)
                .where(
                    T.c.queue.in_(queues),
                    sa.or_(T.c.worker_id.is_(None), T.c.lease_until < now),
                )
                .order_by(T.c.created_at, T.c.token)
                .limit(limit)
            )
            if postgres:
                query = query.with_for_update(skip_locked=True)
            tokens = [r.token for r in conn.execute(query)]
            if not tokens:
                return []
            conn.execute(
                T.update()
                .where(T.c.token.in_(tokens))
                .values(worker_id=worker_id, lease_until=until, deliveries=T.c.deliveries + 1)
            )
            rows = conn.execute(sa.select(T).where(T.c.token.in_(tokens)).order_by(T.c.created_at))
            return [_task(r) for r in rows]

        return await self.db.run_write(write)

    async def delete(self, token: str) -> None:
        await self.db.run_write(lambda conn: conn.execute(T.delete().where(T.c.token == token)))

    async def renew(self, *, worker_id: str, tokens: list[str], until: datetime) -> set[str]:
        if not tokens:
            return set()

        def write(conn: sa.Connection) -> set[str]:
            mine = sa.and_(T.c.token.in_(tokens), T.c.worker_id == worker_id)
            conn.execute(T.update().where(mine).values(lease_until=until))
            return {r.token for r in conn.execute(sa.select(T.c.token).where(mine))}

        return await self.db.run_write(write)

    async def release_worker(self, worker_id: str) -> int:
        def write(conn: sa.Connection) -> int:
            result = conn.execute(
                T.update()
                .where(T.c.worker_id == worker_id)
                .values(worker_id=None, lease_until=None)
            )
            return int(result.rowcount or 0)

        return await self.db.run_write(write)

    async def save_worker(self, worker: WorkerInfo) -> None:
        values = {
            "host": worker.host,
            "queues": list(worker.queues),
            "version": worker.version,
            "status": worker.status,
            "started_at": worker.started_at,
            "last_heartbeat": worker.last_heartbeat,
        }

        def write(conn: sa.Connection) -> None:
            done = conn.execute(W.update().where(W.c.id == worker.id).values(**values))
            if not done.rowcount:
                conn.execute(W.insert().values(id=worker.id, **values))

        await self.db.run_write(write)

    async def touch_worker(self, worker_id: str, *, now: datetime) -> bool:
        def write(conn: sa.Connection) -> bool:
            # A stopped worker stays stopped: a long poll still open when it said goodbye must
            # not revive it (it would be marked lost later); it registers again to come back.
            done = conn.execute(
                W.update()
                .where(W.c.id == worker_id, W.c.status != STOPPED)
                .values(last_heartbeat=now, status=ACTIVE)
            )
            return bool(done.rowcount)

        return await self.db.run_write(write)

    async def mark_lost(self, *, before: datetime) -> list[str]:
        def write(conn: sa.Connection) -> list[str]:
            stale = sa.and_(W.c.status == ACTIVE, W.c.last_heartbeat < before)
            ids = [r.id for r in conn.execute(sa.select(W.c.id).where(stale))]
            if ids:
                conn.execute(W.update().where(W.c.id.in_(ids)).values(status=LOST))
            return ids

        return await self.db.run_write(write)

    async def set_status(self, worker_id: str, status: str) -> None:
        await self.db.run_write(
            lambda conn: conn.execute(W.update().where(W.c.id == worker_id).values(status=status))
        )

    async def list_workers(self, *, include_stopped: bool) -> list[WorkerInfo]:
        def read(conn: sa.Connection) -> list[WorkerInfo]:
            query = sa.select(W).order_by(W.c.started_at, W.c.id)
            if not include_stopped:
                query = query.where(W.c.status != "stopped")
            return [_worker(r) for r in conn.execute(query)]

        return await self.db.run_read(read)

    async def leased_tasks(self) -> list[QueuedTask]:
        def read(conn: sa.Connection) -> list[QueuedTask]:
            return [_task(r) for r in conn.execute(sa.select(T).where(T.c.worker_id.isnot(None)))]

        return await self.db.run_read(read)
