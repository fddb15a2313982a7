from __future__ import annotations

import asyncio
import os
import time

from linkloom.engine.steps.shell import ShellExecutor
from tests.support.step_context import make_context, make_services


def ctx_for(step, *, timeout=10.0, **kw):
    services = make_services(shell_enabled=True)
    return make_context(step={"type": "shell", **step}, services=services, timeout=timeout, **kw)


async def test_shell_refuses_unless_enabled():
    ctx = make_context(step={"type": "shell", "command": "echo hi"})
    result = await ShellExecutor().execute(ctx)
    assert result.error is not None
    assert "LOOM_ENGINE__SHELL_ENABLED" in result.error.message


async def test_shell_string_command_with_args_env_and_templates():
    ctx = ctx_for(
        {
            "command": 'echo "$1-$GREETING-{{ inputs.n }}"; echo err >&2',
            "args": ["{{ inputs.name }}"],
            "env": {"GREETING": "hi {{ inputs.n + 1 }}"},
        },
        inputs={"name": "Ann", "n": 1},
    )
    result = await ShellExecutor().execute(ctx)
    assert result.ok, result.error
    assert result.output == {
        "exit_code": 0,
        "stdout": "Ann-hi 2-1\n",
        "stderr": "err\n",
        "truncated": False,
    }


async def test_shell_list_command_runs_without_a_shell_and_minimal_env(tmp_path):
    os.environ["LOOM_SHOULD_NOT_LEAK"] = "x"
    try:
        ctx = ctx_for({"command": ["env"], "cwd": str(tmp_path)})
        result = await ShellExecutor().execute(ctx)
    finally:
        del os.environ["LOOM_SHOULD_NOT_LEAK"]
    assert result.ok
    assert "LOOM_SHOULD_NOT_LEAK" not in result.output["stdout"]
    assert "PATH=" in result.output["stdout"]


async def test_shell_nonzero_exit_fails_with_output():
    result = await ShellExecutor().execute(ctx_for({"command": "echo oops >&2; exit 3"}))
    assert result.error is not None
    assert result.error.kind == "exit_status"
    assert "3" in result.error.message
    assert "oops" in result.error.message
    assert not result.error.retryable
    assert result.output["exit_code"] == 3


async def test_shell_output_is_capped_and_marked_truncated():
    step = {"command": "head -c 200000 /dev/zero | tr '\\0' a", "max_output_bytes": 1000}
    result = await ShellExecutor().execute(ctx_for(step))
    assert result.ok
    assert len(result.output["stdout"]) == 1000
    assert result.output["truncated"] is True


async def test_shell_timeout_kills_the_process_group(tmp_path):
    marker = tmp_path / "child.pid"
    step = {"command": f"sleep 30 & echo $! > {marker}; wait"}
    started = time.monotonic()
    result = await ShellExecutor().execute(ctx_for(step, timeout=0.5))
    assert time.monotonic() - started < 3
    assert result.error is not None
    assert result.error.kind == "timeout"
    assert result.error.retryable
    child = int(marker.read_text())
    for _ in range(100):  # up to 2 s for the kill to land
        if not _alive(child):
            break
        await asyncio.sleep(0.02)
    assert not _alive(child), "the background child survived the timeout"


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a killed process waiting to be reaped (zombie) is not alive."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_shell_background_child_holding_pipes_does_not_hang():
    started = time.monotonic()
    result = await ShellExecutor().execute(ctx_for({"command": "sleep 30 & echo started"}))
    assert time.monotonic() - started < 3
    assert result.ok
    assert result.output["stdout"] == "started\n"


async def test_shell_missing_program_is_a_config_failure():
    result = await ShellExecutor().execute(ctx_for({"command": ["/no/such/program"]}))
    assert result.error is not None
    assert result.error.kind == "config"
