"""The run store's completion transaction alone, on SQLite: CPU per ``update_run_many``.

One run, and N completions written one after another, each what a finished ``http`` step
writes: the finished step and the next one leased (two step rows), an attempt, the recorded
exchange and two events. On SQLite the transaction runs on the store's writer thread; the
figure is that thread's CPU per transaction (``time.thread_time``), which moves far less with
machine load than wall time. It imports the checkout it sits in: to compare two checkouts
(e.g. a git worktree of an older commit), copy it into the other's ``bench/`` and run both in
turn, a few times each:

    .venv/bin/python bench/bench_completion.py [--count 2000] [--steps 3]

``--steps`` is the number of steps of the run, all of which each completion reads.

Under ``valgrind --tool=callgrind`` with ``--count 0`` and ``--count 200`` the difference of
the two totals is the instructions of 200 completions (repeatable under load).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from linkloom.engine.models import RunStatus, StepStatus
from linkloom.engine.records import (
    Attempt,
    ExchangeRecord,
    Run,
    RunChanges,
    RunEvent,
    RunSnapshot,
    StepRun,
)
from linkloom.store import session
from linkloom.store.runs import SqlRunStore

_spent = [0.0]


def _timing(runner: Any) -> Any:
    def timed(self: session.Database, fn: Any) -> Any:
        started = time.thread_time()
        try:
            return runner(self, fn)
        finally:
            _spent[0] += time.thread_time() - started

    return timed


# The writer thread's entry points: every write, and (since the bare pysqlite writer) the hot
# transactions. An older checkout has only the first.
for _name in ("_sync_write", "_sync_hot_write"):
    if hasattr(session.Database, _name):
        setattr(session.Database, _name, _timing(getattr(session.Database, _name)))


def completion(now: datetime) -> Any:
    count = [0]

    def mutate(snapshot: RunSnapshot) -> RunChanges:
        count[0] += 1
        n = count[0]
        done, following = snapshot.steps[0], snapshot.steps[1]
        body = {"headers": {"content-type": "application/json"}, "body": {"status": "SUCCESS"}}
        return RunChanges(
            steps=(
                replace(done, status=StepStatus.SUCCEEDED, output={"ok": True}, finished_at=now),
                replace(following, status=StepStatus.RUNNING, attempt=n, lease_owner="w"),
            ),
            attempts=(
                Attempt(
                    id=uuid.uuid4().hex, step_run_id=done.id, run_id=done.run_id,
                    step_id=done.step_id, number=n, status=StepStatus.SUCCEEDED,
                    started_at=now, finished_at=now, duration_ms=1.0,
                ),
            ),
            exchanges=(
                ExchangeRecord(
                    id=uuid.uuid4().hex, run_id=done.run_id, step_id=done.step_id, attempt=n,
                    seq=0, method="POST", url="http://127.0.0.1/s", request=body,
                    response=body, status=200, duration_ms=1.0, created_at=now,
                ),
            ),
            events=(
                RunEvent(run_id=done.run_id, step_id=done.step_id, kind="step_succeeded", at=now),
                RunEvent(run_id=done.run_id, step_id=following.step_id, kind="step_started",
                         at=now),
            ),
        )  # fmt: skip

    return mutate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=3, help="steps of the run (each read)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/loom.db"
        await session.upgrade(url)
        store = SqlRunStore(session.Database(url))
        now = datetime.now(UTC)
        run = Run(id="r", flow_id="f", version=1, status=RunStatus.RUNNING, trigger="manual",
                  created_at=now)  # fmt: skip
        steps = [
            StepRun(id=f"s{i}", run_id="r", step_id=f"s{i}", status=StepStatus.QUEUED)
            for i in range(args.steps)
        ]
        await store.create_run(run, steps)
        mutate = completion(now)
        for _ in range(50):  # warm up: statements compiled, pages cached
            await store.update_run_many("r", [mutate])
        _spent[0] = 0.0
        for _ in range(args.count):
            await store.update_run_many("r", [mutate])
        await store.db.dispose()
    per = _spent[0] / args.count * 1e6 if args.count else 0.0
    print(
        f"writer-thread CPU per completion transaction: {per:.0f} µs "
        f"({args.count} runs, {args.steps} steps)"
    )


if __name__ == "__main__":
    asyncio.run(main())
