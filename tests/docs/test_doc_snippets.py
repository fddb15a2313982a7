"""Every code block of README.md, docs/ and examples/ is what it says it is, and works.

Flow specs validate with no problem (and ``test_doc_flows_run.py`` runs them); fragments,
fixture cases and foreign files parse; Python blocks compile and their imports exist; every
``loom`` command names real commands and options, and ``loom validate``/``convert``/``schema``
commands run. How to mark a block is in tests/README.md ("Documentation snippets").
"""

from __future__ import annotations

import ast
import json
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import typer
import yaml
from typer.testing import CliRunner

from linkloom.flows import loading
from linkloom.proposals import policy
from linkloom.sandbox import fixtures, stubs
from tests.docs import snippets
from tests.docs.snippets import Command, Snippet

ALL = snippets.all_snippets()
SPECS = snippets.of(snippets.SPEC_LANGS)
SHELL = snippets.of(snippets.SHELL_LANGS)
PYTHON = snippets.of(snippets.PYTHON_LANGS)
TOML = snippets.of(snippets.TOML_LANGS)
COMMANDS = [c for s in SHELL for c in snippets.loom_commands(s)]
HOW_TO_MARK = "see tests/README.md, 'Documentation snippets'"


def where(snippet: Snippet | Command) -> str:
    return snippet.where


def problems_of(snippet: Snippet) -> list[str]:
    """The validator's problems, each placed at its line in the document."""
    name = "snippet.json" if snippet.lang == "json" else "snippet.yaml"
    result = loading.check_flow(snippet.text, filename=name)
    return [
        f"{snippet.doc}:{snippet.line + p.line}:{p.column}: {p.severity}: {p.message}"
        + (f" ({p.hint})" if p.hint else "")
        for p in result.problems
    ]


def parse(snippet: Snippet) -> Any:
    if snippet.lang == "json":
        return json.loads(snippet.text)
    return yaml.safe_load(snippet.text)


# ---------------------------------------------------------------------------- every block


def test_the_documentation_has_snippets_of_every_checked_kind() -> None:
    """The extraction finds blocks (a broken parser would make every test below vacuous)."""
    roles = {snippets.spec_role(s) for s in SPECS}
    assert {"spec", "partial", "fixture-case", "other"} <= roles
    assert len(SPECS) >= 20
    assert len(COMMANDS) >= 20
    assert any(s.tagged("run") for s in SHELL)
    assert PYTHON
    assert TOML


def test_extraction_finds_fences_in_lists_their_tags_and_indented_blocks(tmp_path: Path) -> None:
    doc = tmp_path / "guide.md"
    doc.write_text(
        "# Guide\n\n"
        "- a step:\n"
        "  ```yaml partial\n"
        "  - {id: a, type: delay, duration: 1s}\n"
        "  ```\n\n"
        "~~~json other\n{}\n~~~\n\n"
        "Run:\n\n"
        "    loom validate flows/\n"
    )
    found = list(snippets.extract(doc, root=tmp_path))
    assert [(s.where, s.lang, s.tags, s.indented) for s in found] == [
        ("guide.md:4", "yaml", ("partial",), False),
        ("guide.md:8", "json", ("other",), False),
        ("guide.md:14", "", (), True),
    ]
    assert found[0].text == "- {id: a, type: delay, duration: 1s}\n"


def test_loom_commands_are_read_like_a_shell_reads_them() -> None:
    block = Snippet(
        doc="x.md",
        line=10,
        lang="bash",
        tags=(),
        text="$ loom flow list   # all flows\n"
        "LOOM_X=1 .venv/bin/loom validate \\\n  --strict flows/ | tee out\n"
        "echo loom status\n",
    )
    found = [(c.line, c.args) for c in snippets.loom_commands(block)]
    assert found == [(11, ("flow", "list")), (12, ("validate", "--strict", "flows/"))]


