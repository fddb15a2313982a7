"""Runs started by something other than the clock: backfills, signed webhooks, finished runs.

``TriggerRuns`` is a mixin of ``linkloom.scheduler.service.Scheduler`` (it uses the scheduler's
store, run launcher and clock). The contracts:

* backfill creates the runs a schedule would have created in a window, under the same unique
  ``(flow_id, schedule_id, fire_time)`` key as scheduled runs, so nothing runs twice;
* a webhook is verified before anything is stored; its delivery keys are stored once (the keys of
  what was signed once per server, not per trigger: ``webhooks``), and freed again when its run
  cannot be created;
* an event run carries ``(schedule_id="@<trigger id>", fire_time=<upstream finished_at>)``, so the
  run listener and the polling safety net start the downstream flow once per upstream run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from linkloom.engine.errors import FlowPaused
from linkloom.errors import Conflict
from linkloom.flows.spec import EventTrigger, FlowSpec, Schedule, WebhookTrigger
from linkloom.scheduler import cron, webhooks
from linkloom.scheduler.errors import (
    BackfillTooLarge,
    ScheduleNotFound,
    TriggerNotFound,
    WebhookReplayed,
)
from linkloom.scheduler.models import BackfillReport, FinishedRun, FlowHead
from linkloom.scheduler.ports import CreatedRun, RunLauncher, SchedulerStore

log = structlog.get_logger(__name__)

DEFAULT_BACKFILL_LIMIT = 1000
EVENT_KEY_PREFIX = "@"  # schedule_id of event-triggered runs: "@<trigger id>"
_EVENT_OVERLAP = timedelta(seconds=30)  # polled finished runs: look back past the last pass


@dataclass(slots=True)
class Tally:
    """What one pass (or one backfill) did, counted as it goes."""

    created: int = 0
    duplicates: int = 0
    skipped: int = 0
    queued: int = 0
    cancelled: int = 0
    failed: int = 0
    lateness: list[float] = field(default_factory=list)


class TriggerRuns:
    """Backfill, webhook and event runs (mixed into ``Scheduler``)."""

    _store: SchedulerStore
    _runs: RunLauncher
    _clock: Any
    _grace: timedelta
    _signing_key: str
    _secret: Callable[[str], str | None]
    _webhook_tolerance: float
    _replay_window: timedelta
    _events_since: datetime | None
    _events_seen: dict[str, None]
    _upstream: list[str] | None
    _upstream_key: object
    _view_key: object

    # Provided by Scheduler.
    current: Any
    _create: Any
    _spec: Any

    async def backfill(
        self,
        flow_id: str,
        *,
        start: datetime,
        end: datetime,
        schedule_id: str | None = None,
        limit: int = DEFAULT_BACKFILL_LIMIT,
        dry_run: bool = False,
    ) -> BackfillReport:
        """Create the runs the flow's schedules would have created in ``[start, end]``.

        Raises:
            BackfillTooLarge: the window holds more than ``limit`` fire times.
        """
        head, spec = await self.current(flow_id)
        pairs = list(zip(spec.schedule_ids(), spec.schedules, strict=True))
        if schedule_id is not None:
            pairs = [(sid, s) for sid, s in pairs if sid == schedule_id]
            if not pairs:
                raise ScheduleNotFound(flow_id=flow_id, schedule_id=schedule_id)
        fires: list[tuple[datetime, str, Schedule]] = []
        for sid, schedule in pairs:
            for t in cron.fires_between(schedule, start=start, end=end, limit=limit + 1):
                fires.append((t, sid, schedule))
            if len(fires) > limit:
                raise BackfillTooLarge(limit=limit)
        fires.sort(key=lambda item: (item[0], item[1]))
        listed = tuple((sid, t) for t, sid, _s in fires)
        if dry_run:
            return BackfillReport(fire_times=listed, dry_run=True)
        tally = Tally()
        created: list[str] = []
        for t, sid, schedule in fires:
            run = await self._create(
                head=head,
                schedule_id=sid,
                inputs=schedule.inputs,
                fire=t,
                tally=tally,
                trigger="backfill",
            )
            if run is not None:
                created.append(run.id)
        return BackfillReport(fire_times=listed, created=tuple(created), existing=tally.duplicates)

    # ---- webhooks ----------------------------------------------------------------------
    async def receive_webhook(
        self, flow_id: str, trigger_id: str, *, body: bytes, headers: Mapping[str, str]
    ) -> CreatedRun:
        """Verify a signed webhook and start a run with the inputs its templates map.

        Raises:
            WebhookRejected: bad, missing or stale signature (HTTP 401); nothing is created.
            WebhookReplayed: the same delivery came before (HTTP 409).
            FlowPaused: the flow is paused (HTTP 409).
            TriggerNotFound / FlowNotFound: no such flow or webhook trigger (HTTP 404).
        """
        head, spec = await self.current(flow_id)
        trigger = next(
            (t for t in spec.triggers if isinstance(t, WebhookTrigger) and t.id == trigger_id),
            None,
        )
        if trigger is None:
            raise TriggerNotFound(flow_id=flow_id, trigger_id=trigger_id)
        if head.paused:
            raise FlowPaused(flow_id=flow_id)
        secret = (self._secret(trigger.secret) if trigger.secret else None) or self._signing_key
        now = self._clock.now()
        verified = webhooks.verify(
            secret, body, headers, now=now.timestamp(), tolerance=self._webhook_tolerance
        )
        payload = webhooks.parse_payload(body)
        inputs = webhooks.map_inputs(trigger.inputs, payload=payload, headers=headers)
        keys = await self._record_delivery(flow_id, trigger_id, verified, now=now)
        try:
            run = await self._runs.trigger(
                flow_id,
                inputs=inputs,
                trigger="webhook",
                trigger_info={"trigger_id": trigger_id, "scheme": verified.scheme},
                version=head.version,
            )
        except BaseException:
            # Nothing was created: let the sender fix the inputs and deliver the same id again.
            for key in keys:
                await self._store.forget_delivery(key)
            raise
        log.info("webhook_run_created", flow_id=flow_id, trigger_id=trigger_id, run_id=run.id)
        return run

    async def _record_delivery(
        self, flow_id: str, trigger_id: str, verified: webhooks.Verified, *, now: datetime
    ) -> list[str]:
        """Store the delivery's keys, or raise ``WebhookReplayed`` when any was seen.

        A server-wide key (what was signed) is refused at every trigger once any trigger took
        it: neither scheme signs the URL, so a captured delivery is valid wherever its secret
        is. A windowed key (GitHub's body) older than the replay window no longer counts (a
        legitimately equal body, weeks later); the others count as long as they are kept.
        """
        stored: list[str] = []
        for wanted in verified.keys:
            if wanted.windowed and self._replay_window <= timedelta(0):
                continue
            scope = "" if wanted.server_wide else f"{flow_id}/{trigger_id}/"
            key = hashlib.sha256(f"{scope}{wanted.value}".encode()).hexdigest()
            if not await self._store.record_delivery(
                flow_id=flow_id,
                trigger_id=trigger_id,
                delivery_key=key,
                received_at=now,
                seen_since=now - self._replay_window if wanted.windowed else None,
            ):
                for earlier in stored:
                    await self._store.forget_delivery(earlier)
                log.warning("webhook_replayed", flow_id=flow_id, trigger_id=trigger_id,
                            scheme=verified.scheme, server_wide=wanted.server_wide)  # fmt: skip
                raise WebhookReplayed()
            stored.append(key)
        return stored

    # ---- events ------------------------------------------------------------------------
    async def on_run_finished(self, run: Any) -> list[str]:
        """Start the flows whose event triggers match this finished run; return their run ids.

        Accepts a ``FinishedRun`` or the engine's ``Run`` record (register it as a run listener).
        Safe to call more than once per run (and from several processes): the created run's
        ``(schedule_id="@<trigger id>", fire_time=<finished_at>)`` is unique.
        """
        if not isinstance(run, FinishedRun):
            run = FinishedRun.of(run)
        if run.finished_at is None:
            run = replace(run, finished_at=self._clock.now())
        specs = {}
        for head in await self._store.flow_heads():
            spec = await self._spec(head)
            if spec is not None:
                specs[head.flow_id] = (head, spec)
        self._events_seen[run.id] = None
        return await self._fire_events(specs, run)

    async def _fire_events(
        self, specs: Mapping[str, tuple[FlowHead, FlowSpec]], run: FinishedRun
    ) -> list[str]:
        created: list[str] = []
        for head, spec in specs.values():
            if head.paused:
                continue
            for trigger in spec.triggers:
                if not isinstance(trigger, EventTrigger) or trigger.flow != run.flow_id:
                    continue
                if run.status not in trigger.statuses:
                    continue
                context = {
                    "event": {
                        "flow": run.flow_id,
                        "run_id": run.id,
                        "status": run.status,
                        "outputs": run.outputs,
                        "inputs": run.inputs,
                    }
                }
                try:
                    inputs = (
                        {k: webhooks.render(v, context) for k, v in trigger.inputs.items()}
                        if trigger.inputs
                        else dict(run.outputs)
                    )
                    new = await self._runs.trigger(
                        head.flow_id,
                        inputs=inputs,
                        trigger="event",
                        trigger_info={
                            "trigger_id": trigger.id,
                            "upstream_flow": run.flow_id,
                            "upstream_run_id": run.id,
                            "upstream_status": run.status,
                        },
                        version=head.version,
                        schedule_id=(EVENT_KEY_PREFIX + trigger.id)[:64],
                        fire_time=run.finished_at,
                    )
                except Conflict:
                    continue  # already started for this run
                except Exception as exc:  # a bad mapping must not stop other triggers
                    log.warning(
                        "event_trigger_failed",
                        flow_id=head.flow_id,
                        trigger_id=trigger.id,
                        upstream_run_id=run.id,
                        error=str(exc),
                    )
                    continue
                created.append(new.id)
        return created

    async def _poll_events(
        self, specs: Mapping[str, tuple[FlowHead, FlowSpec]], now: datetime
    ) -> None:
        """Safety net for ``on_run_finished``: look at runs that finished since the last tick."""
        if self._upstream_key != self._view_key or self._upstream is None:
            self._upstream = sorted(
                {
                    t.flow
                    for _head, spec in specs.values()
                    for t in spec.triggers
                    if isinstance(t, EventTrigger)
                }
            )
            self._upstream_key = self._view_key
        upstream = self._upstream
        since = self._events_since or now - self._grace
        if not upstream:
            self._events_since = now
            return
        # Look a little further back than the last pass: a run may commit after a later one.
        finished = await self._store.finished_runs(flow_ids=upstream, since=since - _EVENT_OVERLAP)
        for run in finished:
            if run.id in self._events_seen:
                continue
            await self._fire_events(specs, run)
            self._events_seen[run.id] = None
        while len(self._events_seen) > 10_000:
            del self._events_seen[next(iter(self._events_seen))]
        self._events_since = max(
            [since, *(r.finished_at for r in finished if r.finished_at is not None)]
        )
