"""``loom validate``, ``loom convert`` and ``loom schema`` through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from linkloom.cli.main import app
from linkloom.flows.loading import load_flow

ROOT = Path(__file__).parents[3]
SEEDS = ROOT / "tests" / "fixtures" / "specs" / "seeds"
BAD = "id: demo\nsteps:\n  - id: a\n    type: transform\n    depends_on: [b]\n"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_validate_exits_0_for_valid_specs_in_a_directory(runner, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "flow.yaml").write_text(
        "id: a\nsteps:\n  - {id: x, type: delay, duration: 1s}\n"
    )
    (tmp_path / "b.json").write_text(
        '{"id": "b", "steps": [{"id": "y", "type": "delay", "duration": 2}]}'
    )
    (tmp_path / "notes.txt").write_text("not a spec")
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "2 file(s) checked: 0 error(s)" in result.output


def test_validate_prints_file_line_col_and_hint_and_exits_1(runner, tmp_path):
    spec = tmp_path / "flow.yaml"
    spec.write_text(BAD)
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{spec}:5:18: error: step 'a' depends on unknown step 'b'"


def test_validate_skips_fixture_folders_of_a_flows_repo(runner, tmp_path):
    flow = tmp_path / "flows" / "x"
    (flow / "fixtures").mkdir(parents=True)
    (flow / "flow.yaml").write_text("id: x\nsteps:\n  - {id: a, type: delay, duration: 1s}\n")
    (flow / "fixtures" / "case.yaml").write_text("name: case\ninputs: {}\n")
    assert runner.invoke(app, ["validate", str(tmp_path)]).exit_code == 0


def test_validate_missing_path_is_a_usage_error(runner, tmp_path):
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "no such file or directory" in result.output


def test_validate_json_format_lists_problems_and_counts(runner, tmp_path):
    spec = tmp_path / "flow.yaml"
    spec.write_text(BAD)
    result = runner.invoke(app, ["validate", "--format", "json", str(spec)])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["files"], report["errors"]) == (1, 1)
    problem = report["problems"][0]
    assert problem["line"] == 5
    assert problem["column"] == 18
    assert problem["path"] == "$.steps[0].depends_on[0]"
    assert problem["code"] == "unknown-step"


def test_validate_github_format_prints_annotations(runner, tmp_path):
    spec = tmp_path / "flow.yaml"
    spec.write_text(BAD)
    result = runner.invoke(app, ["validate", "--format", "github", str(spec)])
    assert result.exit_code == 1
    assert result.stdout.startswith(
        f"::error file={spec},line=5,col=18,title=unknown-step::"
        "step 'a' depends on unknown step 'b'"
    )


def test_validate_applies_policy_options(runner, tmp_path):
    spec = tmp_path / "flow.yaml"
    spec.write_text("id: p\nsteps:\n  - {id: a, type: http, url: 'https://evil.example.org/x'}\n")
    assert runner.invoke(app, ["validate", str(spec)]).exit_code == 0
    result = runner.invoke(app, ["validate", "--allowed-host", "*.example.com", str(spec)])
    assert result.exit_code == 1
    assert "host 'evil.example.org' is not allowed" in result.stdout


def test_validate_strict_fails_on_warnings(runner, tmp_path):
    spec = tmp_path / "flow.yaml"
    spec.write_text(
        "id: w\ninputs: {unused: {type: string}}\nsteps:\n  - {id: a, type: delay, duration: 1s}\n"
    )
    assert runner.invoke(app, ["validate", str(spec)]).exit_code == 0
    assert runner.invoke(app, ["validate", "--strict", str(spec)]).exit_code == 1


def test_convert_prints_canonical_yaml_of_a_variant_shape(runner):
    result = runner.invoke(app, ["convert", str(SEEDS / "automata-sync-orders.json")])
    assert result.exit_code == 0, result.output
    assert "depends_on:" in result.stdout
    assert "config:" not in result.stdout
    assert "{{ steps.fetch.outputs.orders }}" in result.stdout
    assert load_flow(result.stdout).id == "sync-orders"


def test_convert_of_an_invalid_spec_exits_1_with_problems(runner, tmp_path):
    spec = tmp_path / "flow.yaml"
    spec.write_text(BAD)
    result = runner.invoke(app, ["convert", str(spec)])
    assert result.exit_code == 1
    assert "unknown step 'b'" in result.output


def test_schema_prints_the_committed_schema_file(runner):
    """docs/flow.schema.json, which the examples point editors at, is current."""
    result = runner.invoke(app, ["schema", "--no-plugins"])  # plugins may be installed
    assert result.exit_code == 0
    committed = (ROOT / "docs" / "flow.schema.json").read_text()
    assert json.loads(result.stdout) == json.loads(committed), (
        "run: loom schema > docs/flow.schema.json"
    )


def test_validate_reads_a_spec_from_standard_input(runner):
    result = runner.invoke(app, ["validate", "-"], input=BAD)
    assert result.exit_code == 1
    assert result.stdout.startswith("<stdin>:5:18: error:")
