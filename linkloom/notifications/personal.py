"""Personal notifications of the web app: each user says what to be told about, and is told
through the app (an OS notification while it is open) and by Web Push (when it is closed).

    finished run, proposal audit entry ──▶ events (rules.py) ──▶ recipients() (pure, by each
    user's preferences) ──▶ one PersonalNote per user and event (unique: told once) ──▶ the
    open app's stream reads the notes; PushSender sends each to the user's subscriptions

What a user may choose (``PersonalEvent``): runs of the flows they watch failing or recovering,
proposals waiting for their review (reviewers; never their own), a proposal of theirs approved
or promoted. Key contracts: listeners never block or raise; a note is recorded once per
(user, event key) whatever the number of processes; a subscription the push service says is
gone (404/410) is removed; payloads carry a title, a line and a link, never secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import structlog

from linkloom.access import Role
from linkloom.engine.models import RunStatus
from linkloom.engine.records import Run, RunFilter
from linkloom.notifications import rules
from linkloom.notifications.models import RUN_EVENTS, Event, EventKind
from linkloom.notifications.service import AuditTap

log = structlog.get_logger(__name__)

QUEUE_SIZE = 10_000
PREFS_TTL = 2.0  # seconds everyone's preferences are reused before being read again


class PersonalEvent(StrEnum):
    RUN_FAILED = "run_failed"  # a run of a flow the user watches failed
    RUN_RECOVERED = "run_recovered"  # a watched flow's run succeeded after failed ones
    REVIEW_REQUESTED = "review_requested"  # a proposal passed its checks: reviewers decide
    OWN_PROPOSAL = "own_proposal"  # a proposal the user opened was approved or promoted


DESCRIPTIONS = {
    PersonalEvent.RUN_FAILED: "a run of a flow I watch fails",
    PersonalEvent.RUN_RECOVERED: "a flow I watch succeeds again after failing",
    PersonalEvent.REVIEW_REQUESTED: "a proposal waits for my review (reviewers)",
    PersonalEvent.OWN_PROPOSAL: "a proposal of mine is approved or promoted",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Preferences:
    actor: str
    role: Role  # the user's role when they last saved (who may be asked to review)
    events: tuple[PersonalEvent, ...] = ()
    flows: tuple[str, ...] = ()  # watched flows
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PushSubscription:
    """A browser's Web Push subscription (``PushSubscription.toJSON()``) for one user."""

    id: str
    actor: str
    endpoint: str
    p256dh: str  # the browser's P-256 public key, base64url
    auth: str  # the browser's auth secret, base64url
    created_at: datetime
    failures: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class PersonalNote:
    """What one user is told about one event."""

    id: int | None
    actor: str
    key: str  # the event's key: a user is told of an event once
    kind: PersonalEvent
    title: str
    body: str
    url: str  # a path of the web UI: /runs/<id>, /proposals/<id>
    created_at: datetime

    def payload(self) -> dict[str, str]:
        """What the push message and the open app's stream carry."""
        return {"title": self.title, "body": self.body, "url": self.url, "tag": self.key}


@dataclass(frozen=True, slots=True)
class PushOutcome:
    ok: bool
    status: int | None = None
    gone: bool = False  # the push service says the subscription no longer exists
    error: str = ""


class PersonalStore(Protocol):
    async def preferences(self, actor: str) -> Preferences | None: ...
    async def all_preferences(self) -> list[Preferences]: ...
    async def record(self, note: PersonalNote) -> PersonalNote | None:
        """Store the note; None when this user was already told of this key."""
        ...

    async def subscriptions(self, actor: str) -> list[PushSubscription]: ...
    async def remove_subscription(self, endpoint: str) -> bool: ...
    async def subscription_result(self, endpoint: str, *, error: str | None) -> None: ...


