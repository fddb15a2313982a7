"""Scheduling commands: ``loom flow next|backfill|pause|resume`` and ``loom scheduler``.

``next``, ``backfill``, ``pause`` and ``resume`` go through the server's API (with the CLI's
server URL and token, audited like any API call). With ``--local`` they work on the database
named by this machine's settings (``LOOM_DATABASE__URL``) instead, on a host that can reach it
(it needs the server extra). ``loom flow next`` also accepts a spec file, which needs neither.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import typer

from linkloom.cli.apps import app, flow_app
from linkloom.errors import InvalidInput

# The database and the scheduler come with the server extra: imported inside the commands.
if TYPE_CHECKING:
    from linkloom.config import Settings

T = TypeVar("T")
API_MAX_FIRES = 50  # GET /flows/{id}/schedules?n= accepts at most this


def _moment(value: str, option: str) -> datetime:
    if value.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"{option} {value!r} is not a date; use ISO 8601 such as 2026-01-31 or "
            "2026-01-31T03:00+02:00 (without an offset, UTC is meant)"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _with_services(work: Callable[[Any], Awaitable[T]], settings: Settings) -> T:
    from linkloom import logs
    from linkloom.store import session
    from linkloom.wiring import build_services

    # The scheduler's log lines go to standard error, and only warnings: the command's own
    # output is what the user reads (and scripts parse).
    logs.configure(settings, level="WARNING")
    services = build_services(settings)
    try:
        if session.is_sqlite(settings.database_url):
            await session.upgrade(settings.database_url)
        return await work(services.scheduler)
    finally:
        await services.stop()


def _load_settings() -> Settings:
    from linkloom.config import load_settings

    return load_settings()


def _local(moment: datetime, zone: str) -> str:
    try:
        return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")
    except (ValueError, KeyError):
        return ""


LocalOption = typer.Option(
    False,
    "--local",
    help="Work on this machine's database (LOOM_DATABASE__URL) instead of through the API.",
)


@flow_app.command("next")
def next_fires(
    flow: str = typer.Argument(..., help="A flow id, or the path of a spec file."),
    count: int = typer.Option(5, "-n", "--count", min=1, max=1000, help="How many fire times."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    local: bool = LocalOption,
) -> None:
    """Print the next fire times of a flow's schedules (its current version, or a spec file)."""
    path = Path(flow)
    if path.is_file() or local:
        merged, flow_id = _next_from_spec(flow, path, count=count)
    else:
        merged, flow_id = _next_from_api(flow, count=count)
    if as_json:
        rows = [{"schedule_id": sid, "fire_time": t.isoformat()} for t, sid, _zone, _ in merged]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not merged:
        typer.echo(f"flow {flow_id!r} has no enabled schedule")
        return
    for t, sid, zone, described in merged:
        local_time = f"  {_local(t, zone)}" if zone else ""
        typer.echo(f"{t.isoformat()}{local_time}  {sid}  ({described})")


Fire = tuple[datetime, str, str | None, str]  # when (UTC), schedule id, its zone, description


def _next_from_spec(flow: str, path: Path, *, count: int) -> tuple[list[Fire], str]:
    import asyncio

    from linkloom.flows.spec import FlowSpec
    from linkloom.scheduler import cron

    spec: FlowSpec
    if path.is_file():
        from linkloom.flows.loading import load_flow

        spec = load_flow(path.read_bytes(), filename=str(path))
    else:

        async def read(scheduler: Any) -> FlowSpec:
            _head, current = await scheduler.current(flow)
            found: FlowSpec = current
            return found

        spec = asyncio.run(_with_services(read, _load_settings()))
    now = datetime.now(UTC)
    schedules = dict(zip(spec.schedule_ids(), spec.schedules, strict=True))
    merged = sorted(
        (t, sid, s.timezone if s.cron else None, cron.describe(s))
        for sid, s in schedules.items()
        if s.enabled
        for t in cron.next_fires(s, after=now, n=count)
    )[:count]
    return merged, spec.id


