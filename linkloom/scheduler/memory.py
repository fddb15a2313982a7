"""In-memory doubles of the scheduler's ports, for unit tests and embedding without a database.

``InMemorySchedulerStore`` keeps flows, schedule state, queued fires and deliveries in dicts;
``InMemoryRuns`` creates runs and enforces the ``(flow_id, schedule_id, fire_time)`` uniqueness the
real database enforces, raising a ``Conflict`` on a duplicate.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from linkloom.errors import Conflict, NotFound
from linkloom.scheduler.models import FinishedRun, FlowHead, QueuedFire, ScheduleState
from linkloom.scheduler.policies import ActiveRun


class DuplicateFire(Conflict):
    """A run for schedule {schedule_id!r} at {fire_time} already exists."""


@dataclass(slots=True, kw_only=True)
class MemoryRun:
    id: str
    flow_id: str
    version: int | None
    trigger: str
    inputs: dict[str, Any]
    trigger_info: dict[str, Any]
    schedule_id: str | None
    fire_time: datetime | None
    status: str = "PENDING"
    created_at: datetime | None = None
    finished_at: datetime | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


class InMemoryRuns:
    """A run launcher that records runs; ``finish`` ends one (for overlap and event tests)."""

    def __init__(self, clock: Any = None) -> None:
        self.runs: dict[str, MemoryRun] = {}
        self._keys: set[tuple[str, str, datetime]] = set()
        self._ids = itertools.count(1)
        self._clock = clock
        self.cancelled: list[str] = []

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
    ) -> MemoryRun:
        if schedule_id is not None and fire_time is not None:
            key = (flow_id, schedule_id, fire_time)
            if key in self._keys:
                raise DuplicateFire(schedule_id=schedule_id, fire_time=fire_time)
            self._keys.add(key)
        run = MemoryRun(
            id=f"run-{next(self._ids)}",
            flow_id=flow_id,
            version=version,
            trigger=trigger,
            inputs=inputs,
            trigger_info=trigger_info or {},
            schedule_id=schedule_id,
            fire_time=fire_time,
            created_at=self._clock.now() if self._clock else None,
        )
        self.runs[run.id] = run
        return run

    async def cancel(self, run_id: str) -> MemoryRun:
        run = self.runs.get(run_id)
        if run is None:
            raise NotFound(f"run {run_id} not found")
        run.status = "CANCELLED"
        self.cancelled.append(run_id)
        return run

    def finish(self, run_id: str, status: str = "SUCCEEDED", **outputs: Any) -> None:
        run = self.runs[run_id]
        run.status = status
        run.outputs = outputs
        run.finished_at = self._clock.now() if self._clock else None

    def of(self, flow_id: str) -> list[MemoryRun]:
        return [r for r in self.runs.values() if r.flow_id == flow_id]


class InMemorySchedulerStore:
    """The scheduler's store in memory. ``put_flow`` adds or replaces a flow's current version."""

    def __init__(self, runs: InMemoryRuns | None = None) -> None:
        self.heads: dict[str, FlowHead] = {}
        self.specs: dict[tuple[str, int], dict[str, Any]] = {}
        self.states: dict[tuple[str, str], ScheduleState] = {}
        self.queue: dict[tuple[str, str, datetime], QueuedFire] = {}
        self.deliveries: dict[str, datetime] = {}
        self.runs = runs

    def put_flow(self, spec: dict[str, Any], *, paused: bool = False) -> int:
        flow_id = spec["id"]
        version = self.heads[flow_id].version + 1 if flow_id in self.heads else 1
        self.heads[flow_id] = FlowHead(flow_id=flow_id, version=version, paused=paused)
        self.specs[(flow_id, version)] = spec
        return version

    async def flow_heads(self) -> list[FlowHead]:
        return list(self.heads.values())

    async def flow_spec(self, flow_id: str, version: int) -> dict[str, Any] | None:
        return self.specs.get((flow_id, version))

    async def flow_specs(
        self, keys: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], dict[str, Any]]:
        return {key: self.specs[key] for key in keys if key in self.specs}

    async def flows_fingerprint(self) -> object:
        return tuple(sorted((h.flow_id, h.version, h.paused) for h in self.heads.values()))

    async def schedule_states(self, *, due_before: datetime | None = None) -> list[ScheduleState]:
        return [
            s
            for s in self.states.values()
            if due_before is None
            or (s.next_fire_time is not None and s.next_fire_time <= due_before)
        ]

    async def init_states(self, states: Sequence[ScheduleState]) -> None:
        for state in states:
            key = (state.flow_id, state.schedule_id)
            old = self.states.get(key)
            if old is None:
                self.states[key] = state
            elif old.next_fire_time is None:
                self.states[key] = replace(old, next_fire_time=state.next_fire_time)

    async def advance_state(
        self,
        *,
        flow_id: str,
        schedule_id: str,
        expected_next: datetime | None,
        next_fire_time: datetime,
        last_fire_time: datetime | None,
    ) -> bool:
        old = self.states.get((flow_id, schedule_id))
        if old is None or old.next_fire_time != expected_next:
            return False
        self.states[(flow_id, schedule_id)] = replace(
            old, next_fire_time=next_fire_time, last_fire_time=last_fire_time
        )
        return True

    async def set_paused(self, flow_id: str, *, paused: bool) -> bool:
        head = self.heads.get(flow_id)
        if head is None:
            return False
        self.heads[flow_id] = replace(head, paused=paused)
        return True

    async def active_runs(self, flow_id: str) -> list[ActiveRun]:
        if self.runs is None:
            return []
        return [
            ActiveRun(id=r.id, created_at=r.created_at or datetime.min)
            for r in self.runs.of(flow_id)
            if r.status in ("PENDING", "RUNNING")
        ]

    async def queue_fire(self, fire: QueuedFire) -> None:
        self.queue.setdefault((fire.flow_id, fire.schedule_id, fire.fire_time), fire)

    async def queued_fires(self) -> list[QueuedFire]:
        return sorted(self.queue.values(), key=lambda f: (f.fire_time, f.schedule_id))

    async def dequeue_fire(self, *, flow_id: str, schedule_id: str, fire_time: datetime) -> None:
        self.queue.pop((flow_id, schedule_id, fire_time), None)

    async def finished_runs(
        self, *, flow_ids: Sequence[str], since: datetime, limit: int = 1000
    ) -> list[FinishedRun]:
        if self.runs is None:
            return []
        done = [
            FinishedRun(
                id=r.id,
                flow_id=r.flow_id,
                status=r.status,
                outputs=r.outputs,
                inputs=r.inputs,
                finished_at=r.finished_at,
            )
            for r in self.runs.runs.values()
            if r.flow_id in flow_ids and r.finished_at is not None and r.finished_at > since
        ]
        return sorted(done, key=lambda r: r.finished_at or since)[:limit]

    async def record_delivery(
        self,
        *,
        flow_id: str,
        trigger_id: str,
        delivery_key: str,
        received_at: datetime,
        seen_since: datetime | None = None,
    ) -> bool:
        seen = self.deliveries.get(delivery_key)
        if seen is not None and (seen_since is None or seen >= seen_since):
            return False
        self.deliveries[delivery_key] = received_at
        return True

    async def forget_delivery(self, delivery_key: str) -> None:
        self.deliveries.pop(delivery_key, None)

    async def forget_deliveries(self, *, before: datetime) -> int:
        old = [key for key, at in self.deliveries.items() if at < before]
        for key in old:
            del self.deliveries[key]
        return len(old)
