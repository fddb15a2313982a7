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
