from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from linkloom import metrics
from linkloom.engine.models import RunStatus


def _value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_runs_started_and_finished_by_flow_and_status() -> None:
    before = _value("loom_runs_finished_total", flow_id="m-flow", status="failed")
    metrics.run_started(flow_id="m-flow", trigger="schedule")
    metrics.run_finished(flow_id="m-flow", status=RunStatus.FAILED, seconds=3.0)
    assert _value("loom_runs_started_total", flow_id="m-flow", trigger="schedule") >= 1
    assert _value("loom_runs_finished_total", flow_id="m-flow", status="failed") == before + 1
    assert _value("loom_run_duration_seconds_sum", flow_id="m-flow", status="failed") >= 3.0


def test_metrics_step_latency_histogram_by_type_and_status() -> None:
    labels = {"step_type": "m-http", "status": "succeeded"}
    metrics.step_finished(step_type="m-http", status="SUCCEEDED", seconds=0.02)
    metrics.step_finished(step_type="m-http", status="SUCCEEDED", seconds=7.0)
    assert _value("loom_step_attempt_duration_seconds_count", **labels) == 2
    assert _value("loom_step_attempt_duration_seconds_bucket", le="0.025", **labels) == 1
    assert _value("loom_step_attempt_duration_seconds_bucket", le="10.0", **labels) == 2


def test_metrics_counters_for_retries_dead_letters_backends_scheduler_sandbox() -> None:
    metrics.step_retried(step_type="m-retry")
    metrics.dead_lettered(flow_id="m-dead")
    metrics.backend_response(host="m-backend:8081", status_code=503)
    metrics.backend_response(host="m-backend:8081", status_code=None)
    metrics.scheduler_fired(lateness_seconds=0.3, kind="m-cron")
    metrics.sandbox_finished(backend="m-docker", outcome="timed_out", seconds=61.0)
    metrics.api_request(method="get", route="/m/{id}", status=200, seconds=0.004)

    assert _value("loom_step_retries_total", step_type="m-retry") == 1
    assert _value("loom_dead_letters_total", flow_id="m-dead") == 1
    assert _value("loom_backend_responses_total", host="m-backend:8081", code="503") == 1
    assert _value("loom_backend_responses_total", host="m-backend:8081", code="error") == 1
    assert _value("loom_scheduler_fire_lateness_seconds_bucket", kind="m-cron", le="0.5") == 1
    assert (
        _value("loom_sandbox_run_duration_seconds_count", backend="m-docker", outcome="timed_out")
        == 1
    )
    api = {"method": "GET", "route": "/m/{id}", "status": "200"}
    assert _value("loom_api_request_duration_seconds_count", **api) == 1


def test_metrics_backend_host_label_never_carries_credentials() -> None:
    metrics.backend_response(host="ops:s3cret-pw@m-cred:8081", status_code=200)
    assert _value("loom_backend_responses_total", host="m-cred:8081", code="200") == 1
    assert "s3cret-pw" not in metrics.exposition().decode()


class _Source:
    def __init__(self, stats: metrics.QueueStats | None, *, hang: bool = False) -> None:
        self.stats, self.hang = stats, hang

    async def queue_stats(self) -> metrics.QueueStats:
        if self.hang:
            await asyncio.sleep(10)
        if self.stats is None:
            raise ConnectionError("database down")
        return self.stats


async def test_metrics_queue_gauges_refresh_and_survive_a_failing_source() -> None:
    stats = metrics.QueueStats(ready=7, running=3, oldest_ready_age_seconds=12.5)
    assert await metrics.refresh_queue(_Source(stats))
    assert _value("loom_queue_ready_steps") == 7
    assert _value("loom_queue_running_steps") == 3
    assert _value("loom_queue_oldest_ready_age_seconds") == 12.5

    assert not await metrics.refresh_queue(_Source(None))
    assert not await metrics.refresh_queue(_Source(stats, hang=True), within=0.01)
    assert _value("loom_queue_ready_steps") == 7  # last good values kept

    await metrics.refresh_queue(
        _Source(metrics.QueueStats(ready=0, running=0, oldest_ready_age_seconds=None))
    )
    assert _value("loom_queue_oldest_ready_age_seconds") == 0


def test_metrics_exposition_parses_and_every_metric_is_documented() -> None:
    parsed = {f.name for f in text_string_to_metric_families(metrics.exposition().decode())}
    assert "loom_build_info" in parsed
    families = {family.name for family in metrics.REGISTRY.collect()}
    assert len(families) == 15
    doc = (Path(__file__).parents[3] / "docs" / "operations.md").read_text()
    for name in families:
        assert f"`{name}" in doc, f"{name} is not explained in docs/operations.md"
