"""Fixtures for the notification proof tests: real receivers, and wired services on a fresh
SQLite file or (when ``LOOM_TEST_POSTGRES_URL`` is set) a fresh PostgreSQL database."""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from notify_harness import Loom

from linkloom.config import load_settings
from linkloom.store import session
from linkloom.wiring import build_services
from tests.support.notify_receivers import SmtpServer, TaskBackend, WebhookReceiver
from tests.support.real import POSTGRES_URL, require


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


def _migrate(url: str) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, session.upgrade(url)).result()


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("notify-template") / "loom.db"
    _migrate(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test, dropped afterwards."""
    require(bool(POSTGRES_URL), "PostgreSQL not configured: set LOOM_TEST_POSTGRES_URL")
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(POSTGRES_URL)
    name = f"loom_n_{uuid.uuid4().hex[:10]}"
    admin = base.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base.set(database=name).render_as_string(False)
    _migrate(url)
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow])]
)
async def loom(
    request: pytest.FixtureRequest, tmp_path: Path, task_backend: TaskBackend
) -> AsyncIterator[Loom]:
    if request.param == "sqlite":
        shutil.copy(request.getfixturevalue("sqlite_template"), tmp_path / "loom.db")
        url = f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"
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
