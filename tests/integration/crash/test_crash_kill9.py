"""Crash test: a real ``loom worker`` process runs 100-step DAGs against a real backend and is
killed with SIGKILL at random moments (at least 20 times), restarted each time. At the end every
run has SUCCEEDED, no step is left RUNNING or QUEUED, and the backend, which de-duplicates by
``Idempotency-Key``, recorded each step's effect exactly once, with every downstream step having
been sent exactly the outputs its upstream steps' effects produced."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from linkloom.engine.models import RunStatus
from linkloom.engine.service import RunService
from linkloom.flows.spec import FlowSpec
from linkloom.store import session
from linkloom.store.runs import SqlRunStore
from linkloom.testing import SystemClock
from tests.integration.crash.engine_process import (
    SIGNING_KEY,
    EngineProcess,
    fresh_database,
    step_status_counts,
)
from tests.support.backends import IdempotentBackend

KILLS = 20
STEPS = 100
MAX_RUNS = 8
LEASE_SECONDS = 2


def hundred_step_dag(url: str, *, seed: int = 7) -> dict[str, Any]:
    """100 http steps in blocks of ten: a fan-in of the previous block's nine, then nine steps
    that each either continue a chain or fan out from the block's head."""
    rng = random.Random(seed)
    steps: list[dict[str, Any]] = [{"id": "s0", "type": "http", "url": f"{url}/s0"}]
    for i in range(1, STEPS):
        head = i - i % 10
        if i % 10 == 0:
            deps = [f"s{j}" for j in range(i - 9, i)]  # fan-in
        elif i % 10 == 1 or rng.random() < 0.5:
            deps = [f"s{head}"]  # fan-out from the head
        else:
            deps = [f"s{i - 1}"]  # chain
        steps.append({"id": f"s{i}", "type": "http", "url": f"{url}/s{i}", "depends_on": deps})
    return {
        "id": "crash-dag",
        "defaults": {
            "timeout": 10,
            "retry": {"max_attempts": 5, "initial_delay": 0.05, "max_delay": 0.5},
        },
        "steps": steps,
    }


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_worker_killed_20_times_loses_nothing_and_repeats_no_effect(
    kind: str, tmp_path: Path
) -> None:
    rng = random.Random(20261122)
    async with fresh_database(kind, tmp_path) as url:
        db = session.Database(url)
        runs = RunService(store=SqlRunStore(db), clock=SystemClock(), signing_key=SIGNING_KEY)
        worker = EngineProcess(
            command="worker",
            db_url=url,
            home=tmp_path,
            ready_text="worker running against",
            settings={
                "LOOM_ENGINE__LEASE_SECONDS": LEASE_SECONDS,
                "LOOM_ENGINE__POLL_INTERVAL": 0.1,
                "LOOM_ENGINE__CONCURRENCY": 32,
            },
        )
        with IdempotentBackend(signing_key=SIGNING_KEY, delay=(0.005, 0.05)) as backend:
            await runs.apply_flow(FlowSpec.model_validate(hundred_step_dag(backend.url)))
            worker.warm()
            run_ids: list[str] = []
            startups: list[float] = []
            began = time.monotonic()
            try:
                for _ in range(KILLS):
                    unfinished = [r for r in run_ids if not (await runs.get_run(r)).status.terminal]
                    if len(unfinished) < 2 and len(run_ids) < MAX_RUNS:
                        run_ids.append((await runs.trigger("crash-dag")).id)
                    worker.start()
                    started = time.monotonic()
                    await worker.wait_ready()
                    startups.append(time.monotonic() - started)
                    await asyncio.sleep(rng.uniform(0.2, 1.5))
                    worker.kill()
                worker.start()  # the last restart: it must finish everything
                await worker.wait_ready()
                final = time.monotonic()
                async with asyncio.timeout(90):
                    while True:
                        found = [await runs.get_run(r) for r in run_ids]
                        if all(r.status.terminal for r in found):
                            break
                        await asyncio.sleep(0.2)
            finally:
                worker.stop()
            elapsed = time.monotonic() - began
            final = time.monotonic() - final

            statuses = {r.id: r.status for r in found}
            counts = await step_status_counts(db)
            await db.dispose()
            expected = {f"{r}:s{i}" for r in run_ids for i in range(STEPS)}
            redelivered = sum(backend.deliveries.values()) - len(backend.effects)
            print(
                f"\n[{kind}] {worker.starts} starts ({KILLS} SIGKILLs), {len(run_ids)} runs, "
                f"{len(backend.effects)} effects, {redelivered} re-deliveries, {elapsed:.1f}s "
                f"(median start {statistics.median(startups):.1f}s, last restart {final:.1f}s)"
            )

    assert worker.starts == KILLS + 1
    assert all(s is RunStatus.SUCCEEDED for s in statuses.values()), statuses
    assert counts == {"SUCCEEDED": STEPS * len(run_ids)}, f"steps left unfinished: {counts}"
    assert set(backend.effects) == expected, "effects missing or under unexpected keys"
    assert backend.duplicates() == {}
    assert backend.problems == [], backend.problems[:10]
    assert redelivered > 0, "no kill interrupted a call in flight: the test proved nothing"
