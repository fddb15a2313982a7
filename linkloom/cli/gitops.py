"""``loom sync``, ``loom flow history``, ``loom flow show --version`` and ``loom flow rollback``:
flow versions as promoted from the flows repo."""

from __future__ import annotations

from typing import Annotated

import typer

from linkloom.cli import output as out
from linkloom.cli.apps import app, flow_app
from linkloom.cli.connection import connect
from linkloom.cli.output import OutputFormat, OutputOption

FlowArg = Annotated[str, typer.Argument(help="The flow id.")]


@app.command("sync")
def sync(output: OutputOption = OutputFormat.table) -> None:
    """Import the flows repo's main branch into flow versions (admin)."""
    with connect() as loom:
        data = loom.post("/repo/sync")
    if output is not OutputFormat.table:
        out.emit(data, output=output)
        return
    typer.echo(f"main at {data['commit'][:12]}")
    for flow_id, result in sorted(data["flows"].items()):
        if "error" in result:
            typer.echo(f"  {flow_id}: NOT imported: {result['error']}")
        else:
            state = "new version" if result["created"] else "unchanged"
            typer.echo(f"  {flow_id}: version {result['version']} ({state})")


@flow_app.command("history")
def history(flow: FlowArg, output: OutputOption = OutputFormat.table) -> None:
    """The flow's versions, newest first, with how each came to be and its git commit."""
    with connect() as loom:
        data = loom.get(f"/flows/{flow}/history")
    out.emit(
        data,
        columns=[
            ("VERSION", lambda r: f"{r['version']}{' *' if r['current'] else ''}"),
            ("SOURCE", "source"),
            ("BY", "created_by"),
            ("CREATED", lambda r: out.when(r.get("created_at"))),
            ("COMMIT", lambda r: (r.get("git_commit") or "")[:12]),
            ("SUBJECT", "commit_subject"),
        ],
        output=output,
        title=f"{flow}: versions (* current)",
    )


@flow_app.command("show")
def show(
    flow: FlowArg,
    version: Annotated[int | None, typer.Option(help="The version (default: current).")] = None,
    output: OutputOption = OutputFormat.yaml,
) -> None:
    """Print a version's spec (YAML by default)."""
    with connect() as loom:
        if version is None:
            version = loom.get(f"/flows/{flow}")["version"]
        data = loom.get(f"/flows/{flow}/versions/{version}")
    if output is OutputFormat.yaml:
        import yaml

        typer.echo(f"# {flow} version {data['version']} ({data.get('source')})")
        typer.echo(yaml.safe_dump(data["spec"], sort_keys=False, allow_unicode=True), nl=False)
    else:
        out.emit(data, output=OutputFormat.json)


@flow_app.command("rollback")
def rollback(
    flow: FlowArg,
    to: Annotated[int, typer.Option("--to", help="The earlier version to promote again.")],
) -> None:
    """Promote an earlier version again: a commit on main and a new version (reviewer)."""
    with connect() as loom:
        data = loom.post(f"/flows/{flow}/versions/{to}/promote")
    typer.echo(
        f"{flow}: version {to} restored as version {data['versions'].get(flow)} "
        f"(commit {data['commit'][:12]})"
    )
