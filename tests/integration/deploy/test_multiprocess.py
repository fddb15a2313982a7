"""The deployment proof: separate OS processes on one fresh PostgreSQL database, as in
docker-compose: an API server (no workers, no scheduler), one ``loom scheduler`` and three
``loom worker``s, plus a real backend that records each effect once by ``Idempotency-Key``.

A mixed workload (chains, fan-out and join, a for-each, retries against a flaky endpoint, an
interval schedule) is started through the API; one worker is SIGKILLed while it holds leased
steps. Every run must end SUCCEEDED with each step's effect recorded exactly once, ``/readyz``
must say ready (workers seen through their heartbeats), and ``/metrics`` of the API server and of
a worker's own exporter must show the runs.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiohttp import web

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
from tests.support.backends import IdempotentBackend
from tests.support.servers import free_port

RUNS_PER_FLOW = 8
FLAKY_FAILURES = 2  # each flaky key answers 500 this many times before it succeeds
LEASE_SECONDS = 2
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


class FlakyIdempotentBackend(IdempotentBackend):
    """``IdempotentBackend`` whose ``/flaky`` path fails the first deliveries of each key
    with HTTP 500 (recording no effect), so the engine must retry."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failed: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key", "")
        if request.path.endswith("/flaky") and self.failed[key] < FLAKY_FAILURES:
            self.failed[key] += 1
            return web.json_response({"error": "try again"}, status=500)
        return await super().handle(request)


def flows(url: str) -> list[dict[str, Any]]:
    def http(step_id: str, *deps: str, path: str = "", **extra: Any) -> dict[str, Any]:
        step = {"id": step_id, "type": "http", "url": f"{url}/{path or step_id}", **extra}
        if deps:
            step["depends_on"] = list(deps)
        return step

    defaults = {"timeout": 10, "retry": {"max_attempts": 5, "initial_delay": 0.1}}
    return [
        {"id": "chain", "defaults": defaults, "steps": [http("a"), http("b", "a"), http("c", "b")]},
        {
            "id": "fanout",
            "defaults": defaults,
            "steps": [
                http("root"),
                *(http(f"p{i}", "root") for i in range(4)),
                http("join", *(f"p{i}" for i in range(4))),
                http("each", "root", for_each=[1, 2, 3]),
                {"id": "count", "type": "transform", "depends_on": ["each"], "template": 1},
            ],
        },
        {
            "id": "retrying",
            "defaults": {"timeout": 10, "retry": {"max_attempts": 5, "initial_delay": 0.05}},
            "steps": [http("first"), http("flaky", "first", path="flaky"), http("after", "flaky")],
        },
        {
            "id": "ticking",
            "defaults": defaults,
            "schedules": [{"id": "every-2s", "interval": 2}],
            "steps": [http("tick")],
        },
    ]


EFFECT_STEPS = {
    "chain": ["a", "b", "c"],
    "fanout": ["root", "p0", "p1", "p2", "p3", "join", "each:0", "each:1", "each:2"],
    "retrying": ["first", "flaky", "after"],
    "ticking": ["tick"],
}


async def _leases(db: session.Database, pid: int) -> int:
    async with db.read() as conn:
        query = sa.text(
            "SELECT count(*) FROM step_runs WHERE status = 'RUNNING' AND lease_owner LIKE :owner"
        )
        return int((await conn.execute(query, {"owner": f"%:{pid}:%"})).scalar_one())


async def _all_runs(db: session.Database) -> list[tuple[str, str, str]]:
    async with db.read() as conn:
        rows = await conn.execute(sa.text("SELECT id, flow_id, status FROM runs"))
        return [(r.id, r.flow_id, r.status) for r in rows]


def _logs(processes: list[EngineProcess]) -> str:
    return "\n".join(f"--- {p.log_path.name}\n{p.log_text()[-2000:]}" for p in processes)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(360)
