"""``loom flow`` (alias ``loom workflow``): list, describe, apply (alias create), delete, trigger.

Scheduling commands (``next``, ``backfill``, ``pause``, ``resume``) live in ``cli/schedules.py``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from linkloom.cli import output as out
from linkloom.cli.apps import flow_app
from linkloom.cli.connection import Connection, connect
from linkloom.cli.output import OutputFormat, OutputOption
from linkloom.errors import InvalidInput

if TYPE_CHECKING:
    from rich.table import Table

    from linkloom.sdk.errors import LinkloomAPIError

FLOW_COLUMNS: list[out.Column] = [
    ("FLOW", "id"),
    ("VERSION", "version"),
    ("NAME", "name"),
    ("PAUSED", "paused"),
    ("TAGS", lambda r: ", ".join(r.get("tags") or [])),
    ("UPDATED", lambda r: out.when(r.get("updated_at"))),
]
STEP_COLUMNS: list[out.Column] = [
    ("STEP", lambda r: r["step_id"] + (f"[{r['index']}]" if r.get("index") is not None else "")),
    ("STATUS", "status"),
    ("ATTEMPT", "attempt"),
    ("DURATION", out.duration),
    ("ERROR", lambda r: (r.get("error") or {}).get("message")),
]
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
WAIT_TIMEOUT_EXIT = 124  # like timeout(1): still running when --timeout ran out


@flow_app.command("list")
def list_flows(
    tag: Annotated[str | None, typer.Option(help="Only flows with this tag.")] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List flows with their current version."""
    with connect() as loom:
        flows = list(loom.pages("/flows", tag=tag))
    out.emit(flows, columns=FLOW_COLUMNS, output=output, title="Flows", empty="no flows yet")


