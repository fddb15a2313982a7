from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from linkloom import tracing
from linkloom.config import load_settings


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    settings = load_settings(tracing={"enabled": True, "service_name": "loom-test"})
    assert tracing.configure(settings, exporter=exporter, install_global=False)
    yield exporter
    tracing.shutdown()


def test_tracing_disabled_by_default_and_helpers_are_harmless() -> None:
    assert not tracing.configure(load_settings())
    with tracing.step_span(run_id="r", flow_id="f", step_id="s", step_type="http", attempt=1) as s:
        s.set_attribute("loom.status", "succeeded")
    now = datetime.now(UTC)
    tracing.run_finished(run_id="r", flow_id="f", status="ok", started_at=now, finished_at=now)


def test_tracing_attempts_on_any_worker_join_their_runs_trace(
    exported: InMemorySpanExporter,
) -> None:
    for attempt in (1, 2):  # as if two different worker processes ran the two attempts
        with tracing.step_span(
            run_id="run-7", flow_id="daily", step_id="fetch", step_type="http", attempt=attempt
        ) as span:
            span.set_attribute("loom.status", "failed" if attempt == 1 else "succeeded")
    start = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    tracing.run_finished(
        run_id="run-7",
        flow_id="daily",
        status="SUCCEEDED",
        started_at=start,
        finished_at=start + timedelta(seconds=3),
    )

    first, second, run = exported.get_finished_spans()
    trace_id = tracing.trace_id_for("run-7")
    assert {first.context.trace_id, second.context.trace_id, run.context.trace_id} == {trace_id}
    assert first.parent.span_id == second.parent.span_id == run.context.span_id
    assert run.context.span_id == tracing.run_span_id_for("run-7")
    assert run.parent is None
    assert run.name == "run daily"
    assert run.end_time - run.start_time == 3_000_000_000
    assert dict(second.attributes) == {
        "loom.run_id": "run-7",
        "loom.flow_id": "daily",
        "loom.step_id": "fetch",
        "loom.step_type": "http",
        "loom.attempt": 2,
        "loom.status": "succeeded",
    }
    assert run.resource.attributes["service.name"] == "loom-test"


def test_tracing_other_runs_get_other_traces_and_random_span_ids(
    exported: InMemorySpanExporter,
) -> None:
    for run_id in ("a", "b"):
        with tracing.step_span(run_id=run_id, flow_id="f", step_id="s", step_type="x", attempt=1):
            pass
    one, two = exported.get_finished_spans()
    assert one.context.trace_id != two.context.trace_id
    assert one.context.span_id not in (tracing.run_span_id_for("a"), tracing.run_span_id_for("b"))


def test_tracing_records_exceptions_and_failed_runs(exported: InMemorySpanExporter) -> None:
    with (
        pytest.raises(TimeoutError),
        tracing.step_span(run_id="r", flow_id="f", step_id="slow", step_type="http", attempt=1),
    ):
        raise TimeoutError("backend did not answer")
    now = datetime.now(UTC)
    tracing.run_finished(run_id="r", flow_id="f", status="failed", started_at=now, finished_at=now)
    step, run = exported.get_finished_spans()
    assert step.status.status_code is StatusCode.ERROR
    assert step.events[0].name == "exception"
    assert run.status.status_code is StatusCode.ERROR


def test_tracing_headers_carry_the_current_traceparent(exported: InMemorySpanExporter) -> None:
    with tracing.step_span(run_id="r9", flow_id="f", step_id="s", step_type="http", attempt=1):
        carrier = tracing.headers()
    assert carrier["traceparent"].split("-")[1] == f"{tracing.trace_id_for('r9'):032x}"
