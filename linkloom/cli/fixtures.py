"""``loom fixtures``: export a production run as a fixture case; check fixtures for drift."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from linkloom.cli import output as out
from linkloom.cli.apps import fixtures_app
from linkloom.cli.connection import connect
from linkloom.cli.output import OutputFormat, OutputOption
from linkloom.errors import InvalidInput


@fixtures_app.command("export")
def export(
    run_id: Annotated[str, typer.Argument(help="A finished production run.")],
    name: Annotated[str | None, typer.Option(help="Case name (default: run-<id>).")] = None,
    to: Annotated[
        Path | None,
        typer.Option("--to", help="A flows repo checkout: writes flows/<id>/fixtures/<name>.yaml."),
    ] = None,
) -> None:
    """Write a run (inputs, scrubbed exchanges, results) as a fixture case: stdout or --to."""
    with connect() as loom:
        data = loom.get(f"/runs/{run_id}/fixture", name=name)
    if to is None:
        typer.echo(data["yaml"], nl=False)
        return
    path = to / data["path"]
    if not path.resolve().is_relative_to(to.resolve()):  # the server named a path outside
        raise InvalidInput(f"refusing to write {data['path']!r}: it is outside {to}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data["yaml"])
    typer.echo(f"wrote {path}")


@fixtures_app.command("check")
def check(
    flow: Annotated[str, typer.Argument(help="The flow id.")],
    runs: Annotated[int, typer.Option(help="Recent runs to compare with.")] = 20,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Report fixtures whose recordings no longer match what production sees (exit 1 if any)."""
    with connect() as loom:
        data = loom.get(f"/flows/{flow}/fixtures/drift", runs=runs)
    if output is not OutputFormat.table:
        out.emit(data, output=output)
    else:
        console = out.console()
        if not data["cases"]:
            console.print(f"{flow}: no fixtures in the flows repo")
        for case in data["cases"]:
            state = "[green]ok[/green]" if case["ok"] else "[red]drifted[/red]"
            console.print(f"{case['case']}: {state} ({case['checked']} request(s) checked)")
            for d in case["drifted"]:
                console.print(
                    f"  {d['method']} {d['url']}: recorded {d['recorded_status']}, "
                    f"production now {d['production_status']}",
                    markup=False,
                )
            for unseen in case["unseen"]:
                console.print(f"  {unseen}: production no longer makes this call", markup=False)
    if not data["ok"]:
        raise typer.Exit(1)