@flow_app.command("describe")
def describe(
    flow: Annotated[str, typer.Argument(help="The flow id.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show a flow: its current version, steps, schedules, triggers and versions."""
    with connect() as loom:
        data = loom.get(f"/flows/{flow}")
        data["versions"] = loom.get(f"/flows/{flow}/versions")
        data["schedules"] = loom.get(f"/flows/{flow}/schedules", n=3)
    if output is not OutputFormat.table:
        out.emit(data, output=output)
        return
    console = out.console()
    spec = data["spec"]
    console.print(f"[bold]{data['id']}[/bold]  version {data['version']}  {data.get('name') or ''}")
    if spec.get("description"):
        console.print(spec["description"])
    if data.get("paused"):
        console.print("[yellow]paused[/yellow]")
    inputs = spec.get("inputs") or {}
    if inputs:
        console.print(
            "inputs: " + ", ".join(f"{k} ({v.get('type', 'any')})" for k, v in inputs.items())
        )
    steps = [
        {"id": s["id"], "type": s["type"], "after": ", ".join(s.get("depends_on") or [])}
        for s in spec.get("steps", [])
    ]
    out.emit(steps, columns=[("STEP", "id"), ("TYPE", "type"), ("AFTER", "after")], title="Steps")
    if data["schedules"]:
        out.emit(
            data["schedules"],
            columns=[
                ("SCHEDULE", "id"),
                ("CRON", "cron"),
                ("EVERY", "interval"),
                ("TZ", "timezone"),
                (
                    "NEXT FIRE",
                    lambda r: out.when_in(
                        (r.get("next_fire_times") or [None])[0], r.get("timezone")
                    ),
                ),
            ],
            title="Schedules",
        )
    out.emit(
        data["versions"][-5:],
        columns=[
            ("VERSION", "version"),
            ("SOURCE", "source"),
            ("BY", "created_by"),
            ("CREATED", lambda r: out.when(r.get("created_at"))),
        ],
        title="Recent versions",
    )


@flow_app.command("apply")
def apply(
    files: Annotated[list[Path], typer.Argument(help="Spec files (YAML or JSON).", exists=True)],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Apply spec files directly: each becomes its flow's new version (admin only)."""
    from linkloom.sdk.client import spec_payload
    from linkloom.sdk.errors import LinkloomAPIError

    results = []
    with connect() as loom:
        for path in files:
            flow_id, spec = spec_payload(path)
            try:
                version = loom.call("PUT", f"/flows/{flow_id}", json={"spec": spec})
            except LinkloomAPIError as exc:
                _print_problems(path, exc)
                raise
            results.append(version)
    if output is not OutputFormat.table:
        out.emit(results, output=output)
        return
    for version in results:
        state = "created" if version.get("created") else "unchanged"
        typer.echo(f"{version['flow_id']}: version {version['version']} ({state})")


flow_app.command("create", help="Alias of 'apply'.")(apply)


def _print_problems(path: Path, exc: LinkloomAPIError) -> None:
    """A rejected spec: each problem as ``file:line:col: message`` (like 'loom validate')."""
    for problem in exc.problem.get("problems") or []:
        if isinstance(problem, dict):
            where = f"{path}:{problem.get('line', 0)}:{problem.get('column', 0)}"
            hint = f" ({problem['hint']})" if problem.get("hint") else ""
            typer.echo(f"{where}: {problem.get('message')}{hint}", err=True)


@flow_app.command("delete")
def delete(
    flow: Annotated[str, typer.Argument(help="The flow id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete a flow (admin only). Its runs and versions are kept."""
    if not yes:
        typer.confirm(f"Delete flow {flow!r}?", abort=True)
    with connect() as loom:
        loom.call("DELETE", f"/flows/{flow}")
    typer.echo(f"{flow}: deleted")


@flow_app.command("trigger")
def trigger(
    flow: Annotated[str, typer.Argument(help="The flow id.")],
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="An input as key=value (repeatable)."),
    ] = None,
    inputs_file: Annotated[
        Path | None, typer.Option(help="A YAML or JSON file of inputs.", exists=True)
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Wait for the run to end; exit 1 if it fails.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600.0,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Start a run; with --wait, show its progress and exit non-zero unless it succeeds."""
    values = parse_inputs(inputs or [], inputs_file)
    with connect() as loom:
        run = loom.post(f"/flows/{flow}/runs", {"inputs": values})
        if not wait:
            if output is OutputFormat.table:
                typer.echo(f"run {run['id']} started ({run['status']})")
            else:
                out.emit(run, output=output)
            return
        final = follow_run(loom, run["id"], timeout=timeout, live=output is OutputFormat.table)
        failures = failed_attempts(loom, final) if output is OutputFormat.table else []
    finish(final, output=output, failures=failures)


def parse_inputs(pairs: list[str], path: Path | None) -> dict[str, Any]:
    """``--inputs-file`` first, then each ``key=value`` (values stay text; the server coerces
    them to the declared types)."""
    values: dict[str, Any] = {}
    if path is not None:
        import yaml

        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise InvalidInput(f"{path} must hold a mapping of input names to values")
        values.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--input {pair!r} must look like key=value")
        values[key.strip()] = value
    return values


def follow_run(loom: Connection, run_id: str, *, timeout: float, live: bool) -> dict[str, Any]:
    """Poll the run until it ends, drawing its steps while it runs."""
    from rich.live import Live

    deadline = time.monotonic() + timeout
    run: dict[str, Any] = loom.get(f"/runs/{run_id}")
    with Live(_progress(run), console=out.console(), transient=True, auto_refresh=False) as view:
        while run["status"] not in TERMINAL:
            if time.monotonic() > deadline:
                typer.echo(f"run {run_id} is still {run['status']} after {timeout:g}s", err=True)
                raise typer.Exit(WAIT_TIMEOUT_EXIT)
            time.sleep(0.25)
            run = loom.get(f"/runs/{run_id}")
            if live:
                view.update(_progress(run), refresh=True)
    return run


def _progress(run: dict[str, Any]) -> Table:
    from rich.table import Table

    table = Table(
        title=f"run {run['id']} of {run['flow_id']}: {run['status']}", title_justify="left"
    )
    table.add_column("STEP")
    table.add_column("STATUS")
    for step in run.get("steps", []):
        table.add_row(step["step_id"], out.cell(step, "status"))
    return table


def failed_attempts(loom: Connection, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's attempts that ended in an error (asked for only when a step failed or retried)."""
    steps = run.get("steps") or []
    if not any(s.get("status") == "FAILED" or (s.get("attempt") or 0) > 1 for s in steps):
        return []
    attempts: list[dict[str, Any]] = loom.get(f"/runs/{run['id']}/attempts")
    return [a for a in attempts if a.get("error") and a.get("status") != "SUCCEEDED"]


def print_failed_attempts(attempts: list[dict[str, Any]]) -> None:
    """One line per failed attempt: which step, which attempt, why."""
    if not attempts:
        return
    console = out.console()
    console.print("[bold]Failed attempts[/bold]")
    for attempt in attempts:
        error = attempt.get("error") or {}
        index = attempt.get("index")
        step = attempt["step_id"] + (f"[{index}]" if index is not None else "")
        took = out.duration(attempt)
        kind = f"{error['kind']}: " if error.get("kind") else ""
        console.print(
            f"  {step} attempt {attempt.get('number')}"
            + (f" ({took})" if took else "")
            + f": {kind}{error.get('message', '')}",
            markup=False,
        )


def finish(
    run: dict[str, Any], *, output: OutputFormat, failures: Sequence[dict[str, Any]] = ()
) -> None:
    """Print the ended run (steps, why each failed attempt failed, their logs, the error) and
    exit 0 only if it succeeded."""
    if output is not OutputFormat.table:
        out.emit(run, output=output)
    else:
        console = out.console()
        out.emit(run.get("steps", []), columns=STEP_COLUMNS, title=f"run {run['id']}")
        print_failed_attempts(list(failures))
        for step in run.get("steps", []):
            for line in step.get("logs") or []:
                console.print(f"[dim]{step['step_id']}[/dim] | {line}", markup=True)
        status = out.cell(run, "status")
        console.print(f"run {run['id']}: {status}")
        if run.get("error"):
            console.print(f"[red]error:[/red] {(run['error'] or {}).get('message', run['error'])}")
    if run["status"] != "SUCCEEDED":
        raise typer.Exit(1)
