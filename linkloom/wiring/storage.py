"""The settings' database, and the token store of the commands that need nothing else.

``build_services`` opens its database here, and so does ``loom token … --local``
(``token_store``), so both take the settings' echo and pool size. This module imports storage
only, never the engine: the rescue command on a server's host starts in the time its settings,
SQLAlchemy and the migrations take (``tests/unit/cli/test_cli_start.py`` holds it to that).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from linkloom.config import Settings
from linkloom.store import session
from linkloom.store.tokens import SqlTokenStore


def database(settings: Settings, *, url: str = "") -> session.Database:
    """The settings' database (or the one ``url`` names), with the settings' pool and echo."""
    options = settings.database
    return session.Database(
        url or settings.database_url, echo=options.echo, pool_size=options.pool_size
    )


@asynccontextmanager
async def token_store(settings: Settings) -> AsyncIterator[SqlTokenStore]:
    """The API tokens in the settings' database, without the rest of the services: ``loom token
    … --local`` on the server's host. An embedded SQLite database is migrated first."""
    db = database(settings)
    try:
        if session.is_sqlite(settings.database_url):
            await session.upgrade(settings.database_url)
        yield SqlTokenStore(db)
    finally:
        await db.dispose()
