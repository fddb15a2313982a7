"""Rendering events as messages: one line saying what happened and why, and a link to the page
of the run, proposal or flow in the web UI (under ``Settings.public_url``).

    render(event, public_url="https://loom.example.com")
    → "daily-report run 01H… failed: step 'send' failed: HTTP 503 from backend"
      link https://loom.example.com/runs/01H…
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from linkloom.notifications.models import Event, EventKind, Notification

MAX_REASON = 300  # characters of an error message kept in the one-line text


def one_line(text: str, *, limit: int = MAX_REASON) -> str:
    """Collapse whitespace (newlines included) and cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def link_for(event: Event, public_url: str) -> str | None:
    base = public_url.rstrip("/")
    if not base:
        return None
    if event.run_id:
        return f"{base}/runs/{event.run_id}"
    if event.proposal_id:
        return f"{base}/proposals/{event.proposal_id}"
    if event.flow_id:
        return f"{base}/flows/{event.flow_id}"
    return base + "/"


def _run_failed(e: Event) -> tuple[str, str]:
    return f"{e.flow_id} failed", f"{e.flow_id} run {e.run_id} failed: {e.reason}"


def _run_recovered(e: Event) -> tuple[str, str]:
    return f"{e.flow_id} recovered", f"{e.flow_id} recovered: run {e.run_id} {e.reason}"


def _dead_letter(e: Event) -> tuple[str, str]:
    item = str(e.data.get("item") or "")
    return (
        f"{e.flow_id}: step {e.step_id} dead-lettered",
        f"{e.flow_id} step {e.step_id}{item} landed in the dead letters (run {e.run_id}): "
        f"{e.reason}",
    )


def _sla(e: Event) -> tuple[str, str]:
    return f"{e.flow_id} is slow", f"{e.flow_id} run {e.run_id} {e.reason}"


def _proposal(verb: str) -> Callable[[Event], tuple[str, str]]:
    def render(e: Event) -> tuple[str, str]:
        return (
            f"Proposal {e.proposal_id} {verb}",
            f"Proposal {e.proposal_id} \u201c{e.title}\u201d {verb}: {e.reason}",
        )

    return render


def _rolled_back(e: Event) -> tuple[str, str]:
    return f"{e.flow_id} rolled back", f"{e.flow_id} {e.reason}"


def _unreviewed(e: Event) -> tuple[str, str]:
    return "Unreviewed change in production", f"Unreviewed change: {e.reason}"


def _refused(e: Event) -> tuple[str, str]:
    return "Flows remote refused", f"Production did not follow the flows remote: {e.reason}"


def _test(e: Event) -> tuple[str, str]:
    return "Test message", e.reason or "Test message from Link Loom: this channel works."


_RENDERERS: dict[EventKind, Callable[[Event], tuple[str, str]]] = {
    EventKind.RUN_FAILED: _run_failed,
    EventKind.RUN_RECOVERED: _run_recovered,
    EventKind.DEAD_LETTER: _dead_letter,
    EventKind.SLA_EXCEEDED: _sla,
    EventKind.PROPOSAL_READY: _proposal("is ready for review"),
    EventKind.PROPOSAL_APPROVED: _proposal("is approved"),
    EventKind.PROPOSAL_PROMOTED: _proposal("was promoted"),
    EventKind.FLOW_ROLLED_BACK: _rolled_back,
    EventKind.UNREVIEWED_CHANGE: _unreviewed,
    EventKind.REMOTE_REFUSED: _refused,
    EventKind.TEST: _test,
}


def render(
    event: Event, *, public_url: str, suppressed: int = 0, now: datetime | None = None
) -> Notification:
    """The message for ``event``; ``suppressed`` similar ones were held back before it."""
    subject, text = _RENDERERS[event.kind](event)
    text = one_line(text, limit=MAX_REASON + 120)
    if suppressed:
        plural = "message" if suppressed == 1 else "messages"
        text += f" ({suppressed} similar {plural} held back in the quiet period)"
    return Notification(
        kind=event.kind,
        key=event.key,
        subject=one_line(f"[loom] {subject}", limit=150),
        text=text,
        link=link_for(event, public_url),
        flow_id=event.flow_id,
        run_id=event.run_id,
        proposal_id=event.proposal_id,
        suppressed=suppressed,
        at=now or event.at,
    )
