"""Which events produce which messages: pure functions, no I/O.

* ``run_events``: a finished production run is ``run_failed``, or ``run_recovered`` when it
  succeeded and the flow's previous finished run had failed ("first success after failures");
  each of its dead letters is a ``dead_letter`` event. Sandbox runs and cancellations are quiet.
* ``sla_event``: a run that took (or, still running, is taking) longer than a rule's SLA.
* ``proposal_event``: audit entries of the proposal service that mean someone must act.
* ``matching`` picks the enabled rules for an event (the flow's own and the global ones);
  ``decide`` applies a rule's quiet period: after a message, further events of the same family
  (``run_failed`` and ``run_recovered`` are one family, so a flapping flow counts once) for the
  same flow are held back for ``quiet_seconds`` and counted; the next message says how many.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from linkloom.engine.models import RunStatus
from linkloom.engine.records import DeadLetter, Run
from linkloom.notifications.models import (
    RUN_EVENTS,
    Event,
    EventKind,
    QuietState,
    Rule,
)

FAILED = "failed"
SUCCEEDED = "succeeded"


def family(kind: EventKind) -> str:
    """Events that share a quiet period: failures and recoveries of a flow are one story."""
    return "run" if kind in RUN_EVENTS else kind.value


def scope(event: Event) -> str:
    """The quiet-period key of an event for one rule: its flow (or proposal) and family."""
    subject = event.flow_id or event.proposal_id or "*"
    return f"{subject}/{family(event.kind)}"


def outcome(run: Run) -> str | None:
    """The run's contribution to its flow's health: failed, succeeded, or nothing."""
    if run.sandbox:
        return None
    if run.status is RunStatus.FAILED:
        return FAILED
    if run.status is RunStatus.SUCCEEDED:
        return SUCCEEDED
    return None  # cancelled (or not finished) runs say nothing about the flow's health


def run_events(
    run: Run, *, previous: str | None, dead_letters: Sequence[DeadLetter] = ()
) -> list[Event]:
    """The events a finished run produces, given the flow's previous outcome."""
    now = run.finished_at or run.created_at
    current = outcome(run)
    found: list[Event] = []
    base: dict[str, Any] = {"flow_id": run.flow_id, "run_id": run.id, "at": now}
    if current == FAILED:
        error = run.error or {}
        found.append(
            Event(
                kind=EventKind.RUN_FAILED,
                key=f"run_failed:{run.id}",
                step_id=error.get("step_id"),
                reason=str(error.get("message") or "failed"),
                data={"version": run.version, "trigger": run.trigger},
                **base,
            )
        )
    elif current == SUCCEEDED and previous == FAILED:
        found.append(
            Event(
                kind=EventKind.RUN_RECOVERED,
                key=f"run_recovered:{run.id}",
                reason="succeeded after failed runs",
                data={"version": run.version, "trigger": run.trigger},
                **base,
            )
        )
    if not run.sandbox:
        for letter in dead_letters:
            if letter.run_id != run.id:
                continue
            index = "" if letter.item_index is None else f"[{letter.item_index}]"
            found.append(
                Event(
                    kind=EventKind.DEAD_LETTER,
                    key=f"dead_letter:{letter.id}",
                    step_id=letter.step_id,
                    reason=str((letter.error or {}).get("message") or "failed for good"),
                    data={"dead_letter_id": letter.id, "item": index},
                    **base,
                )
            )
    return found


