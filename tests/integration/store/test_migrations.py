"""Migrations: ``upgrade head`` on an empty database, then no diff between tables and migrations."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

import pytest
from alembic import command

from linkloom.store import session
from tests.support import databases


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
    with databases.fresh_database("m") as url:
        assert _upgrade_and_check(url) == session.head_revision()


@pytest.mark.parametrize("url", ["sqlite:///x.db", "postgresql://u@h/d", "postgres://u@h/d"])
def test_plain_urls_get_async_drivers(url: str) -> None:
    assert "+aiosqlite" in session.normalize_url(url) or "+psycopg" in session.normalize_url(url)
