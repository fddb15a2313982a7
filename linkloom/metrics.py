"""Prometheus metrics: one registry, the metric objects, and the helpers the services call.

Everything lives in ``REGISTRY`` (not prometheus-client's global one), so tests and embedding
applications see only Link Loom's series. The engine, scheduler, sandbox and API call the
helpers below rather than touching metric objects, e.g.::

    from linkloom import metrics
    metrics.step_finished(step_type="http", status="succeeded", seconds=0.012)

Label values are lower-case (``status="failed"``); enums are accepted. Every metric is described
in ``docs/operations.md``. The API server exposes them at ``/metrics``
(``linkloom.api.routes.health``); ``loom worker`` and ``loom scheduler`` call
``start_exporter(port)`` when ``LOOM_METRICS__PORT`` is set, because each process keeps its own
counters (Prometheus sums them across targets).

Queue figures are read from the database when scraped: the ``/metrics`` route awaits
``refresh_queue(source)`` with a ``QueueStatsSource`` that the store implements.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

import linkloom

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds. Steps range from a millisecond HTTP call to a long async backend job.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900)
SANDBOX_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)

build_info = Gauge(
    "loom_build_info", "Always 1; the version label says what runs.", ["version"], registry=REGISTRY
)
build_info.labels(version=linkloom.__version__).set(1)

runs_started = Counter(
    "loom_runs_started",
    "Runs created, by flow and by what started them (schedule, manual, webhook, event, retry).",
    ["flow_id", "trigger"],
    registry=REGISTRY,
)
runs_finished = Counter(
    "loom_runs_finished",
    "Runs that reached a final status, by flow and status (succeeded, failed, cancelled).",
    ["flow_id", "status"],
    registry=REGISTRY,
)
run_duration = Histogram(
    "loom_run_duration_seconds",
    "Wall-clock time from a run's creation to its final status.",
    ["flow_id", "status"],
    buckets=RUN_BUCKETS,
    registry=REGISTRY,
)
step_attempt_duration = Histogram(
    "loom_step_attempt_duration_seconds",
    "Duration of one step attempt, by step type and the attempt's outcome.",
    ["step_type", "status"],
    buckets=STEP_BUCKETS,
    registry=REGISTRY,
)
step_retries = Counter(
    "loom_step_retries",
    "Step attempts scheduled again after a retryable failure, by step type.",
    ["step_type"],
    registry=REGISTRY,
)
dead_letters = Counter(
    "loom_dead_letters",
    "Steps that failed for good and were put on the dead-letter list, by flow.",
    ["flow_id"],
    registry=REGISTRY,
)
queue_ready = Gauge(
    "loom_queue_ready_steps",
    "Step attempts ready to run and not yet claimed by a worker (whole database).",
    registry=REGISTRY,
)
queue_running = Gauge(
    "loom_queue_running_steps",
    "Step attempts claimed by a worker or waiting for an async callback (whole database).",
    registry=REGISTRY,
)
queue_oldest_ready_age = Gauge(
    "loom_queue_oldest_ready_age_seconds",
    "How long the oldest ready step has waited for a worker; 0 when none waits.",
    registry=REGISTRY,
)
scheduler_fire_lateness = Histogram(
    "loom_scheduler_fire_lateness_seconds",
    "Delay between a schedule's nominal fire time and the creation of its run.",
    ["kind"],
    buckets=LATENESS_BUCKETS,
    registry=REGISTRY,
)
sandbox_run_duration = Histogram(
    "loom_sandbox_run_duration_seconds",
    "Duration of one sandbox run (one flow's fixture cases in a proposal's checks), by backend "
    "and outcome (succeeded, failed, error).",
    ["backend", "outcome"],
    buckets=SANDBOX_BUCKETS,
    registry=REGISTRY,
)
backend_responses = Counter(
    "loom_backend_responses",
    "Responses from user backends by host and HTTP status code; code 'error' means no "
    "response (timeout, refused or reset connection).",
    ["host", "code"],
    registry=REGISTRY,
)
retention_purged_runs = Counter(
    "loom_retention_purged_runs",
    "Finished runs deleted by retention (with their steps, events, logs and exchanges), by flow.",
    ["flow_id"],
    registry=REGISTRY,
)
api_request_duration = Histogram(
    "loom_api_request_duration_seconds",
    "API request latency by method, route template and response status.",
    ["method", "route", "status"],
    buckets=API_BUCKETS,
    registry=REGISTRY,
)


def _label(value: object) -> str:
    if isinstance(value, Enum):
        value = value.value
    return str(value).lower()


def run_started(*, flow_id: str, trigger: object = "manual") -> None:
    """Count a new run."""
    runs_started.labels(flow_id=flow_id, trigger=_label(trigger)).inc()


def run_finished(*, flow_id: str, status: object, seconds: float | None = None) -> None:
    """Count a run reaching a final status; ``seconds`` is its age when known."""
    status_label = _label(status)
    runs_finished.labels(flow_id=flow_id, status=status_label).inc()
    if seconds is not None:
        run_duration.labels(flow_id=flow_id, status=status_label).observe(max(seconds, 0.0))


def step_finished(*, step_type: str, status: object, seconds: float) -> None:
    """Record one finished step attempt (succeeded, failed, timed_out, cancelled…)."""
    _step_attempt(step_type, _label(status)).observe(max(seconds, 0.0))


# The series every step touches, looked up once: ``labels()`` costs more than the update.
# (Nothing removes a series, so a kept child stays the one that is exported.)
@functools.lru_cache(maxsize=256)
def _step_attempt(step_type: str, status: str) -> Histogram:
    return step_attempt_duration.labels(step_type=step_type, status=status)


@functools.lru_cache(maxsize=1024)
def _backend_response(host: str, code: str) -> Counter:
    return backend_responses.labels(host=host, code=code)


def step_retried(*, step_type: str) -> None:
    """Count an attempt that will be retried."""
    step_retries.labels(step_type=step_type).inc()


def dead_lettered(*, flow_id: str) -> None:
    """Count a step moved to the dead-letter list."""
    dead_letters.labels(flow_id=flow_id).inc()


def backend_response(*, host: str, status_code: int | None) -> None:
    """Count a user-backend response; ``None`` when the call got no response at all.

    ``host`` is a URL's netloc: its ``user:password@`` (credentials, perhaps from secrets) is
    dropped, so a label never exports them."""
    code = "error" if status_code is None else str(status_code)
    _backend_response(host.rpartition("@")[2], code).inc()


def scheduler_fired(*, lateness_seconds: float, kind: str = "cron") -> None:
    """Record how late a schedule fired (``kind``: cron or interval)."""
    scheduler_fire_lateness.labels(kind=kind).observe(max(lateness_seconds, 0.0))


def sandbox_finished(*, backend: str, outcome: object, seconds: float) -> None:
    """Record one sandbox run (``outcome``: succeeded, failed, error: backend unavailable)."""
    sandbox_run_duration.labels(backend=backend, outcome=_label(outcome)).observe(max(seconds, 0.0))


def runs_purged(*, flow_id: str, count: int) -> None:
    """Count runs deleted by retention."""
    if count:
        retention_purged_runs.labels(flow_id=flow_id).inc(count)


def api_request(*, method: str, route: str, status: int, seconds: float) -> None:
    """Record one API request; ``route`` is the path template, never the raw path."""
    api_request_duration.labels(method=method.upper(), route=route, status=str(status)).observe(
        max(seconds, 0.0)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStats:
    """The work queue at one instant, across every worker."""

    ready: int  # QUEUED attempts whose ready time has passed, not yet claimed
    running: int  # attempts under a lease or waiting for an async callback
    oldest_ready_age_seconds: float | None  # None when nothing is ready


class QueueStatsSource(Protocol):
    """What ``refresh_queue`` reads; the store implements it with one cheap query."""

    async def queue_stats(self) -> QueueStats: ...


def set_queue(stats: QueueStats) -> None:
    """Set the queue gauges from a snapshot."""
    queue_ready.set(stats.ready)
    queue_running.set(stats.running)
    queue_oldest_ready_age.set(stats.oldest_ready_age_seconds or 0.0)


async def refresh_queue(source: QueueStatsSource, *, within: float = 2.0) -> bool:
    """Read the queue from ``source`` and set the gauges; False (gauges kept) if it failed.

    A scrape must not hang or fail because the database is slow: on error or timeout the
    previous values stay and the caller still serves the rest of the metrics.
    """
    try:
        async with asyncio.timeout(within):
            stats = await source.queue_stats()
    except Exception:  # any store failure: keep serving the other metrics
        return False
    set_queue(stats)
    return True


def exposition() -> bytes:
    """The text exposition of every metric (serve with ``CONTENT_TYPE``)."""
    return generate_latest(REGISTRY)


def start_exporter(port: int, *, addr: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` on ``port`` from a background thread (worker/scheduler processes).

    It binds every interface by default because Prometheus scrapes from another host.
    """
    start_http_server(port, addr=addr, registry=REGISTRY)
