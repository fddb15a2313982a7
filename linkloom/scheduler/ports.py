"""The narrow interfaces the scheduler talks through.

``linkloom.store.schedules`` implements ``SchedulerStore`` and ``LeaderLock`` on SQLite and
PostgreSQL; ``linkloom.scheduler.memory`` implements them in memory for tests. Runs are created
through ``RunLauncher``, which the engine's run service satisfies.

Key contracts:
- A run created for a fire carries ``(flow_id, schedule_id, fire_time)`` under a unique
  constraint; creating it twice raises a ``Conflict`` (the engine's ``DuplicateRun``), which the
  scheduler reads as "another scheduler fired it". Correctness never depends on leadership.
- ``advance_state`` is a compare-and-set on ``next_fire_time``: it only moves a schedule forward
  from the value the caller read, after the runs for the fires in between exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from linkloom.scheduler.models import FinishedRun, FlowHead, QueuedFire, ScheduleState
from linkloom.scheduler.policies import ActiveRun


class SchedulerStore(Protocol):
    async def flow_heads(self) -> list[FlowHead]:
        """Every non-deleted flow with its current version and paused flag."""
        ...

    async def flow_spec(self, flow_id: str, version: int) -> dict[str, Any] | None:
        """The spec JSON of one flow version."""
        ...

    async def flow_specs(
        self, keys: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], dict[str, Any]]:
        """The spec JSON of many flow versions at once, keyed by (flow id, version)."""
        ...

    async def flows_fingerprint(self) -> object:
        """A cheap value that changes whenever any flow's version, paused flag or existence does."""
        ...

    async def schedule_states(self, *, due_before: datetime | None = None) -> list[ScheduleState]:
        """Every schedule state, or only those with ``next_fire_time <= due_before``."""
        ...

    async def init_states(self, states: Sequence[ScheduleState]) -> None:
        """Insert each state unless one exists (or set ``next_fire_time`` where it is NULL)."""
        ...

    async def advance_state(
        self,
        *,
        flow_id: str,
        schedule_id: str,
        expected_next: datetime | None,
        next_fire_time: datetime,
        last_fire_time: datetime | None,
    ) -> bool:
        """Move ``next_fire_time`` forward if it still equals ``expected_next``."""
        ...

    async def set_paused(self, flow_id: str, *, paused: bool) -> bool:
        """Pause or resume a flow; False when there is no such flow."""
        ...

    async def active_runs(self, flow_id: str) -> list[ActiveRun]:
        """Runs of the flow that are PENDING or RUNNING, oldest first."""
        ...

    async def queue_fire(self, fire: QueuedFire) -> None:
        """Remember a fire held back by ``overlap: queue`` (idempotent)."""
        ...

    async def queued_fires(self) -> list[QueuedFire]:
        """Every held-back fire, oldest fire time first."""
        ...

    async def dequeue_fire(
        self, *, flow_id: str, schedule_id: str, fire_time: datetime
    ) -> None: ...

    async def finished_runs(
        self, *, flow_ids: Sequence[str], since: datetime, limit: int = 1000
    ) -> list[FinishedRun]:
        """Runs of the given flows that finished after ``since``, oldest first."""
        ...

    async def record_delivery(
        self,
        *,
        flow_id: str,
        trigger_id: str,
        delivery_key: str,
        received_at: datetime,
        seen_since: datetime | None = None,
    ) -> bool:
        """Store a webhook delivery key once; False when it was already stored (a replay).

        With ``seen_since``, a stored key received before it does not count: it is stored
        again with the new ``received_at`` (a replay window, not a forever key).
        """
        ...

    async def forget_delivery(self, delivery_key: str) -> None:
        """Drop one delivery key (its run could not be created)."""
        ...

    async def forget_deliveries(self, *, before: datetime) -> int:
        """Drop delivery keys received before ``before``; return how many."""
        ...


class LeaderLock(Protocol):
    async def acquire(self) -> bool:
        """Try to become (or confirm being) the leader; never blocks."""
        ...

    async def release(self) -> None: ...


class CreatedRun(Protocol):
    @property
    def id(self) -> str: ...


class RunLauncher(Protocol):
    async def trigger(
        self,
        flow_id: str,
        *,
        inputs: dict[str, Any],
        trigger: str = "manual",
        trigger_info: dict[str, Any] | None = None,
        version: int | None = None,
        schedule_id: str | None = None,
        fire_time: datetime | None = None,
    ) -> CreatedRun: ...

    async def cancel(self, run_id: str) -> object: ...
