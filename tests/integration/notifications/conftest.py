"""Fixtures for the notification proof tests: real receivers, and wired services on a fresh
SQLite file or (when ``LOOM_TEST_POSTGRES_URL`` is set) a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from notify_harness import Loom

from linkloom.config import load_settings
from linkloom.wiring import build_services
from tests.support import databases
from tests.support.notify_receivers import SmtpServer, TaskBackend, WebhookReceiver


@pytest.fixture
def task_backend() -> Iterator[TaskBackend]:
    with TaskBackend() as backend:
        yield backend


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return databases.migrated_sqlite(tmp_path_factory.mktemp("notify-template") / "loom.db")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test, dropped afterwards."""
    with databases.fresh_database("n", migrate=True) as url:
        yield url


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow])]
)
async def loom(
    request: pytest.FixtureRequest, tmp_path: Path, task_backend: TaskBackend
) -> AsyncIterator[Loom]:
    if request.param == "sqlite":
        url = databases.copy_sqlite(request.getfixturevalue("sqlite_template"), tmp_path)
    else:
        url = request.getfixturevalue("postgres_url")
    settings = load_settings(
        home=tmp_path,
        database={"url": url},
        engine={"poll_interval": 0.05},
        server={"public_url": "https://loom.example.test"},
        security={"signing_key": "notify-proof-signing-key"},
        notifications={
            "retry_base_seconds": 0.05,
            "retry_max_seconds": 0.2,
            "poll_interval": 0.05,
            "timeout_seconds": 2,
            "max_attempts": 6,
        },
    )
    services = build_services(settings)
    await services.start(migrate=False)
    try:
        yield Loom(services=services, backend=task_backend)
    finally:
        await services.stop()
