"""The plan check: spec diff, schedules with their next fire times, triggers, retry/timeout."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from linkloom.flows.spec import FlowSpec
from linkloom.proposals import plan

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
BASE: dict[str, Any] = {
    "id": "report",
    "defaults": {"timeout": 30, "retry": {"max_attempts": 3}},
    "schedules": [{"id": "nightly", "cron": "0 3 * * *", "timezone": "UTC"}],
    "triggers": [{"type": "webhook", "id": "push"}],
    "steps": [
        {"id": "fetch", "type": "http", "url": "http://backend/fetch"},
        {"id": "shape", "type": "transform", "depends_on": ["fetch"], "template": {"a": 1}},
    ],
}


def spec(**changes: Any) -> FlowSpec:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return FlowSpec.model_validate(data)


def test_plan_unchanged_schedule_lists_the_next_five_fires() -> None:
    p = plan.plan_flow(flow_id="report", before=spec(), after=spec(), now=NOW, before_version=4)
    (schedule,) = p["schedules"]
    assert schedule["change"] == "unchanged"
    assert schedule["after"]["next"] == [
        f"2026-11-{day}T03:00:00+00:00" for day in (23, 24, 25, 26, 27)
    ]
    assert p["spec_diff"] == ""
    assert p["steps"] == {"added": [], "removed": [], "changed": []}
    assert p["policies"] == []


def test_plan_schedule_change_shows_fires_before_and_after() -> None:
    after = spec(schedules=[{"id": "nightly", "cron": "30 4 * * *", "timezone": "UTC"}])
    p = plan.plan_flow(flow_id="report", before=spec(), after=after, now=NOW)
    (schedule,) = p["schedules"]
    assert schedule["change"] == "changed"
    assert schedule["before"]["next"][0] == "2026-11-23T03:00:00+00:00"
    assert schedule["after"]["next"][0] == "2026-11-23T04:30:00+00:00"
    diff_lines = p["spec_diff"].splitlines()
    assert any(line.startswith("+") and "30 4 * * *" in line for line in diff_lines)
    assert any(line.startswith("-") and "0 3 * * *" in line for line in diff_lines)
    lines = plan.plan_lines([p])
    assert any("before cron '0 3 * * *'" in line for line in lines)


def test_plan_step_retry_timeout_and_trigger_changes() -> None:
    steps = copy.deepcopy(BASE["steps"])
    steps[0]["timeout"] = 5
    steps[0]["retry"] = {"max_attempts": 1}
    steps[1]["template"] = {"a": 2}
    steps.append({"id": "extra", "type": "transform", "depends_on": ["shape"], "template": 1})
    after = spec(steps=steps, triggers=[], concurrency={"max_active_runs": 1})
    p = plan.plan_flow(flow_id="report", before=spec(), after=after, now=NOW)
    assert p["steps"]["added"] == ["extra"]
    assert {c["step_id"]: c["fields"] for c in p["steps"]["changed"]} == {
        "fetch": ["retry", "timeout"],
        "shape": ["template.a"],
    }
    policies = {c["path"]: (c["production"], c["proposed"]) for c in p["policies"]}
    assert policies["steps.fetch.timeout"] == (30.0, 5.0)
    assert policies["steps.fetch.retry.max_attempts"] == (3, 1)
    assert policies["concurrency.max_active_runs"] == (None, 1)
    assert not any(path.startswith("steps.extra") for path in policies)
    assert p["triggers"] == [{"id": "push", "type": "webhook", "change": "removed"}]


def test_plan_in_flight_runs_finish_on_their_version() -> None:
    runs = [SimpleNamespace(id="r1", version=4, status=SimpleNamespace(value="RUNNING"))]
    p = plan.plan_flow(
        flow_id="report", before=spec(), after=spec(), now=NOW, in_flight=runs, before_version=4
    )
    assert p["in_flight"]["count"] == 1
    assert "finish on version 4" in p["in_flight"]["note"]
    assert "1 run(s) in flight" in p["summary"]


def test_plan_new_and_deleted_flows() -> None:
    added = plan.plan_flow(flow_id="report", before=None, after=spec(), now=NOW)
    assert added["kind"] == "added"
    assert added["schedules"][0]["change"] == "added"
    assert added["spec_diff"].startswith("--- production/report")
    deleted = plan.plan_flow(flow_id="report", before=spec(), after=None, now=NOW)
    assert deleted["kind"] == "deleted"
    assert deleted["steps"]["removed"] == ["fetch", "shape"]


def test_plan_spec_diff_of_the_texts_in_git_keeps_comments_and_the_authors_order() -> None:
    before_text = (
        "id: report  # the nightly report\n"
        "steps:\n"
        "  - id: fetch\n"
        "    type: http\n"
        "    url: http://backend/fetch\n"
        "    query: {region: eu, limit: 10}\n"
    )
    after_text = before_text.replace("limit: 10", "limit: 20")
    step = {"id": "fetch", "type": "http", "url": "http://backend/fetch"}
    before = FlowSpec.model_validate(
        {"id": "report", "steps": [{**step, "query": {"region": "eu", "limit": "10"}}]}
    )
    after = FlowSpec.model_validate(
        {"id": "report", "steps": [{**step, "query": {"region": "eu", "limit": "20"}}]}
    )
    p = plan.plan_flow(
        flow_id="report",
        before=before,
        after=after,
        now=NOW,
        before_text=before_text,
        after_text=after_text,
    )
    changed = [line for line in p["spec_diff"].splitlines() if line[:1] in "+-"]
    assert changed == [
        "--- production/report",
        "+++ proposed/report",
        "-    query: {region: eu, limit: 10}",
        "+    query: {region: eu, limit: 20}",
    ]


def test_plan_spec_diff_ignores_the_key_order_a_database_gives_a_stored_spec() -> None:
    """PostgreSQL's jsonb re-sorts keys; an untouched block must not show as removed and
    re-added."""
    authored = {
        "id": "report",
        "steps": [
            {
                "id": "post",
                "type": "http",
                "method": "POST",
                "url": "http://backend/orders",
                "headers": {"Content-Type": "application/json", "X-Trace": "1"},
                "body": {"zeta": 1, "alpha": {"nested_b": 2, "a": 3}},
            },
            {"id": "shape", "type": "transform", "depends_on": ["post"], "template": {"y": 1}},
        ],
    }
    stored = copy.deepcopy(authored)  # what jsonb gives back: keys by length, then bytes
    stored["steps"].reverse()
    for step in stored["steps"]:
        for key in ("headers", "body"):
            if key in step:
                step[key] = dict(sorted(step[key].items(), key=lambda kv: (len(kv[0]), kv[0])))
    stored["steps"].reverse()
    proposed = copy.deepcopy(authored)
    proposed["steps"][1]["template"] = {"y": 2}
    p = plan.plan_flow(
        flow_id="report",
        before=FlowSpec.model_validate(stored),
        after=FlowSpec.model_validate(proposed),
        now=NOW,
    )
    changed = [line for line in p["spec_diff"].splitlines() if line[:1] in "+-"]
    assert changed == [
        "--- production/report",
        "+++ proposed/report",
        "-      y: 1",
        "+      y: 2",
    ]
    unchanged = plan.plan_flow(
        flow_id="report",
        before=FlowSpec.model_validate(stored),
        after=FlowSpec.model_validate(authored),
        now=NOW,
    )
    assert unchanged["spec_diff"] == ""


def test_plan_fire_times_are_in_the_schedules_zone_and_in_utc() -> None:
    kyiv = spec(schedules=[{"id": "nightly", "cron": "0 9 * * *", "timezone": "Europe/Kyiv"}])
    p = plan.plan_flow(flow_id="report", before=kyiv, after=kyiv, now=NOW)
    (schedule,) = p["schedules"]
    assert schedule["after"]["next"][0] == "2026-11-23T09:00:00+02:00"
    assert schedule["after"]["next_utc"][0] == "2026-11-23T07:00:00+00:00"
    lines = plan.plan_lines([p])
    assert any(
        "next 2026-11-23 09:00 Europe/Kyiv (07:00 UTC), 2026-11-24 09:00 Europe/Kyiv" in line
        for line in lines
    ), lines
