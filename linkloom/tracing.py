"""Optional OpenTelemetry tracing: one span per run and one per step attempt.

Install the extra (``pip install 'linkloom[tracing]'``), then set ``LOOM_TRACING__ENABLED=true``
and ``LOOM_TRACING__ENDPOINT`` (OTLP over HTTP, e.g. ``http://otel-collector:4318/v1/traces``);
each process calls ``configure(settings)`` at start. Without it every helper here is a cheap
no-op, so the engine calls them unconditionally::

    with tracing.step_span(run_id=…, flow_id=…, step_id=…, step_type="http", attempt=2) as span:
        result = await executor.execute(ctx)
        span.set_attribute("loom.status", result.status)
    ...
    tracing.run_finished(run_id=…, flow_id=…, status="succeeded", started_at=…, finished_at=…)

A run's attempts execute on different workers, possibly hours apart, so no process holds the
run open. Instead the trace id and the run span's id are derived from the run id: every step
attempt span, wherever it runs, joins the same trace under the run span, which
``run_finished`` emits with the run's real start and end times. ``headers()`` gives the W3C
``traceparent`` of the current span for calls to user backends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from linkloom.config import Settings
from linkloom.errors import InvalidInput

try:  # the API is light; the SDK and exporter come with the ``tracing`` extra
    from opentelemetry import propagate, trace
except ImportError:  # pragma: no cover - exercised only without the extra
    trace = None  # type: ignore[assignment]
    propagate = None  # type: ignore[assignment]

INSTRUMENTATION = "linkloom"
# Set while the run span is created so the id generator hands out the derived ids.
_forced_ids: ContextVar[tuple[int, int] | None] = ContextVar("loom_forced_ids", default=None)


class TracingUnavailable(InvalidInput):
    """Tracing is enabled but {missing} is not installed: pip install 'linkloom[tracing]'."""

    code = "tracing_unavailable"


class _State:
    def __init__(self) -> None:
        self.tracer: Any = None
        self.provider: Any = None


_state = _State()


def trace_id_for(run_id: str) -> int:
    """The 128-bit trace id every span of this run shares."""
    return int.from_bytes(hashlib.sha256(f"trace:{run_id}".encode()).digest()[:16], "big") or 1


def run_span_id_for(run_id: str) -> int:
    """The 64-bit id of the run's span, the parent of its step attempt spans."""
    return int.from_bytes(hashlib.sha256(f"run:{run_id}".encode()).digest()[:8], "big") or 1


def configure(settings: Settings, *, exporter: Any = None, install_global: bool = True) -> bool:
    """Start exporting spans when ``settings.tracing.enabled``; returns whether it did.

    Args:
        settings: ``tracing.enabled``, ``tracing.endpoint`` and ``tracing.service_name``.
        exporter: a span exporter to use instead of OTLP (tests pass an in-memory one; it is
            flushed synchronously).
        install_global: also make this the process's global tracer provider, so libraries
            instrumented with OpenTelemetry join the same traces.

    Raises:
        TracingUnavailable: tracing is enabled but the extra is not installed.
    """
    if not settings.tracing.enabled:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    except ImportError as exc:
        raise TracingUnavailable(missing="opentelemetry-sdk") from exc

    class RunIdGenerator(RandomIdGenerator):
        """Random ids, except the derived ones while ``run_finished`` creates a run span."""

        def generate_trace_id(self) -> int:
            forced = _forced_ids.get()
            return forced[0] if forced else super().generate_trace_id()

        def generate_span_id(self) -> int:
            forced = _forced_ids.get()
            return forced[1] if forced else super().generate_span_id()

    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.tracing.service_name}),
        id_generator=RunIdGenerator(),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise TracingUnavailable(missing="opentelemetry-exporter-otlp-proto-http") from exc
        endpoint = settings.tracing.endpoint or None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    if install_global:
        trace.set_tracer_provider(provider)
    _state.provider = provider
    _state.tracer = provider.get_tracer(INSTRUMENTATION)
    return True


def shutdown() -> None:
    """Flush and stop exporting (call on process exit; tests call it to reset)."""
    provider, _state.provider, _state.tracer = _state.provider, None, None
    if provider is not None:
        provider.shutdown()


class _NoSpan:
    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def record_exception(self, exception: BaseException) -> None:
        pass


@contextmanager
def step_span(
    *, run_id: str, flow_id: str, step_id: str, step_type: str, attempt: int, **attributes: Any
) -> Iterator[Any]:
    """A span around one step attempt, inside its run's trace. Exceptions are recorded.

    Without ``configure`` it yields a no-op at once (the engine's hot path pays nothing)."""
    tracer = _state.tracer
    if tracer is None:
        yield _NoSpan()
        return
    parent = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id=trace_id_for(run_id),
            span_id=run_span_id_for(run_id),
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
    )
    attrs = {
        "loom.run_id": run_id,
        "loom.flow_id": flow_id,
        "loom.step_id": step_id,
        "loom.step_type": step_type,
        "loom.attempt": attempt,
        **attributes,
    }
    with tracer.start_as_current_span(
        f"step {step_id}", context=trace.set_span_in_context(parent), attributes=attrs
    ) as span:
        yield span


def run_finished(
    *,
    run_id: str,
    flow_id: str,
    status: object,
    started_at: datetime,
    finished_at: datetime,
    **attributes: Any,
) -> None:
    """Emit the run's span (derived ids, real start and end) once the run is final."""
    tracer = _state.tracer
    if tracer is None:
        return
    status_text = str(getattr(status, "value", status)).lower()
    token = _forced_ids.set((trace_id_for(run_id), run_span_id_for(run_id)))
    try:
        span = tracer.start_span(
            f"run {flow_id}",
            context=trace.set_span_in_context(trace.INVALID_SPAN),
            attributes={
                "loom.run_id": run_id,
                "loom.flow_id": flow_id,
                "loom.status": status_text,
                **attributes,
            },
            start_time=_ns(started_at),
        )
    finally:
        _forced_ids.reset(token)
    if status_text == "failed":
        span.set_status(trace.Status(trace.StatusCode.ERROR, "run failed"))
    span.end(end_time=_ns(finished_at))


def headers() -> dict[str, str]:
    """W3C trace-context headers (``traceparent``) of the current span, for outgoing calls."""
    carrier: dict[str, str] = {}
    if propagate is not None and _state.tracer is not None:
        propagate.inject(carrier)
    return carrier


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)
