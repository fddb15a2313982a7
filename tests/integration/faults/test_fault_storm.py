"""Fault test: a real ``loom server`` (API + workers) runs fan-outs against a backend that at
random answers 500, hangs past the step timeout, resets the connection, answers non-JSON, or
streams a 50 MB body. Retries happen; every failed attempt has a recorded error whose kind and
message say what the backend did; the server's memory stays bounded (the big bodies are never
buffered whole); ``/healthz`` keeps answering throughout; every run ends."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from linkloom.engine.models import StepStatus
from linkloom.engine.service import RunService
from linkloom.flows.spec import FlowSpec
from linkloom.store import session
from linkloom.store.runs import SqlRunStore
from linkloom.testing import SystemClock
from tests.integration.crash.engine_process import (
    SIGNING_KEY,
    EngineProcess,
    fresh_database,
)
from tests.support.backends import FaultyBackend
from tests.support.servers import free_port

RUNS = 3
FANOUT = 40
STEP_TIMEOUT = 1.5
MAX_BODY = 1_000_000
# What each fault must be recorded as: (error kind, words the message must contain).
EXPECTED = {
    "http_500": ("http_status", "HTTP 500"),
    "hang": ("timeout", "timed out"),
    "reset": ("connection", "connection to"),
    "not_json": ("bad_response", "non-JSON"),
    "huge": ("response_too_large", "LOOM_ENGINE__MAX_RESPONSE_BYTES"),
}
# Peak RSS growth allowed over the idle server: 50 MB bodies arrive up to 32 at a time, so
# buffering any of them whole would blow far past this.
RSS_GROWTH_LIMIT_MIB = 80


def fanout_flow(url: str) -> dict[str, Any]:
    return {
        "id": "fault-storm",
        "defaults": {
            "timeout": STEP_TIMEOUT,
            "retry": {"max_attempts": 4, "initial_delay": 0.05, "max_delay": 0.2, "jitter": False},
        },
        "steps": [{"id": f"f{i}", "type": "http", "url": f"{url}/f{i}"} for i in range(FANOUT)],
    }


async def poll_health(base: str, stop: asyncio.Event, seen: list[tuple[int, float]]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        while not stop.is_set():
            began = time.perf_counter()
            try:
                status = (await client.get("/healthz")).status_code
            except httpx.HTTPError:
                status = 0
            seen.append((status, time.perf_counter() - began))
            await asyncio.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_fault_storm_is_retried_recorded_bounded_and_served(
    kind: str, tmp_path: Path
) -> None:
    async with fresh_database(kind, tmp_path) as url:
        db = session.Database(url)
        store = SqlRunStore(db)
        runs = RunService(store=store, clock=SystemClock(), signing_key=SIGNING_KEY)
        port = free_port()
        server = EngineProcess(
            command="server",
            db_url=url,
            home=tmp_path,
            ready_text="Application startup complete",
            settings={
                "LOOM_SERVER__PORT": port,
                "LOOM_SERVER__AUTH": "false",
                "LOOM_SERVER__RUN_SCHEDULER": "false",
                "LOOM_LOG__LEVEL": "INFO",
                "LOOM_ENGINE__POLL_INTERVAL": 0.1,
                "LOOM_ENGINE__CONCURRENCY": 32,
                "LOOM_ENGINE__MAX_RESPONSE_BYTES": MAX_BODY,
            },
        )
        base = f"http://127.0.0.1:{port}"
        health: list[tuple[int, float]] = []
        with FaultyBackend(hang_seconds=STEP_TIMEOUT * 3, seed=11) as backend:
            await runs.apply_flow(FlowSpec.model_validate(fanout_flow(backend.url)))
            server.warm()
            server.start()
            try:
                await server.wait_ready()
                idle_kib = server.rss_kib()
                stop = asyncio.Event()
                poller = asyncio.create_task(poll_health(base, stop, health))
                async with httpx.AsyncClient(base_url=base, timeout=10) as api:
                    run_ids = []
                    for _ in range(RUNS):
                        answer = await api.post("/api/v1/flows/fault-storm/runs", json={})
                        assert answer.status_code == 201, answer.text
                        run_ids.append(answer.json()["id"])
                    async with asyncio.timeout(120):
                        while True:
                            states = [
                                (await api.get(f"/api/v1/runs/{r}")).json()["status"]
                                for r in run_ids
                            ]
                            if all(s in ("SUCCEEDED", "FAILED") for s in states):
                                break
                            await asyncio.sleep(0.2)
                stop.set()
                await poller
                peak_kib = server.rss_kib("VmHWM")
            finally:
                server.stop()
            attempts = [a for r in run_ids for a in await runs.list_attempts(r)]
            await db.dispose()

    assert backend.huge_bytes_sent > 0, "no 50 MB body was served: the storm proved nothing"
    checked: dict[str, int] = {}
    late = 0
    for attempt in attempts:
        fault = backend.served.get((f"{attempt.run_id}:{attempt.step_id}", attempt.number))
        assert fault is not None, f"attempt {attempt} never reached the backend"
        if fault == "ok":
            assert attempt.status is StepStatus.SUCCEEDED, attempt
            continue
        assert attempt.status is StepStatus.FAILED, (fault, attempt)
        assert attempt.error is not None, (fault, attempt)
        kind_, words = EXPECTED[fault]
        if attempt.error["kind"] == "timeout" and fault != "hang":
            # On a starved machine any answer can arrive after the step timeout: still a
            # clear error, but it proves nothing about this fault. Counted and bounded below.
            assert "timed out" in attempt.error["message"], attempt.error
            late += 1
            continue
        assert attempt.error["kind"] == kind_, (fault, attempt.error)
        assert words in attempt.error["message"], (fault, attempt.error)
        checked[fault] = checked.get(fault, 0) + 1
    assert late <= len(attempts) // 10, f"{late} answers came after the step timeout"
    assert set(checked) == set(EXPECTED), f"some faults never happened: {checked}"
    assert any(a.number > 1 for a in attempts), "nothing was retried"

    growth_mib = (peak_kib - idle_kib) / 1024
    statuses = [s for s, _ in health]
    slowest = max(t for _, t in health)
    print(
        f"\n[{kind}] attempts {len(attempts)}, failures {checked}, {late} late, huge bytes sent "
        f"{backend.huge_bytes_sent / 2**20:.0f} MiB, RSS idle {idle_kib / 1024:.0f} MiB peak "
        f"{peak_kib / 1024:.0f} MiB, /healthz {len(health)} polls, slowest {slowest * 1000:.0f} ms"
    )
    assert growth_mib < RSS_GROWTH_LIMIT_MIB, f"peak RSS grew {growth_mib:.0f} MiB"
    assert len(health) >= 10
    assert set(statuses) == {200}, statuses
    assert slowest < 2.0, f"/healthz took {slowest:.2f}s during the storm"
