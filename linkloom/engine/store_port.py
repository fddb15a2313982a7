"""The persistence interface the engine and its run service use.

``linkloom.store.runs.SqlRunStore`` implements it on SQLite/PostgreSQL and
``linkloom.engine.memory.InMemoryRunStore`` in memory (the sandbox runs the engine on the latter).

Key contracts:
- ``update_run`` is the only way a run's state changes after creation. It reads a
  ``RunSnapshot`` and applies the ``RunChanges`` that ``mutate`` returns in ONE transaction,
  holding the run's lock (row lock on PostgreSQL, the write lock on SQLite), so two workers
  finishing sibling steps can never both miss (or both queue) their common downstream step.
  ``mutate`` is pure and may be called again if the store retries the transaction.
- ``claim`` moves QUEUED step runs whose ``ready_at`` has passed to RUNNING under a lease,
  increments ``attempt``, and never hands one step run to two workers.
- Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

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
)

Mutation = Callable[[RunSnapshot], RunChanges]

# Lease owners that mark a RUNNING step that holds no worker slot.
FANOUT_OWNER = "fanout"  # a for_each parent waiting for its children
CALLBACK_OWNER = "callback"  # an async http step waiting for its callback


class RunStore(Protocol):
    # ---- flows -------------------------------------------------------------------------
    async def save_flow_version(
        self,
        *,
        flow_id: str,
        name: str | None,
        spec: dict[str, Any],
        content_hash: str,
        source: str,
        actor: str | None,
        git_commit: str | None,
        now: datetime,
    ) -> tuple[FlowVersion, bool]:
        """Store a new current version unless the current one has the same content hash.

        Returns the current version and whether it was created. Re-creates a deleted flow.
        """
        ...

    async def get_flow(self, flow_id: str) -> Flow | None: ...

    async def list_flows(self, *, include_deleted: bool = False) -> list[Flow]: ...

    async def get_flow_version(self, flow_id: str, version: int) -> FlowVersion | None: ...

    async def list_flow_versions(self, flow_id: str) -> list[FlowVersion]: ...

    async def update_flow(self, flow: Flow) -> None:
        """Write ``paused``, ``current_version``, ``deleted_at``, ``updated_at``, ``name``."""
        ...

    # ---- runs --------------------------------------------------------------------------
    async def create_run(
        self,
        run: Run,
        steps: Sequence[StepRun],
        events: Sequence[RunEvent] = (),
        *,
        if_current: bool = False,
    ) -> None:
        """Insert a run with its step runs; with ``if_current``, only while ``run.version`` is
        its flow's current version (in the same transaction).

        Raises:
            DuplicateRun: a run for the same (flow, schedule, fire time) exists.
            FlowChanged: ``if_current`` and the flow is deleted or has another current version.
        """
        ...

    async def get_run(self, run_id: str) -> Run | None: ...

    async def find_scheduled_run(
        self, *, flow_id: str, schedule_id: str, fire_time: datetime
    ) -> Run | None: ...

    async def list_runs(
        self, filters: RunFilter, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        """Newest first. ``cursor`` is the ``next_cursor`` of the previous page."""
        ...

    async def recent_runs(self, flow_ids: Sequence[str], *, limit: int) -> dict[str, list[Run]]:
        """Each flow's newest ``limit`` runs, newest first (one read for many flows)."""
        ...

    async def count_active_runs(self, flow_id: str) -> int:
        """Runs of the flow that are PENDING or RUNNING."""
        ...

    async def snapshot(self, run_id: str, *, parents_only: bool = False) -> RunSnapshot | None:
        """The run and its step runs (``parents_only``: without fan-out children)."""
        ...

    async def list_items(
        self, run_id: str, step_id: str, *, after: int | None = None, limit: int = 100
    ) -> list[StepRun]:
        """A fan-out's children by ``item_index`` (those after ``after``), ``limit`` at most."""
        ...

    async def update_run(self, run_id: str, mutate: Mutation) -> RunChanges | None:
        """Apply ``mutate(snapshot)`` atomically; None when the run does not exist.

        An exception raised by ``mutate`` propagates and nothing is written.
        """
        ...

    async def update_run_many(
        self, run_id: str, mutations: Sequence[Mutation]
    ) -> list[RunChanges | Exception] | None:
        """Apply several mutations in order in ONE transaction, each seeing the previous ones'
        effect (workers batch completions of one run this way). A mutation that raises is
        skipped and its exception returned in its place. None when the run does not exist."""
        ...

    async def find_step_run(self, step_run_id: str) -> StepRun | None: ...

    async def list_attempts(self, run_id: str) -> list[Attempt]: ...

    async def list_exchanges(
        self, run_id: str, *, step_id: str | None = None
    ) -> list[ExchangeRecord]: ...

    async def list_events(
        self, run_id: str, *, after_id: int = 0, limit: int = 1000
    ) -> list[RunEvent]: ...

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
        """Claim up to ``limit`` ready step runs, honouring each run's ``max_parallel`` and
        the per-flow limit (counting steps RUNNING under a worker lease)."""
        ...

    async def mark_runs_started(self, run_ids: Sequence[str], *, now: datetime) -> None:
        """PENDING → RUNNING (with ``started_at``) for runs whose first step was claimed."""
        ...

    async def renew_leases(
        self, *, owner: str, step_run_ids: Sequence[str], until: datetime
    ) -> set[str]:
        """Extend leases still held by ``owner``; return the ids it still holds."""
        ...

    async def expired_leases(self, *, now: datetime, limit: int = 100) -> list[StepRun]:
        """RUNNING step runs whose lease (or callback deadline) has passed."""
        ...

    async def next_ready_at(self) -> datetime | None:
        """The earliest ``ready_at`` of a QUEUED step run (for sleeping until it)."""
        ...

    async def next_lease_expiry(self, *, after: datetime) -> datetime | None:
        """The earliest lease or callback deadline of a RUNNING step run that is still ahead
        (after ``after``), fan-out parents aside (for sleeping until it)."""
        ...

    # ---- dead letters ------------------------------------------------------------------
    async def list_dead_letters(
        self, *, flow_id: str | None = None, include_redriven: bool = False, limit: int = 100
    ) -> list[DeadLetter]: ...

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None: ...

    async def mark_redriven(self, dead_letter_id: str, *, run_id: str, at: datetime) -> None: ...
