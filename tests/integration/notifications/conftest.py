"""Fixtures for the notification proof tests: real receivers and wired services on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from notify_harness import Loom

from linkloom.config import load_settings
from linkloom.wiring import build_services
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


@pytest.fixture
async def loom(tmp_path: Path, task_backend: TaskBackend) -> AsyncIterator[Loom]:
    settings = load_settings(
        home=tmp_path,
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
    await services.start()
    try:
        yield Loom(services=services, backend=task_backend)
    finally:
        await services.stop()