@pytest.mark.parametrize("snippet", ALL, ids=where)
def test_every_code_block_says_what_it_is(snippet: Snippet) -> None:
    assert not snippet.indented, (
        f"{snippet.where}: an indented code block cannot say what it holds; fence it with a "
        f"language (```bash, ```text, …); {HOW_TO_MARK}"
    )
    known = (
        snippets.SPEC_LANGS
        | snippets.SHELL_LANGS
        | snippets.PYTHON_LANGS
        | snippets.TOML_LANGS
        | snippets.UNCHECKED_LANGS
    )
    assert snippet.lang in known, (
        f"{snippet.where}: a code block needs a language the snippet tests know "
        f"({', '.join(sorted(known))}), not {snippet.lang or 'none'!r}; use ```text for "
        f"output and diagrams, or add the language to tests/docs/snippets.py; {HOW_TO_MARK}"
    )
    unknown = [t for t in snippet.tags if t not in snippets.known_tags(snippet)]
    assert not unknown, (
        f"{snippet.where}: unknown tag(s) {unknown} on a {snippet.lang} block; "
        f"known: {snippets.known_tags(snippet) or 'none'}"
    )


# ---------------------------------------------------------------------------- YAML and JSON


@pytest.mark.parametrize("snippet", SPECS, ids=where)
def test_yaml_and_json_blocks_are_what_their_tags_say(snippet: Snippet) -> None:
    role = snippets.spec_role(snippet)
    if role in ("spec", "norun"):
        problems = problems_of(snippet)
        assert not problems, (
            f"{snippet.where}: this block is read as a whole flow spec, and it has problems:\n"
            + "\n".join(problems)
            + f"\nFix the example; or, if it is not a whole flow spec, tag it ({HOW_TO_MARK})."
        )
    elif role == "invalid":
        assert any(": error: " in p for p in problems_of(snippet)), (
            f"{snippet.where}: tagged 'invalid', but it validates; remove the tag"
        )
    elif role == "fixture-case":
        case = fixtures.loads(snippet.text, name="snippet")
        written = case.to_dict()
        data = parse(snippet)
        dropped = _dropped_keys(data, written)
        assert not dropped, f"{snippet.where}: the fixture loader ignores {dropped}"
    elif role == "stubs":
        assert stubs.loads(snippet.text, where=snippet.where), f"{snippet.where}: no stubs"
    elif role == "policy":
        policy.parse(snippet.text, where=snippet.where)
    elif role == "partial":
        problems = fragment_problems(snippet)
        assert not problems, (
            f"{snippet.where}: this fragment, completed into a minimal flow, has problems:\n"
            + "\n".join(problems)
        )
    else:  # other: the text must at least parse
        try:
            parse(snippet)
        except (ValueError, yaml.YAMLError) as exc:
            pytest.fail(f"{snippet.where}: does not parse as {snippet.lang}: {exc}")


# What a fragment cannot show: the steps, inputs and outputs around it.
CONTEXT_CODES = frozenset(
    {
        "unknown-step",
        "unknown-input",
        "unknown-output",
        "not-upstream",
        "unused-input",
        "unused-output",
        "unreachable",
        "branch-not-downstream",
    }
)


def fragment_problems(snippet: Snippet) -> list[str]:
    """A ``partial`` block is a mapping of top-level spec fields or a list of steps. It is
    completed into a flow (an id, and a step when it has none) and validated; only problems
    about what the fragment does not show (other steps, inputs, outputs) are forgiven."""
    data = parse(snippet)
    if isinstance(data, list) and all(isinstance(s, dict) and "type" in s for s in data):
        data = {"steps": data}
    if not isinstance(data, dict):
        return [
            f"{snippet.where}: a 'partial' block is a mapping of flow fields or a list of "
            "steps; tag anything else 'other'"
        ]
    flow = {"id": "snippet", "steps": [{"id": "noop", "type": "transform"}], **data}
    result = loading.check_flow(json.dumps(flow), filename="snippet.json")
    return [
        f"{snippet.where}: {p.path}: {p.severity}: {p.message}" + (f" ({p.hint})" if p.hint else "")
        for p in result.problems
        if p.code not in CONTEXT_CODES
    ]


def _dropped_keys(data: dict[str, Any], written: dict[str, Any]) -> list[str]:
    """Keys the document has that the loaded case does not keep (top level, each exchange and
    each expected step)."""
    dropped = [k for k in data if k not in written]
    for n, exchange in enumerate(data.get("exchanges") or []):
        dropped += [f"exchanges[{n}].{k}" for k in exchange if k not in written["exchanges"][n]]
    for step, result in (data.get("expected") or {}).items():
        kept = written["expected"][step]
        dropped += [f"expected.{step}.{k}" for k in result if k not in kept]
    return dropped


