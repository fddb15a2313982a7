"""Retention: deleting finished runs older than a flow's limit, in small batches.

``RetentionPolicy`` says how long runs are kept (``retention.runs_days``, per flow
``retention.flows``). ``SqlRetention.purge()`` deletes, for each rule, the finished runs created
before its cutoff, oldest first, ``batch_size`` runs per transaction with a pause between two
(at least ``pause_seconds``, and at least as long as the batch took):

* a run and everything that hangs off it go in the same transaction: step runs, attempts,
  events (log lines), recorded exchanges, dead letters. The run row is deleted first and only
  while it is still finished, so a run retried meanwhile is kept (its row lock orders the two);
* runs still PENDING or RUNNING are never deleted, whatever their age;
* the runs proposals replay are kept: every run named by a check of a proposal that is neither
  promoted nor closed, and each flow's newest ``fixture_runs`` successful production runs (the
  cases the next proposal will be replayed against);
* on PostgreSQL each batch takes ``pg_try_advisory_xact_lock``: when two processes purge at
  once, one stops and leaves the work to the other.

A batch walks the ``(created_at, id)`` index from the oldest end and never scans what it kept, so
its cost does not grow with the history. ``RetentionJob`` runs ``purge`` every
``interval_seconds`` in the process that runs the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog

from linkloom import metrics
from linkloom.engine.models import RunStatus
from linkloom.engine.ports import Clock
from linkloom.store.session import Database
from linkloom.store.tables import (
    dead_letters,
    exchanges,
    flows,
    proposal_checks,
    proposals,
    run_events,
    runs,
    step_attempts,
    step_runs,
)

log = structlog.get_logger(__name__)

# "LOOMRETN" as a signed 64-bit integer: one purging process at a time.
PURGE_LOCK_KEY = int.from_bytes(b"LOOMRETN", "big", signed=True)
FINISHED = [s.value for s in RunStatus if s.terminal]
# Proposals in these states replay nothing any more: their cases may go.
_DONE_PROPOSALS = ("promoted", "closed")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Tables whose rows belong to one run (``run_id``), deleted with it.
_RUN_TABLES = (step_attempts, exchanges, run_events, dead_letters, step_runs)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionPolicy:
    """How long finished runs are kept."""

    runs_days: float | None = None  # every flow without a rule of its own; None: forever
    flows: Mapping[str, float | None] = field(default_factory=dict)  # flow id → days / forever
    batch_size: int = 200
    pause_seconds: float = 0.05
    fixture_runs: int = 10  # newest successful production runs kept per flow

    @property
    def enabled(self) -> bool:
        return self.runs_days is not None or any(d is not None for d in self.flows.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeReport:
    """What one purge deleted."""

    runs: int = 0  # runs deleted
    batches: int = 0  # transactions that deleted something
    kept_replayed: int = 0  # old enough, but a case of a proposal not promoted nor closed
    kept_newest: int = 0  # old enough, but one of its flow's newest successful production runs
    by_flow: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False  # another process was purging: it carries on

    @property
    def kept(self) -> int:
        """Old enough, but kept because proposals replay them (either reason)."""
        return self.kept_replayed + self.kept_newest


@dataclass(frozen=True, slots=True, kw_only=True)
class _Protected:
    """The runs a purge keeps whatever their age, by reason (a run in both counts as replayed)."""

    replayed: frozenset[str] = frozenset()  # named by checks of proposals still open
    newest: frozenset[str] = frozenset()  # each flow's newest successful production runs


@dataclass(frozen=True, slots=True, kw_only=True)
class _Rule:
    cutoff: datetime
    flow_id: str | None = None  # None: every flow not in ``others``
    others: tuple[str, ...] = ()


class SqlRetention:
    """Purges old finished runs on SQLite or PostgreSQL."""

    def __init__(self, db: Database, *, clock: Clock, policy: RetentionPolicy) -> None:
        self.db = db
        self.clock = clock
        self.policy = policy
        self._pg = db.dialect == "postgresql"

    def rules(self, now: datetime) -> list[_Rule]:
        """One rule per flow with days of its own, then the default for the others."""
        found = [
            _Rule(cutoff=now - timedelta(days=days), flow_id=flow_id)
            for flow_id, days in sorted(self.policy.flows.items())
            if days is not None
        ]
        if self.policy.runs_days is not None:
            found.append(
                _Rule(
                    cutoff=now - timedelta(days=self.policy.runs_days),
                    others=tuple(sorted(self.policy.flows)),
                )
            )
        return found

    async def protected_runs(self) -> _Protected:
        """Runs that stay whatever their age: cases of open proposals, newest fixtures."""
        return await self.db.run_read(self._protected)

    def _protected(self, conn: sa.Connection) -> _Protected:
        replayed: set[str] = set()
        newest_runs: set[str] = set()
        open_checks = (
            sa.select(proposal_checks.c.details)
            .join(proposals, proposals.c.id == proposal_checks.c.proposal_id)
            .where(proposals.c.status.not_in(_DONE_PROPOSALS))
        )
        for (details,) in conn.execute(open_checks):
            replayed.update(_run_ids_in(details))
        if self.policy.fixture_runs > 0:
            for (flow_id,) in conn.execute(sa.select(flows.c.id)):
                newest = (
                    sa.select(runs.c.id)
                    .where(
                        runs.c.flow_id == flow_id,
                        runs.c.status == RunStatus.SUCCEEDED.value,
                        runs.c.sandbox.is_(False),
                    )
                    .order_by(runs.c.created_at.desc(), runs.c.id.desc())
                    .limit(self.policy.fixture_runs)
                )
                newest_runs.update(conn.execute(newest).scalars())
        return _Protected(replayed=frozenset(replayed), newest=frozenset(newest_runs - replayed))

    async def purge(self, *, now: datetime | None = None) -> PurgeReport:
        """Delete every finished run past its flow's limit, batch by batch."""
        started = time.perf_counter()
        now = now or self.clock.now()
        keep = await self.protected_runs()
        by_flow: dict[str, int] = {}
        batches = kept_replayed = kept_newest = 0
        interrupted = False
        for rule in self.rules(now):
            after: tuple[datetime, str] | None = None
            while True:
                batch_started = time.perf_counter()
                outcome = await self.db.run_write(
                    functools.partial(self._batch, rule=rule, after=after, keep=keep)
                )
                took = time.perf_counter() - batch_started
                if outcome is None:  # another process holds the purge lock
                    interrupted = True
                    break
                deleted, (replayed, newest), after = outcome
                kept_replayed += replayed
                kept_newest += newest
                if deleted:
                    batches += 1
                    for flow_id, count in deleted.items():
                        by_flow[flow_id] = by_flow.get(flow_id, 0) + count
                        metrics.runs_purged(flow_id=flow_id, count=count)
                if after is None:
                    break
                # Rest at least as long as the batch took: a purge uses at most about half of
                # the database's time, whatever the machine (at 1M runs on two loaded cores, a
                # 50 ms pause alone slowed concurrent runs 2.5×).
                await asyncio.sleep(max(self.policy.pause_seconds, took))
            if interrupted:
                break
        report = PurgeReport(
            runs=sum(by_flow.values()),
            batches=batches,
            kept_replayed=kept_replayed,
            kept_newest=kept_newest,
            by_flow=by_flow,
            seconds=time.perf_counter() - started,
            interrupted=interrupted,
        )
        # At info when it deleted something or stopped early; every other purge at debug.
        (log.info if report.runs or report.interrupted else log.debug)(
            "runs_purged", runs=report.runs, batches=report.batches,
            kept_replayed=report.kept_replayed, kept_newest=report.kept_newest,
            seconds=round(report.seconds, 3), interrupted=report.interrupted,
        )  # fmt: skip
        return report

    def _batch(
        self,
        conn: sa.Connection,
        rule: _Rule,
        after: tuple[datetime, str] | None,
        keep: _Protected,
    ) -> tuple[dict[str, int], tuple[int, int], tuple[datetime, str] | None] | None:
        """Delete one batch; return (deleted per flow, kept (replayed, newest), where to go on)
        or None when another process is purging. ``where to go on`` is None once nothing old
        is left."""
        if (
            self._pg
            and not conn.execute(
                sa.select(sa.func.pg_try_advisory_xact_lock(PURGE_LOCK_KEY))
            ).scalar()
        ):
            return None
        query = (
            sa.select(runs.c.id, runs.c.flow_id, runs.c.created_at)
            .where(runs.c.created_at < rule.cutoff, runs.c.status.in_(FINISHED))
            .order_by(runs.c.created_at, runs.c.id)
            .limit(self.policy.batch_size)
        )
        if rule.flow_id is not None:
            query = query.where(runs.c.flow_id == rule.flow_id)
        elif rule.others:
            query = query.where(runs.c.flow_id.not_in(rule.others))
        if after is not None:
            query = query.where(sa.tuple_(runs.c.created_at, runs.c.id) > after)
        found = conn.execute(query).all()
        if not found:
            return {}, (0, 0), None
        doomed = [r.id for r in found if r.id not in keep.replayed and r.id not in keep.newest]
        deleted: dict[str, int] = {}
        if doomed:
            # The run rows first, and only while still finished: a retry that committed
            # meanwhile keeps its run (on PostgreSQL the row lock orders the two).
            gone = conn.execute(
                runs.delete()
                .where(runs.c.id.in_(doomed), runs.c.status.in_(FINISHED))
                .returning(runs.c.id, runs.c.flow_id)
            ).all()
            ids = [r.id for r in gone]
            if ids:
                for table in _RUN_TABLES:
                    conn.execute(table.delete().where(table.c.run_id.in_(ids)))
            for r in gone:
                deleted[r.flow_id] = deleted.get(r.flow_id, 0) + 1
        last = found[-1]
        more = len(found) == self.policy.batch_size
        kept = (
            sum(r.id in keep.replayed for r in found),
            sum(r.id in keep.newest for r in found),
        )
        return deleted, kept, (last.created_at, last.id) if more else None


def _run_ids_in(details: Any) -> Iterable[str]:
    """Every run id a check's details mention (case names are ``run-<id>``; the details'
    shape belongs to the proposal checks, so read them as text)."""
    if details is None:
        return ()
    text = details if isinstance(details, str) else repr(details)
    return _UUID.findall(text)


class RetentionJob:
    """Runs ``SqlRetention.purge`` now and then, until stopped."""

    def __init__(self, retention: SqlRetention, *, interval_seconds: float) -> None:
        self.retention = retention
        self.interval = interval_seconds
        self.last: PurgeReport | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            policy = self.retention.policy
            log.info(
                "retention_started", runs_days=policy.runs_days, flow_rules=len(policy.flows),
                interval_seconds=self.interval, batch_size=policy.batch_size,
                fixture_runs=policy.fixture_runs,
            )  # fmt: skip
            self._task = asyncio.create_task(self._loop(), name="retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                self.last = await self.retention.purge()
            except Exception:  # the database was away: try again next time
                log.exception("retention_purge_failed")
            await asyncio.sleep(self.interval)
