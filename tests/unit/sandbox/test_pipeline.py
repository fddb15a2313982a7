"""The whole chain in memory: a production run on the engine → a fixture case → the proposed
flow replayed in the sandbox → a diff that shows exactly what the proposal changed."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import httpx

from linkloom.engine.ports import StepServices
from linkloom.engine.service import RunService
from linkloom.engine.steps import builtin_executors
from linkloom.engine.worker import Worker
from linkloom.flows.spec import FlowSpec
from linkloom.proposals import diff
from linkloom.proposals.models import StepChange
from linkloom.sandbox import fixtures
from linkloom.sandbox.bundle import BundleSettings, SandboxBundle
from linkloom.sandbox.inprocess import InProcessRunner
from linkloom.testing import FrozenClock, InMemoryRunStore, StaticSecrets

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
BACKEND = "http://127.0.0.1:8081"
FLOW: dict[str, Any] = {
    "id": "daily-report",
    "inputs": {"day": {"type": "string"}},
    "steps": [
        {"id": "fetch", "type": "http", "url": f"{BACKEND}/api/tasks/fetch-data"},
        {
            "id": "shape",
            "type": "transform",
            "depends_on": ["fetch"],
            "template": {
                "title": "Report for {{ inputs.day }}",
                "count": "{{ steps.fetch.output.rows | length }}",
            },
        },
        {
            "id": "send",
            "type": "http",
            "depends_on": ["shape"],
            "url": f"{BACKEND}/api/tasks/send-email",
            "headers": {"Authorization": "Bearer {{ secrets.mail_token }}"},
        },
    ],
}


def backend(request: httpx.Request) -> httpx.Response:
    envelope = json.loads(request.content)
    if request.url.path.endswith("fetch-data"):
        output = {"rows": [{"n": 1}, {"n": 2}], "day": envelope["inputs"]["day"]}
    else:
        output = {"sent_to": "team@example.org", "title": envelope["upstream"]["shape"]["output"]}
    return httpx.Response(200, json={"status": "SUCCESS", "output": output})


async def production_case() -> fixtures.FixtureCase:
    store = InMemoryRunStore()
    clock = FrozenClock(T0)
    secrets = StaticSecrets({"mail_token": "live-mail-token-123"})
    runs = RunService(store=store, clock=clock, secrets=secrets)
    async with httpx.AsyncClient(transport=httpx.MockTransport(backend)) as http:
        services = StepServices(http=http, clock=clock, secrets=secrets)
        worker = Worker(
            store=store, executors=builtin_executors(), services=services, specs=runs.specs
        )
        await runs.apply_flow(FlowSpec.model_validate(FLOW))
        run = await runs.trigger("daily-report", inputs={"day": "2026-11-21"})
        await worker.run_until_idle()
    run = await runs.get_run(run.id)
    assert run.status.value == "SUCCEEDED"
    return fixtures.case_from_run(
        run=run,
        steps=await runs.list_steps(run.id),
        exchanges=await runs.list_exchanges(run.id),
        secrets=["live-mail-token-123"],
    )


async def sandbox_diff(flow: dict[str, Any], case: fixtures.FixtureCase):  # type: ignore[no-untyped-def]
    result = await InProcessRunner().run(SandboxBundle(flow=flow, cases=(case,)))
    return diff.diff_results([case], result)


async def test_pipeline_unchanged_flow_replays_to_a_clean_diff() -> None:
    case = await production_case()
    assert "live-mail-token-123" not in fixtures.dumps(case)
    # The stored YAML is what the sandbox gets.
    case = fixtures.loads(fixtures.dumps(case))
    d = await sandbox_diff(FLOW, case)
    assert d.summary.clean, diff.summary_line(d.summary)
    assert d.summary.unchanged == 3


async def test_pipeline_changed_transform_shows_exactly_that_change() -> None:
    case = await production_case()
    proposed = copy.deepcopy(FLOW)
    proposed["steps"][1]["template"]["title"] = "Daily report {{ inputs.day }}"
    d = await sandbox_diff(proposed, case)
    steps = {s.step_id: s for s in d.case(case.name).steps}
    assert steps["fetch"].change is StepChange.UNCHANGED
    assert steps["shape"].change is StepChange.CHANGED
    assert [(c.path, c.production, c.proposed) for c in steps["shape"].changes] == [
        ("output.title", "Report for 2026-11-21", "Daily report 2026-11-21")
    ]
    # send's request body carries shape's output, so production never made that exact call.
    assert steps["send"].change is StepChange.NEWLY_FAILING
    assert [u["step_id"] for u in d.case(case.name).unrecorded] == ["send"]


async def test_pipeline_new_endpoint_is_listed_as_would_have_called() -> None:
    case = await production_case()
    proposed = copy.deepcopy(FLOW)
    proposed["steps"].append(
        {
            "id": "audit",
            "type": "http",
            "depends_on": ["send"],
            "url": f"{BACKEND}/api/tasks/audit",
            "retry": {"max_attempts": 1},
        }
    )
    d = await sandbox_diff(proposed, case)
    case_diff = d.case(case.name)
    steps = {s.step_id: s.change for s in case_diff.steps}
    assert steps == {
        "fetch": StepChange.UNCHANGED,
        "shape": StepChange.UNCHANGED,
        "send": StepChange.UNCHANGED,
        "audit": StepChange.ADDED,
    }
    assert [(u["method"], u["url"]) for u in case_diff.unrecorded] == [
        ("POST", f"{BACKEND}/api/tasks/audit")
    ]
    assert d.summary.unrecorded == 1


async def test_pipeline_replay_mode_shows_the_changed_request_instead_of_failing() -> None:
    case = await production_case()
    proposed = copy.deepcopy(FLOW)
    proposed["steps"][1]["template"]["title"] = "Daily report {{ inputs.day }}"
    bundle = SandboxBundle(
        flow=proposed, cases=(case,), settings=BundleSettings(on_body_mismatch="replay")
    )
    d = diff.diff_results([case], await InProcessRunner().run(bundle))
    case_diff = d.case(case.name)
    steps = {s.step_id: s.change for s in case_diff.steps}
    assert steps == {
        "fetch": StepChange.UNCHANGED,
        "shape": StepChange.CHANGED,
        "send": StepChange.UNCHANGED,  # answered from production's recording of send-email
    }
    assert case_diff.unrecorded == ()
    (sent,) = case_diff.changed_requests
    assert sent["step_id"] == "send"
    assert sent["url"] == f"{BACKEND}/api/tasks/send-email"
    assert [(c["path"], c["production"], c["proposed"]) for c in sent["changes"]] == [
        ("body.upstream.shape.output.title", "Report for 2026-11-21", "Daily report 2026-11-21")
    ]
    assert d.summary.changed_requests == 1
    assert "sent differently" in diff.render_html(d)


async def test_pipeline_production_cases_come_from_recent_successful_runs() -> None:
    from linkloom.sandbox import collection

    store = InMemoryRunStore()
    clock = FrozenClock(T0)
    secrets = StaticSecrets({"mail_token": "live-mail-token-123"})
    runs = RunService(store=store, clock=clock, secrets=secrets)
    async with httpx.AsyncClient(transport=httpx.MockTransport(backend)) as http:
        services = StepServices(http=http, clock=clock, secrets=secrets)
        worker = Worker(
            store=store, executors=builtin_executors(), services=services, specs=runs.specs
        )
        await runs.apply_flow(FlowSpec.model_validate(FLOW))
        for day in ("2026-11-19", "2026-11-20", "2026-11-21"):
            clock.advance(86400)
            await runs.trigger("daily-report", inputs={"day": day})
            await worker.run_until_idle()
    cases = await collection.production_cases(
        runs, "daily-report", limit=2, secrets=["live-mail-token-123"]
    )
    assert [c.inputs["day"] for c in cases] == ["2026-11-21", "2026-11-20"]
    hand = "name: empty-day\nrecorded_at: '2026-11-01T00:00:00Z'\ninputs: {day: '2026-11-01'}\n"
    merged = collection.flow_cases(cases, {"empty-day": hand})
    assert [c.name for c in merged][-1] == "empty-day"
    assert len(merged) == 3
