"""``loom flows remote status|fetch``: the team's git remote the flows repo mirrors."""

from __future__ import annotations

from typing import Any

import typer

from linkloom.cli import output as out
from linkloom.cli.apps import remote_app
from linkloom.cli.connection import connect
from linkloom.cli.output import OutputFormat, OutputOption

STATE_STYLES = {"in-sync": "green", "pending": "cyan", "behind": "yellow", "diverged": "red"}


def print_status(data: dict[str, Any]) -> None:
    console = out.console()
    state = data["state"]
    console.print(
        f"remote      {data['remote']}  (branch {data['branch']})", markup=False, highlight=False
    )
    console.print(f"state       [{STATE_STYLES.get(state, 'white')}]{state}[/]")
    console.print(f"production  {(data.get('production_commit') or '-')[:12]}")
    console.print(f"remote head {(data.get('remote_commit') or '-')[:12]}")
    console.print(f"last fetch  {out.when(data.get('last_fetch_at')) or 'never'}")
    if data.get("last_error"):
        console.print(f"[red]error[/red]       {data['last_error']}", highlight=False)
    refused = data.get("refused")
    if refused:
        console.print(
            f"[red]refused[/red]     {refused['commit'][:12]} ({refused['kind']}): "
            f"{refused['reason']}",
            highlight=False,
        )


@remote_app.command("status")
def status(output: OutputOption = OutputFormat.table) -> None:
    """The remote, the last fetch, production's commit and any drift from the remote."""
    with connect() as loom:
        data = loom.get("/repo/remote")
    if output is OutputFormat.table:
        print_status(data)
    else:
        out.emit(data, output=output)


@remote_app.command("fetch")
def fetch(output: OutputOption = OutputFormat.table) -> None:
    """Fetch the remote now and make its new commits production (admin)."""
    with connect() as loom:
        data = loom.post("/repo/remote/fetch")
    if output is not OutputFormat.table:
        out.emit(data, output=output)
        return
    for item in data["imported"]:
        kind = "merge of proposal " + item["proposal_id"] if item["reviewed"] else "unreviewed push"
        versions = item["versions"]
        typer.echo(f"imported {item['commit'][:12]} ({kind} by {item['actor']}): {versions}")
    if not data["imported"]:
        typer.echo("nothing new")
    print_status(data["status"])
