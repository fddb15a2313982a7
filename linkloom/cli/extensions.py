"""``loom plugins`` (installed step-type plugins) and ``loom worker list`` (pull-mode workers)."""

from __future__ import annotations

from typing import Any

import typer

from linkloom.cli.apps import app, worker_app
from linkloom.cli.connection import connect
from linkloom.cli.output import Column, OutputFormat, OutputOption, emit, when

PLUGIN_COLUMNS: list[Column] = [
    ("TYPE", "type"),
    ("STATUS", "status"),
    ("PACKAGE", lambda p: f"{p['package']} {p['version'] or ''}".strip() if p["package"] else ""),
    ("ENTRY POINT", "entry_point"),
    ("DESCRIPTION / ERROR", lambda p: p["error"] or p["summary"]),
]

WORKER_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("STATUS", "status"),
    ("HOST", "host"),
    ("QUEUES", lambda w: ", ".join(w["queues"])),
    ("VERSION", "version"),
    ("LAST HEARTBEAT", lambda w: when(w["last_heartbeat"])),
    ("TASKS", lambda w: ", ".join(w["current_tasks"]) or "-"),
]


def plugin_rows() -> list[dict[str, Any]]:
    """Every ``linkloom.steps`` entry point: loaded ones with their type, failed ones with why."""
    from linkloom.flows import plugins, spec  # noqa: F401 (spec: importing it discovers them)

    found = plugins.report()
    rows: list[dict[str, Any]] = [
        {
            "type": p.type_name,
            "status": "loaded",
            "package": p.distribution,
            "version": p.version,
            "entry_point": f"{p.name} = {p.value}",
            "summary": p.summary,
            "fields": sorted(set(p.config_model.model_fields) - {"type"}),
            "error": None,
        }
        for p in found.loaded
    ]
    rows += [
        {
            "type": f.name,
            "status": "failed",
            "package": f.distribution,
            "version": f.version,
            "entry_point": f"{f.name} = {f.value}",
            "summary": "",
            "fields": [],
            "error": f.error,
        }
        for f in found.failed
    ]
    return rows


@app.command("plugins")
def plugins_command(output: OutputOption = OutputFormat.table) -> None:
    """List installed step-type plugins (entry point group 'linkloom.steps'), failed ones with
    their import error. Exit 1 when any plugin failed to load."""
    rows = plugin_rows()
    emit(
        rows,
        columns=PLUGIN_COLUMNS,
        output=output,
        title="Step-type plugins",
        empty="no step-type plugins installed (entry point group 'linkloom.steps')",
    )
    if any(r["status"] == "failed" for r in rows):
        raise typer.Exit(1)


@worker_app.command("list")
def list_workers(
    output: OutputOption = OutputFormat.table,
    all_: bool = typer.Option(False, "--all", help="Include workers that stopped cleanly."),
) -> None:
    """Pull-mode workers: id, host, queues, version, last heartbeat, current tasks."""
    with connect() as conn:
        data = conn.get("/workers", include_stopped=all_ or None)
    emit(data["items"], columns=WORKER_COLUMNS, output=output, title="Workers", empty="no workers")