# ---------------------------------------------------------------------------- Python, TOML


@pytest.mark.parametrize("snippet", PYTHON, ids=where)
def test_python_blocks_compile_and_their_imports_exist(snippet: Snippet) -> None:
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    try:
        tree = compile(snippet.text, snippet.where, "exec", flags=flags)
    except SyntaxError as exc:
        pytest.fail(f"{snippet.where}: not valid Python: {exc}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            module = __import__(node.module, fromlist=["_"])
            for alias in node.names:
                assert hasattr(module, alias.name) or _submodule(node.module, alias.name), (
                    f"{snippet.where}: `from {node.module} import {alias.name}`: no such name"
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                __import__(alias.name)


def _submodule(package: str, name: str) -> bool:
    try:
        __import__(f"{package}.{name}")
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("snippet", TOML, ids=where)
def test_toml_blocks_parse_and_settings_files_load(
    snippet: Snippet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tomllib.loads(snippet.text)
    if not snippet.tagged("settings"):
        return
    from linkloom.config import Settings, load_settings

    unknown = _unknown_settings(data, Settings)
    assert not unknown, f"{snippet.where}: not settings: {unknown}"
    path = tmp_path / "loom.toml"
    path.write_text(snippet.text)
    monkeypatch.setenv("LOOM_CONFIG_FILE", str(path))
    monkeypatch.setenv("LOOM_SECURITY__SIGNING_KEY", "a-key-for-the-docs-test-of-32-chars")
    monkeypatch.setenv("LOOM_DATABASE__URL", "postgresql+psycopg://loom@db.internal/loom")
    load_settings()


def _unknown_settings(data: dict[str, Any], model: Any, prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            out.append(prefix + key)
            continue
        annotation = field.annotation
        if isinstance(value, dict) and hasattr(annotation, "model_fields"):
            out += _unknown_settings(value, annotation, f"{prefix}{key}.")
    return out


# ---------------------------------------------------------------------------- loom commands


@pytest.fixture(scope="module")
def cli() -> click.Command:
    from linkloom.cli.main import app

    return typer.main.get_command(app)


def resolve(cli: click.Command, args: tuple[str, ...]) -> click.Command:
    """Parse ``args`` as the CLI would, without running anything; raise click's UsageError."""
    command, name, rest, parent = cli, "loom", list(args), None
    while True:
        ctx = command.make_context(name, rest, parent=parent, resilient_parsing=False)
        if not isinstance(command, click.Group):
            return command
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            return command
        name, sub, rest = command.resolve_command(ctx, rest)
        if sub is None:
            raise click.UsageError(f"no command {name!r}")
        command, parent = sub, ctx


@pytest.mark.parametrize("command", COMMANDS, ids=where)
def test_every_loom_command_in_the_docs_parses(cli: click.Command, command: Command) -> None:
    try:
        resolve(cli, command.args)
    except click.exceptions.Exit:
        pass  # --help and the like
    except click.UsageError as exc:
        pytest.fail(f"{command.where}: `{command.text}`: {exc.format_message()}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out as the docs assume: a flows repo's flows/ and the project's files."""
    root = tmp_path_factory.mktemp("docs-workdir")
    shutil.copytree(snippets.ROOT / "examples" / "flows", root / "flows")
    for name in ("examples", "docs", "tests"):
        (root / name).symlink_to(snippets.ROOT / name)
    return root


def _offline(commands: list[Command]) -> Iterator[Command]:
    for command in commands:
        if command.snippet.tagged("norun") or command.snippet.tagged("run"):
            continue
        if command.args[:1] and command.args[0] in snippets.OFFLINE_COMMANDS:
            yield command


OFFLINE = list(_offline(COMMANDS))


def test_offline_commands_are_found() -> None:
    assert any(c.args[0] == "validate" for c in OFFLINE)


@pytest.mark.parametrize("command", OFFLINE, ids=where)
def test_offline_loom_commands_in_the_docs_run(
    command: Command, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from linkloom.cli.main import app

    monkeypatch.chdir(workdir)
    result = CliRunner().invoke(app, list(command.args))
    assert result.exit_code == 0, (
        f"{command.where}: `{command.text}` exited {result.exit_code}:\n{result.output}"
        f"\n(tag the block 'norun' if it needs something the docs set up first)"
    )
