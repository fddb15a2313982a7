"""``loom db upgrade`` and ``loom db current``: database migrations."""

from __future__ import annotations

import typer

from linkloom.cli.apps import db_app


@db_app.command("upgrade")
def upgrade(
    revision: str = typer.Argument("head", help="Target revision (default: the latest)."),
    url: str = typer.Option("", "--url", help="Database URL (default: LOOM_DATABASE__URL)."),
) -> None:
    """Apply database migrations up to REVISION."""
    import asyncio

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
    import asyncio

    from linkloom.config import load_settings
    from linkloom.store import session

    target = url or load_settings().database_url
    rev = asyncio.run(session.current_revision(target))
    head = session.head_revision()
    state = "up to date" if rev == head else "needs 'loom db upgrade'"
    typer.echo(f"current: {rev or 'none'}  head: {head}  ({state})")


@db_app.command("purge")
def purge(
    days: float = typer.Option(
        0.0,
        "--days",
        help="Delete finished runs older than this many days (default: LOOM_RETENTION__RUNS_DAYS "
        "and LOOM_RETENTION__FLOWS).",
        min=0.0,
    ),
    url: str = typer.Option("", "--url", help="Database URL (default: LOOM_DATABASE__URL)."),
) -> None:
    """Delete old finished runs now, in small batches (what the scheduler does every
    retention.interval_seconds). Runs open proposals replay are kept."""
    import asyncio

    from linkloom import wiring
    from linkloom.config import load_settings
    from linkloom.errors import InvalidInput

    settings = load_settings()
    if days:
        settings = settings.model_copy(
            update={"retention": settings.retention.model_copy(update={"runs_days": days})}
        )
    if not settings.retention.enabled:
        raise InvalidInput(
            "no retention configured: pass --days N or set LOOM_RETENTION__RUNS_DAYS"
        )

    async def run() -> str:
        report = await wiring.purge_runs(settings, database_url=url)
        flows = ", ".join(f"{f}: {n}" for f, n in sorted(report.by_flow.items()))
        return (
            f"deleted {report.runs} run(s) in {report.batches} batch(es)"
            + (f" ({flows})" if flows else "")
            + f"; kept {report.kept} old run(s) that proposals replay"
            + ("; another process is purging, it finishes the rest" if report.interrupted else "")
        )

    typer.echo(asyncio.run(run()))