class PushSender(Protocol):
    async def send(self, subscription: PushSubscription, payload: dict[str, str]) -> PushOutcome:
        """Encrypt (RFC 8291) and send (RFC 8030) with VAPID (RFC 8292)."""
        ...


def recipients(event: Event, everyone: Sequence[Preferences]) -> list[tuple[str, PersonalEvent]]:
    """Who is told of ``event``, and as what (pure)."""
    out: list[tuple[str, PersonalEvent]] = []
    author = str(event.data.get("author") or "")
    for prefs in everyone:
        wanted = set(prefs.events)
        if event.kind in (EventKind.RUN_FAILED, EventKind.RUN_RECOVERED):
            kind = (
                PersonalEvent.RUN_FAILED
                if event.kind is EventKind.RUN_FAILED
                else PersonalEvent.RUN_RECOVERED
            )
            if kind in wanted and event.flow_id in prefs.flows:
                out.append((prefs.actor, kind))
        elif event.kind is EventKind.PROPOSAL_READY:
            if (
                PersonalEvent.REVIEW_REQUESTED in wanted
                and prefs.role.allows(Role.reviewer)
                and prefs.actor != author
            ):
                out.append((prefs.actor, PersonalEvent.REVIEW_REQUESTED))
        elif (
            event.kind in (EventKind.PROPOSAL_APPROVED, EventKind.PROPOSAL_PROMOTED)
            and PersonalEvent.OWN_PROPOSAL in wanted
            and prefs.actor == author
        ):
            out.append((prefs.actor, PersonalEvent.OWN_PROPOSAL))
    return out


def render(event: Event) -> tuple[str, str, str]:
    """Title, body and link of an event, as a notification says them."""
    flow = event.flow_id or ", ".join(event.flows)
    if event.kind is EventKind.RUN_FAILED:
        reason = event.reason or "it failed"
        link = f"/runs/{event.run_id}"
        return f"Run failed: {flow}", f"Run {event.run_id} of {flow}: {reason}", link
    if event.kind is EventKind.RUN_RECOVERED:
        return (
            f"Recovered: {flow}",
            f"Run {event.run_id} of {flow} succeeded after failed runs.",
            f"/runs/{event.run_id}",
        )
    link = f"/proposals/{event.proposal_id}"
    if event.kind is EventKind.PROPOSAL_READY:
        return f"Review requested: {event.title}", f"{flow}: {event.reason}.", link
    if event.kind is EventKind.PROPOSAL_APPROVED:
        return f"Approved: {event.title}", f"Your proposal ({flow}) was {event.reason}.", link
    return f"Promoted: {event.title}", f"Your proposal ({flow}) was {event.reason}.", link


