"""The proof: three ``loom scheduler`` processes on real PostgreSQL, the leader SIGKILLed twice,
every-second schedules for 50 seconds: zero duplicate runs and zero missed fire times."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support import databases

FLOWS = 5  # five flows with an every-second schedule: ~230 fire times checked in 50 s
RUN_SECONDS = 50
KILL_AT = (14, 30)  # seconds after the first run appears


def _sql(url: str, query: str) -> list[tuple]:
    import psycopg
    from sqlalchemy.engine import make_url

    plain = make_url(url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(plain, autocommit=True) as conn:
        return list(conn.execute(query).fetchall())


def _leader(url: str) -> str | None:
    """The application name of the session holding the scheduler's advisory lock."""
    from linkloom.store.schedules import LEADER_LOCK_KEY

    unsigned = LEADER_LOCK_KEY & 0xFFFFFFFFFFFFFFFF
    rows = _sql(
        url,
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted "
        f"AND l.classid = {unsigned >> 32} AND l.objid = {unsigned & 0xFFFFFFFF} "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    return rows[0][0] if rows else None


def _tails(logs: dict[str, Path]) -> str:
    return "\n".join(
        f"--- {name}\n" + path.read_text(errors="replace")[-1500:] for name, path in logs.items()
    )


def _wait_for_leader(url: str, *, exclude: set[str], timeout: float) -> tuple[str, float]:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        name = _leader(url)
        if name and name not in exclude:
            return name, time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"no new leader within {timeout}s")


@pytest.fixture
def pg() -> Iterator[str]:
    with databases.fresh_database("s") as url:
        yield url


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(200)
def test_three_schedulers_leader_killed_twice_no_duplicates_no_misses(
    pg: str, tmp_path: Path
) -> None:
    import asyncio

    from linkloom.engine.service import RunService
    from linkloom.flows.spec import FlowSpec
    from linkloom.store import session
    from linkloom.store.runs import SqlRunStore
    from linkloom.testing import SystemClock

    async def setup() -> None:
        await session.upgrade(pg)
        db = session.Database(pg)
        runs = RunService(store=SqlRunStore(db), clock=SystemClock())
        for n in range(FLOWS):
            spec = {
                "id": f"tick-{n}",
                "schedules": [{"id": "every-second", "interval": 1}],
                "steps": [{"id": "s", "type": "transform", "template": 1}],
            }
            await runs.apply_flow(FlowSpec.model_validate(spec))
        await db.dispose()

    asyncio.run(setup())
    sep = "&" if "?" in pg else "?"
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}

    def start(name: str) -> None:
        env = {
            **os.environ,
            "LOOM_HOME": str(tmp_path),
            "LOOM_DATABASE__URL": f"{pg}{sep}application_name={name}",
            "LOOM_LOG__FORMAT": "json",
            "PYTHONUNBUFFERED": "1",  # the logs are read back when the test fails
        }
        logs[name] = tmp_path / f"{name}.log"
        with logs[name].open("wb") as out:
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "linkloom", "scheduler"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    killed: list[str] = []
    takeovers: list[float] = []
    try:
        for name in ("sched-a", "sched-b", "sched-c"):
            start(name)
        # Three interpreters importing the whole CLI at once are slow on a loaded machine.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _sql(pg, "SELECT 1 FROM runs LIMIT 1"):
            time.sleep(0.2)
        first_seen = datetime.now(UTC)
        began = time.monotonic()
        assert _sql(pg, "SELECT 1 FROM runs LIMIT 1"), "no scheduler created a run in 60 s"
        for at in KILL_AT:
            time.sleep(max(0.0, began + at - time.monotonic()))
            leader, _ = _wait_for_leader(pg, exclude=set(killed), timeout=5)
            procs[leader].send_signal(signal.SIGKILL)
            procs[leader].wait(timeout=10)
            killed.append(leader)
            _new, took = _wait_for_leader(pg, exclude=set(killed), timeout=10)
            takeovers.append(took)
        time.sleep(max(0.0, began + RUN_SECONDS - time.monotonic()))
        stopped_at = datetime.now(UTC)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nscheduler logs:\n{_tails(logs)}") from exc
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    rows = _sql(pg, "SELECT flow_id, schedule_id, fire_time, trigger FROM runs")
    by_flow: dict[str, list[datetime]] = defaultdict(list)
    for flow_id, schedule_id, fire_time, trigger in rows:
        assert schedule_id == "every-second"
        assert trigger == "schedule"
        by_flow[flow_id].append(fire_time.astimezone(UTC))

    duplicates = sum(len(f) - len(set(f)) for f in by_flow.values())
    # Every second from just after the first run appeared until just before the stop.
    window_start = first_seen.replace(microsecond=0) + timedelta(seconds=2)
    window_end = stopped_at.replace(microsecond=0) - timedelta(seconds=2)
    expected = int((window_end - window_start).total_seconds()) + 1
    missed = {}
    for n in range(FLOWS):
        fires = set(by_flow[f"tick-{n}"])
        want = {window_start + timedelta(seconds=k) for k in range(expected)}
        missed[f"tick-{n}"] = sorted(want - fires)
        # no hole anywhere between a flow's first and last fire either
        ordered = sorted(fires)
        span = int((ordered[-1] - ordered[0]).total_seconds()) + 1
        assert span == len(fires), f"tick-{n}: {span - len(fires)} holes"
    print(
        f"\nfires checked: {expected * FLOWS}, runs: {len(rows)}, duplicates: {duplicates}, "
        f"killed: {killed}, takeover seconds: {[round(t, 2) for t in takeovers]}"
    )
    failures = [n for n, path in logs.items() if b"scheduler_tick_failed" in path.read_bytes()]
    assert failures == [], f"ticks failed in {failures}"
    assert len(killed) == 2
    assert expected * FLOWS >= 200
    assert duplicates == 0
    assert all(not m for m in missed.values()), missed
    assert all(t < 5 for t in takeovers), takeovers
