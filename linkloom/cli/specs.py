"""``loom validate``, ``loom convert`` and ``loom schema``: flow specs for CI and editors."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from linkloom.cli.apps import app

# The spec model (pydantic, plugins) is imported by the commands that use it, not by ``loom``.
if TYPE_CHECKING:
    from linkloom.flows.models import Problem

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


class OutputFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


def _spec_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if str(path) == "-":
            files.append(path)  # the spec on standard input
        elif path.is_dir():
            files.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file()
                    and p.suffix.lower() in SPEC_SUFFIXES
                    and "fixtures" not in p.relative_to(path).parts
                )
            )
        elif path.is_file():
            files.append(path)
        else:
            typer.echo(f"error: no such file or directory: {path}", err=True)
            raise typer.Exit(2)
    return files


def _github(problem: Problem) -> str:
    def escape(text: str, *, prop: bool = False) -> str:
        text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return text.replace(":", "%3A").replace(",", "%2C") if prop else text

    message = problem.message + (f"\n{problem.hint}" if problem.hint else "")
    return (
        f"::{problem.severity} file={escape(problem.file, prop=True)},line={problem.line},"
        f"col={problem.column},title={escape(problem.code, prop=True)}::{escape(message)}"
    )


def _read(path: Path) -> tuple[bytes, str]:
    if str(path) == "-":
        return sys.stdin.buffer.read(), "<stdin>"
    return path.read_bytes(), str(path)


@app.command("validate")
def validate(
    paths: list[Path] = typer.Argument(
        ...,
        help="Spec files or directories (searched for *.yaml, *.yml, *.json; 'fixtures' "
        "folders skipped); '-' reads one spec from standard input.",
    ),
    output: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="Output."),
    allowed_hosts: list[str] = typer.Option(
        [], "--allowed-host", help="Policy: hosts http steps may call (glob; repeatable)."
    ),
    require_timeout: bool = typer.Option(False, help="Policy: every step needs a timeout."),
    require_retry: bool = typer.Option(False, help="Policy: every step needs a retry policy."),
    shell: bool = typer.Option(True, help="Policy: whether shell steps are allowed."),
    strict: bool = typer.Option(False, help="Treat warnings as errors."),
    secrets: list[str] = typer.Option(
        [],
        "--secret",
        help="A secret the server has (case-sensitive; repeatable): references to any other "
        "secret are warned about.",
    ),
    server: bool = typer.Option(
        False,
        "--server",
        help="Ask the configured server (LOOM_SERVER_URL, LOOM_TOKEN) for its secrets' names "
        "and warn about references to any other.",
    ),
) -> None:
    """Validate flow specs; exit 0 when valid, 1 when any has an error, 2 on usage errors."""
    from linkloom.flows import loading
    from linkloom.flows.models import Policy

    files = _spec_files(paths)
    names = set(secrets)
    if server:
        from linkloom.cli.connection import connect

        with connect() as connection:
            names.update(connection.get("/secrets")["names"])
    policy = Policy(
        allowed_hosts=allowed_hosts,
        require_timeout=require_timeout,
        require_retry=require_retry,
        shell_enabled=shell,
        secret_names=frozenset(names) if names or server else None,
    )
    problems: list[Problem] = []
    for file in files:
        text, name = _read(file)
        result = loading.check_flow(text, filename=name, policy=policy)
        problems.extend(result.problems)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if output is OutputFormat.json:
        summary = {"files": len(files), "errors": errors, "warnings": warnings}
        typer.echo(json.dumps({**summary, "problems": [p.to_dict() for p in problems]}, indent=2))
    elif output is OutputFormat.github:
        for problem in problems:
            typer.echo(_github(problem))
    else:
        for problem in problems:
            typer.echo(problem.format())
        typer.echo(
            f"{len(files)} file(s) checked: {errors} error(s), {warnings} warning(s)", err=True
        )
    if errors or (strict and warnings):
        raise typer.Exit(1)


@app.command("convert")
def convert(
    file: Path = typer.Argument(..., help="A spec in any accepted shape."),
    output: str = typer.Option("yaml", "--format", "-f", help="yaml or json."),
) -> None:
    """Print a spec in the canonical shape (YAML by default)."""
    from linkloom.flows import loading

    if not file.is_file():
        typer.echo(f"error: no such file: {file}", err=True)
        raise typer.Exit(2)
    result = loading.check_flow(file.read_bytes(), filename=str(file))
    if result.spec is None:
        for problem in result.problems:
            typer.echo(problem.format(), err=True)
        raise typer.Exit(1)
    if output == "json":
        typer.echo(json.dumps(loading.canonical_dict(result.spec), indent=2, ensure_ascii=False))
    else:
        typer.echo(loading.to_canonical_yaml(result.spec), nl=False)


@app.command("schema")
def schema(
    no_plugins: bool = typer.Option(
        False, "--no-plugins", help="Only the built-in step types (as docs/flow.schema.json)."
    ),
) -> None:
    """Print the JSON Schema (draft 2020-12) of the canonical flow spec, with the step types
    of installed plugins ('loom plugins')."""
    from linkloom.flows import loading, plugins

    out = loading.spec_json_schema()
    if no_plugins:
        out = plugins.without_plugins(out)
    typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
