"""The whole chain in memory: a production run on the engine → a fixture case → the proposed
flow replayed in the sandbox → a diff that shows exactly what the proposal changed."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx

from linkloom.engine.ports import StepServices
from linkloom.engine.service import RunService
from linkloom.engine.steps import builtin_executors
from linkloom.engine.worker import Worker
from linkloom.flows.spec import FlowSpec
from linkloom.proposals import diff, render
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
    assert d.summary.clean, render.summary_line(d.summary)
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
        "audit": StepChange.NEWLY_FAILING,  # an added step that fails counts as newly failing
    }
    assert [(u["method"], u["url"]) for u in case_diff.unrecorded] == [
        ("POST", f"{BACKEND}/api/tasks/audit")
    ]
    assert d.summary.unrecorded == 1
    assert d.summary.newly_failing == 1


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
    assert "sent differently" in render.render_html(d)


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


# -------------------------------------------------- both sides: production replayed beside


async def both_sides(proposed: dict[str, Any], case: fixtures.FixtureCase, **bundle: Any) -> Any:
    settings = BundleSettings(on_body_mismatch="replay")
    result = await InProcessRunner().run(
        SandboxBundle(
            flow=proposed, production=FLOW, production_version=1, cases=(case,),
            settings=settings, **bundle,
        )
    )  # fmt: skip
    return diff.diff_results([case], result, production_version=1)


async def test_both_sides_unchanged_flow_is_clean_and_reproducible() -> None:
    case = await production_case()
    d = await both_sides(copy.deepcopy(FLOW), case)
    (c,) = d.cases
    assert c.reproducible
    assert d.summary.clean, render.summary_line(d.summary)
    assert d.findings == ()


async def test_both_sides_a_changed_body_is_sent_differently_against_production() -> None:
    case = await production_case()
    proposed = copy.deepcopy(FLOW)
    proposed["steps"][1]["template"]["title"] = "Daily report {{ inputs.day }}"
    d = await both_sides(proposed, case)
    (c,) = d.cases
    assert {s.step_id: s.change for s in c.steps} == {
        "fetch": StepChange.UNCHANGED,
        "shape": StepChange.CHANGED,
        "send": StepChange.UNCHANGED,
    }
    (sent,) = c.changed_requests
    assert [ch["path"] for ch in sent["changes"]] == ["body.upstream.shape.output.title"]
    assert [f.text for f in d.findings] == [
        'shape: output.title "Report for 2026-11-21" → "Daily report 2026-11-21" in 1 of 1 case(s)',
        "send: sent differently (body.upstream.shape.output.title): POST "
        f"{BACKEND}/api/tasks/send-email in 1 of 1 case(s)",
    ]


async def test_a_case_recorded_by_an_older_version_is_checked_on_that_version() -> None:
    case = await production_case()  # recorded by version 1 (FLOW)
    newer = copy.deepcopy(FLOW)
    newer["steps"][1]["template"]["title"] = "Daily report {{ inputs.day }}"
    result = await InProcessRunner().run(
        SandboxBundle(
            flow=newer, production=newer, production_version=2, versions={1: FLOW},
            cases=(case,), settings=BundleSettings(on_body_mismatch="replay"),
        )
    )  # fmt: skip
    (ran,) = result.cases
    assert ran.recorded is not None  # version 1 replayed for the reproduction check
    d = diff.diff_results([case], result, production_version=2)
    (c,) = d.cases
    assert c.reproducible  # the recording reproduces on the version that made it
    assert d.summary.clean  # and the proposal equals production (version 2): no difference


async def test_a_case_that_does_not_reproduce_is_shown_apart_and_not_counted() -> None:
    case = await production_case()
    tampered = dict(case.expected)
    tampered["shape"] = fixtures.ExpectedStep(status="SUCCEEDED", output={"title": "edited"})
    drifted = replace(case, expected=tampered)
    proposed = copy.deepcopy(FLOW)
    proposed["steps"][1]["template"]["title"] = "Daily report {{ inputs.day }}"
    d = await both_sides(proposed, drifted)
    (c,) = d.cases
    assert not c.reproducible
    assert c.not_reproducible is not None
    assert (c.not_reproducible.step_id, c.not_reproducible.path) == ("shape", "output.count")
    assert (d.summary.cases, d.summary.changed, d.summary.not_reproducible) == (0, 0, 1)
    (finding,) = d.findings
    assert finding.kind == "not_reproducible"
    assert finding.severity.value == "info"


# -------------------------------------------------- a fan-out of GETs with query strings

FANOUT: dict[str, Any] = {
    "id": "stock",
    "inputs": {"skus": {"type": "array"}},
    "steps": [
        {
            "id": "levels",
            "type": "http",
            "method": "GET",
            "url": f"{BACKEND}/stock",
            "for_each": "{{ inputs.skus }}",
            "query": {"sku": "{{ item }}", "warehouse": "KYIV-1"},
        },
        {
            "id": "low",
            "type": "transform",
            "depends_on": ["levels"],
            "template": {"low": "{{ steps.levels.output | selectattr('qty', 'lt', 5) | list }}"},
        },
    ],
}


def stock(request: httpx.Request) -> httpx.Response:
    assert request.method == "GET"
    assert request.content == b""
    sku = request.url.params["sku"]
    return httpx.Response(200, json={"sku": sku, "qty": len(sku)})


async def test_a_fanout_of_gets_with_query_replays_item_by_item_on_both_sides() -> None:
    store = InMemoryRunStore()
    clock = FrozenClock(T0)
    secrets = StaticSecrets({})
    runs = RunService(store=store, clock=clock, secrets=secrets)
    async with httpx.AsyncClient(transport=httpx.MockTransport(stock)) as http:
        services = StepServices(http=http, clock=clock, secrets=secrets)
        worker = Worker(
            store=store, executors=builtin_executors(), services=services, specs=runs.specs
        )
        await runs.apply_flow(FlowSpec.model_validate(FANOUT))
        run = await runs.trigger("stock", inputs={"skus": ["ab", "abcdef", "xyz"]})
        await worker.run_until_idle()
    case = fixtures.case_from_run(
        run=await runs.get_run(run.id),
        steps=await runs.list_steps(run.id),
        exchanges=await runs.list_exchanges(run.id),
    )
    assert sorted(x.url for x in case.exchanges) == [
        f"{BACKEND}/stock?sku={sku}&warehouse=KYIV-1" for sku in ("ab", "abcdef", "xyz")
    ]
    assert {x.item_index for x in case.exchanges} == {0, 1, 2}
    proposed = copy.deepcopy(FANOUT)
    proposed["steps"][1]["template"]["low"] = (
        "{{ steps.levels.output | selectattr('qty', 'lt', 3) | list }}"
    )
    result = await InProcessRunner().run(
        SandboxBundle(
            flow=proposed, production=FANOUT, production_version=1, cases=(case,),
            settings=BundleSettings(on_body_mismatch="replay"),
        )
    )  # fmt: skip
    d = diff.diff_results([case], result, production_version=1)
    (c,) = d.cases
    assert c.reproducible
    assert c.unrecorded == ()
    assert c.changed_requests == ()
    assert {s.step_id: s.change for s in c.steps} == {
        "levels": StepChange.UNCHANGED,
        "low": StepChange.CHANGED,
    }
    assert [f.text for f in d.findings] == ["low: output.low[1] removed in 1 of 1 case(s)"]
