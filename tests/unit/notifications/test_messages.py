"""Messages: one line saying what happened and why, with a link to the web UI page."""

from __future__ import annotations

from datetime import UTC, datetime

from linkloom.notifications import messages
from linkloom.notifications.models import Event, EventKind

T0 = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)


def test_messages_run_failure_is_one_line_with_a_run_link() -> None:
    event = Event(
        kind=EventKind.RUN_FAILED, key="run_failed:r1", flow_id="report", run_id="r1",
        reason="step 'send' failed: HTTP 503\nTraceback (most recent call last):\n  ...", at=T0,
    )  # fmt: skip
    note = messages.render(event, public_url="https://loom.example.com/")
    assert note.text == (
        "report run r1 failed: step 'send' failed: HTTP 503 Traceback (most recent call last): ..."
    )
    assert "\n" not in note.text
    assert note.subject == "[loom] report failed"
    assert note.link == "https://loom.example.com/runs/r1"


def test_messages_long_reasons_are_cut() -> None:
    event = Event(
        kind=EventKind.RUN_FAILED, key="k", flow_id="f", run_id="r", reason="x" * 5000, at=T0
    )
    note = messages.render(event, public_url="")
    assert len(note.text) <= messages.MAX_REASON + 120
    assert note.text.endswith("…")
    assert note.link is None


def test_messages_proposals_link_to_the_proposal_page_and_say_what_to_do() -> None:
    event = Event(
        kind=EventKind.PROPOSAL_READY, key="k", proposal_id="p1", title="Faster report",
        reason="checks passed on revision 2; waiting for review", at=T0,
    )  # fmt: skip
    note = messages.render(event, public_url="http://127.0.0.1:8080")
    assert note.text == (
        "Proposal p1 \u201cFaster report\u201d is ready for review: checks passed on revision 2; "
        "waiting for review"
    )
    assert note.link == "http://127.0.0.1:8080/proposals/p1"


def test_messages_say_how_many_were_held_back() -> None:
    event = Event(kind=EventKind.RUN_RECOVERED, key="k", flow_id="f", run_id="r", at=T0)
    assert messages.render(event, public_url="", suppressed=3).text.endswith(
        "(3 similar messages held back in the quiet period)"
    )


def test_messages_every_event_kind_renders() -> None:
    for kind in EventKind:
        event = Event(kind=kind, key="k", flow_id="f", run_id="r", proposal_id="p", at=T0)
        note = messages.render(event, public_url="http://x")
        assert note.text
        assert note.subject.startswith("[loom] ")
