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

app = typer.Typer(
    name="loom",
    help="Link Loom: workflows changed the way code is changed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=MARKUP,
)
flow_app = typer.Typer(
    help="Flows: apply, trigger, inspect, schedule.",
    no_args_is_help=True,
    rich_markup_mode=MARKUP,
)
run_app = typer.Typer(
    help="Runs: list, describe, logs, cancel, retry.",
    no_args_is_help=True,
    rich_markup_mode=MARKUP,
)
proposal_app = typer.Typer(
    help="Proposals: the GitOps change flow.",
    no_args_is_help=True,
    rich_markup_mode=MARKUP,
)
fixtures_app = typer.Typer(
    help="Fixture cases recorded from production.",
    no_args_is_help=True,
    rich_markup_mode=MARKUP,
)
token_app = typer.Typer(
    help="API tokens and their roles.", no_args_is_help=True, rich_markup_mode=MARKUP
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True, rich_markup_mode=MARKUP)
config_app = typer.Typer(
    help="Local CLI configuration and server settings.",
    no_args_is_help=True,
    rich_markup_mode=MARKUP,
)
sandbox_app = typer.Typer(
    help="The sandbox that runs proposals.",
    no_args_is_help=True,
    rich_markup_mode=MARKUP,
)
deadletter_app = typer.Typer(
    help="Dead letters: failed steps to re-drive.",
    no_args_is_help=True,
    rich_markup_mode=MARKUP,
)
worker_app = typer.Typer(help="Pull-mode workers.", no_args_is_help=False, rich_markup_mode=MARKUP)
remote_app = typer.Typer(
    help="The team's git remote the flows repo mirrors.",
    no_args_is_help=True,
    rich_markup_mode=MARKUP,
)

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
