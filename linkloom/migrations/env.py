"""Alembic environment: one migration tree for SQLite and PostgreSQL.

The URL comes from (first match) a connection passed in ``config.attributes["connection"]``
(``linkloom.store.session.upgrade``), ``-x url=...``, the config's ``sqlalchemy.url``, or the
settings (``LOOM_DATABASE__URL``). Migrations run on the async engine through ``run_sync``.
"""

from __future__ import annotations

import asyncio

from alembic import context

from linkloom.store import tables
from linkloom.store.session import create_engine

config = context.config
target_metadata = tables.metadata


def _url() -> str:
    x_args = context.get_x_argument(as_dictionary=True)
    if x_args.get("url"):
        return x_args["url"]
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from linkloom.config import load_settings

    return load_settings().database_url


def _configure(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things
        compare_type=True,
    )


def _run_sync(connection) -> None:  # type: ignore[no-untyped-def]
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_url())
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run_sync)
            await conn.commit()
    finally:
        await engine.dispose()


def run_offline() -> None:
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif config.attributes.get("connection") is not None:
    _run_sync(config.attributes["connection"])
else:
    asyncio.run(_run_async())
