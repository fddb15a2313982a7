"""The ``loom`` client commands against a real server: flows, runs, tokens, dead letters, audit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from cli_harness import CliServer, invoke, write_spec

from linkloom.access import Role
from linkloom.cli.server import UnsafeBind
from tests.acceptance.api.api_harness import flow_spec

RUN_ID = re.compile(r"run ([0-9a-f-]{36})")


def _apply(tmp_path: Path, flow_id: str) -> None:
    spec = write_spec(tmp_path / f"{flow_id}.yaml", flow_spec(flow_id))
    result = invoke("workflow", "create", str(spec))
    assert result.exit_code == 0, result.stdout
    assert f"{flow_id}: version 1 (created)" in result.stdout


def test_cli_trigger_wait_succeeds_and_shows_logs(loom_env: CliServer, tmp_path: Path) -> None:
    _apply(tmp_path, "cli-ok")
    result = invoke(
        "flow", "trigger", "cli-ok", "--input", "to=ops", "--input", "count=2", "--wait"
    )
    assert result.exit_code == 0, result.stdout
    assert "SUCCEEDED" in result.stdout
    for line in ("/fetch done", "/process done", "/send done"):
        assert line in result.stdout
    run_id = RUN_ID.search(result.stdout).group(1)  # type: ignore[union-attr]
    described = invoke("execution", "describe", run_id, "-o", "json")
    data = json.loads(described.stdout)
    assert data["inputs"] == {"count": 2, "to": "ops"}
    logs = invoke("run", "logs", run_id, "--step", "process")
    assert logs.stdout.strip().endswith("process | /process done")
    followed = invoke("run", "logs", run_id, "--follow")
    assert followed.exit_code == 0
    assert followed.stdout.count(" | ") == 3


def test_cli_logs_of_a_run_without_log_lines_say_so_on_stderr(
    loom_env: CliServer, tmp_path: Path
) -> None:
    """A run whose steps logged nothing: a note for the reader, an empty standard output for
    scripts, exit 0; JSON output and --follow are unchanged."""
    quiet = {"id": "cli-quiet", "steps": [{"id": "compute", "type": "transform", "template": 1}]}
    assert invoke("workflow", "create", str(write_spec(tmp_path / "q.yaml", quiet))).exit_code == 0
    triggered = invoke("flow", "trigger", "cli-quiet", "--wait")
    assert triggered.exit_code == 0, triggered.stdout
    run_id = RUN_ID.search(triggered.stdout).group(1)  # type: ignore[union-attr]

    logs = invoke("run", "logs", run_id)
    assert logs.exit_code == 0
    assert logs.stdout == ""
    assert logs.stderr.strip() == f"no log lines for run {run_id}"
    of_step = invoke("run", "logs", run_id, "--step", "compute")
    assert (of_step.stdout, of_step.stderr.strip()) == (
        "",
        f"no log lines for run {run_id} (step compute)",
    )
    as_json = invoke("run", "logs", run_id, "-o", "json")
    assert (as_json.exit_code, json.loads(as_json.stdout), as_json.stderr) == (0, [], "")
    followed = invoke("run", "logs", run_id, "--follow")
    assert (followed.exit_code, followed.stdout) == (0, "")


def test_cli_trigger_wait_exits_nonzero_on_failure(loom_env: CliServer, tmp_path: Path) -> None:
    _apply(tmp_path, "cli-bad")
    loom_env.backend.fail.add("process")
    try:
        result = invoke("flow", "trigger", "cli-bad", "-i", "to=x", "--wait")
    finally:
        loom_env.backend.fail.clear()
    assert result.exit_code == 1
    assert "FAILED" in result.stdout
    assert "/process is broken" in result.stdout

    letters = invoke("deadletter", "list", "--flow", "cli-bad", "-o", "json")
    items = json.loads(letters.stdout)
    assert [d["step_id"] for d in items] == ["process"]
    unchosen = invoke("deadletter", "redrive", items[0]["id"])
    assert unchosen.exit_code == 2  # --on is required: the version is chosen explicitly
    redriven = invoke("deadletter", "redrive", "--flow", "cli-bad", "--on", "failed-version")
    assert redriven.exit_code == 0, redriven.stdout
    assert "run " in redriven.stdout


def test_cli_trigger_reports_bad_inputs(loom_env: CliServer, tmp_path: Path) -> None:
    _apply(tmp_path, "cli-inputs")
    result = invoke("flow", "trigger", "cli-inputs", "-i", "count=lots")
    assert result.exit_code == 2
    assert "'count'" in str(result.exception)
    assert "'to'" in str(result.exception)
    malformed = invoke("flow", "trigger", "cli-inputs", "-i", "oops")
    assert malformed.exit_code == 2


def test_cli_listings_in_every_format(loom_env: CliServer, tmp_path: Path) -> None:
    _apply(tmp_path, "cli-list")
    invoke("flow", "trigger", "cli-list", "-i", "to=a", "--wait")
    table = invoke("run", "list", "--workflow", "cli-list")
    assert "cli-list" in table.stdout
    assert "SUCCEEDED" in table.stdout
    as_json = json.loads(invoke("run", "list", "--flow", "cli-list", "-o", "json").stdout)
    assert [r["flow_id"] for r in as_json] == ["cli-list"]
    as_yaml = yaml.safe_load(invoke("flow", "list", "--output", "yaml").stdout)
    assert "cli-list" in [f["id"] for f in as_yaml]
    status = invoke("status", "-o", "json")
    row = next(r for r in json.loads(status.stdout) if r["flow"] == "cli-list")
    assert row["succeeded_24h"] == 1
    audit = json.loads(invoke("audit", "--action", "flow.apply", "-o", "json").stdout)
    assert {"actor": "admin-cli", "object_id": "cli-list"}.items() <= next(
        e for e in audit if e["object_id"] == "cli-list"
    ).items()
    described = invoke("flow", "describe", "cli-list")
    assert "fetch" in described.stdout
    assert "Recent versions" in described.stdout
    watched = invoke("watch", "--count", "1", "--interval", "0")
    assert watched.exit_code == 0


def test_cli_tokens_via_api_and_roles(loom_env: CliServer) -> None:
    created = invoke("token", "create", "--name", "bot", "--role", "viewer", "-o", "json")
    assert created.exit_code == 0, created.stdout
    token = json.loads(created.stdout)
    listed = invoke("token", "list")
    assert "bot" in listed.stdout
    assert token["secret"] not in listed.stdout
    as_viewer = invoke("flow", "trigger", "anything", env={"LOOM_TOKEN": token["secret"]})
    assert as_viewer.exit_code == 5
    assert "author" in str(as_viewer.exception)
    revoked = invoke("token", "revoke", token["id"])
    assert revoked.exit_code == 0
    refused = invoke("run", "list", env={"LOOM_TOKEN": token["secret"]})
    assert refused.exit_code == 5
    bad_role = invoke("token", "create", "--name", "x", "--role", "boss")
    assert bad_role.exit_code == 2


def test_cli_tokens_local_on_the_server_host(loom_env: CliServer) -> None:
    env = {
        "LOOM_DATABASE__URL": loom_env.db_url,
        "LOOM_TOKEN": "",
        "LOOM_SERVER_URL": "http://127.0.0.1:9",
    }
    created = invoke("token", "create", "--local", "--name", "rescue", "--role", "admin", env=env)
    assert created.exit_code == 0, created.stdout
    secret = created.stdout.splitlines()[1].strip()
    me = invoke("status", "-o", "json", env={"LOOM_TOKEN": secret})
    assert me.exit_code == 0, me.stdout
    listed = invoke("token", "list", "--local", "-o", "json", env=env)
    assert "rescue" in [t["name"] for t in json.loads(listed.stdout)]


def test_cli_unreachable_server_is_one_clear_error(loom_env: CliServer) -> None:
    result = invoke("run", "list", env={"LOOM_SERVER_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 6
    assert "is it running" in str(result.exception)


def test_server_refuses_open_bind_without_auth(loom_env: CliServer) -> None:
    result = invoke("server", "--host", "0.0.0.0", env={"LOOM_SERVER__AUTH": "false"})
    assert isinstance(result.exception, UnsafeBind)
    assert result.exit_code == 2
    assert "0.0.0.0" in str(result.exception)


def test_cli_role_tokens_exist(loom_env: CliServer) -> None:
    assert set(loom_env.tokens) == set(Role)


def test_cli_apply_prints_each_spec_problem(loom_env: CliServer, tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("id: broken\nsteps:\n  - id: a\n    type: http\n    depends_on: [nope]\n")
    result = invoke("flow", "apply", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:" in result.stderr
    assert "nope" in result.stderr


def test_cli_wait_timeout_exits_124_and_cancel_stops_the_run(
    loom_env: CliServer, tmp_path: Path
) -> None:
    spec = flow_spec(
        "cli-slow",
        inputs={},
        steps=[{"id": "wait", "type": "http", "url": "http://backend.test/async", "mode": "async"}],
    )
    write_spec(tmp_path / "slow.yaml", spec)
    assert invoke("flow", "apply", str(tmp_path / "slow.yaml")).exit_code == 0
    result = invoke("flow", "trigger", "cli-slow", "--wait", "--timeout", "0.5", "-o", "json")
    assert result.exit_code == 124
    run_id = json.loads(invoke("run", "list", "--flow", "cli-slow", "-o", "json").stdout)[0]["id"]
    cancelled = invoke("run", "cancel", run_id)
    assert cancelled.exit_code == 0
    assert "CANCELLED" in cancelled.stdout
    again = invoke("run", "cancel", run_id)
    assert again.exit_code == 4
