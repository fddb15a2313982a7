"""Tracing through the real engine: a run on the wired services (SQLite, real HTTP) exports one
span per step attempt under the run's span, and the backend receives the attempt's W3C
``traceparent``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from linkloom import tracing
from linkloom.config import load_settings
from linkloom.engine.models import RunStatus
from linkloom.flows.spec import FlowSpec
from linkloom.wiring import build_services
from tests.support.backends import IdempotentBackend


class HeaderBackend(IdempotentBackend):
    """Keeps the ``traceparent`` header of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.traceparents: list[str | None] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.traceparents.append(request.headers.get("traceparent"))
        return await super().handle(request)


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    settings = load_settings(tracing={"enabled": True, "service_name": "loom-test"})
    assert tracing.configure(settings, exporter=exporter, install_global=False)
    yield exporter
    tracing.shutdown()


async def test_tracing_engine_run_exports_attempt_spans_and_sends_traceparent(
    tmp_path: Path, exported: InMemorySpanExporter
) -> None:
    settings = load_settings(home=tmp_path, engine={"poll_interval": 0.05})
    services = build_services(settings)
    with HeaderBackend() as backend:
        await services.start()
        try:
            steps = [
                {"id": "a", "type": "http", "url": f"{backend.url}/a"},
                {"id": "b", "type": "http", "url": f"{backend.url}/b", "depends_on": ["a"]},
            ]
            spec = FlowSpec.model_validate({"id": "traced", "steps": steps})
            await services.runs.apply_flow(spec)
            run = await services.runs.trigger("traced", inputs={})
            async with asyncio.timeout(10):
                done = await services.runs.wait(run.id, poll=0.05)
        finally:
            await services.stop()
    assert done.status is RunStatus.SUCCEEDED
    spans = {s.name: s for s in exported.get_finished_spans()}
    assert set(spans) == {"step a", "step b", "run traced"}
    trace_id = tracing.trace_id_for(run.id)
    assert {s.context.trace_id for s in spans.values()} == {trace_id}
    assert spans["step a"].parent.span_id == spans["run traced"].context.span_id
    assert spans["step b"].attributes["loom.ok"] is True
    expected = {
        f"00-{trace_id:032x}-{spans[name].context.span_id:016x}-01" for name in ("step a", "step b")
    }
    assert set(backend.traceparents) == expected
