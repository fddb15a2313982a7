"""The example backend built with the SDK, driven by the real engine (SQLite store, worker,
HTTP executor): the wire contract holds in both directions, including async callbacks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from examples.backend import RunningBackend, serve
from linkloom import signing
from linkloom.config import load_settings
from linkloom.engine.errors import CallbackAlreadyUsed
from linkloom.flows.spec import FlowSpec
from linkloom.wiring import Services, build_services

ROOT = Path(__file__).resolve().parents[3]
KEY = "engine-sdk-key"


@pytest.fixture(scope="module")
def backend() -> Iterator[RunningBackend]:
    with serve(signing_key=KEY, heartbeat_interval=0.2) as running:
        yield running


async def _callback_bridge(holder: dict[str, Services]) -> tuple[web.AppRunner, str]:
    """Stands in for the API's callback routes: verify, then hand to the run service."""

    async def callback(request: web.Request) -> web.Response:
        services = holder["services"]
        raw = await request.read()
        try:
            signing.verify(KEY, raw, dict(request.headers))
        except signing.SignatureError as exc:
            return web.json_response({"detail": str(exc)}, status=401)
        token = request.match_info["token"]
        if request.path.endswith("/heartbeat"):
            await services.runs.heartbeat(token)
            return web.json_response({})
        try:
            await services.runs.complete_callback(token, json.loads(raw))
        except CallbackAlreadyUsed:
            return web.json_response({"detail": "already completed"}, status=409)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/api/v1/callbacks/{token}", callback)
    app.router.add_post("/api/v1/callbacks/{token}/heartbeat", callback)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def engine(tmp_path: Path, backend: RunningBackend) -> AsyncIterator[Services]:
    backend.state.effects.clear()
    backend.state.calls.clear()
    holder: dict[str, Services] = {}
    runner, bridge_url = await _callback_bridge(holder)
    settings = load_settings(
        home=tmp_path,
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"},
        security={"signing_key": KEY},
        server={"public_url": bridge_url},
        engine={"poll_interval": 0.05, "lease_seconds": 0.9},  # deadlines checked every 0.3 s
    )
    services = holder["services"] = build_services(settings)
    await services.start()
    try:
        yield services
    finally:
        await services.stop(grace=2)
        await runner.cleanup()


def example_flow(name: str, backend: RunningBackend) -> FlowSpec:
    text = (ROOT / "examples" / "flows" / name / "flow.yaml").read_text()
    return FlowSpec.model_validate(
        yaml.safe_load(text.replace("http://127.0.0.1:8081", backend.url))
    )


async def run_flow(services: Services, spec: FlowSpec, inputs: dict[str, Any]) -> Any:
    await services.runs.apply_flow(spec)
    run = await services.runs.trigger(spec.id, inputs=inputs)
    async with asyncio.timeout(20):
        return await services.runs.wait(run.id)


async def test_engine_runs_daily_report_against_the_sdk_backend(
    engine: Services, backend: RunningBackend
) -> None:
    run = await run_flow(engine, example_flow("daily-report", backend), {"count": 40})
    assert run.status == "SUCCEEDED", run.error
    assert run.outputs == {"fetched": 40, "valid": 38, "emailed_to": "admin@example.com"}
    steps = {s.step_id: s for s in await engine.runs.list_steps(run.id)}
    assert steps["process"].outputs == {"valid": 38, "invalid": 2}
    emails = [e for e in backend.state.effects if e["kind"] == "email"]
    assert [e["key"] for e in emails] == [f"{run.id}:send_email"]


async def test_engine_retries_a_retryable_backend_and_charges_once(
    engine: Services, backend: RunningBackend
) -> None:
    spec = FlowSpec.model_validate({
        "id": "charge-once",
        "inputs": {"failures": {"type": "integer", "default": 2},
                   "amount": {"type": "integer", "default": 42}},
        "defaults": {"retry": {"max_attempts": 4, "initial_delay": "0.05s", "max_delay": "0.1s"}},
        "steps": [
            {"id": "flaky", "type": "http", "url": f"{backend.url}/api/tasks/flaky"},
            {"id": "charge", "type": "http", "url": f"{backend.url}/api/tasks/charge",
             "depends_on": ["flaky"]},
        ],
    })  # fmt: skip
    run = await run_flow(engine, spec, {})
    assert run.status == "SUCCEEDED", run.error
    steps = {s.step_id: s for s in await engine.runs.list_steps(run.id)}
    assert steps["flaky"].output == {"deliveries": 3}
    charges = [e for e in backend.state.effects if e["kind"] == "charge"]
    assert [(c["key"], c["amount"]) for c in charges] == [(f"{run.id}:charge", 42)]


async def test_engine_completes_an_async_step_by_sdk_callback_with_heartbeats(
    engine: Services, backend: RunningBackend
) -> None:
    spec = FlowSpec.model_validate({
        "id": "slow-report",
        "inputs": {"seconds": {"type": "number", "default": 1.5}},
        "steps": [
            {"id": "report", "type": "http", "url": f"{backend.url}/api/tasks/slow-report",
             "mode": "async", "heartbeat_timeout": "1s", "timeout": "30s"},
        ],
    })  # fmt: skip
    run = await run_flow(engine, spec, {"seconds": 1.5})
    assert run.status == "SUCCEEDED", run.error
    step = (await engine.runs.list_steps(run.id))[0]
    assert step.output == {"report": f"report-{run.id}", "pages": 3}
    # One attempt: heartbeats kept the 1 s deadline alive for the 1.5 s of work.
    assert len(await engine.runs.list_attempts(run.id)) == 1
    assert backend.state.calls["slow-report"] == 1


async def test_engine_runs_parallel_merge_against_the_sdk_backend(
    engine: Services, backend: RunningBackend
) -> None:
    run = await run_flow(engine, example_flow("parallel-merge", backend), {"delay": 0.3})
    assert run.status == "SUCCEEDED", run.error
    assert run.outputs["count"] == 3
    assert set(run.outputs["merged"]) == {"a", "b"}
    steps = {s.step_id: s for s in await engine.runs.list_steps(run.id)}
    a, b = steps["process_a"], steps["process_b"]
    # Both branches waited 0.3 s; they overlapped, so each started before the other ended.
    assert a.started_at < b.finished_at
    assert b.started_at < a.finished_at


async def test_engine_runs_order_triage_against_the_sdk_backend(
    engine: Services, backend: RunningBackend
) -> None:
    run = await run_flow(engine, example_flow("order-triage", backend), {"threshold": 100})
    assert run.status == "SUCCEEDED", run.error
    assert run.outputs == {"imported": ["o-1001", "o-1003"]}
    imports = [e for e in backend.state.effects if e["kind"] == "erp_import"]
    assert [(e["count"], e["key"]) for e in imports] == [(2, f"{run.id}:import_orders")]
