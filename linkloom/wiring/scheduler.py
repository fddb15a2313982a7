"""The scheduler of the services: the SQL scheduler store, the leader lock the database allows
(an advisory lock on PostgreSQL, none on SQLite), the settings' tick, signing key and secrets.
``build_services`` builds it; ``loom scheduler``, ``loom server`` (``create_app``) and ``embed``
start it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from linkloom.config import Settings
from linkloom.engine.service import RunService
from linkloom.scheduler.service import AlwaysLeader, Scheduler
from linkloom.store.schedules import AdvisoryLeaderLock, SqlSchedulerStore
from linkloom.store.session import Database


def build_scheduler(settings: Settings, *, db: Database, runs: RunService) -> Scheduler:
    """A new scheduler on ``db`` and the run service ``runs``.

    Call ``services.run_listeners.append(scheduler.on_run_finished)`` in a process that runs
    workers, so event triggers fire at once; the scheduler also polls finished runs.
    """
    secrets = {name: value.get_secret_value() for name, value in settings.secrets.items()}
    return Scheduler(
        store=SqlSchedulerStore(db),
        runs=runs,
        clock=runs.clock,
        leader=leader_lock(db),
        tick_seconds=settings.scheduler.tick_seconds,
        replay_window=timedelta(seconds=settings.scheduler.webhook_replay_window_seconds),
        signing_key=settings.security.signing_key.get_secret_value(),
        secret=secrets.get,
    )


def leader_lock(db: Database) -> Any:
    """The right lock for the database: an advisory lock on PostgreSQL, none on SQLite."""
    if db.dialect == "postgresql":
        return AdvisoryLeaderLock(db)
    return AlwaysLeader()
