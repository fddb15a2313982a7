"""The in-process runner, the bundle format and the stdout line protocol."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from linkloom.sandbox.bundle import BundleSettings, SandboxBundle
from linkloom.sandbox.fixtures import FixtureCase, RecordedExchange
from linkloom.sandbox.inprocess import InProcessRunner
from linkloom.sandbox.runner import (
    CaseOutcome,
    CaseResult,
    CaseRun,
    StepOutcome,
    collect,
    event_line,
)

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


class EchoEngine:
    """Calls every http step through the replaying client and returns what came back."""

    async def run(
        self,
        *,
        flow: dict[str, Any],
        case: FixtureCase,
        http: Any,
        outbound: Any,
        clock: Any,
        secrets: Any,
        settings: Any,
    ) -> CaseOutcome:
        steps = {}
        for step in flow["steps"]:
            if step.get("hang"):
                await asyncio.sleep(10)
            try:
                resp = await http.post(step["url"], json={"key": secrets.get("API")})
                steps[step["id"]] = StepOutcome(status="SUCCEEDED", output=resp.json())
            except Exception as exc:
                steps[step["id"]] = StepOutcome(status="FAILED", error=str(exc))
        return CaseOutcome(
            run_status="SUCCEEDED", steps=steps, run_outputs={"now": clock.now().isoformat()}
        )


def _bundle(*steps: dict[str, Any], timeout: float = 5.0) -> SandboxBundle:
    ex = RecordedExchange(
        method="POST",
        url="http://b/a",
        request_body={"key": "***"},
        status=200,
        response_body={"v": 1},
    )
    case = FixtureCase(name="c1", recorded_at=T0, exchanges=(ex,))
    return SandboxBundle(
        flow={"id": "f", "steps": list(steps)},
        cases=(case,),
        settings=BundleSettings(case_timeout=timeout),
    )


async def test_inprocess_runs_case_with_replay_frozen_clock_and_redacted_secrets() -> None:
    bundle = _bundle({"id": "a", "url": "http://b/a"}, {"id": "b", "url": "http://b/new"})
    result = await InProcessRunner(engine=EchoEngine()).run(bundle)
    assert result.backend == "inprocess"
    case = result.case("c1")
    assert case.steps["a"].output == {"v": 1}
    assert case.steps["b"].error == "unrecorded request: POST http://b/new"
    assert [u["url"] for u in case.unrecorded] == ["http://b/new"]
    assert case.run_outputs == {"now": T0.isoformat()}
    assert result.ok


async def test_inprocess_case_timeout_is_a_failed_case() -> None:
    bundle = _bundle({"id": "a", "url": "http://b/a", "hang": True}, timeout=0.05)
    result = await InProcessRunner(engine=EchoEngine()).run(bundle)
    assert result.cases[0].run_status == "ERROR"
    assert result.cases[0].error == "case timed out after 0.05s"
    assert not result.ok


async def test_inprocess_unknown_engine_is_a_sandbox_error() -> None:
    bundle = SandboxBundle(flow={"id": "f"}, settings=BundleSettings(engine="nope.nothing:X"))
    result = await InProcessRunner().run(bundle)
    assert "cannot be loaded" in result.error


def test_bundle_round_trips_through_a_directory(tmp_path: Path) -> None:
    bundle = _bundle({"id": "a", "url": "http://b/a"})
    bundle.write(tmp_path)
    assert SandboxBundle.read(tmp_path) == bundle


def test_collect_keeps_finished_cases_and_blames_the_running_one() -> None:
    bundle = SandboxBundle(
        flow={"id": "f"},
        cases=tuple(FixtureCase(name=n, recorded_at=T0) for n in ("c1", "c2", "c3")),
    )
    done = CaseResult(case="c1", proposed=CaseRun(run_status="SUCCEEDED"))
    lines = [
        event_line("case_started", case="c1"),
        event_line("case", result=done.to_dict()),
        "garbage that a flow printed",
        event_line("case_started", case="c2"),
    ]
    result = collect(lines, bundle=bundle, backend="docker", error="killed: wall clock")
    assert result.backend == "docker"
    assert result.cases[0] == done
    assert result.cases[1].error == "killed: wall clock (while running case 'c2')"
    assert result.cases[2].error == "killed: wall clock"
    assert result.to_dict()["ok"] is False


def test_collect_without_done_line_reports_a_silent_death() -> None:
    bundle = SandboxBundle(flow={"id": "f"}, cases=(FixtureCase(name="c1", recorded_at=T0),))
    result = collect([], bundle=bundle, backend="process")
    assert result.error == "the sandbox ended without reporting results"
