"""The scheduler: turns due fire times, webhooks and finished runs into runs.

Each ``tick`` reads every flow's *current* version (so a newly promoted version takes effect at
its next fire time without a restart), and for each enabled schedule of each non-paused flow
creates runs for the due fire times through the run service, with ``(schedule_id, fire_time)``
set. That key is unique in the database: when several schedulers race, one run exists and the
others get a ``Conflict``, read as "someone else fired it". Only then is ``next_fire_time``
advanced (compare-and-set), so a scheduler that dies half-way leaves work that the next tick,
on any replica, redoes without duplicates.

One replica leads (``LeaderLock``: a PostgreSQL advisory lock) so that the others stay idle;
followers try to take over every second. Leadership only saves work: a tick by a non-leader is
still correct.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from linkloom.engine.errors import FlowNotFound
from linkloom.engine.ports import Clock
from linkloom.errors import Conflict, InvalidInput, LinkloomError, NotFound
from linkloom.flows.spec import FlowSpec, Schedule
from linkloom.scheduler import cron, policies
from linkloom.scheduler.models import (
    FlowHead,
    QueuedFire,
    ScheduleState,
    TickReport,
)
from linkloom.scheduler.policies import ActiveRun, OverlapAction
from linkloom.scheduler.ports import CreatedRun, LeaderLock, RunLauncher, SchedulerStore
from linkloom.scheduler.triggers import Tally, TriggerRuns

log = structlog.get_logger(__name__)

try:  # prometheus-client comes with the server extra; the scheduler works without it
    from linkloom import metrics as _metrics
except ImportError:  # pragma: no cover - base install
    _metrics = None  # type: ignore[assignment]

FULL_READ_EVERY = timedelta(seconds=30)  # re-read every schedule state at least this often
# Webhook delivery keys are kept this long: v1 signatures are stale after minutes, but GitHub
# lets people redeliver an old delivery (same id) for weeks.
DELIVERY_RETENTION = timedelta(days=30)
_PURGE_EVERY = timedelta(hours=1)


class AlwaysLeader:
    """The leader lock of a single process (SQLite, tests)."""

    async def acquire(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class Scheduler(TriggerRuns):
    """Creates scheduled, backfilled, webhook and event runs. Safe to run on many replicas."""

    def __init__(
        self,
        *,
        store: SchedulerStore,
        runs: RunLauncher,
        clock: Clock,
        leader: LeaderLock | None = None,
        tick_seconds: float = 1.0,
        grace: timedelta = policies.DEFAULT_GRACE,
        signing_key: str = "",
        secret: Callable[[str], str | None] | None = None,
        webhook_tolerance: float = 300.0,
        replay_window: timedelta = DELIVERY_RETENTION,
        parallelism: int = 8,
    ) -> None:
        self._store = store
        self._runs = runs
        self._clock = clock
        self._leader = leader or AlwaysLeader()
        self._tick_seconds = tick_seconds
        self._grace = grace
        self._signing_key = signing_key
        self._secret = secret or (lambda _name: None)
        self._webhook_tolerance = webhook_tolerance
        self._replay_window = replay_window
        self._parallelism = max(1, parallelism)  # flows whose due fires are handled at once
        self._view: dict[str, tuple[FlowHead, FlowSpec]] | None = None
        self._view_key: object = None
        self._upstream: list[str] | None = None
        self._upstream_key: object = None
        self._heads: list[FlowHead] | None = None
        self._fingerprint: object = None
        self._states: dict[tuple[str, str], ScheduleState] = {}
        self._states_at: datetime | None = None
        self._stale = False
        self._specs: dict[tuple[str, int], FlowSpec | None] = {}
        self._enabled: dict[tuple[str, int], list[tuple[str, Schedule]]] = {}
        self._checked: set[tuple[str, int, str, datetime | None]] = set()
        self._events_since: datetime | None = None
        self._purged_at: datetime | None = None
        self._events_seen: dict[str, None] = {}  # finished runs already handled (insertion order)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.is_leader = False

    # ---- the loop ----------------------------------------------------------------------
    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self.run_forever(), name="scheduler")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def run_forever(self) -> None:
        """Lead when possible and tick; otherwise retry leadership every second."""
        try:
            while not self._stopping.is_set():
                delay = 1.0
                try:
                    leader = await self._leader.acquire()
                    if leader != self.is_leader:
                        log.info("scheduler_leadership", leader=leader)
                    self.is_leader = leader
                    if leader:
                        report = await self.tick()
                        delay = self._sleep_for(report)
                except Exception:  # keep the loop alive; the next tick retries everything
                    log.exception("scheduler_tick_failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        finally:
            self.is_leader = False
            with contextlib.suppress(Exception):
                await self._leader.release()

    def _sleep_for(self, report: TickReport) -> float:
        delay = self._tick_seconds
        if report.next_wakeup is not None:
            until = (report.next_wakeup - self._clock.now()).total_seconds()
            delay = min(delay, max(until, 0.0))
        return max(delay, 0.005)

    # ---- one pass ----------------------------------------------------------------------
    async def tick(self) -> TickReport:
        """Create the runs that are due now; return what was done."""
        now = self._clock.now()
        tally = Tally()
        heads, states, unsure, due_keys = await self._read(now)
        if self._view is None or self._view_key != self._fingerprint:
            await self._load_specs(heads)
            self._view = {}
            for head in heads:
                spec = self._specs.get((head.flow_id, head.version))
                if spec is not None:
                    self._view[head.flow_id] = (head, spec)
            self._view_key = self._fingerprint
        specs = self._view
        wakeup: datetime | None = None
        await self._release_queued(specs, tally)
        checked = self._checked
        fresh: list[tuple[ScheduleState, int]] = []
        due: list[tuple[FlowHead, FlowSpec, list[tuple[str, Schedule, ScheduleState]]]] = []
        for flow_id, head, spec, enabled in self._candidates(specs, due_keys):
            if head.paused or not spec.schedules:
                continue
            items: list[tuple[str, Schedule, ScheduleState]] = []
            for schedule_id, schedule in enabled:
                if (flow_id, schedule_id) in unsure:
                    continue
                state = states.get((flow_id, schedule_id))
                nft = state.next_fire_time if state is not None else None
                if state is None or nft is None:
                    try:
                        first = cron.next_fire(schedule, after=now)
                    except LinkloomError as exc:
                        log.warning("schedule_unusable", flow_id=flow_id, error=str(exc))
                        continue
                    new = ScheduleState(
                        flow_id=flow_id, schedule_id=schedule_id, next_fire_time=first
                    )
                    fresh.append((new, head.version))
                    wakeup = first if wakeup is None or first < wakeup else wakeup
                elif state.paused:
                    continue
                elif nft > now and (flow_id, head.version, schedule_id, nft) in checked:
                    # The steady state, kept cheap for thousands of schedules: not due yet.
                    wakeup = nft if wakeup is None or nft < wakeup else wakeup
                else:
                    items.append((schedule_id, schedule, state))
            if items:
                due.append((head, spec, items))
        if fresh:
            await self._store.init_states([state for state, _v in fresh])
            for state, version in fresh:
                checked.add((state.flow_id, version, state.schedule_id, state.next_fire_time))
                self._states[(state.flow_id, state.schedule_id)] = state
        gate = asyncio.Semaphore(self._parallelism)

        async def work(
            head: FlowHead, spec: FlowSpec, items: list[tuple[str, Schedule, ScheduleState]]
        ) -> list[datetime | None]:
            async with gate:
                active: list[ActiveRun] | None = None
                out: list[datetime | None] = []
                for schedule_id, schedule, state in items:
                    nxt, active = await self._schedule_tick(
                        head=head,
                        spec=spec,
                        schedule_id=schedule_id,
                        schedule=schedule,
                        state=state,
                        now=now,
                        active=active,
                        tally=tally,
                    )
                    out.append(nxt)
                    if nxt is not None and nxt != state.next_fire_time:
                        self._states[(head.flow_id, schedule_id)] = replace(
                            state, next_fire_time=nxt
                        )
                return out

        for results in await asyncio.gather(*(work(*entry) for entry in due)):
            for nxt in results:
                if nxt is not None and (wakeup is None or nxt < wakeup):
                    wakeup = nxt
        if due_keys is not None:  # only due schedules were visited: the rest are in the cache
            upcoming = (
                st.next_fire_time
                for st in self._states.values()
                if st.next_fire_time is not None and st.next_fire_time > now
            )
            soonest = min(upcoming, default=None)
            if soonest is not None and (wakeup is None or soonest < wakeup):
                wakeup = soonest
        await self._poll_events(specs, now)
        if self._purged_at is None or now - self._purged_at > _PURGE_EVERY:
            self._purged_at = now
            kept = max(DELIVERY_RETENTION, self._replay_window)
            await self._store.forget_deliveries(before=now - kept)
        return TickReport(
            created=tally.created,
            duplicates=tally.duplicates,
            skipped=tally.skipped,
            queued=tally.queued,
            cancelled=tally.cancelled,
            failed=tally.failed,
            lateness=tuple(tally.lateness),
            next_wakeup=wakeup,
        )

    async def _schedule_tick(
        self,
        *,
        head: FlowHead,
        spec: FlowSpec,
        schedule_id: str,
        schedule: Schedule,
        state: ScheduleState,
        now: datetime,
        active: list[ActiveRun] | None,
        tally: Tally,
    ) -> tuple[datetime | None, list[ActiveRun] | None]:
        flow_id = head.flow_id
        current = state.next_fire_time
        assert current is not None  # new schedules are initialised by ``tick``
        try:
            check = (flow_id, head.version, schedule_id, current)
            if check not in self._checked:
                consistent = (
                    cron.is_fire_time(schedule, current)
                    if current <= now
                    else cron.next_fire(schedule, after=now) == current
                )
                if not consistent:
                    # A new version changed this schedule: its next fire counts from now.
                    moved = cron.next_fire(schedule, after=now)
                    if not await self._store.advance_state(
                        flow_id=flow_id,
                        schedule_id=schedule_id,
                        expected_next=current,
                        next_fire_time=moved,
                        last_fire_time=state.last_fire_time,
                    ):
                        self._stale = True
                    log.info("schedule_changed", flow_id=flow_id, schedule_id=schedule_id)
                    return moved, active
                self._checked.add(check)
            if current > now:
                return current, active
            plan = policies.plan_fires(
                schedule,
                next_fire_time=current,
                now=now,
                catchup=spec.concurrency.catchup,
                catchup_limit=spec.concurrency.catchup_limit,
                grace=self._grace,
            )
        except LinkloomError as exc:
            log.warning(
                "schedule_unusable", flow_id=flow_id, schedule_id=schedule_id, error=str(exc)
            )
            return None, active
        if plan.skipped:
            tally.skipped += plan.skipped
            log.info(
                "schedule_missed_fires_skipped",
                flow_id=flow_id,
                schedule_id=schedule_id,
                count=plan.skipped,
                policy=spec.concurrency.catchup,
            )
        limited = policies.active_limit(spec.concurrency) is not None
        if limited and active is None and plan.fires:
            active = await self._store.active_runs(flow_id)
        for fire in plan.fires:
            await self._fire(
                head=head,
                spec=spec,
                schedule_id=schedule_id,
                schedule=schedule,
                fire=fire,
                now=now,
                active=active if limited else None,
                tally=tally,
            )
        if not await self._store.advance_state(
            flow_id=flow_id,
            schedule_id=schedule_id,
            expected_next=current,
            next_fire_time=plan.next_fire_time,
            last_fire_time=plan.fires[-1] if plan.fires else state.last_fire_time,
        ):
            self._stale = True  # another scheduler moved it first: re-read all states
        # Computed from this very schedule, so the next tick need not re-check it.
        self._checked.discard(check)
        self._checked.add((flow_id, head.version, schedule_id, plan.next_fire_time))
        return plan.next_fire_time, active

    async def _fire(
        self,
        *,
        head: FlowHead,
        spec: FlowSpec,
        schedule_id: str,
        schedule: Schedule,
        fire: datetime,
        now: datetime,
        active: list[ActiveRun] | None,
        tally: Tally,
    ) -> None:
        if active is not None:
            decision = policies.decide_overlap(spec.concurrency, active=active)
            if decision.action is OverlapAction.SKIP:
                tally.skipped += 1
                log.info("fire_skipped_overlap", flow_id=head.flow_id, fire_time=fire.isoformat())
                return
            if decision.action is OverlapAction.QUEUE:
                await self._store.queue_fire(
                    QueuedFire(
                        flow_id=head.flow_id, schedule_id=schedule_id, fire_time=fire, queued_at=now
                    )
                )
                tally.queued += 1
                return
            for run_id in decision.cancel:
                with contextlib.suppress(NotFound, Conflict):
                    await self._runs.cancel(run_id)
                    tally.cancelled += 1
                active[:] = [run for run in active if run.id not in decision.cancel]
        run = await self._create(
            head=head,
            schedule_id=schedule_id,
            inputs=schedule.inputs,
            fire=fire,
            tally=tally,
            kind="cron" if schedule.cron is not None else "interval",
        )
        if run is not None and active is not None:
            active.append(ActiveRun(id=run.id, created_at=now))

    async def _create(
        self,
        *,
        head: FlowHead,
        schedule_id: str,
        inputs: Mapping[str, Any],
        fire: datetime,
        tally: Tally,
        trigger: str = "schedule",
        kind: str | None = None,
    ) -> CreatedRun | None:
        try:
            run = await self._runs.trigger(
                head.flow_id,
                inputs=dict(inputs),
                trigger=trigger,
                trigger_info={"schedule_id": schedule_id, "fire_time": fire.isoformat()},
                version=head.version,
                schedule_id=schedule_id,
                fire_time=fire,
            )
        except Conflict:
            tally.duplicates += 1  # another scheduler created it first (or the flow was paused)
            return None
        except (InvalidInput, NotFound) as exc:
            tally.failed += 1
            log.warning(
                "fire_failed", flow_id=head.flow_id, schedule_id=schedule_id, error=str(exc)
            )
            return None
        tally.created += 1
        lateness = (self._clock.now() - fire).total_seconds()
        tally.lateness.append(lateness)
        if kind is not None and _metrics is not None:
            _metrics.scheduler_fired(lateness_seconds=lateness, kind=kind)
        log.info(
            "fire_created",
            flow_id=head.flow_id,
            schedule_id=schedule_id,
            fire_time=fire.isoformat(),
            run_id=run.id,
        )
        return run

    async def _release_queued(
        self, specs: Mapping[str, tuple[FlowHead, FlowSpec]], tally: Tally
    ) -> None:
        queued = await self._store.queued_fires()
        by_flow: dict[str, list[QueuedFire]] = {}
        for fire in queued:
            by_flow.setdefault(fire.flow_id, []).append(fire)
        for flow_id, fires in by_flow.items():
            entry = specs.get(flow_id)
            if entry is None:  # the flow was deleted: its held fires go with it
                for fire in fires:
                    await self._store.dequeue_fire(
                        flow_id=flow_id, schedule_id=fire.schedule_id, fire_time=fire.fire_time
                    )
                continue
            if entry[0].paused:
                continue
            head, spec = entry
            active = await self._store.active_runs(flow_id)
            slots = policies.free_slots(spec.concurrency, active=len(active))
            inputs = dict(zip(spec.schedule_ids(), spec.schedules, strict=True))
            for fire in fires[: len(fires) if slots is None else slots]:
                schedule = inputs.get(fire.schedule_id)
                await self._create(
                    head=head,
                    schedule_id=fire.schedule_id,
                    inputs=schedule.inputs if schedule else {},
                    fire=fire.fire_time,
                    tally=tally,
                )
                await self._store.dequeue_fire(
                    flow_id=flow_id, schedule_id=fire.schedule_id, fire_time=fire.fire_time
                )

    def _candidates(
        self,
        specs: Mapping[str, tuple[FlowHead, FlowSpec]],
        due_keys: set[tuple[str, str]] | None,
    ) -> Iterator[tuple[str, FlowHead, FlowSpec, list[tuple[str, Schedule]]]]:
        """Every flow's enabled schedules, or (between full reads) only the due ones."""
        if due_keys is None:
            for flow_id, (head, spec) in specs.items():
                yield flow_id, head, spec, self._enabled[(flow_id, head.version)]
            return
        by_flow: dict[str, list[str]] = {}
        for flow_id, schedule_id in due_keys:
            by_flow.setdefault(flow_id, []).append(schedule_id)
        for flow_id, schedule_ids in by_flow.items():
            entry = specs.get(flow_id)
            if entry is None:
                continue
            head, spec = entry
            wanted = set(schedule_ids)
            enabled = self._enabled[(flow_id, head.version)]
            yield flow_id, head, spec, [(sid, s) for sid, s in enabled if sid in wanted]

    async def _read(
        self, now: datetime
    ) -> tuple[
        list[FlowHead],
        dict[tuple[str, str], ScheduleState],
        set[tuple[str, str]],
        set[tuple[str, str]] | None,
    ]:
        """The flows' heads and the schedules' states, read incrementally.

        Heads are re-read when the flows' fingerprint changes (a new version, pause, delete).
        All states are read on the first tick, after heads changed, after a compare-and-set
        lost to another scheduler, and every ``FULL_READ_EVERY``; otherwise only the states that
        are due, which is what decides what to fire. Cached states that look due but were not
        returned were moved by another scheduler: they are skipped (``unsure``) and re-read.
        """
        fingerprint = await self._store.flows_fingerprint()
        full = self._stale or self._states_at is None or now - self._states_at >= FULL_READ_EVERY
        if self._heads is None or fingerprint != self._fingerprint:
            self._heads = await self._store.flow_heads()
            self._fingerprint = fingerprint
            full = True
        unsure: set[tuple[str, str]] = set()
        due_keys: set[tuple[str, str]] | None = None
        if full:
            self._states = {
                (st.flow_id, st.schedule_id): st for st in await self._store.schedule_states()
            }
            self._states_at = now
            self._stale = False
        else:
            due = {
                (st.flow_id, st.schedule_id): st
                for st in await self._store.schedule_states(due_before=now)
            }
            for key, st in self._states.items():
                if st.next_fire_time is not None and st.next_fire_time <= now and key not in due:
                    unsure.add(key)
            if unsure:
                self._stale = True
            self._states.update(due)
            due_keys = set(due)
        return self._heads, self._states, unsure, due_keys

    async def _load_specs(self, heads: list[FlowHead]) -> None:
        """Parse the versions not seen yet, fetched in one batch (a tick reads every flow)."""
        missing = [
            (h.flow_id, h.version) for h in heads if (h.flow_id, h.version) not in self._specs
        ]
        if not missing:
            return
        raws = await self._store.flow_specs(missing)
        for flow_id, version in missing:
            self._remember(flow_id, version, raws.get((flow_id, version)))

    async def _spec(self, head: FlowHead) -> FlowSpec | None:
        key = (head.flow_id, head.version)
        if key not in self._specs:
            raw = await self._store.flow_spec(head.flow_id, head.version)
            self._remember(head.flow_id, head.version, raw)
        return self._specs[key]

    def _remember(self, flow_id: str, version: int, raw: dict[str, Any] | None) -> None:
        try:
            spec = FlowSpec.model_validate(raw) if raw is not None else None
        except ValueError as exc:
            log.warning("flow_spec_unreadable", flow_id=flow_id, error=str(exc))
            spec = None
        self._specs[(flow_id, version)] = spec
        self._enabled[(flow_id, version)] = (
            [
                (sid, schedule)
                for sid, schedule in zip(spec.schedule_ids(), spec.schedules, strict=True)
                if schedule.enabled
            ]
            if spec is not None
            else []
        )

    async def current(self, flow_id: str) -> tuple[FlowHead, FlowSpec]:
        """The flow's current version and spec."""
        for head in await self._store.flow_heads():
            if head.flow_id == flow_id:
                spec = await self._spec(head)
                if spec is not None:
                    return head, spec
        raise FlowNotFound(flow_id=flow_id)

    # ---- commands ----------------------------------------------------------------------
    async def next_fire_times(self, flow_id: str, *, n: int = 5) -> list[tuple[str, datetime]]:
        """The next ``n`` fire times of the flow's current version, all schedules merged."""
        _head, spec = await self.current(flow_id)
        now = self._clock.now()
        merged: list[tuple[datetime, str]] = []
        for schedule_id, schedule in zip(spec.schedule_ids(), spec.schedules, strict=True):
            if schedule.enabled:
                merged += [(t, schedule_id) for t in cron.next_fires(schedule, after=now, n=n)]
        return [(sid, t) for t, sid in sorted(merged)[:n]]

    async def pause(self, flow_id: str) -> None:
        await self._set_paused(flow_id, paused=True)

    async def resume(self, flow_id: str) -> None:
        """Resume; fires missed while paused follow the flow's catch-up policy."""
        await self._set_paused(flow_id, paused=False)

    async def _set_paused(self, flow_id: str, *, paused: bool) -> None:
        if not await self._store.set_paused(flow_id, paused=paused):
            raise FlowNotFound(flow_id=flow_id)
        log.info("flow_paused" if paused else "flow_resumed", flow_id=flow_id)
