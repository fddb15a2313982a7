"""End to end: a real ``loom server`` process, the real example backend (SDK-built), and the
``loom`` CLI as a user runs it, with nothing configured but a home directory."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from linkloom import config, wiring
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]
LOOM = [sys.executable, "-m", "linkloom"]
KEY = "e2e-signing-key"


def _wait_http(url: str, *, proc: subprocess.Popen[bytes], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {within}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
    return {
        **base,
        "LOOM_HOME": str(tmp_path / "home"),
        "LOOM_SECURITY__SIGNING_KEY": KEY,
        "LOOM_LOG__FORMAT": "json",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PYTHONPATH": str(REPO),
    }


@pytest.fixture
def backend(env: dict[str, str], tmp_path: Path) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.backend", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "backend.log").open("wb"),
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/docs", proc=proc)
        yield port
    finally:
        _stop(proc)


def _loom(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LOOM, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_e2e_server_backend_cli_daily_report(
    env: dict[str, str], backend: int, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    server = subprocess.Popen(
        [*LOOM, "server", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", proc=server)
        # First start: an admin token, printed once and stored in the CLI config.
        printed = re.search(r"^\s+(loom_\S+)$", log.read_text(), re.MULTILINE)
        assert printed, log.read_text()
        stored = json.loads((tmp_path / "config" / "linkloom" / "cli.json").read_text())
        assert stored == {"server_url": f"http://127.0.0.1:{port}", "token": printed.group(1)}

        spec = (REPO / "examples/flows/daily-report/flow.yaml").read_text()
        flow = tmp_path / "daily-report.yaml"
        flow.write_text(spec.replace("127.0.0.1:8081", f"127.0.0.1:{backend}"))
        applied = _loom("flow", "apply", str(flow), env=env)
        assert applied.returncode == 0, applied.stderr
        assert "daily-report: version 1 (created)" in applied.stdout

        run = _loom("flow", "trigger", "daily-report", "--input", "count=7", "--wait", env=env)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "SUCCEEDED" in run.stdout
        assert "fetch_data | Fetched 7 records" in run.stdout
        assert re.search(r"process \| Processed data, \d+ valid", run.stdout)
        assert "send_email | Email sent to admin@example.com" in run.stdout

        run_id = re.search(r"run ([0-9a-f-]{36})", run.stdout).group(1)  # type: ignore[union-attr]
        logs = _loom("run", "logs", run_id, env=env)
        assert logs.returncode == 0
        assert [line.split(" | ")[0].split()[-1] for line in logs.stdout.splitlines()] == [
            "fetch_data",
            "process",
            "send_email",
        ]
        missing = _loom("run", "describe", "no-such-run", env=env)
        assert missing.returncode == 3
        assert missing.stderr.strip().count("\n") == 0
        assert "no-such-run" in missing.stderr
    finally:
        _stop(server)
    assert server.returncode == 0

    # Later starts create no token: the first admin token is made once.
    settings = config.load_settings(home=tmp_path / "home")
    services = wiring.build_services(settings)
    try:
        assert asyncio.run(_bootstrap_again(services)) is None
    finally:
        asyncio.run(services.db.dispose())


async def _bootstrap_again(services: wiring.Services) -> str | None:
    from linkloom.cli.server import bootstrap_admin

    return await bootstrap_admin(services)


@pytest.mark.slow
def test_e2e_loom_worker_runs_steps_queued_by_another_process(
    env: dict[str, str], tmp_path: Path
) -> None:
    """``loom worker`` alone executes runs created elsewhere (here: in the test process)."""
    settings = config.load_settings(home=tmp_path / "home")
    spec = {
        "id": "adder",
        "inputs": {"n": {"type": "integer", "default": 1}},
        "steps": [{"id": "add", "type": "transform", "template": {"sum": "{{ inputs.n + 1 }}"}}],
    }

    async def create() -> str:
        from linkloom.flows.spec import FlowSpec
        from linkloom.store import session

        services = wiring.build_services(settings)
        try:
            await session.upgrade(settings.database_url)
            await services.runs.apply_flow(FlowSpec.model_validate(spec))
            return (await services.runs.trigger("adder", inputs={"n": 41})).id
        finally:
            await services.stop()

    async def status(run_id: str) -> tuple[str, object]:
        services = wiring.build_services(settings)
        try:
            run = await services.runs.get_run(run_id)
            steps = await services.runs.list_steps(run_id)
            return run.status.value, steps[0].output
        finally:
            await services.stop()

    run_id = asyncio.run(create())
    worker = subprocess.Popen(
        [*LOOM, "worker"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "worker.log").open("wb"),
    )
    try:
        deadline = time.monotonic() + 60
        state: tuple[str, object] = ("PENDING", None)
        while time.monotonic() < deadline and state[0] != "SUCCEEDED":
            time.sleep(0.5)
            state = asyncio.run(status(run_id))
        assert state == ("SUCCEEDED", {"sum": 42}), (tmp_path / "worker.log").read_text()
    finally:
        _stop(worker)
    assert worker.returncode == 0
