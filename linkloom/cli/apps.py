"""The command groups. Modules in ``linkloom.cli`` add their commands to these apps.

``workflow`` and ``flows`` are aliases of ``flow`` and ``execution`` an alias of ``run`` (the
names the design documents use), so both spellings reach the same commands.
"""

from __future__ import annotations

import sys
from typing import Literal

import typer

# On a terminal, help and usage errors are drawn with Rich. Piped or captured, they are plain
# text: nothing wrapped at 80 columns or boxed for a log to keep, and no Rich to import.
MARKUP: Literal["rich"] | None = "rich" if sys.stdout.isatty() and sys.stderr.isatty() else None


def group(help: str, *, no_args_is_help: bool = True) -> typer.Typer:
    """A command group of ``loom`` (``loom flow …``), with the CLI's markup mode."""
    return typer.Typer(help=help, no_args_is_help=no_args_is_help, rich_markup_mode=MARKUP)


app = typer.Typer(
    name="loom",
    help="Link Loom: workflows changed the way code is changed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=MARKUP,
)
flow_app = group("Flows: apply, trigger, inspect, schedule.")
run_app = group("Runs: list, describe, logs, cancel, retry.")
proposal_app = group("Proposals: the GitOps change flow.")
fixtures_app = group("Fixture cases recorded from production.")
token_app = group("API tokens and their roles.")
db_app = group("Database migrations.")
config_app = group("Local CLI configuration and server settings.")
sandbox_app = group("The sandbox that runs proposals.")
deadletter_app = group("Dead letters: failed steps to re-drive.")
worker_app = group("Pull-mode workers.", no_args_is_help=False)
remote_app = group("The team's git remote the flows repo mirrors.")

app.add_typer(flow_app, name="flow")
app.add_typer(flow_app, name="workflow", help="Alias of 'flow'.")
app.add_typer(flow_app, name="flows", help="Alias of 'flow'.")
flow_app.add_typer(remote_app, name="remote")
app.add_typer(run_app, name="run")
app.add_typer(run_app, name="execution", help="Alias of 'run'.")
app.add_typer(proposal_app, name="proposal")
app.add_typer(fixtures_app, name="fixtures")
app.add_typer(token_app, name="token")
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(deadletter_app, name="deadletter")
app.add_typer(worker_app, name="worker")