async def test_deployment_api_scheduler_three_workers_survives_a_killed_worker(
    tmp_path: Path,
) -> None:
    async with fresh_database("postgres", tmp_path) as url:
        db = session.Database(url)
        runs = RunService(store=SqlRunStore(db), clock=SystemClock(), signing_key=SIGNING_KEY)
        api_port, metrics_port = free_port(), free_port()
        engine = {
            "LOOM_ENGINE__LEASE_SECONDS": LEASE_SECONDS,
            "LOOM_ENGINE__POLL_INTERVAL": 0.2,
            "LOOM_LOG__LEVEL": "WARNING",
        }

        def process(name: str, command: str, ready: str, **settings: Any) -> EngineProcess:
            home = tmp_path / name
            home.mkdir()
            proc = EngineProcess(
                command=command, db_url=url, home=home, ready_text=ready, settings=settings
            )
            proc.log_path = tmp_path / f"{name}.log"
            return proc

        server = process(
            "api",
            "server",
            "Link Loom is listening",
            LOOM_SERVER__HOST="127.0.0.1",
            LOOM_SERVER__PORT=api_port,
            LOOM_SERVER__AUTH="false",
            LOOM_SERVER__RUN_WORKERS="false",
            LOOM_SERVER__RUN_SCHEDULER="false",
            LOOM_LOG__LEVEL="WARNING",
        )
        scheduler = process("scheduler", "scheduler", "", LOOM_SCHEDULER__TICK_SECONDS=0.5)
        workers = [
            process(f"worker-{n}", "worker", "worker running against", **engine) for n in range(3)
        ]
        workers[1].env["LOOM_METRICS__PORT"] = str(metrics_port)
        everyone = [server, scheduler, *workers]
        api = f"http://127.0.0.1:{api_port}"
        with FlakyIdempotentBackend(signing_key=SIGNING_KEY, delay=(0.02, 0.15)) as backend:
            for spec in flows(backend.url):
                await runs.apply_flow(FlowSpec.model_validate(spec))
            server.warm()
            began = time.monotonic()
            try:
                for proc in everyone:
                    proc.start()
                for proc in workers:  # five interpreters start at once: slow on a busy machine
                    await proc.wait_ready(150)
                async with httpx.AsyncClient(base_url=api, timeout=10) as client:
                    await _wait_healthy(client, server)
                    up_at = time.monotonic() - began
                    # Readiness sees every process through its heartbeat row.
                    early = await _poll(lambda: _all_seen(client), within=60)
                    triggered: list[str] = []
                    for _ in range(RUNS_PER_FLOW):
                        for flow_id in ("chain", "fanout", "retrying"):
                            answer = await client.post(
                                f"/api/v1/flows/{flow_id}/runs", json={"inputs": {}}
                            )
                            assert answer.status_code == 201, answer.text
                            triggered.append(answer.json()["id"])

                    # SIGKILL the first worker while it holds leased steps.
                    victim = workers[0]
                    held = await _poll(lambda: _leases(db, victim.pid), within=30)
                    victim.kill()
                    killed_at = time.monotonic() - began

                    await _poll(lambda: _finished(runs, triggered), within=60)
                    await asyncio.sleep(max(0.0, 5 - (time.monotonic() - began - killed_at)))
                    scheduler.stop()  # no new ticks; the ones created must still finish
                    await _poll(lambda: _all_final(db), within=30)

                    ready = await client.get("/readyz")
                    api_metrics = (await client.get("/metrics")).text
                    scrape = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
                    worker_metrics = scrape.text
            except (AssertionError, TimeoutError) as exc:
                raise AssertionError(f"{exc!r}\n{_logs(everyone)}") from exc
            finally:
                for proc in everyone:
                    proc.stop()
            elapsed = time.monotonic() - began
            every_run = await _all_runs(db)
            await db.dispose()

    by_flow = Counter(flow for _id, flow, _status in every_run)
    statuses = Counter(status for _id, _flow, status in every_run)
    expected = {f"{run_id}:{step}" for run_id, flow, _ in every_run for step in EFFECT_STEPS[flow]}
    redelivered = sum(backend.deliveries.values()) - len(backend.effects)
    print(
        f"\n{len(every_run)} runs {dict(by_flow)} in {elapsed:.1f}s (5 processes up in "
        f"{up_at:.1f}s); worker SIGKILLed at "
        f"{killed_at:.1f}s holding {held} leased steps; {len(backend.effects)} effects, "
        f"{redelivered} re-deliveries, {sum(backend.failed.values())} flaky 500s"
    )
    assert statuses == {"SUCCEEDED": len(every_run)}, statuses
    assert by_flow["ticking"] >= 2, "the scheduler process fired the interval schedule"
    assert set(backend.effects) == expected, "effects missing or under unexpected keys"
    assert backend.duplicates() == {}, "an effect was recorded twice"
    assert backend.problems == [], backend.problems[:10]
    assert sum(backend.failed.values()) == FLAKY_FAILURES * RUNS_PER_FLOW
    assert held > 0

    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["database"] is True
    assert checks["migrations"] is True
    assert checks["workers"] is True, checks
    assert int(checks["worker_processes"]) >= 2, checks
    assert checks["scheduler_processes"] == "0", "the stopped scheduler removed its heartbeat"
    assert early["worker_processes"] == "3"
    # The API process created the manual runs; the workers finished them.
    for flow_id in ("chain", "fanout", "retrying"):
        labels = f'flow_id="{flow_id}",trigger="manual"'
        sample = f"loom_runs_started_total{{{labels}}} {RUNS_PER_FLOW}.0"
        assert sample in api_metrics, f"{sample} not in the API's /metrics"
    assert "loom_queue_ready_steps 0.0" in api_metrics
    assert 'loom_runs_finished_total{flow_id="' in worker_metrics
    assert "loom_backend_responses_total{" in worker_metrics
    assert 'code="200"' in worker_metrics


async def _wait_healthy(client: httpx.AsyncClient, server: EngineProcess) -> None:
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert server.proc is not None
        assert server.proc.poll() is None, "the API server exited"
        await asyncio.sleep(0.1)
    raise AssertionError("the API server did not answer /healthz within 150 s")


async def _finished(runs: RunService, run_ids: list[str]) -> bool:
    found = [await runs.get_run(r) for r in run_ids]
    return all(run.status.terminal for run in found)


async def _all_final(db: session.Database) -> bool:
    return all(status in FINAL for _id, _flow, status in await _all_runs(db))


async def _poll(read: Callable[[], Awaitable[Any]], *, within: float) -> Any:
    """Poll ``read`` until it returns something truthy (the database is another process's)."""
    async with asyncio.timeout(within):
        while True:
            value = await read()
            if value:
                return value
            await asyncio.sleep(0.02)


async def _all_seen(client: httpx.AsyncClient) -> dict[str, Any] | None:
    checks: dict[str, Any] = (await client.get("/readyz")).json()["checks"]
    seen = checks.get("worker_processes") == "3" and checks.get("scheduler_processes") == "1"
    return checks if seen else None
