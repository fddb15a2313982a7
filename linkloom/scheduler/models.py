"""Domain types of the scheduler: schedule state, queued fires, finished runs, reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowHead:
    """A flow's current version as the scheduler sees it each tick (cheap to read)."""

    flow_id: str
    version: int
    paused: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleState:
    """Where one schedule of one flow stands. ``next_fire_time`` is the oldest unprocessed fire."""

    flow_id: str
    schedule_id: str
    next_fire_time: datetime | None = None
    last_fire_time: datetime | None = None
    paused: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedFire:
    """A fire held back by ``overlap: queue`` until an active run of the flow finishes."""

    flow_id: str
    schedule_id: str
    fire_time: datetime
    queued_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class FinishedRun:
    """A run that ended, as event triggers see it."""

    id: str
    flow_id: str
    status: str
    outputs: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    finished_at: datetime | None = None

    @classmethod
    def of(cls, run: Any) -> FinishedRun:
        """From any run-like object (the engine's ``Run`` record included)."""
        status = getattr(run, "status", "")
        return cls(
            id=run.id,
            flow_id=run.flow_id,
            status=str(getattr(status, "value", status)),
            outputs=dict(getattr(run, "outputs", None) or {}),
            inputs=dict(getattr(run, "inputs", None) or {}),
            finished_at=getattr(run, "finished_at", None),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TickReport:
    """What one scheduler pass did (logged, and returned to tests and the benchmark)."""

    created: int = 0  # runs this scheduler created
    duplicates: int = 0  # fires another scheduler had already created
    skipped: int = 0  # fires dropped by catch-up or overlap policy
    queued: int = 0  # fires held back by overlap: queue
    cancelled: int = 0  # runs cancelled by overlap: cancel_previous
    failed: int = 0  # fires whose run could not be created (bad inputs, deleted flow)
    lateness: tuple[float, ...] = ()  # seconds between each created fire's time and its creation
    next_wakeup: datetime | None = None  # the earliest next fire time seen


@dataclass(frozen=True, slots=True, kw_only=True)
class BackfillReport:
    fire_times: tuple[tuple[str, datetime], ...]  # (schedule id, fire time) in the window
    created: tuple[str, ...] = ()  # run ids created
    existing: int = 0  # fire times that already had a run
    dry_run: bool = False
