"""``loom flow next|backfill|pause|resume --local`` and ``loom scheduler`` on a real SQLite
database (without ``--local`` they go through the API: tests/acceptance/cli)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from linkloom.cli.main import app
from linkloom.config import load_settings
from linkloom.flows.spec import FlowSpec
from linkloom.store import session, tables
from linkloom.wiring import build_services

SPEC = {
    "id": "nightly",
    "schedules": [{"id": "night", "cron": "30 2 * * *", "timezone": "Europe/Berlin"}],
    "steps": [{"id": "s", "type": "transform", "template": 1}],
}


def apply(spec: dict, home: Path) -> None:
    async def go() -> None:
        services = build_services(load_settings(home=home))
        try:
            await session.upgrade(services.db.url)
            await services.runs.apply_flow(FlowSpec.model_validate(spec))
        finally:
            await services.stop()

    asyncio.run(go())


def runs(home: Path) -> list:
    async def go() -> list:
        db = session.Database(load_settings(home=home).database_url)
        try:
            async with db.read() as conn:
                r = tables.runs
                query = sa.select(r.c.trigger, r.c.schedule_id, r.c.fire_time).order_by(
                    r.c.fire_time
                )
                return list((await conn.execute(query)).all())
        finally:
            await db.dispose()

    return asyncio.run(go())


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOOM_HOME", str(tmp_path))
    return tmp_path


def test_cli_next_from_database_and_file(home: Path) -> None:
    apply(SPEC, home)
    cli = CliRunner()
    result = cli.invoke(app, ["flow", "next", "nightly", "-n", "3", "--json", "--local"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 3
    assert all(r["schedule_id"] == "night" for r in rows)
    spec_file = home / "flow.json"
    spec_file.write_text(json.dumps(SPEC))
    result = cli.invoke(app, ["flow", "next", str(spec_file), "-n", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.count("night") == 2
    assert "Europe/Berlin" in result.output


def test_cli_unknown_flow_exits_not_found(home: Path) -> None:
    apply(SPEC, home)
    result = CliRunner().invoke(app, ["flow", "next", "missing", "--local"])
    assert result.exit_code != 0


def test_cli_backfill_dry_run_then_real_then_deduplicated(home: Path) -> None:
    apply(SPEC, home)
    cli = CliRunner()
    window = ["--from", "2026-01-01", "--to", "2026-01-05T23:59"]
    dry = cli.invoke(app, ["flow", "backfill", "nightly", *window, "--dry-run", "--local"])
    assert dry.exit_code == 0, dry.output
    assert "5 fire times (dry run" in dry.output
    assert runs(home) == []
    real = cli.invoke(app, ["flow", "backfill", "nightly", *window, "--local"])
    assert "created 5 runs; 0 fire times already had one" in real.output
    again = cli.invoke(app, ["flow", "backfill", "nightly", *window, "--local"])
    assert "created 0 runs; 5 fire times already had one" in again.output
    assert [r.trigger for r in runs(home)] == ["backfill"] * 5
    big = cli.invoke(
        app, ["flow", "backfill", "nightly", "--from", "2020-01-01", "--to", "now", "--local"]
    )
    assert big.exit_code != 0
    assert len(runs(home)) == 5


def test_cli_pause_and_resume(home: Path) -> None:
    apply(SPEC, home)
    cli = CliRunner()
    assert "paused" in cli.invoke(app, ["flow", "pause", "nightly", "--local"]).output
    assert "resumed" in cli.invoke(app, ["flow", "resume", "nightly", "--local"]).output


@pytest.mark.slow
def test_loom_scheduler_process_fires_and_stops_on_sigterm(home: Path) -> None:
    apply({**SPEC, "id": "often", "schedules": [{"interval": 1}]}, home)
    env = {**os.environ, "LOOM_HOME": str(home), "LOOM_LOG__FORMAT": "json"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "linkloom", "scheduler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(runs(home)) < 3:
            time.sleep(0.3)
        assert len(runs(home)) >= 3
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
    fires = [r.fire_time for r in runs(home)]
    assert len(fires) == len(set(fires))