def _next_from_api(flow: str, *, count: int) -> tuple[list[Fire], str]:
    from linkloom.cli.connection import connect
    from linkloom.flows.durations import format_duration

    if count > API_MAX_FIRES:
        raise InvalidInput(
            f"--count {count}: the API gives at most {API_MAX_FIRES} fire times per schedule; "
            "ask for fewer, or use --local on the server host"
        )
    with connect() as loom:
        schedules = loom.get(f"/flows/{flow}/schedules", n=count)
    merged: list[Fire] = []
    for schedule in schedules:
        if schedule.get("cron"):
            zone = schedule.get("timezone") or "UTC"
            described = f"cron {schedule['cron']!r} in {zone}"
        else:
            zone = None
            described = f"every {format_duration(float(schedule.get('interval') or 0))}"
        for fire in schedule.get("next_fire_times") or []:
            when = datetime.fromisoformat(str(fire).replace("Z", "+00:00")).astimezone(UTC)
            merged.append((when, schedule["id"], zone, described))
    return sorted(merged)[:count], flow


@flow_app.command("backfill")
def backfill(
    flow: str = typer.Argument(..., help="The flow id."),
    start: str = typer.Option(..., "--from", help="Window start (ISO 8601; UTC if no offset)."),
    end: str = typer.Option(..., "--to", help="Window end, inclusive (ISO 8601 or 'now')."),
    schedule: str | None = typer.Option(None, "--schedule", help="Only this schedule id."),
    limit: int = typer.Option(1000, "--limit", min=1, help="Refuse windows with more fires."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the fire times; create nothing."),
    local: bool = LocalOption,
) -> None:
    """Create the runs the flow's schedules would have created between --from and --to.

    Fire times that already have a run (scheduled or backfilled) are not run again.
    """
    window = (_moment(start, "--from"), _moment(end, "--to"))
    if local:
        import asyncio

        async def work(scheduler: Any) -> Any:
            return await scheduler.backfill(
                flow,
                start=window[0],
                end=window[1],
                schedule_id=schedule,
                limit=limit,
                dry_run=dry_run,
            )

        report = asyncio.run(_with_services(work, _load_settings()))
        fires = [f"{t.isoformat()}  {sid}" for sid, t in report.fire_times]
        created, existing = len(report.created), report.existing
    else:
        from linkloom.cli.connection import connect

        body = {
            "start": window[0].isoformat(),
            "end": window[1].isoformat(),
            "schedule_id": schedule,
            "limit": limit,
            "dry_run": dry_run,
        }
        with connect() as loom:
            answer = loom.post(f"/flows/{flow}/backfill", body)
        fires = [str(t) for t in answer["fire_times"]]
        created, existing = len(answer["created"]), answer["existing"]
    for line in fires:
        typer.echo(line)
    if dry_run:
        typer.echo(f"{len(fires)} fire times (dry run: nothing created)")
    else:
        typer.echo(f"created {created} runs; {existing} fire times already had one")


@flow_app.command("pause")
def pause(flow: str = typer.Argument(..., help="The flow id."), local: bool = LocalOption) -> None:
    """Pause a flow: no schedule, webhook or event runs until it is resumed."""
    _set_paused(flow, paused=True, local=local)
    typer.echo(f"flow {flow!r} paused; resume it with 'loom flow resume {flow}'")


@flow_app.command("resume")
def resume(flow: str = typer.Argument(..., help="The flow id."), local: bool = LocalOption) -> None:
    """Resume a paused flow; fires missed meanwhile follow its catch-up policy."""
    _set_paused(flow, paused=False, local=local)
    typer.echo(f"flow {flow!r} resumed")


def _set_paused(flow: str, *, paused: bool, local: bool) -> None:
    if local:
        import asyncio

        settings = _load_settings()
        action = "pause" if paused else "resume"
        asyncio.run(_with_services(lambda s: getattr(s, action)(flow), settings))
        return
    from linkloom.cli.connection import connect

    with connect() as loom:
        loom.post(f"/flows/{flow}/{'pause' if paused else 'resume'}")


@app.command("scheduler")
def scheduler_command() -> None:
    """Run only the scheduler (any number of them: one leads, the others stand by)."""
    import asyncio

    from linkloom import logs
    from linkloom.cli.server import observe

    settings = _load_settings()
    logs.configure(settings)
    observe(settings)
    asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    import asyncio

    from linkloom.store import session
    from linkloom.wiring import build_services

    sqlite = session.is_sqlite(settings.database_url)
    await session.require_current(settings.database_url, migrate=sqlite)
    services = build_services(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        scheduler = services.scheduler
        await scheduler.start()
        services.start_retention()  # old runs are purged where schedules fire
        await services.beat(role="scheduler")  # /readyz on the API shows scheduler_processes
        await stop.wait()
        await scheduler.stop()
    finally:
        await services.stop()
