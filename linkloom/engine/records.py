"""Persisted domain records: flows, versions, runs, step runs, attempts, events, dead letters.

These are what a ``RunStore`` reads and writes (``engine/store_port.py``). They are frozen;
change one with ``dataclasses.replace``. JSON-valued fields hold plain JSON data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from linkloom.engine.models import RunStatus, StepStatus

JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Flow:
    id: str
    name: str | None
    current_version: int
    paused: bool = False
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowVersion:
    flow_id: str
    version: int
    spec: JsonDict  # the canonical spec as JSON (``FlowSpec.model_dump(mode="json")``)
    content_hash: str
    source: str  # apply | promotion | rollback | sync
    created_by: str | None = None
    git_commit: str | None = None
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    id: str
    flow_id: str
    version: int
    status: RunStatus
    trigger: str  # manual | schedule | webhook | event | subflow | backfill | retry | redrive
    trigger_info: JsonDict = field(default_factory=dict)
    inputs: JsonDict = field(default_factory=dict)
    outputs: JsonDict | None = None
    error: JsonDict | None = None
    schedule_id: str | None = None
    fire_time: datetime | None = None
    parent_run_id: str | None = None
    parent_step_id: str | None = None
    created_by: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    sandbox: bool = False
    max_parallel: int | None = None  # steps of this run running at once (None: no limit)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRun:
    """One step of one run; fan-out children carry their ``item_index``."""

    id: str
    run_id: str
    step_id: str
    item_index: int | None = None
    status: StepStatus
    attempt: int = 0  # attempts started
    output: Any = None
    outputs: JsonDict | None = None
    error: JsonDict | None = None
    state: JsonDict = field(default_factory=dict)  # durable step state (delay, callback, ...)
    ready_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    idempotency_key: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def is_child(self) -> bool:
        return self.item_index is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One finished (or abandoned) attempt of a step run; the UI draws a Gantt chart of these."""

    id: str
    step_run_id: str
    run_id: str
    step_id: str
    item_index: int | None = None
    number: int
    status: StepStatus
    error: JsonDict | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeRecord:
    """A recorded external call of one attempt (secrets already redacted)."""

    id: str
    run_id: str
    step_id: str
    item_index: int | None = None
    attempt: int
    seq: int
    method: str
    url: str
    request: JsonDict  # {"headers", "body"}
    response: JsonDict | None  # {"headers", "body"} or None when no response came
    status: int | None = None
    duration_ms: float = 0.0
    error: str | None = None
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEvent:
    """A log line from a backend or an engine event. ``id`` orders events totally (0 = unsaved)."""

    id: int = 0
    run_id: str
    step_id: str | None = None
    attempt: int | None = None
    kind: str  # log | step_started | step_succeeded | step_failed | step_retrying | run_finished...
    level: str = "info"
    message: str = ""
    data: JsonDict | None = None
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    id: str
    run_id: str
    flow_id: str
    version: int
    step_id: str
    item_index: int | None = None
    error: JsonDict | None = None
    created_at: datetime
    redriven_at: datetime | None = None
    redrive_run_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSnapshot:
    """A run and all its step runs, read inside one transaction."""

    run: Run
    steps: tuple[StepRun, ...]

    def step(self, step_id: str, item_index: int | None = None) -> StepRun | None:
        for s in self.steps:
            if s.step_id == step_id and s.item_index == item_index:
                return s
        return None

    def by_id(self, step_run_id: str) -> StepRun | None:
        for s in self.steps:
            if s.id == step_run_id:
                return s
        return None

    def children(self, step_id: str) -> list[StepRun]:
        kids = [s for s in self.steps if s.step_id == step_id and s.item_index is not None]
        return sorted(kids, key=lambda s: s.item_index or 0)

    def parents(self) -> list[StepRun]:
        return [s for s in self.steps if s.item_index is None]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunChanges:
    """What one unit of work writes to a run, all in one transaction.

    ``steps`` replace existing step runs by id; ``new_steps`` are inserted (fan-out children).
    """

    run: Run | None = None
    steps: tuple[StepRun, ...] = ()
    new_steps: tuple[StepRun, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    exchanges: tuple[ExchangeRecord, ...] = ()
    events: tuple[RunEvent, ...] = ()
    dead_letters: tuple[DeadLetter, ...] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.run
            or self.steps
            or self.new_steps
            or self.attempts
            or self.exchanges
            or self.events
            or self.dead_letters
        )


def apply_changes(snapshot: RunSnapshot, changes: RunChanges) -> RunSnapshot:
    """The snapshot as it reads after ``changes`` (to chain mutations in one transaction)."""
    if changes.empty:
        return snapshot
    updated = {s.id: s for s in changes.steps}
    steps = [updated.pop(s.id, s) for s in snapshot.steps]
    steps.extend(changes.new_steps)
    return RunSnapshot(run=changes.run or snapshot.run, steps=tuple(steps))


def merge_changes(first: RunChanges, then: RunChanges) -> RunChanges:
    """One ``RunChanges`` equivalent to writing ``first`` and then ``then``."""
    if first.empty:
        return then
    if then.empty:
        return first
    new_ids = {s.id for s in first.new_steps}
    later = {s.id: s for s in then.steps}
    new_steps = [later.pop(s.id, s) for s in first.new_steps]
    new_steps.extend(then.new_steps)
    steps = {s.id: s for s in first.steps}
    steps.update({k: v for k, v in later.items() if k not in new_ids})
    return RunChanges(
        run=then.run or first.run,
        steps=tuple(steps.values()),
        new_steps=tuple(new_steps),
        attempts=first.attempts + then.attempts,
        exchanges=first.exchanges + then.exchanges,
        events=first.events + then.events,
        dead_letters=first.dead_letters + then.dead_letters,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """A step run a worker claimed, with what it needs to execute it."""

    step: StepRun  # already RUNNING under the worker's lease, ``attempt`` incremented
    run: Run
    # The run as read in the claiming transaction (inline claims), saving a read.
    snapshot: RunSnapshot | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFilter:
    flow_id: str | None = None
    status: RunStatus | None = None
    trigger: str | None = None
    parent_run_id: str | None = None
    schedule_id: str | None = None
    created_after: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """A page of runs and the cursor for the next one (None at the end)."""

    items: tuple[Run, ...]
    next_cursor: str | None = None
