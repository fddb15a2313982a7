"""Catch-up and overlap policies: pure decisions the scheduler loop applies.

Catch-up decides which fire times to run after the scheduler was away (downtime, a paused flow
being resumed). A fire time is *on time* when it is at most ``grace`` old when the scheduler
sees it (the leader ticks every second; a replacement leader takes a few seconds), and *missed*
when older:

* ``skip`` (default): run the on-time fires only; missed ones are dropped and counted.
* ``once``: also run the latest missed fire, one run standing for the whole missed window.
* ``all``: also run every missed fire, at most ``catchup_limit`` (the most recent ones).

Overlap decides what a new fire does while earlier runs of the flow are still active. The limit
is ``max_active_runs`` when set, else 1 for every overlap mode but ``allow`` (unbounded):

* below the limit, the run starts;
* at the limit: ``skip`` drops the fire, ``queue`` (and ``allow`` with a ``max_active_runs``)
  queues it to start when an active run finishes, ``cancel_previous`` cancels the oldest active
  runs to make room and starts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from linkloom.flows.spec import Concurrency, Schedule
from linkloom.scheduler import cron

DEFAULT_GRACE = timedelta(seconds=60)  # like Quartz's misfireThreshold
MAX_ON_TIME = 10_000  # fires planned in one pass, whatever the grace window holds
_US = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class FirePlan:
    """What to do with one schedule now."""

    fires: tuple[datetime, ...]  # fire times to create runs for, ascending
    skipped: int  # missed fire times dropped by the catch-up policy (capped count)
    next_fire_time: datetime  # the first fire time after ``now``


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveRun:
    """A run of the flow that has not finished yet."""

    id: str
    created_at: datetime


class OverlapAction(StrEnum):
    START = "start"  # create the run and let it start now
    SKIP = "skip"  # drop this fire: an earlier run is still going
    QUEUE = "queue"  # hold the fire; start it when an active run finishes
    CANCEL_PREVIOUS = "cancel_previous"  # cancel ``cancel`` runs, then start


@dataclass(frozen=True, slots=True, kw_only=True)
class OverlapDecision:
    action: OverlapAction
    cancel: tuple[str, ...] = ()  # run ids to cancel first (oldest first)


def plan_fires(
    schedule: Schedule,
    *,
    next_fire_time: datetime,
    now: datetime,
    catchup: str = "skip",
    catchup_limit: int = 100,
    grace: timedelta = DEFAULT_GRACE,
) -> FirePlan:
    """Decide which fire times from ``next_fire_time`` up to ``now`` (inclusive) to run."""
    if next_fire_time > now:
        return FirePlan(fires=(), skipped=0, next_fire_time=next_fire_time)
    cutoff = now - grace
    if next_fire_time >= cutoff:
        # The common case, in one pass: the due fires, then the first one after now.
        due: list[datetime] = []
        for fire in cron.iter_fires(schedule, after=next_fire_time - _US):
            if fire > now or len(due) >= MAX_ON_TIME:
                return FirePlan(fires=tuple(due), skipped=0, next_fire_time=fire)
            due.append(fire)
    on_time = cron.fires_between(
        schedule, start=max(next_fire_time, cutoff), end=now, limit=MAX_ON_TIME
    )
    missed: list[datetime] = []
    skipped = 0
    if next_fire_time < cutoff:
        window_end = cutoff - _US
        if catchup == "once":
            missed = cron.latest_fires(schedule, end=window_end, n=1, not_before=next_fire_time)
        elif catchup == "all":
            missed = cron.latest_fires(
                schedule, end=window_end, n=catchup_limit, not_before=next_fire_time
            )
        total = len(
            cron.fires_between(
                schedule, start=next_fire_time, end=window_end, limit=MAX_ON_TIME + 1
            )
        )
        skipped = max(0, total - len(missed))
    # When the window was capped, continue right after the last planned fire next time.
    resume_after = on_time[-1] if len(on_time) >= MAX_ON_TIME else now
    return FirePlan(
        fires=tuple(missed + on_time),
        skipped=skipped,
        next_fire_time=cron.next_fire(schedule, after=resume_after),
    )


def active_limit(concurrency: Concurrency) -> int | None:
    """How many runs of the flow may be active at once (None: no limit)."""
    if concurrency.max_active_runs is not None:
        return concurrency.max_active_runs
    return None if concurrency.overlap == "allow" else 1


def decide_overlap(concurrency: Concurrency, *, active: Sequence[ActiveRun]) -> OverlapDecision:
    """What a new fire does given the flow's runs that are still active."""
    limit = active_limit(concurrency)
    if limit is None or len(active) < limit:
        return OverlapDecision(action=OverlapAction.START)
    if concurrency.overlap == "skip":
        return OverlapDecision(action=OverlapAction.SKIP)
    if concurrency.overlap == "cancel_previous":
        oldest = sorted(active, key=lambda run: (run.created_at, run.id))
        excess = len(active) - limit + 1
        return OverlapDecision(
            action=OverlapAction.CANCEL_PREVIOUS,
            cancel=tuple(run.id for run in oldest[:excess]),
        )
    return OverlapDecision(action=OverlapAction.QUEUE)


def free_slots(concurrency: Concurrency, *, active: int) -> int | None:
    """How many queued fires may start now (None: all of them)."""
    limit = active_limit(concurrency)
    return None if limit is None else max(0, limit - active)
