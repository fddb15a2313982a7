"""What a new user meets in their first hour with ``loom``: settings shown masked, a watch that
works in a pipe, schedule times in the schedule's zone, why each attempt failed, pausing through
the API, errors on one line, and a taken port named before anything starts."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from cli_harness import CliServer, invoke, write_spec

from linkloom.access import Role
from tests.acceptance.api.api_harness import flow_spec

RUN_ID = re.compile(r"run ([0-9a-f-]{36})")
ROOT = Path(__file__).resolve().parents[3]


def loom(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``loom`` as a user runs it: its own process, output piped (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "linkloom", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_config_get_without_a_key_shows_every_setting_with_the_token_masked(
    loom_env: CliServer,
) -> None:
    shown = invoke("config", "get")
    assert shown.exit_code == 0, shown.stdout
    assert f"server-url  {loom_env.url}  (from LOOM_SERVER_URL)" in shown.stdout
    token = loom_env.tokens[Role.admin]
    assert token not in shown.stdout
    assert re.search(r"token +loom…\*\*\* +\(from LOOM_TOKEN\)", shown.stdout), shown.stdout
    assert "--reveal" in shown.stderr
    revealed = invoke("config", "get", "--reveal")
    assert token in revealed.stdout
    one = invoke("config", "get", "token")
    assert one.stdout.strip() == "loom…***"
    assert "'loom config get token --reveal' prints it in full" in one.stderr


def test_watch_without_a_terminal_prints_one_view_and_exits(
    loom_env: CliServer, tmp_path: Path
) -> None:
    write_spec(tmp_path / "watched.yaml", flow_spec("watched"))
    assert invoke("flow", "apply", str(tmp_path / "watched.yaml")).exit_code == 0
    watched = invoke("watch", "--interval", "60")  # would refresh every minute on a terminal
    assert watched.exit_code == 0
    assert "watched" in watched.stdout
    assert "Recent runs" in watched.stdout
    assert "Ctrl-C" not in watched.stdout


def test_flow_describe_shows_next_fires_in_the_schedules_zone_and_in_utc(
    loom_env: CliServer, tmp_path: Path
) -> None:
    spec = flow_spec("zoned", schedules=[{"id": "night", "cron": "30 2 * * *",
                                          "timezone": "Asia/Tokyo"}])  # fmt: skip
    write_spec(tmp_path / "zoned.yaml", spec)
    assert invoke("flow", "apply", str(tmp_path / "zoned.yaml")).exit_code == 0
    described = invoke("flow", "describe", "zoned")
    assert described.exit_code == 0, described.stdout
    # 02:30 in Tokyo (UTC+9, no daylight saving) is 17:30 UTC the day before.
    assert re.search(r"\d{4}-\d\d-\d\d 02:30 JST \(\d{4}-\d\d-\d\d 17:30 UTC\)", described.stdout)
    fires = json.loads(invoke("flow", "next", "zoned", "-n", "2", "--json").stdout)
    assert [f["schedule_id"] for f in fires] == ["night", "night"]
    assert all(f["fire_time"].endswith("T17:30:00+00:00") for f in fires)
    listed = invoke("flow", "next", "zoned", "-n", "1")
    assert "cron '30 2 * * *' in Asia/Tokyo" in listed.stdout


def test_run_describe_and_wait_show_why_each_failed_attempt_failed(
    loom_env: CliServer, tmp_path: Path
) -> None:
    spec = flow_spec("retried")
    spec["steps"][1]["retry"] = {"max_attempts": 3, "initial_delay": "0.05s"}
    write_spec(tmp_path / "retried.yaml", spec)
    assert invoke("flow", "apply", str(tmp_path / "retried.yaml")).exit_code == 0
    loom_env.backend.unavailable.add("process")
    try:
        waited = invoke("flow", "trigger", "retried", "-i", "to=x", "--wait")
    finally:
        loom_env.backend.unavailable.clear()
    assert waited.exit_code == 1
    for number in (1, 2, 3):
        assert f"process attempt {number}" in waited.stdout
    assert waited.stdout.count("/process is overloaded") >= 3
    run_id = RUN_ID.search(waited.stdout).group(1)  # type: ignore[union-attr]
    described = invoke("run", "describe", run_id)
    assert "Failed attempts" in described.stdout
    lines = [line for line in described.stdout.splitlines() if "process attempt" in line]
    assert len(lines) == 3
    assert all("http_status: HTTP 503" in line for line in lines)
    assert all("/process is overloaded" in line for line in lines)


def test_pause_and_resume_go_through_the_api_and_print_only_their_answer(
    loom_env: CliServer, tmp_path: Path
) -> None:
    write_spec(tmp_path / "paused.yaml", flow_spec("paused"))
    assert invoke("flow", "apply", str(tmp_path / "paused.yaml")).exit_code == 0
    env = {"LOOM_SERVER_URL": loom_env.url, "LOOM_TOKEN": loom_env.tokens[Role.admin],
           "LOOM_HOME": str(tmp_path / "no-database-here")}  # fmt: skip
    paused = loom("flow", "pause", "paused", env=env)
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout == "flow 'paused' paused; resume it with 'loom flow resume paused'\n"
    assert paused.stderr == ""
    listed = json.loads(invoke("flow", "list", "-o", "json").stdout)
    assert next(f for f in listed if f["id"] == "paused")["paused"] is True
    assert loom("flow", "resume", "paused", env=env).stdout == "flow 'paused' resumed\n"
    audit = json.loads(invoke("audit", "-o", "json").stdout)
    actions = [(e["action"], e["object_id"]) for e in audit]
    assert ("flow.pause", "paused") in actions
    assert ("flow.resume", "paused") in actions
    assert not (tmp_path / "no-database-here").exists()  # no local database was made


def test_an_error_is_one_line_on_standard_error_when_piped(tmp_path: Path) -> None:
    unreachable = "http://127.0.0.1:9/a/very/long/path/so/that/the/message/passes/eighty/columns"
    failed = loom("flow", "list", env={"LOOM_SERVER_URL": unreachable,
                                       "XDG_CONFIG_HOME": str(tmp_path)})  # fmt: skip
    assert failed.returncode == 6
    assert failed.stdout == ""
    assert failed.stderr.startswith("error: ")
    assert len(failed.stderr) > 100
    assert failed.stderr.count("\n") == 1  # one line, however long
    assert "\x1b[" not in failed.stderr  # no colour codes in a pipe


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"LOOM_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
        refused = loom("server", "--port", str(port), env=env)
    assert refused.returncode == 6
    assert f"Port {port} on 127.0.0.1 is already in use" in refused.stderr
    assert "--port" in refused.stderr
    assert "LOOM_SERVER__PORT=" in refused.stderr
    assert refused.stderr.count("\n") == 1
    assert not (tmp_path / "loom.db").exists()  # nothing started
