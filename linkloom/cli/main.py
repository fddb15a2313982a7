"""The ``loom`` entry point: imports every command module, maps errors to exit codes."""

from __future__ import annotations

import importlib
import sys

from rich.console import Console

from linkloom.cli.apps import app
from linkloom.errors import LinkloomError

# Each module registers its commands on the apps in ``linkloom.cli.apps``.
COMMAND_MODULES = (
    "linkloom.cli.specs",
    "linkloom.cli.db",
    "linkloom.cli.server",
    "linkloom.cli.flows",
    "linkloom.cli.runs",
    "linkloom.cli.proposals",
    "linkloom.cli.fixtures",
    "linkloom.cli.gitops",
    "linkloom.cli.tokens",
    "linkloom.cli.audit",
    "linkloom.cli.settings",
    "linkloom.cli.sandbox",
    "linkloom.cli.schedules",
    "linkloom.cli.notify",
    "linkloom.cli.extensions",
)

_err = Console(stderr=True)


def _load_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module
                raise


def main() -> None:
    try:
        app()
    except LinkloomError as exc:
        _err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        sys.exit(exc.exit_code)


_load_commands()
