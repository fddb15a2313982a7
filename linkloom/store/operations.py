"""What operations read from the database: the work queue for ``/metrics``, the schema revision
and the heartbeats of worker processes for ``/readyz``.

* ``SqlOperations.queue_stats()`` implements ``metrics.QueueStatsSource`` with two indexed
  aggregate queries over ``step_runs`` (``ix_step_runs_status_ready``).
* ``SqlOperations.revision()`` reads ``alembic_version`` on the services' own pool (no new engine
  per probe), compared with ``session.head_revision()``.
* ``ProcessHeartbeat`` keeps one ``process_heartbeats`` row per ``loom worker``/``loom server``
  process running step workers fresh, every ``HEARTBEAT_SECONDS``; an API server whose workers
  run elsewhere counts the rows seen within ``ALIVE_SECONDS``. A clean stop deletes the row; a
  killed process's row just ages out (and is pruned after ``PRUNE_SECONDS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
import structlog

import linkloom
from linkloom.engine.models import StepStatus
from linkloom.engine.ports import Clock
from linkloom.metrics import QueueStats
from linkloom.store.rows import utc
from linkloom.store.session import Database, head_revision
from linkloom.store.tables import process_heartbeats as H
from linkloom.store.tables import step_runs as S

log = structlog.get_logger(__name__)

HEARTBEAT_SECONDS = 5.0
ALIVE_SECONDS = 20.0  # four missed beats: the process is gone (or its database is)
PRUNE_SECONDS = 24 * 3600.0


@functools.cache
def head() -> str | None:
    """The newest migration this code knows (read once per process)."""
    return head_revision()


class SqlOperations:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def queue_stats(self) -> QueueStats:
        now = self.clock.now()

        def read(conn: sa.Connection) -> QueueStats:
            ready_row = conn.execute(
                sa.select(sa.func.count(), sa.func.min(S.c.ready_at)).where(
                    S.c.status == StepStatus.QUEUED.value, S.c.ready_at <= now
                )
            ).one()
            running = conn.execute(
                sa.select(sa.func.count()).where(S.c.status == StepStatus.RUNNING.value)
            ).scalar_one()
            oldest = utc(ready_row[1])
            return QueueStats(
                ready=int(ready_row[0]),
                running=int(running),
                oldest_ready_age_seconds=(
                    max((now - oldest).total_seconds(), 0.0) if oldest is not None else None
                ),
            )

        return await self.db.run_read(read)

    async def revision(self) -> str | None:
        """The database's migration revision; None when it was never migrated."""

        def read(conn: sa.Connection) -> str | None:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

        return await self.db.run_read(read)

    async def beat(self, *, process_id: str, role: str, started_at: datetime) -> None:
        now = self.clock.now()
        values = {
            "role": role,
            "host": socket.gethostname()[:200],
            "pid": os.getpid(),
            "version": linkloom.__version__,
            "started_at": started_at,
            "last_seen": now,
        }

        def write(conn: sa.Connection) -> None:
            done = conn.execute(H.update().where(H.c.id == process_id).values(last_seen=now))
            if not done.rowcount:
                conn.execute(H.insert().values(id=process_id, **values))
                conn.execute(
                    H.delete().where(H.c.last_seen < now - timedelta(seconds=PRUNE_SECONDS))
                )

        await self.db.run_write(write)

    async def forget(self, process_id: str) -> None:
        await self.db.run_write(lambda conn: conn.execute(H.delete().where(H.c.id == process_id)))

    async def alive(self, *, role: str = "worker", within: float = ALIVE_SECONDS) -> int:
        """How many processes of ``role`` beat within the last ``within`` seconds."""
        since = self.clock.now() - timedelta(seconds=within)

        def read(conn: sa.Connection) -> int:
            query = sa.select(sa.func.count()).where(H.c.role == role, H.c.last_seen >= since)
            return int(conn.execute(query).scalar_one())

        return await self.db.run_read(read)


class ProcessHeartbeat:
    """Beats for this process in the background while it runs workers (or a scheduler)."""

    def __init__(
        self, operations: SqlOperations, *, role: str, interval: float = HEARTBEAT_SECONDS
    ) -> None:
        self.operations = operations
        self.role = role
        self.interval = interval
        self.process_id = f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.started_at = operations.clock.now()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is not None:
            return
        await self._beat()  # visible at once: readiness of a fresh deployment needs no wait
        self._task = asyncio.create_task(self._loop(), name=f"loom-heartbeat-{self.role}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):  # the row ages out anyway
            await self.operations.forget(self.process_id)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._beat()

    async def _beat(self) -> None:
        try:
            await self.operations.beat(
                process_id=self.process_id, role=self.role, started_at=self.started_at
            )
        except Exception as exc:  # the database is down: readiness will say so
            log.warning("heartbeat_failed", role=self.role, error=f"{type(exc).__name__}: {exc}")
