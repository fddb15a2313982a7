"""``loom run`` (alias ``loom execution``): list, describe, logs [--follow], cancel, retry;
and the overviews ``loom status`` and ``loom watch``."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from linkloom.cli import output as out
from linkloom.cli.apps import app, run_app
from linkloom.cli.connection import Connection, connect
from linkloom.cli.flows import (
    STEP_COLUMNS,
    TERMINAL,
    failed_attempts,
    finish,
    follow_run,
    print_failed_attempts,
)
from linkloom.cli.output import OutputFormat, OutputOption

if TYPE_CHECKING:
    from rich.console import Group

RUN_COLUMNS: list[out.Column] = [
    ("RUN", "id"),
    ("FLOW", "flow_id"),
    ("V", "flow_version"),
    ("STATUS", "status"),
    ("TRIGGER", "trigger"),
    ("CREATED", lambda r: out.when(r.get("created_at"))),
    ("DURATION", out.duration),
]


@run_app.command("list")
def list_runs(
    flow: Annotated[
        str | None, typer.Option("--flow", "--workflow", "-f", help="Only this flow's runs.")
    ] = None,
    status: Annotated[str | None, typer.Option(help="PENDING, RUNNING, SUCCEEDED, …")] = None,
    trigger: Annotated[str | None, typer.Option(help="manual, schedule, webhook, …")] = None,
    since: Annotated[str | None, typer.Option(help="Created at or after (ISO 8601).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 20,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List runs, newest first."""
    with connect() as loom:
        runs = list(
            loom.pages(
                "/runs",
                limit=limit,
                flow=flow,
                status=status.upper() if status else None,
                trigger=trigger,
                since=since,
            )
        )
    out.emit(runs, columns=RUN_COLUMNS, output=output, title="Runs", empty="no runs")


