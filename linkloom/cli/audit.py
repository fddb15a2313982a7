"""``loom audit`` and ``loom deadletter list|redrive``: oversight commands."""

from __future__ import annotations

from typing import Annotated

import typer

from linkloom.cli import output as out
from linkloom.cli.apps import app, deadletter_app
from linkloom.cli.connection import connect
from linkloom.cli.output import OutputFormat, OutputOption
from linkloom.errors import InvalidInput

AUDIT_COLUMNS: list[out.Column] = [
    ("AT", lambda r: out.when(r.get("at"))),
    ("ACTOR", "actor"),
    ("ACTION", "action"),
    ("OBJECT", lambda r: f"{r['object_type']}:{r.get('object_id') or ''}"),
    ("DETAILS", "details"),
]
LETTER_COLUMNS: list[out.Column] = [
    ("ID", "id"),
    ("FLOW", "flow_id"),
    ("V", "version"),
    ("STEP", lambda r: r["step_id"] + (f"[{r['index']}]" if r.get("index") is not None else "")),
    ("RUN", "run_id"),
    ("ERROR", lambda r: (r.get("error") or {}).get("message")),
    ("AT", lambda r: out.when(r.get("created_at"))),
    ("REDRIVEN", "redrive_run_id"),
]
VERSIONS = {"failed-version": "failed_version", "current-version": "current_version"}


@app.command("audit")
def audit(
    actor: Annotated[str | None, typer.Option(help="Only this actor (token name).")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. run.trigger, flow.apply.")] = None,
    object_type: Annotated[str | None, typer.Option("--type", help="flow, run, token…")] = None,
    object_id: Annotated[str | None, typer.Option("--object", help="The object's id.")] = None,
    since: Annotated[str | None, typer.Option(help="At or after (ISO 8601).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 50,
    output: OutputOption = OutputFormat.table,
) -> None:
    """The audit log: who did what, to which object, when (newest first)."""
    with connect() as loom:
        entries = list(
            loom.pages(
                "/audit",
                limit=limit,
                actor=actor,
                action=action,
                object_type=object_type,
                object_id=object_id,
                since=since,
            )
        )
    out.emit(entries, columns=AUDIT_COLUMNS, output=output, title="Audit log", empty="no entries")


@deadletter_app.command("list")
def list_letters(
    flow: Annotated[
        str | None, typer.Option("--flow", "--workflow", help="Only this flow.")
    ] = None,
    step: Annotated[str | None, typer.Option(help="Only this step.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include re-driven ones.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Steps that failed for good, newest first."""
    with connect() as loom:
        page = loom.get("/dead-letters", flow=flow, step=step, include_redriven=all_, limit=limit)
    out.emit(page["items"], columns=LETTER_COLUMNS, output=output, title="Dead letters")


@deadletter_app.command("redrive")
def redrive(
    on: Annotated[
        str,
        typer.Option(
            help="failed-version: re-run the version that failed, keeping the steps that "
            "succeeded; current-version: a fresh run of the flow's current version."
        ),
    ],
    ids: Annotated[list[str] | None, typer.Argument(help="Dead letter ids.")] = None,
    flow: Annotated[
        str | None, typer.Option(help="Re-drive every open dead letter of this flow.")
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Re-drive dead letters (one new run per original run), on the version you choose."""
    if on not in VERSIONS:
        raise InvalidInput("choose the version explicitly: --on failed-version|current-version")
    with connect() as loom:
        chosen = list(ids or [])
        if flow:
            chosen += [d["id"] for d in loom.get("/dead-letters", flow=flow, limit=1000)["items"]]
        if not chosen:
            raise InvalidInput("name dead letter ids, or --flow FLOW for all of a flow's")
        result = loom.post("/dead-letters/redrive", {"ids": chosen, "on": VERSIONS[on]})
    if output is not OutputFormat.table:
        out.emit(result, output=output)
        return
    for run in result["runs"]:
        typer.echo(f"run {run['id']} started for {run['flow_id']} v{run['flow_version']}")
