"""Helpers for the sandbox backend tests: bundles that use the stand-in engine."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import linkloom
from linkloom.sandbox.bundle import BundleSettings, SandboxBundle
from linkloom.sandbox.fixtures import FixtureCase, RecordedExchange

HERE = Path(__file__).resolve().parent
PACKAGE_ROOT = Path(linkloom.__file__).resolve().parent.parent
FAKE_ENGINE = "fake_engine:FakeEngine"
T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def make_bundle(
    steps: list[dict[str, Any]], *, shell: bool = False, cases: int = 1, case_timeout: float = 20.0
) -> SandboxBundle:
    exchange = RecordedExchange(
        step_id="fetch",
        method="POST",
        url="http://backend.local/api/tasks/fetch-data",
        request_body={"inputs": {"day": "2026-11-21"}},
        status=200,
        response_body={"status": "SUCCESS", "output": {"rows": 3}},
    )
    return SandboxBundle(
        flow={"id": "daily-report", "steps": steps},
        cases=tuple(
            FixtureCase(
                name=f"case-{n}",
                recorded_at=T0,
                inputs={"day": "2026-11-21"},
                exchanges=(exchange,),
            )
            for n in range(cases)
        ),
        settings=BundleSettings(engine=FAKE_ENGINE, shell_enabled=shell, case_timeout=case_timeout),
    )


FAKE_ENGINE_ENV = {"PYTHONPATH": f"{PACKAGE_ROOT}:{HERE}"}


def real_engine_bundle(*extra_steps: dict[str, Any], shell: bool = False) -> SandboxBundle:
    """The daily-report shape on the production engine: fetch (recorded), shape, extras."""
    url = "http://backend.local/api/tasks/fetch-data"
    flow = {
        "id": "daily-report",
        "inputs": {"day": {"type": "string"}},
        "steps": [
            {"id": "fetch", "type": "http", "url": url, "body": {"day": "{{ inputs.day }}"}},
            {
                "id": "shape",
                "type": "transform",
                "depends_on": ["fetch"],
                "template": {"count": "{{ steps.fetch.output.rows | length }}"},
            },
            *extra_steps,
        ],
    }
    exchange = RecordedExchange(
        step_id="fetch",
        method="POST",
        url=url,
        request_body={"day": "2026-11-21"},
        status=200,
        response_body={"status": "SUCCESS", "output": {"rows": [1, 2, 3]}},
    )
    case = FixtureCase(
        name="c1", recorded_at=T0, inputs={"day": "2026-11-21"}, exchanges=(exchange,)
    )
    return SandboxBundle(flow=flow, cases=(case,), settings=BundleSettings(shell_enabled=shell))


NOTIFY_STEP = {
    "id": "notify",
    "type": "http",
    "depends_on": ["shape"],
    "url": "https://hooks.example/new",
    "retry": {"max_attempts": 1},
}
