"""``loom db upgrade``, ``loom db current`` and ``loom db purge``: migrations, retention."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from linkloom.cli.apps import db_app

if TYPE_CHECKING:
    from linkloom.store.retention import PurgeReport


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
    days: float | None = typer.Option(
        None,
        "--days",
        help="Delete finished runs older than this many days, for every flow (more than 0; "
        "default: LOOM_RETENTION__RUNS_DAYS and LOOM_RETENTION__FLOWS).",
        show_default=False,
    ),
    url: str = typer.Option("", "--url", help="Database URL (default: LOOM_DATABASE__URL)."),
) -> None:
    """Delete old finished runs now, in small batches (what the scheduler does every
    retention.interval_seconds). Kept whatever their age: the cases open proposals replay and
    each flow's newest successful runs (LOOM_ENGINE__RECENT_FIXTURE_RUNS)."""
    import asyncio
    import math

    from linkloom import logs, wiring
    from linkloom.config import load_settings
    from linkloom.errors import InvalidInput

    if days is not None and not 0 < days < math.inf:  # also NaN
        raise InvalidInput(
            f"--days must be a number of days more than 0, got {days:g} "
            "(to keep every run, do not purge)"
        )
    settings = load_settings()
    if days is not None:
        settings = settings.model_copy(
            update={"retention": settings.retention.model_copy(update={"runs_days": days})}
        )
    if not settings.retention.enabled:
        raise InvalidInput(
            "no retention configured: pass --days N, or set LOOM_RETENTION__RUNS_DAYS (every "
            "flow) or LOOM_RETENTION__FLOWS (per flow, JSON: '{\"noisy-poller\": 2}')"
        )

    # Log lines go to standard error, and only warnings: the summary below says what the
    # purge did, and standard output stays that one line.
    logs.configure(settings, level="WARNING")

    async def run() -> str:
        report = await wiring.purge_runs(settings, database_url=url)
        return purge_summary(report)

    typer.echo(asyncio.run(run()))


def purge_summary(report: PurgeReport) -> str:
    """One line: what a purge deleted, what it kept and why."""
    flows = ", ".join(f"{f}: {n}" for f, n in sorted(report.by_flow.items()))
    reasons = [
        f"{report.kept_replayed} case(s) open proposals replay" if report.kept_replayed else "",
        f"{report.kept_newest} among each flow's newest successful runs"
        if report.kept_newest
        else "",
    ]
    return (
        f"deleted {report.runs} run(s) in {report.batches} batch(es)"
        + (f" ({flows})" if flows else "")
        + f"; kept {report.kept} old run(s)"
        + (": " + ", ".join(r for r in reasons if r) if report.kept else "")
        + ("; another process is purging, it finishes the rest" if report.interrupted else "")
    )