class PersonalNotifier:
    """Listens to finished runs and the proposal service's audit entries; tells each user
    what they asked to be told (recorded notes, Web Push)."""

    def __init__(
        self,
        *,
        store: PersonalStore,
        runs: Any,  # RunService: list_runs
        clock: Any,
        sender: PushSender | None,
        proposals: Callable[[str], Any] | None = None,  # id → rules.ProposalFacts | None
    ) -> None:
        self.store = store
        self.runs = runs
        self.clock = clock
        self.sender = sender
        self.proposals = proposals
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self._prefs: list[Preferences] | None = None
        self._prefs_read = 0.0
        self._idle = asyncio.Event()
        self._idle.set()

    # ---- listeners (never block, never raise) ----------------------------------------------
    def on_run_finished(self, run: Run) -> None:
        if not run.sandbox and run.status in (RunStatus.FAILED, RunStatus.SUCCEEDED):
            self._enqueue("run", run)

    def on_audit(self, entry: Any) -> None:
        if entry.action in ("proposal.check", "proposal.approve", "proposal.promote"):
            self._enqueue("audit", entry)

    def tap(self, audit: Any) -> AuditTap:
        return AuditTap(inner=audit, listener=self.on_audit)

    def _enqueue(self, kind: str, item: Any) -> None:
        try:
            self._queue.put_nowait((kind, item))
            self._idle.clear()
        except asyncio.QueueFull:
            log.warning("personal_notification_dropped", kind=kind, reason="queue full")

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="notify:personal")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def drain(self) -> None:
        await self._idle.wait()

    async def preferences(self) -> list[Preferences]:
        """Everyone's preferences, read at most every ``PREFS_TTL`` seconds (saving them here
        calls ``forget_preferences``; another process's saves are seen within the TTL)."""
        now = time.monotonic()
        if self._prefs is None or now - self._prefs_read > PREFS_TTL:
            self._prefs = await self.store.all_preferences()
            self._prefs_read = now
        return self._prefs

    def forget_preferences(self) -> None:
        self._prefs = None

    async def _wanted(self, run: Run) -> bool:
        """Whether anyone watches this run's flow for failures or recoveries (most runs: no,
        and then the run costs no further read)."""
        run_kinds = {PersonalEvent.RUN_FAILED, PersonalEvent.RUN_RECOVERED}
        return any(
            run.flow_id in p.flows and run_kinds & set(p.events) for p in await self.preferences()
        )

    async def _loop(self) -> None:
        while True:
            kind, item = await self._queue.get()
            try:
                if kind == "run" and not await self._wanted(item):
                    continue
                events = await (self.run_events(item) if kind == "run" else self.audit_events(item))
                for event in events:
                    await self.deliver(event)
            except Exception:
                log.exception("personal_notification_failed", kind=kind)
            finally:
                if self._queue.empty():
                    self._idle.set()

    # ---- events -----------------------------------------------------------------------------
    async def run_events(self, run: Run) -> list[Event]:
        """A failed run, or a success right after failed runs of the same flow (the flow's
        previous finished production run, read from the store: any process may have run it)."""
        recent = await self.runs.list_runs(RunFilter(flow_id=run.flow_id), limit=20)
        earlier = [
            r
            for r in recent.items
            if r.id != run.id and rules.outcome(r) is not None and r.created_at <= run.created_at
        ]
        previous = rules.outcome(earlier[0]) if earlier else None
        found = rules.run_events(run, previous=previous)
        return [e for e in found if e.kind in RUN_EVENTS]

    async def audit_events(self, entry: Any) -> list[Event]:
        if self.proposals is None or entry.object_type != "proposal" or not entry.object_id:
            return []
        facts = await self.proposals(entry.object_id)
        event = rules.proposal_event(
            action=entry.action,
            object_id=entry.object_id,
            actor=entry.actor,
            details=dict(entry.details or {}),
            proposal=facts,
            at=entry.at,
        )
        return [event] if event is not None else []

    async def deliver(self, event: Event) -> list[PersonalNote]:
        """Record a note for each user who wants this event, and push it to their browsers."""
        title, body, url = render(event)
        told: list[PersonalNote] = []
        for actor, kind in recipients(event, await self.preferences()):
            note = await self.store.record(
                PersonalNote(
                    id=None,
                    actor=actor,
                    key=event.key,
                    kind=kind,
                    title=title,
                    body=body,
                    url=url,
                    created_at=self.clock.now(),
                )
            )
            if note is None:
                continue  # told already (another process, a replay)
            told.append(note)
            await self.push(note)
        return told

    async def push(self, note: PersonalNote) -> None:
        if self.sender is None:
            return
        for subscription in await self.store.subscriptions(note.actor):
            outcome = await self.sender.send(subscription, note.payload())
            if outcome.gone:
                await self.store.remove_subscription(subscription.endpoint)
                log.info("web_push_subscription_gone", actor=note.actor, status=outcome.status)
            else:
                await self.store.subscription_result(
                    subscription.endpoint, error=None if outcome.ok else outcome.error
                )
            log.info(
                "web_push_sent",
                actor=note.actor,
                kind=note.kind.value,
                ok=outcome.ok,
                status=outcome.status,
            )
