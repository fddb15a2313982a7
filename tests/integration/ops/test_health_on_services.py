"""``/readyz`` and ``/metrics`` on real ``Services`` (SQLite; PostgreSQL too when configured):
the routes read ``app.state.services`` and nothing else, as ``create_app`` sets it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from linkloom import metrics
from linkloom.api.routes import health
from linkloom.config import load_settings
from linkloom.flows.spec import FlowSpec
from linkloom.store import session
from linkloom.wiring import Services, build_services
from tests.integration.crash.engine_process import fresh_database
from tests.support.servers import free_port


@pytest.fixture(params=["sqlite", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def db_url(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(kind, tmp_path) as url:
        yield url


def wired(**settings: Any) -> Services:
    return build_services(load_settings(**settings))


async def get_then_stop(services: Services, path: str) -> httpx.Response:
    """``GET path`` on the health routes of ``services``; the services are stopped after."""
    try:
        async with client(services) as http:
            return await http.get(path)
    finally:
        await services.stop()


@pytest.fixture
async def running(db_url: str) -> AsyncIterator[Services]:
    """Services on the migrated database with their worker running, as ``loom server``'s."""
    services = wired(database={"url": db_url})
    await services.start(migrate=False)
    yield services
    await services.stop()


def client(services: Services) -> httpx.AsyncClient:
    """The health routes on an app that carries ``services`` as ``create_app`` does."""
    app = FastAPI()
    app.include_router(health.router)
    app.state.services = services
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_readyz_is_ready_with_the_database_migrated_and_a_worker_running(
    running: Services,
) -> None:
    async def fetched() -> str:
        return "fetched 3s ago"  # a string is a detail: shown, never failing the probe

    running.readiness_details["flows_remote"] = fetched
    async with client(running) as http:
        response = await http.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "ready": True,
        "checks": {
            "database": True,
            "flows_remote": "fetched 3s ago",
            "migrations": True,
            "revision": session.head_revision(),
            "workers": True,
        },
    }


async def test_readyz_is_not_ready_when_a_piece_of_the_services_fails_its_check(
    running: Services,
) -> None:
    async def unreachable() -> bool:
        return False

    async def broken() -> bool:
        raise ConnectionRefusedError("the forge refused the connection")

    async with client(running) as http:
        running.readiness_details["flows_remote"] = unreachable
        failing = await http.get("/readyz")
        running.readiness_details["flows_remote"] = broken
        raising = await http.get("/readyz")
    assert failing.status_code == 503
    assert failing.json()["checks"]["flows_remote"] is False
    assert failing.json()["checks"]["database"] is True
    assert raising.status_code == 503
    assert raising.json()["checks"] == {
        "readiness": False,
        "readiness_error": "ConnectionRefusedError: the forge refused the connection",
    }


async def test_readyz_is_not_ready_when_the_database_does_not_answer(
    kind: str, tmp_path: Path
) -> None:
    url = (
        f"sqlite+aiosqlite:///{tmp_path}"  # a directory: no database opens there
        if kind == "sqlite"
        else f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/loom"
    )
    response = await get_then_stop(wired(database={"url": url}), "/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": False, "migrations": False, "workers": False}


async def test_readyz_on_a_database_never_migrated_says_to_upgrade_it(tmp_path: Path) -> None:
    unmigrated = wired(database={"url": f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"})
    response = await get_then_stop(unmigrated, "/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": True,
        "migrations": False,
        "revision": "none",
        "migrations_error": (
            f"database at no revision (never migrated), code at {session.head_revision()}: "
            "loom db upgrade"
        ),
        "workers": False,
    }


async def test_metrics_shows_the_services_queue_on_each_scrape(db_url: str) -> None:
    services = wired(database={"url": db_url})
    steps = [{"id": s, "type": "http", "url": "http://127.0.0.1:9/x"} for s in ("a", "b")]
    await services.runs.apply_flow(FlowSpec.model_validate({"id": "q", "steps": steps}))
    for _ in range(3):
        await services.runs.trigger("q")  # no worker: both root steps of each run wait
    response = await get_then_stop(services, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "loom_queue_ready_steps 6.0" in response.text
    assert metrics.REGISTRY.get_sample_value("loom_queue_ready_steps") == 6


async def test_metrics_answers_404_when_the_services_settings_disable_it(db_url: str) -> None:
    disabled = wired(database={"url": db_url}, metrics={"enabled": False})
    response = await get_then_stop(disabled, "/metrics")
    assert response.status_code == 404
