"""Migrations: ``upgrade head`` on an empty database, then no diff between tables and migrations."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from pathlib import Path

import pytest
from alembic import command

from linkloom.store import session

POSTGRES_URL = os.environ.get("LOOM_TEST_POSTGRES_URL", "")


def require(condition: bool, reason: str) -> None:
    """The root conftest's rule (skip loudly locally, fail in CI); a copy, because which module
    ``conftest`` names depends on the directories pytest collected."""
    if condition:
        return
    if os.environ.get("LOOM_TEST_REQUIRE_ALL") == "1" or os.environ.get("CI") == "true":
        pytest.fail(f"CI requires this test to run, but: {reason}")
    pytest.skip(f"SKIPPED (missing real dependency): {reason}")


def _upgrade_and_check(url: str) -> str | None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, session.upgrade(url)).result()
        current = pool.submit(asyncio.run, session.current_revision(url)).result()
    command.check(session.alembic_config(url))  # raises when models and migrations differ
    return current


def test_migrations_upgrade_empty_sqlite_and_match_the_tables(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    assert _upgrade_and_check(url) == session.head_revision()


def test_migrations_upgrade_empty_postgres_and_match_the_tables() -> None:
    require(bool(POSTGRES_URL), "PostgreSQL not configured: set LOOM_TEST_POSTGRES_URL")
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(POSTGRES_URL)
    name = f"loom_m_{uuid.uuid4().hex[:10]}"
    admin = base.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = base.set(database=name).render_as_string(False)
        assert _upgrade_and_check(url) == session.head_revision()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("url", ["sqlite:///x.db", "postgresql://u@h/d", "postgres://u@h/d"])
def test_plain_urls_get_async_drivers(url: str) -> None:
    assert "+aiosqlite" in session.normalize_url(url) or "+psycopg" in session.normalize_url(url)
