"""The health routes on an app without services (the probes still answer). The routes on real
``Services``:
``tests/integration/ops/test_health_on_services.py``."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from linkloom import metrics
from linkloom.api.observability import RequestObservability
from linkloom.api.routes import health


def _app() -> FastAPI:
    app = FastAPI()
    app.include_router(health.router)
    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_health_healthz_answers_without_services() -> None:
    async with _client(_app()) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_health_readyz_503_without_services() -> None:
    async with _client(_app()) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["wiring"] is False
    assert "create_app" in response.json()["checks"]["wiring_error"]


async def test_health_metrics_without_services_is_the_plain_exposition() -> None:
    async with _client(_app()) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert "loom_build_info" in response.text


async def test_observability_records_route_template_and_echoes_request_id() -> None:
    app = _app()

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    app.add_middleware(RequestObservability)
    labels = {"method": "GET", "route": "/things/{thing_id}", "status": "200"}
    name = "loom_api_request_duration_seconds_count"
    before = metrics.REGISTRY.get_sample_value(name, labels) or 0
    async with _client(app) as client:
        given = await client.get("/things/1", headers={"X-Request-ID": "abc-123"})
        made = await client.get("/things/2")
        hostile = await client.get("/things/3", headers={"X-Request-ID": "x" * 500})
        missing = await client.get("/nope/9")
    assert given.headers["x-request-id"] == "abc-123"
    assert len(made.headers["x-request-id"]) == 32
    assert len(hostile.headers["x-request-id"]) == 32
    assert missing.status_code == 404
    assert metrics.REGISTRY.get_sample_value(name, labels) == before + 3
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert (metrics.REGISTRY.get_sample_value(name, unmatched) or 0) >= 1