def sla_event(run: Run, rule: Rule, *, now: datetime) -> Event | None:
    """``sla_exceeded`` when the run took longer than ``rule.sla_seconds`` (or still runs)."""
    if rule.sla_seconds is None or run.sandbox:
        return None
    start = run.started_at or run.created_at
    end = run.finished_at or now
    elapsed = (end - start).total_seconds()
    if elapsed <= rule.sla_seconds:
        return None
    state = "took" if run.finished_at else "has been running for"
    return Event(
        kind=EventKind.SLA_EXCEEDED,
        key=f"sla_exceeded:{run.id}",
        flow_id=run.flow_id,
        run_id=run.id,
        reason=f"{state} {_human(elapsed)}, over the expected {_human(rule.sla_seconds)}",
        data={"elapsed_seconds": round(elapsed, 3), "sla_seconds": rule.sla_seconds},
        at=now,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposalFacts:
    """What ``proposal_event`` needs of a proposal (read by the service, not imported)."""

    id: str
    title: str
    status: str
    revision: int
    flows: tuple[str, ...]
    author: str


def proposal_event(
    *,
    action: str,
    object_id: str | None,
    actor: str | None,
    details: dict[str, Any],
    proposal: ProposalFacts | None,
    at: datetime,
) -> Event | None:
    """The event an audit entry of the proposal service means, if any."""
    if action == "flow.rollback" and object_id:
        to_version = details.get("to_version")
        return Event(
            kind=EventKind.FLOW_ROLLED_BACK,
            key=f"flow_rolled_back:{object_id}:{details.get('version')}",
            flow_id=object_id,
            flows=(object_id,),
            reason=f"rolled back to version {to_version} by {actor or 'someone'}",
            actor=actor,
            data={k: details.get(k) for k in ("to_version", "from_version", "version", "commit")},
            at=at,
        )
    if action == "flows.push_unreviewed" and object_id:
        versions = details.get("versions") or {}
        listed = ", ".join(f"{f} v{v}" for f, v in sorted(versions.items())) or "no flow"
        return Event(
            kind=EventKind.UNREVIEWED_CHANGE,
            key=f"unreviewed_change:{object_id}",
            flow_id=next(iter(versions)) if len(versions) == 1 else None,
            flows=tuple(sorted(versions)),
            reason=f"{actor or 'someone'} pushed {object_id[:12]} to "
            f"{details.get('branch') or 'production'} without a pull request "
            f"(\u201c{details.get('message') or ''}\u201d): {listed} now in production",
            actor=actor,
            data={"commit": object_id, "versions": versions},
            at=at,
        )
    if action == "flows.remote_refused" and object_id:
        return Event(
            kind=EventKind.REMOTE_REFUSED,
            key=f"remote_refused:{object_id}:{details.get('kind')}",
            reason=str(details.get("reason") or "refused"),
            actor=actor,
            data={"commit": object_id, "kind": details.get("kind")},
            at=at,
        )
    if proposal is None:
        return None
    ready = proposal.status == "ready-for-review"
    if action == "proposal.check" and details.get("green") and ready:
        kind, key, reason = (
            EventKind.PROPOSAL_READY,
            f"proposal_ready:{proposal.id}:{proposal.revision}",
            f"checks passed on revision {proposal.revision}; waiting for review",
        )
    elif action == "proposal.approve" and proposal.status == "approved":
        approvers = ", ".join(details.get("approvers") or []) or actor or "reviewers"
        kind, key, reason = (
            EventKind.PROPOSAL_APPROVED,
            f"proposal_approved:{proposal.id}:{proposal.revision}",
            f"approved by {approvers}; ready to promote",
        )
    elif action == "proposal.promote":
        versions = details.get("versions") or {}
        listed = ", ".join(f"{f} v{v}" for f, v in sorted(versions.items())) or "its flows"
        kind, key, reason = (
            EventKind.PROPOSAL_PROMOTED,
            f"proposal_promoted:{proposal.id}",
            f"promoted by {actor or 'someone'}: {listed} now in production",
        )
    else:
        return None
    return Event(
        kind=kind,
        key=key,
        flow_id=proposal.flows[0] if len(proposal.flows) == 1 else None,
        flows=proposal.flows,
        proposal_id=proposal.id,
        title=proposal.title,
        reason=reason,
        actor=actor,
        data={"revision": proposal.revision, "author": proposal.author},
        at=at,
    )


def matching(rules: Iterable[Rule], event: Event) -> list[Rule]:
    """Enabled rules that ask for this event: global ones and the event's flow's own."""
    return [
        rule
        for rule in rules
        if rule.enabled
        and event.kind in rule.events
        and (rule.flow_id is None or event.concerns(rule.flow_id))
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    send: bool
    state: QuietState  # the rule's quiet state after this event
    suppressed_before: int = 0  # messages held back since the last one (reported in this one)


def decide(rule: Rule, event: Event, state: QuietState | None, *, now: datetime) -> Decision:
    """Send, or hold back inside the rule's quiet period (counting what was held back)."""
    key = scope(event)
    quiet = rule.quiet_seconds
    if state is None or quiet <= 0 or (now - state.last_sent_at).total_seconds() >= quiet:
        held = state.suppressed if state is not None else 0
        return Decision(
            send=True,
            state=QuietState(rule_id=rule.id, scope=key, last_sent_at=now, suppressed=0),
            suppressed_before=held,
        )
    return Decision(
        send=False,
        state=QuietState(
            rule_id=rule.id,
            scope=key,
            last_sent_at=state.last_sent_at,
            suppressed=state.suppressed + 1,
        ),
    )


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
