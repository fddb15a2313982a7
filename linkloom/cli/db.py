"""``loom db upgrade`` and ``loom db current``: database migrations."""

from __future__ import annotations

import asyncio

import typer

from linkloom.cli.apps import db_app


@db_app.command("upgrade")
def upgrade(
    revision: str = typer.Argument("head", help="Target revision (default: the latest)."),
    url: str = typer.Option("", "--url", help="Database URL (default: LOOM_DATABASE__URL)."),
) -> None:
    """Apply database migrations up to REVISION."""
    from linkloom.config import load_settings
    from linkloom.store import session

    target = url or load_settings().database_url
    asyncio.run(session.upgrade(target, revision))
    current = asyncio.run(session.current_revision(target))
    typer.echo(f"database at revision {current}")


@db_app.command("current")
def current(
    url: str = typer.Option("", "--url", help="Database URL (default: LOOM_DATABASE__URL)."),
) -> None:
    """Show the database's migration revision and the latest one available."""
    from linkloom.config import load_settings
    from linkloom.store import session

    target = url or load_settings().database_url
    rev = asyncio.run(session.current_revision(target))
    head = session.head_revision()
    state = "up to date" if rev == head else "needs 'loom db upgrade'"
    typer.echo(f"current: {rev or 'none'}  head: {head}  ({state})")
