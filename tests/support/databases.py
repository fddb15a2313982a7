"""The databases of the tests: PostgreSQL (which server; a throwaway database on it per use)
and SQLite (a migrated template file, copied for each test).

The server is the one ``tests.support.real`` found (``LOOM_TEST_POSTGRES_URL``, else a local one).
The suite never touches a database it did not create: every test module, fixture or test that
needs PostgreSQL gets a fresh one named ``loom_<purpose>_<random>``, dropped (``WITH (FORCE)``)
afterwards::

    with fresh_database("api", migrate=True) as url:   # postgresql+psycopg://…/loom_api_1a2b…
        ...

    url = require_postgres()  # the server's URL; skips (fails in CI) when there is none

SQLite needs no server. Migrating takes most of a second, so a module migrates one template
file and each test copies it::

    template = migrated_sqlite(tmp_path_factory.mktemp("db") / "loom.db")
    url = copy_sqlite(template, tmp_path)                # sqlite+aiosqlite:///…/loom.db
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.real import NO_POSTGRES, POSTGRES_URL, require


def require_postgres() -> str:
    """The server's URL; skips the test without one (fails it in CI)."""
    require(bool(POSTGRES_URL), NO_POSTGRES or "PostgreSQL not configured")
    return POSTGRES_URL


def _admin_url() -> str:
    from sqlalchemy.engine import make_url

    base = make_url(POSTGRES_URL)
    return base.set(drivername="postgresql", database="postgres").render_as_string(False)


def create_database(purpose: str) -> str:
    """A new empty database on the server; its URL (skips/fails when there is no server)."""
    import psycopg
    from sqlalchemy.engine import make_url

    require_postgres()
    name = f"loom_{purpose}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(POSTGRES_URL).set(database=name).render_as_string(False)


def drop_database(url: str) -> None:
    """Drop a database ``create_database`` made, whoever is still connected to it."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    with psycopg.connect(_admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def upgrade(url: str) -> None:
    """Run the migrations on ``url``; callable from sync code and from inside a running loop."""
    from linkloom.store import session

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, session.upgrade(url)).result()


@contextmanager
def fresh_database(purpose: str, *, migrate: bool = False) -> Iterator[str]:
    """A throwaway database for the ``with`` block (migrated to head when ``migrate``)."""
    url = create_database(purpose)
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        drop_database(url)


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def migrated_sqlite(path: Path) -> Path:
    """Create and migrate the SQLite file ``path`` (a template for ``copy_sqlite``)."""
    upgrade(sqlite_url(path))
    return path


def copy_sqlite(template: Path, directory: Path, name: str = "loom.db") -> str:
    """A copy of a migrated template in ``directory``; its URL."""
    target = directory / name
    shutil.copy(template, target)
    return sqlite_url(target)
