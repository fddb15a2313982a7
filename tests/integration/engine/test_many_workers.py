"""Several workers on one database: every step is executed exactly once (no double claims)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from engine_harness import Engine, step

from linkloom.engine.models import RunStatus
from linkloom.engine.worker import Worker


@pytest.mark.slow
async def test_three_workers_execute_every_step_exactly_once(engine: Engine) -> None:
    b = engine.backend
    base = engine.worker
    others = [
        Worker(
            store=engine.store,
            executors=base.runner.executors,
            services=base.runner.services,
            concurrency=6,
            lease_seconds=5,
            poll_interval=0.02,
            specs=engine.runs.specs,
            on_run_finished=engine.runs.notify_finished,
        )
        for _ in range(2)
    ]
    for w in others:
        await w.start()
    try:
        await engine.apply(
            {
                "id": "crowd",
                "steps": [
                    step("first", b),
                    {**step("each", b), "depends_on": ["first"],
                     "for_each": "{{ range(15) | list }}"},
                    step("last", b, depends_on=["each"]),
                ],
            }
        )  # fmt: skip
        runs = [await engine.runs.trigger("crowd", inputs={}) for _ in range(6)]
        async with asyncio.timeout(60):
            done = [await engine.runs.wait(r.id, poll=0.05) for r in runs]
        assert {d.status for d in done} == {RunStatus.SUCCEEDED}
        keys = Counter(c["headers"]["Idempotency-Key"] for c in b.calls)
        assert len(keys) == 6 * 17
        assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]
        assert sum(1 for w in others if w.steps_done) >= 1, "the other workers never claimed"
    finally:
        for w in others:
            await w.stop(grace=1)
