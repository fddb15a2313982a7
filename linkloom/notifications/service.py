"""``NotificationService``: hears domain events, applies rules, and delivers in the background.

    service.on_run_finished(run)      # a run listener: only enqueues, never blocks the engine
    service.on_audit(entry)           # proposal lifecycle, through the proposal service's audit
    await service.start()             # intake task, dispatcher task, SLA watcher task
    await service.send_test("ops")    # bypasses rules; answers the delivery after one attempt

Intake is in-process and best effort (a crash loses events not yet admitted); once admitted, a
delivery is a row: any process's dispatcher leases it, sends it, and retries it with backoff up
to ``max_attempts``, logging every attempt. Deliveries are unique per (channel, event key).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from linkloom.engine.models import RunStatus
from linkloom.engine.records import Run, RunFilter
from linkloom.notifications import channels, errors, messages, rules
from linkloom.notifications.models import (
    SECRET_FIELDS,
    Channel,
    ChannelKind,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Event,
    EventKind,
    Rule,
)
from linkloom.notifications.ports import NotificationStore

log = structlog.get_logger(__name__)

ProposalReader = Callable[[str], Awaitable[rules.ProposalFacts | None]]
QUEUE_SIZE = 10_000


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


class NotificationService:
    """Channels, rules and deliveries; the listeners the engine and proposals call."""

    def __init__(
        self,
        *,
        store: NotificationStore,
        runs: Any,  # RunService: get_run, list_runs, list_dead_letters
        senders: channels.Senders,
        clock: Any,
        public_url: str = "",
        proposals: ProposalReader | None = None,
        max_attempts: int = 6,
        retry_base: float = 2.0,
        retry_cap: float = 300.0,
        poll_interval: float = 1.0,
        sla_interval: float = 15.0,
        lease_seconds: float = 60.0,
        concurrency: int = 8,
        rules_ttl: float = 2.0,
    ) -> None:
        self.store = store
        self.runs = runs
        self.senders = senders
        self.clock = clock
        self.public_url = public_url
        self.proposals = proposals
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.poll_interval = poll_interval
        self.sla_interval = sla_interval
        self.lease_seconds = lease_seconds
        self.concurrency = concurrency
        self.rules_ttl = rules_ttl
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._rules: list[Rule] | None = None
        self._rules_read = 0.0
        self._idle = asyncio.Event()
        self._idle.set()
        self.dropped = 0

    # ---- listeners (never block, never raise) ----------------------------------------------
    def on_run_finished(self, run: Run) -> None:
        """Run listener: enqueue a finished production run for the intake task."""
        if run.sandbox or not run.status.terminal:
            return
        self._enqueue("run", run)

    def on_audit(self, entry: Any) -> None:
        """Audit listener: enqueue the proposal service's entries that may concern people."""
        if entry.action in (
            "proposal.check", "proposal.approve", "proposal.promote", "flow.rollback",
            "flows.push_unreviewed", "flows.remote_refused",
        ):  # fmt: skip
            self._enqueue("audit", entry)

    def _enqueue(self, kind: str, item: Any) -> None:
        try:
            self._queue.put_nowait((kind, item))
            self._idle.clear()
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("notification_dropped", kind=kind, reason="intake queue full")

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._intake_loop(), name="notify:intake"),
            asyncio.create_task(self._dispatch_loop(), name="notify:dispatch"),
            asyncio.create_task(self._sla_loop(), name="notify:sla"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def close(self, *, grace: float = 2.0) -> None:
        """Admit what runs finished just before (up to ``grace`` seconds), stop, and close the
        senders' HTTP client (the services are shutting down; admitted deliveries are rows and
        any process sends them later)."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self.drain()
        await self.stop()
        await self.senders.aclose()

    def tap(self, audit: Any) -> AuditTap:
        """``audit`` (an audit log) that also tells this service of each entry it records."""
        return AuditTap(inner=audit, listener=self.on_audit)

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def drain(self) -> None:
        """Wait until every enqueued event has been admitted (tests, graceful stops)."""
        await self._idle.wait()

    # ---- intake -----------------------------------------------------------------------------
    async def _intake_loop(self) -> None:
        while True:
            kind, item = await self._queue.get()
            try:
                if kind == "run":
                    await self.handle_run(item)
                else:
                    await self.handle_audit(item)
            except Exception:
                log.exception("notification_intake_failed", kind=kind)
            finally:
                if self._queue.empty():
                    self._idle.set()

    async def handle_run(self, run: Run) -> list[Delivery]:
        """Turn a finished run into events, and the events into deliveries."""
        active = [r for r in await self.rules() if r.enabled and _concerns_flow(r, run.flow_id)]
        if not active:
            return []
        wanted = {kind for rule in active for kind in rule.events}
        events: list[Event] = []
        outcome = rules.outcome(run)
        if outcome is not None and wanted & {EventKind.RUN_FAILED, EventKind.RUN_RECOVERED}:
            previous = await self.store.swap_health(run.flow_id, outcome, at=self.clock.now())
            events += [e for e in rules.run_events(run, previous=previous) if e.kind in wanted]
        if EventKind.DEAD_LETTER in wanted and run.status is RunStatus.FAILED:
            letters = await self.runs.list_dead_letters(flow_id=run.flow_id, limit=1000)
            events += [
                e
                for e in rules.run_events(run, previous=None, dead_letters=letters)
                if e.kind is EventKind.DEAD_LETTER
            ]
        admitted: list[Delivery] = []
        for event in events:
            admitted += await self.publish(event)
        for rule in active:
            if EventKind.SLA_EXCEEDED in rule.events:
                late = rules.sla_event(run, rule, now=self.clock.now())
                if late is not None:
                    admitted += await self.publish(late, only=[rule])
        return admitted

    async def handle_audit(self, entry: Any) -> list[Delivery]:
        facts = None
        if entry.object_type == "proposal" and entry.object_id and self.proposals is not None:
            facts = await self.proposals(entry.object_id)
        event = rules.proposal_event(
            action=entry.action,
            object_id=entry.object_id,
            actor=entry.actor,
            details=dict(entry.details or {}),
            proposal=facts,
            at=entry.at,
        )
        return await self.publish(event) if event is not None else []

    async def publish(self, event: Event, *, only: Sequence[Rule] | None = None) -> list[Delivery]:
        """Admit ``event`` through each matching rule (quiet period, de-duplication)."""
        chosen = rules.matching(only if only is not None else await self.rules(), event)
        admitted: list[Delivery] = []
        for rule in chosen:
            now = self.clock.now()

            def decide(state: Any, rule: Rule = rule, now: datetime = now) -> rules.Decision:
                return rules.decide(rule, event, state, now=now)

            def make(
                decision: rules.Decision, channel_ids: Sequence[str], rule: Rule = rule
            ) -> list[Delivery]:
                note = messages.render(
                    event, public_url=self.public_url, suppressed=decision.suppressed_before
                )
                return [self._delivery(note, channel_id=c, rule_id=rule.id) for c in channel_ids]

            found = await self.store.admit(
                rule=rule, key=event.key, scope=rules.scope(event), decide=decide, make=make
            )
            if found:
                log.debug(
                    "notification_admitted", kind=event.kind.value, key=event.key,
                    rule_id=rule.id, deliveries=len(found),
                )  # fmt: skip
            else:
                log.debug(
                    "notification_held", kind=event.kind.value, key=event.key, rule_id=rule.id
                )
            admitted += found
        if admitted:
            self._kick.set()
        return admitted

    def _delivery(self, note: Any, *, channel_id: str, rule_id: str | None) -> Delivery:
        now = self.clock.now()
        return Delivery(
            id=new_id("dlv"),
            channel_id=channel_id,
            rule_id=rule_id,
            key=note.key,
            notification=note,
            max_attempts=self.max_attempts,
            next_attempt_at=now,
            created_at=now,
        )

    # ---- dispatch ---------------------------------------------------------------------------
    async def _dispatch_loop(self) -> None:
        while True:
            try:
                sent = await self.dispatch_once()
            except Exception:
                log.exception("notification_dispatch_failed")
                sent = 0
            if sent:
                continue  # there may be more due
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._kick.wait()

    async def dispatch_once(self) -> int:
        """Lease the due deliveries and attempt each once (concurrently); answer how many."""
        now = self.clock.now()
        due = await self.store.claim_due(
            now=now, lease_until=now + timedelta(seconds=self.lease_seconds), limit=self.concurrency
        )
        if due:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._attempt(d), name=f"notify:{d.id}") for d in due]
            await self.store.finish_attempts([t.result() for t in tasks])
        return len(due)

    async def _attempt(self, delivery: Delivery) -> tuple[Delivery, DeliveryAttempt]:
        """One attempt: the delivery as it stands after it, and the attempt's log entry."""
        number = delivery.attempts + 1
        channel = await self.store.get_channel(delivery.channel_id)
        if channel is None or not channel.enabled:
            what = "deleted" if channel is None else "disabled"
            result = channels.SendResult(ok=False, error=f"the channel was {what}")
        else:
            result = await self.senders.send(
                channel, delivery.notification, delivery_id=delivery.id
            )
        now = self.clock.now()
        attempt = DeliveryAttempt(
            delivery_id=delivery.id,
            number=number,
            ok=result.ok,
            at=now,
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
        )
        if result.ok:
            updated = replace(
                delivery, status=DeliveryStatus.SENT, attempts=number, sent_at=now,
                lease_until=None, last_error=None,
            )  # fmt: skip
        elif result.retryable and number < delivery.max_attempts:
            delay = channels.retry_delay(number, base=self.retry_base, cap=self.retry_cap)
            updated = replace(
                delivery, status=DeliveryStatus.PENDING, attempts=number, lease_until=None,
                next_attempt_at=now + timedelta(seconds=delay), last_error=result.error,
            )  # fmt: skip
        else:
            updated = replace(
                delivery, status=DeliveryStatus.FAILED, attempts=number, lease_until=None,
                last_error=result.error,
            )  # fmt: skip
        # A sent message is routine (debug); a failed attempt is worth a line, giving up a warning.
        level = (
            log.debug if result.ok
            else log.warning if updated.status is DeliveryStatus.FAILED
            else log.info
        )  # fmt: skip
        level(
            "notification_attempt", delivery_id=delivery.id, channel_id=delivery.channel_id,
            attempt=number, ok=result.ok, status=updated.status.value, error=result.error,
        )  # fmt: skip
        return updated, attempt

    # ---- SLA watcher ------------------------------------------------------------------------
    async def _sla_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sla_interval)
            try:
                await self.check_slas()
            except Exception:
                log.exception("notification_sla_check_failed")

    async def check_slas(self) -> list[Delivery]:
        """Runs still running past a rule's SLA (each run is told once per rule)."""
        watching = [
            r for r in await self.rules()
            if r.enabled and r.sla_seconds is not None and EventKind.SLA_EXCEEDED in r.events
        ]  # fmt: skip
        if not watching:
            return []
        flows = {r.flow_id for r in watching}
        now = self.clock.now()
        admitted: list[Delivery] = []
        for flow_id in flows:
            page = await self.runs.list_runs(
                RunFilter(flow_id=flow_id, status=RunStatus.RUNNING), limit=500
            )
            for run in page.items:
                for rule in watching:
                    if rule.flow_id not in (None, run.flow_id):
                        continue
                    late = rules.sla_event(run, rule, now=now)
                    if late is not None:
                        admitted += await self.publish(late, only=[rule])
        return admitted

    # ---- rules cache ------------------------------------------------------------------------
    async def rules(self) -> list[Rule]:
        """Every rule, cached for ``rules_ttl`` seconds (the engine finishes runs often)."""
        if self._rules is None or time.monotonic() - self._rules_read > self.rules_ttl:
            self._rules = await self.store.list_rules()
            self._rules_read = time.monotonic()
        return self._rules

    def _forget_rules(self) -> None:
        self._rules = None

    # ---- channels ---------------------------------------------------------------------------
    async def create_channel(
        self,
        *,
        name: str,
        kind: ChannelKind,
        config: dict[str, Any] | None = None,
        secrets: dict[str, str] | None = None,
        enabled: bool = True,
    ) -> Channel:
        now = self.clock.now()
        channel = Channel(
            id=new_id("ch"),
            name=name,
            kind=kind,
            config=dict(config or {}),
            secrets={k: v for k, v in (secrets or {}).items() if v},
            enabled=enabled,
            created_at=now,
            updated_at=now,
        )
        _check_channel(channel)
        await self.store.save_channel(channel, create=True)
        return channel

    async def update_channel(
        self,
        ref: str,
        *,
        name: str | None = None,
        config: dict[str, Any] | None = None,
        secrets: dict[str, str | None] | None = None,
        enabled: bool | None = None,
    ) -> Channel:
        """Change a channel; a secret given replaces the stored one, ``None`` removes it, an
        absent one is kept (so a client never needs to know a secret to edit a channel)."""
        channel = await self.get_channel(ref)
        kept = dict(channel.secrets)
        for key, value in (secrets or {}).items():
            if value:
                kept[key] = value
            else:
                kept.pop(key, None)
        updated = replace(
            channel,
            name=name if name is not None else channel.name,
            config=dict(config) if config is not None else channel.config,
            secrets=kept,
            enabled=enabled if enabled is not None else channel.enabled,
            updated_at=self.clock.now(),
        )
        _check_channel(updated)
        await self.store.save_channel(updated, create=False)
        return updated

    async def get_channel(self, ref: str) -> Channel:
        found = await self.store.get_channel(ref)
        if found is None:
            raise errors.ChannelNotFound(channel=ref)
        return found

    async def list_channels(self) -> list[Channel]:
        return await self.store.list_channels()

    async def delete_channel(self, ref: str) -> None:
        channel = await self.get_channel(ref)
        await self.store.delete_channel(channel.id)
        for rule in await self.store.list_rules():
            if channel.id in rule.channels:
                left = tuple(c for c in rule.channels if c != channel.id)
                await self.store.save_rule(replace(rule, channels=left), create=False)
        self._forget_rules()

    async def send_test(self, ref: str, *, text: str = "") -> Delivery:
        """Send a test message to the channel now (one attempt; retried later if it failed)."""
        channel = await self.get_channel(ref)
        event = Event(
            kind=EventKind.TEST,
            key=f"test:{secrets.token_hex(8)}",
            reason=text or f"Test message from Link Loom to channel {channel.name!r}.",
            at=self.clock.now(),
        )
        note = messages.render(event, public_url=self.public_url)
        delivery = replace(
            self._delivery(note, channel_id=channel.id, rule_id=None),
            status=DeliveryStatus.SENDING,
            max_attempts=1,
        )
        await self.store.add_delivery(delivery)
        updated, attempt = await self._attempt(delivery)
        await self.store.finish_attempts([(updated, attempt)])
        return updated

    # ---- rules ------------------------------------------------------------------------------
    async def create_rule(
        self,
        *,
        name: str,
        events: Sequence[EventKind],
        channels: Sequence[str],
        flow_id: str | None = None,
        quiet_seconds: float = 300.0,
        sla_seconds: float | None = None,
        enabled: bool = True,
    ) -> Rule:
        now = self.clock.now()
        rule = Rule(
            id=new_id("rule"),
            name=name,
            events=tuple(dict.fromkeys(events)),
            channels=await self._channel_ids(channels),
            flow_id=flow_id or None,
            quiet_seconds=quiet_seconds,
            sla_seconds=sla_seconds,
            enabled=enabled,
            created_at=now,
            updated_at=now,
        )
        _check_rule(rule)
        await self.store.save_rule(rule, create=True)
        self._forget_rules()
        return rule

    async def update_rule(self, rule_id: str, **changes: Any) -> Rule:
        rule = await self.get_rule(rule_id)
        changes = {k: v for k, v in changes.items() if v is not None}
        if "channels" in changes:
            changes["channels"] = await self._channel_ids(changes["channels"])
        if "events" in changes:
            changes["events"] = tuple(dict.fromkeys(changes["events"]))
        if "flow_id" in changes:
            changes["flow_id"] = changes["flow_id"] or None
        updated = replace(rule, **changes, updated_at=self.clock.now())
        _check_rule(updated)
        await self.store.save_rule(updated, create=False)
        self._forget_rules()
        return updated

    async def get_rule(self, rule_id: str) -> Rule:
        found = await self.store.get_rule(rule_id)
        if found is None:
            raise errors.RuleNotFound(rule_id=rule_id)
        return found

    async def list_rules(self) -> list[Rule]:
        return await self.store.list_rules()

    async def delete_rule(self, rule_id: str) -> None:
        await self.get_rule(rule_id)
        await self.store.delete_rule(rule_id)
        self._forget_rules()

    async def _channel_ids(self, refs: Sequence[str]) -> tuple[str, ...]:
        return tuple(dict.fromkeys([(await self.get_channel(ref)).id for ref in refs]))

    # ---- deliveries -------------------------------------------------------------------------
    async def list_deliveries(
        self,
        *,
        channel: str | None = None,
        status: DeliveryStatus | None = None,
        flow_id: str | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        channel_id = (await self.get_channel(channel)).id if channel else None
        return await self.store.list_deliveries(
            channel_id=channel_id, status=status, flow_id=flow_id, limit=limit
        )

    async def get_delivery(self, delivery_id: str) -> tuple[Delivery, list[DeliveryAttempt]]:
        found = await self.store.get_delivery(delivery_id)
        if found is None:
            raise errors.DeliveryNotFound(delivery_id=delivery_id)
        return found, await self.store.list_attempts(delivery_id)


class AuditTap:
    """An audit log that passes each recorded entry on to a listener (proposal events)."""

    def __init__(self, *, inner: Any, listener: Callable[[Any], None]) -> None:
        self.inner = inner
        self.listener = listener

    async def record(self, entry: Any) -> Any:
        result = await self.inner.record(entry)
        self.listener(entry)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _concerns_flow(rule: Rule, flow_id: str) -> bool:
    return rule.flow_id is None or rule.flow_id == flow_id


def _check_channel(channel: Channel) -> None:
    if not channel.name.strip():
        raise errors.ChannelInvalid(channel=channel.name, problem="the name is empty")
    allowed = SECRET_FIELDS[channel.kind]
    unknown = sorted(set(channel.secrets) - set(allowed))
    found = channels.problems(channel.kind, channel.config, channel.secrets)
    if unknown:
        found.append(f"unknown secrets {unknown}; {channel.kind.value} takes {list(allowed)}")
    if found:
        raise errors.ChannelInvalid(channel=channel.name, problem="; ".join(found))


def _check_rule(rule: Rule) -> None:
    from linkloom.errors import InvalidInput

    if not rule.events:
        raise InvalidInput("a rule needs at least one event; e.g. run_failed")
    if not rule.channels:
        raise InvalidInput("a rule needs at least one channel")
    if rule.quiet_seconds < 0:
        raise InvalidInput("quiet_seconds must be 0 or more")
    if EventKind.TEST in rule.events:
        raise InvalidInput("'test' is not a rule event; use 'loom notify test CHANNEL'")
    if EventKind.SLA_EXCEEDED in rule.events and not rule.sla_seconds:
        raise InvalidInput("sla_exceeded needs sla_seconds (the expected run duration)")