@run_app.command("describe")
def describe(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show a run: status, inputs, outputs, and each step with its attempts and error."""
    with connect() as loom:
        run = loom.get(f"/runs/{run_id}")
        failures = failed_attempts(loom, run) if output is OutputFormat.table else []
    if output is not OutputFormat.table:
        out.emit(run, output=output)
        return
    console = out.console()
    console.print(
        f"[bold]run {run['id']}[/bold]  {run['flow_id']} v{run['flow_version']}  "
        f"{out.cell(run, 'status')}  ({run['trigger']}"
        + (f" by {run['created_by']}" if run.get("created_by") else "")
        + ")"
    )
    console.print(f"inputs:  {json.dumps(run.get('inputs') or {})}")
    if run.get("outputs") is not None:
        console.print(f"outputs: {json.dumps(run['outputs'])}")
    if run.get("error"):
        console.print(f"[red]error:[/red] {run['error'].get('message', run['error'])}")
    out.emit(run.get("steps", []), columns=STEP_COLUMNS, title="Steps")
    print_failed_attempts(failures)


@run_app.command("logs")
def logs(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    step: Annotated[str | None, typer.Option(help="Only this step's lines.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")
    ] = False,
    events: Annotated[bool, typer.Option(help="Also print engine events.")] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Print a run's log lines (with --follow, stream them live until the run ends)."""
    with connect() as loom:
        if follow:
            _follow(loom, run_id, step=step, events=events, output=output)
            return
        path = f"/runs/{run_id}/events" if events else f"/runs/{run_id}/logs"
        lines = loom.get(path, **({} if events else {"step": step}))
    if events and step:
        lines = [e for e in lines if e.get("step_id") in (None, step)]
    if output is not OutputFormat.table:
        out.emit(lines, output=output)
        return
    if not lines:  # a note for the reader; standard output stays empty for scripts
        what = "events" if events else "log lines"
        typer.echo(f"no {what} for run {run_id}" + (f" (step {step})" if step else ""), err=True)
    for event in lines:
        _print_event(event)


def _print_event(event: dict[str, Any]) -> None:
    stamp = out.when(event.get("at"))[11:]
    where = event.get("step_id") or "-"
    if event.get("type") == "log":
        typer.echo(f"{stamp} {where} | {event.get('message', '')}")
    else:
        typer.echo(f"{stamp} {where} * {event.get('type')}: {event.get('message', '')}")


def _follow(
    loom: Connection, run_id: str, *, step: str | None, events: bool, output: OutputFormat
) -> None:
    """Read the run's SSE stream; reconnect with Last-Event-ID if the connection drops."""
    import httpx

    last = "0"
    for _attempt in range(20):
        try:
            with loom.http.stream(
                "GET", f"/runs/{run_id}/stream", headers={"Last-Event-ID": last}, timeout=None
            ) as response:
                if not response.is_success:
                    response.read()
                    from linkloom.sdk.errors import LinkloomAPIError

                    raise LinkloomAPIError.from_response(response)
                kind = ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("id:"):
                        last = line[3:].strip()
                    elif line.startswith("data:") and kind not in ("", "ping"):
                        data = json.loads(line[5:].strip())
                        if kind == "end":
                            return
                        if step and data.get("step_id") not in (None, step):
                            continue
                        if data.get("type") != "log" and not events:
                            continue
                        if output is OutputFormat.table:
                            _print_event(data)
                        else:
                            typer.echo(json.dumps(data))
                return
        except httpx.TransportError:
            time.sleep(1.0)


@run_app.command("cancel")
def cancel(run_id: Annotated[str, typer.Argument(help="The run id.")]) -> None:
    """Cancel a run: its unfinished steps become CANCELLED."""
    with connect() as loom:
        run = loom.post(f"/runs/{run_id}/cancel")
    typer.echo(f"run {run['id']}: {run['status']}")


@run_app.command("retry")
def retry(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    wait: Annotated[bool, typer.Option(help="Wait for it to end; exit 1 if it fails.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600.0,
) -> None:
    """Run a failed or cancelled run again from its failed steps."""
    with connect() as loom:
        run = loom.post(f"/runs/{run_id}/retry")
        if not wait:
            typer.echo(f"run {run['id']}: {run['status']} (retrying)")
            return
        final = follow_run(loom, run_id, timeout=timeout, live=True)
        failures = failed_attempts(loom, final)
    finish(final, output=OutputFormat.table, failures=failures)


def _overview(loom: Connection) -> list[dict[str, Any]]:
    """Per flow: version, paused, last run, and run counts by status over the last 24 hours."""
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    recent = list(loom.pages("/runs", limit=2000, since=since))
    by_flow: dict[str, Counter[str]] = {}
    last: dict[str, dict[str, Any]] = {}
    for run in recent:
        by_flow.setdefault(run["flow_id"], Counter())[run["status"]] += 1
        last.setdefault(run["flow_id"], run)
    rows = []
    for flow in loom.pages("/flows"):
        counts = by_flow.get(flow["id"], Counter())
        latest = last.get(flow["id"]) or {}
        rows.append(
            {
                "flow": flow["id"],
                "version": flow["version"],
                "paused": flow.get("paused", False),
                "last_run": latest.get("id"),
                "last_status": latest.get("status"),
                "last_at": latest.get("created_at"),
                "running": counts["RUNNING"] + counts["PENDING"],
                "succeeded_24h": counts["SUCCEEDED"],
                "failed_24h": counts["FAILED"],
            }
        )
    return rows


STATUS_COLUMNS: list[out.Column] = [
    ("FLOW", "flow"),
    ("V", "version"),
    ("PAUSED", "paused"),
    ("LAST RUN", "last_run"),
    ("LAST STATUS", lambda r: out.cell({"status": r.get("last_status")}, "status")),
    ("AT", lambda r: out.when(r.get("last_at"))),
    ("ACTIVE", "running"),
    ("OK 24H", "succeeded_24h"),
    ("FAILED 24H", "failed_24h"),
]


@app.command("status")
def status(output: OutputOption = OutputFormat.table) -> None:
    """A quick overview of every flow: last run, active runs, failures in the last 24 hours."""
    with connect() as loom:
        rows = _overview(loom)
        me = loom.get("/me")
    if output is OutputFormat.table:
        out.console().print(f"[dim]{loom.base_url} as {me['name']} ({me['role']})[/dim]")
    out.emit(rows, columns=STATUS_COLUMNS, output=output, title="Flows", empty="no flows yet")


@app.command("watch")
def watch(
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
    count: Annotated[int, typer.Option(help="Stop after this many refreshes (0: never).")] = 0,
) -> None:
    """A live view of flows and recent runs, refreshed until Ctrl-C. Without a terminal
    (piped, in CI) it prints the view once and exits."""
    from rich.live import Live

    console = out.console()
    if not console.is_terminal:
        with connect() as loom:
            console.print(_watch_view(loom, live=False))
        return
    done = 0
    with connect() as loom, Live(console=console, auto_refresh=False) as view:
        try:
            while True:
                view.update(_watch_view(loom), refresh=True)
                done += 1
                if count and done >= count:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            return


def _watch_view(loom: Connection, *, live: bool = True) -> Group:
    from rich.console import Group
    from rich.table import Table

    flows = Table(title="Flows", title_justify="left")
    for header, _ in STATUS_COLUMNS:
        flows.add_column(header)
    for row in _overview(loom):
        flows.add_row(*(out.cell(row, getter) for _, getter in STATUS_COLUMNS))
    runs = Table(title="Recent runs", title_justify="left")
    for header, _ in RUN_COLUMNS:
        runs.add_column(header)
    for run in loom.get("/runs", limit=15)["items"]:
        runs.add_row(*(out.cell(run, getter) for _, getter in RUN_COLUMNS))
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    footer = f"{loom.base_url} · {stamp} UTC" + (" · Ctrl-C to stop" if live else "")
    return Group(flows, runs, f"[dim]{footer}[/dim]")


def is_terminal(status: str) -> bool:
    return status in TERMINAL
