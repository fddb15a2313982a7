"""The ``loom`` entry point: registers every command, maps errors to exit codes.

Start-up is part of the interface: ``loom --help`` and the client commands import only Typer,
the command modules and what they need at the top. Each command imports its heavy pieces (the
server stack, SQLAlchemy, Rich tables, the spec model, plugins) inside its body, and the
commands that need the ``server`` extra say so when it is not installed.
"""

from __future__ import annotations

import sys

import typer

# Importing a command module registers its commands on the apps in ``linkloom.cli.apps``.
from linkloom.cli import (  # noqa: F401
    audit,
    ci,
    db,
    extensions,
    fixtures,
    flows,
    gitops,
    notify,
    proposals,
    remote,
    runs,
    sandbox,
    schedules,
    server,
    settings,
    specs,
    tokens,
)
from linkloom.cli.apps import app
from linkloom.errors import LinkloomError, Unavailable

__all__ = ["app", "main"]

# Top-level modules of the extras' packages: a command that imports one on a base install
# (``pip install linkloom``) stops with the extra to install instead of a traceback.
EXTRA_OF_MODULE: dict[str, str] = {
    **dict.fromkeys(
        (
            "fastapi",
            "uvicorn",
            "sqlalchemy",
            "alembic",
            "aiosqlite",
            "psycopg",
            "pydantic_settings",
            "httpx_aiohttp",
            "aiohttp",
            "git",
            "jsonschema",
            "docker",
            "prometheus_client",
            "structlog",
            "sse_starlette",
            "multipart",
            "python_multipart",
            "cryptography",
            "codeowners",
            "pywebpush",
            "py_vapid",
        ),
        "server",
    ),
    "opentelemetry": "tracing",
}


class ExtraNotInstalled(Unavailable):
    """'loom {command}' needs the '{extra}' extra, which is not installed (no module
    {module!r}): pip install 'linkloom[{extra}]'."""

    code = "extra_not_installed"


def missing_extra(exc: ModuleNotFoundError, command: str) -> ExtraNotInstalled | None:
    """The extra to install when ``exc`` is one of its packages missing, else ``None``."""
    module = (exc.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return ExtraNotInstalled(command=command, extra=extra, module=module)


def report(exc: LinkloomError) -> None:
    """Print ``exc`` as one line on standard error (red ``error:`` on a terminal only)."""
    typer.echo(f"{typer.style('error:', fg='red')} {exc.message}", err=True, color=None)


def main() -> None:
    try:
        app()
    except LinkloomError as exc:
        report(exc)
        sys.exit(exc.exit_code)
    except ModuleNotFoundError as exc:
        command = " ".join(a for a in sys.argv[1:3] if not a.startswith("-"))
        missing = missing_extra(exc, command or "loom")
        if missing is None:
            raise
        report(missing)
        sys.exit(missing.exit_code)
