"""Fixture cases run on the production engine in memory: replay, frozen time, fast retries."""

from __future__ import annotations

from datetime import UTC, datetime

from linkloom.sandbox.bundle import SandboxBundle
from linkloom.sandbox.fixtures import FixtureCase, RecordedExchange
from linkloom.sandbox.inprocess import InProcessRunner

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
FETCH_URL = "http://backend.local/api/tasks/fetch-data"


def _flow(*extra: dict) -> dict:
    return {
        "id": "daily-report",
        "inputs": {"day": {"type": "string"}},
        "steps": [
            {
                "id": "fetch",
                "type": "http",
                "url": FETCH_URL,
                "body": {"day": "{{ inputs.day }}"},
                "retry": {"max_attempts": 3, "initial_delay": 600},
            },
            {
                "id": "shape",
                "type": "transform",
                "depends_on": ["fetch"],
                "template": {
                    "count": "{{ steps.fetch.output.rows | length }}",
                    "at": "{{ run.scheduled_at }}",
                },
            },
            *extra,
        ],
    }


def _case(*responses: tuple[int, object]) -> FixtureCase:
    exchanges = tuple(
        RecordedExchange(
            step_id="fetch",
            method="POST",
            url=FETCH_URL,
            request_body={"day": "2026-11-21"},
            status=status,
            response_body=body,
        )
        for status, body in responses
    )
    return FixtureCase(name="c1", recorded_at=T0, inputs={"day": "2026-11-21"}, exchanges=exchanges)


OK = (200, {"status": "SUCCESS", "output": {"rows": [1, 2, 3]}})


async def test_engine_runs_case_from_recordings() -> None:
    result = await InProcessRunner().run(SandboxBundle(flow=_flow(), cases=(_case(OK),)))
    case = result.case("c1")
    assert case.error is None, case.error
    assert case.run_status == "SUCCEEDED"
    assert case.steps["fetch"].output == {"rows": [1, 2, 3]}
    assert case.steps["shape"].output["count"] in (3, "3")
    assert case.unrecorded == ()


async def test_engine_replays_recorded_retries_without_waiting() -> None:
    """Production saw a 503 then a success; the sandbox replays both, skipping the backoff."""
    bundle = SandboxBundle(flow=_flow(), cases=(_case((503, {"error": "busy"}), OK),))
    result = await InProcessRunner().run(bundle)
    case = result.case("c1")
    assert case.run_status == "SUCCEEDED"
    assert case.duration_ms < 5000


async def test_engine_new_endpoint_is_unrecorded_and_fails_its_step() -> None:
    notify = {
        "id": "notify",
        "type": "http",
        "depends_on": ["shape"],
        "url": "https://hooks.example/new",
        "retry": {"max_attempts": 2},
    }
    result = await InProcessRunner().run(SandboxBundle(flow=_flow(notify), cases=(_case(OK),)))
    case = result.case("c1")
    assert case.run_status == "FAILED"
    assert case.steps["notify"].status == "FAILED"
    assert "unrecorded request: POST https://hooks.example/new" in case.steps["notify"].error
    assert [(u["method"], u["url"], u["step_id"]) for u in case.unrecorded] == [
        ("POST", "https://hooks.example/new", "notify")
    ]
