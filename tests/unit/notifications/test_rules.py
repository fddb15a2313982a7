"""Pure rules: which runs and audit entries are news, which rules match, quiet periods."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from linkloom.engine.models import RunStatus
from linkloom.engine.records import DeadLetter, Run
from linkloom.notifications import rules
from linkloom.notifications.models import Event, EventKind, QuietState, Rule

T0 = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)


def _run(status: RunStatus = RunStatus.FAILED, **overrides: object) -> Run:
    values: dict[str, object] = {
        "id": "r1",
        "flow_id": "report",
        "version": 2,
        "status": status,
        "trigger": "schedule",
        "created_at": T0,
        "started_at": T0,
        "finished_at": T0 + timedelta(seconds=30),
        "error": {"kind": "step_failed", "step_id": "send", "message": "step 'send' failed: 503"},
    }
    values.update(overrides)
    return Run(**values)  # type: ignore[arg-type]


def _rule(**overrides: object) -> Rule:
    values: dict[str, object] = {
        "id": "rule1",
        "name": "r",
        "events": (EventKind.RUN_FAILED, EventKind.RUN_RECOVERED),
        "channels": ("c1",),
        "flow_id": "report",
        "quiet_seconds": 600.0,
    }
    values.update(overrides)
    return Rule(**values)  # type: ignore[arg-type]


def test_rules_failed_run_is_one_run_failed_event_with_the_reason() -> None:
    [event] = rules.run_events(_run(), previous=None)
    assert event.kind is EventKind.RUN_FAILED
    assert event.key == "run_failed:r1"
    assert event.step_id == "send"
    assert event.reason == "step 'send' failed: 503"


def test_rules_recovery_is_the_first_success_after_a_failure_only() -> None:
    ok = _run(RunStatus.SUCCEEDED, error=None)
    assert [e.kind for e in rules.run_events(ok, previous="failed")] == [EventKind.RUN_RECOVERED]
    assert rules.run_events(ok, previous="succeeded") == []
    assert rules.run_events(ok, previous=None) == []


def test_rules_sandbox_and_cancelled_runs_are_quiet() -> None:
    assert rules.run_events(_run(sandbox=True), previous="succeeded") == []
    assert rules.outcome(_run(RunStatus.CANCELLED)) is None
    assert rules.run_events(_run(RunStatus.CANCELLED), previous="failed") == []


def test_rules_dead_letters_of_the_run_become_events() -> None:
    letter = DeadLetter(
        id="dl1", run_id="r1", flow_id="report", version=2, step_id="send", item_index=3,
        error={"message": "HTTP 503"}, created_at=T0,
    )  # fmt: skip
    other = replace(letter, id="dl2", run_id="r0")
    events = rules.run_events(_run(), previous=None, dead_letters=[letter, other])
    letters = [e for e in events if e.kind is EventKind.DEAD_LETTER]
    assert [(e.key, e.step_id, e.reason, e.data["item"]) for e in letters] == [
        ("dead_letter:dl1", "send", "HTTP 503", "[3]")
    ]


def test_rules_sla_counts_finished_and_still_running_runs() -> None:
    rule = _rule(events=(EventKind.SLA_EXCEEDED,), sla_seconds=20.0)
    late = rules.sla_event(_run(), rule, now=T0 + timedelta(hours=1))
    assert late is not None
    assert late.reason == "took 30s, over the expected 20s"
    running = _run(RunStatus.RUNNING, finished_at=None)
    assert rules.sla_event(running, rule, now=T0 + timedelta(seconds=10)) is None
    still = rules.sla_event(running, rule, now=T0 + timedelta(minutes=5))
    assert still is not None
    assert still.reason == "has been running for 5m, over the expected 20s"
    assert rules.sla_event(_run(), _rule(sla_seconds=None), now=T0) is None


def test_rules_matching_picks_global_and_the_flows_own_enabled_rules() -> None:
    event = rules.run_events(_run(), previous=None)[0]
    chosen = rules.matching(
        [
            _rule(id="own"),
            _rule(id="global", flow_id=None),
            _rule(id="other", flow_id="billing"),
            _rule(id="off", enabled=False),
            _rule(id="wrong-kind", events=(EventKind.RUN_RECOVERED,)),
        ],
        event,
    )
    assert [r.id for r in chosen] == ["own", "global"]


def test_rules_quiet_period_holds_back_the_family_and_counts() -> None:
    rule = _rule()
    failed = rules.run_events(_run(), previous=None)[0]
    recovered = rules.run_events(_run(RunStatus.SUCCEEDED, id="r2"), previous="failed")[0]
    assert rules.scope(failed) == rules.scope(recovered) == "report/run"

    first = rules.decide(rule, failed, None, now=T0)
    assert first.send
    held = rules.decide(rule, recovered, first.state, now=T0 + timedelta(seconds=60))
    assert not held.send
    assert held.state.suppressed == 1
    assert held.state.last_sent_at == T0
    later = rules.decide(rule, failed, held.state, now=T0 + timedelta(seconds=600))
    assert later.send
    assert later.suppressed_before == 1
    assert later.state == QuietState(
        rule_id="rule1", scope="report/run", last_sent_at=T0 + timedelta(seconds=600)
    )


def test_rules_zero_quiet_period_sends_everything() -> None:
    rule = _rule(quiet_seconds=0)
    event = rules.run_events(_run(), previous=None)[0]
    state = rules.decide(rule, event, None, now=T0).state
    assert rules.decide(rule, event, state, now=T0).send


def _facts(status: str) -> rules.ProposalFacts:
    return rules.ProposalFacts(
        id="p1", title="Faster report", status=status, revision=2, flows=("report",), author="ann"
    )


def test_rules_proposal_audit_entries_become_events() -> None:
    def event(action: str, status: str, **details: object) -> Event | None:
        return rules.proposal_event(
            action=action, object_id="p1", actor="bob", details=dict(details),
            proposal=_facts(status), at=T0,
        )  # fmt: skip

    ready = event("proposal.check", "ready-for-review", green=True)
    assert ready is not None
    assert (ready.kind, ready.key) == (EventKind.PROPOSAL_READY, "proposal_ready:p1:2")
    assert event("proposal.check", "open", green=False) is None
    approved = event("proposal.approve", "approved", approvers=["bob", "cy"])
    assert approved is not None
    assert approved.reason == "approved by bob, cy; ready to promote"
    assert event("proposal.approve", "ready-for-review", approvers=["bob"]) is None
    promoted = event("proposal.promote", "promoted", versions={"report": 4})
    assert promoted is not None
    assert promoted.reason == "promoted by bob: report v4 now in production"
    assert promoted.flow_id == "report"
    assert event("proposal.comment", "ready-for-review") is None


def test_rules_rollback_is_an_event_of_the_flow() -> None:
    rolled = rules.proposal_event(
        action="flow.rollback", object_id="report", actor="ops",
        details={"to_version": 2, "version": 5, "from_version": 4}, proposal=None, at=T0,
    )  # fmt: skip
    assert rolled is not None
    assert rolled.kind is EventKind.FLOW_ROLLED_BACK
    assert rolled.key == "flow_rolled_back:report:5"
    assert rolled.reason == "rolled back to version 2 by ops"
    assert rules.matching([_rule(events=(EventKind.FLOW_ROLLED_BACK,))], rolled)
