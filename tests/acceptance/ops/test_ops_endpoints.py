"""The operations endpoints on the fully wired app: probes, metrics and request ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from linkloom import metrics
from tests.acceptance.api.api_harness import Api, start_api


@pytest.fixture
async def wired(tmp_path: Path) -> AsyncIterator[Api]:
    running, lifespan = await start_api(f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}", tmp_path)
    yield running
    await lifespan.__aexit__(None, None, None)


async def test_ops_probes_answer_without_a_token_and_report_a_migrated_database(wired: Api) -> None:
    async with wired.client(role=None) as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        scrape = await client.get("/metrics")
    assert health.status_code == 200
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["database"] is True
    assert checks["migrations"] is True
    assert scrape.status_code == 200
    assert "loom_build_info" in scrape.text


async def test_ops_api_requests_are_measured_by_route_template_with_request_ids(wired: Api) -> None:
    route = {"method": "GET", "route": "/api/v1/flows/{flow_id}", "status": "404"}
    name = "loom_api_request_duration_seconds_count"
    before = metrics.REGISTRY.get_sample_value(name, route) or 0
    async with wired.client() as client:
        missing = await client.get("/api/v1/flows/no-such-flow", headers={"X-Request-ID": "ops-1"})
        scrape = await client.get("/metrics")
    assert missing.status_code == 404
    assert missing.headers["x-request-id"] == "ops-1"
    assert metrics.REGISTRY.get_sample_value(name, route) == before + 1
    assert 'route="/api/v1/flows/{flow_id}"' in scrape.text
