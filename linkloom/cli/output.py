"""``--output table|json|yaml`` for every listing command: one helper, one option.

    @run_app.command("list")
    def list_runs(output: OutputOption = OutputFormat.table) -> None:
        emit(rows, columns=RUN_COLUMNS, output=output, title="Runs")

``json``/``yaml`` print the API's data unchanged (scripts parse it); ``table`` prints the chosen
columns with Rich.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

# Rich and PyYAML are imported when something is printed with them, not when ``loom`` starts.
if TYPE_CHECKING:
    from rich.console import Console


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="table, json or yaml.", case_sensitive=False)
]

Column = tuple[str, str | Callable[[dict[str, Any]], Any]]

STATUS_STYLES = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
    "PENDING": "dim",
    "QUEUED": "dim",
    "SKIPPED": "dim",
    "RETRYING": "magenta",
}


def console() -> Console:
    """A console on the current stdout (created per call, so test runners capture it)."""
    from rich.console import Console

    probe = Console()
    # Piped output is read by people too: do not squeeze ids into 80 columns.
    width = None if probe.is_terminal else 200
    return Console(highlight=False, soft_wrap=False, width=width)


def emit(
    data: Any,
    *,
    columns: Sequence[Column] = (),
    output: OutputFormat = OutputFormat.table,
    title: str | None = None,
    empty: str = "nothing to show",
) -> None:
    """Print ``data`` (a list of objects, or one object) in the chosen format."""
    if output is OutputFormat.json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    if output is OutputFormat.yaml:
        import yaml

        typer.echo(yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True), nl=False)
        return
    from rich.table import Table

    rows = data if isinstance(data, list) else [data]
    out = console()
    if not rows:
        out.print(f"[dim]{empty}[/dim]")
        return
    table = Table(title=title, title_justify="left", header_style="bold")
    for header, _ in columns:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(cell(row, getter) for _, getter in columns))
    out.print(table)


def cell(row: dict[str, Any], getter: str | Callable[[dict[str, Any]], Any]) -> str:
    value = getter(row) if callable(getter) else row.get(getter)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    text = str(value)
    if isinstance(getter, str) and getter == "status" and text in STATUS_STYLES:
        return f"[{STATUS_STYLES[text]}]{text}[/]"
    return text


def when(value: Any) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS`` (UTC), or ''."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def when_in(value: Any, zone: str | None) -> str:
    """An ISO time in ``zone`` and in UTC: ``2026-12-08 03:00 EET (01:00 UTC)``; UTC alone when
    the zone is UTC, missing or unknown."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    utc = moment.astimezone(UTC)
    if zone and zone.upper() != "UTC":
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            local = moment.astimezone(ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            local = None
        if local is not None:
            day = "" if local.date() == utc.date() else f"{utc:%Y-%m-%d} "
            return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({day}{utc:%H:%M} UTC)"
    return f"{utc:%Y-%m-%d %H:%M} UTC"


def duration(row: dict[str, Any]) -> str:
    start, end = row.get("started_at"), row.get("finished_at")
    if not start or not end:
        return ""
    try:
        seconds = (
            datetime.fromisoformat(str(end).replace("Z", "+00:00"))
            - datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        ).total_seconds()
    except ValueError:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _plain(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))
