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

Baseline, same run: the same transactions' statements (SQL and bound values as the store
sent them, recorded from another ``--count`` completions) replayed on a bare ``sqlite3``
connection to a copy of the database taken before them, with the store's pragmas: ``BEGIN
IMMEDIATE``, each statement, every row fetched, ``COMMIT``. That is SQLite's own cost of the
work, plus pysqlite's binding; the ratio is how far the writer is from it. The baseline needs
``linkloom.store.raw`` (the bare writer); in an older checkout it is skipped.

Under ``valgrind --tool=callgrind`` with ``--count 0`` and ``--count 200`` the difference of
the two totals is the instructions of 200 completions (repeatable under load); ``--no-baseline``
leaves the recording and the replay out of that total.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
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


# ---- the baseline: the same statements on a bare sqlite3 connection ---------------------------
Recorded = list[list[tuple[str, Any, bool]]]  # per transaction: (sql, bound values, executemany)


def recording(recorded: Recorded) -> Any:
    """Patch the store so that each hot transaction's statements are appended to ``recorded``;
    returns the function that undoes it. ``None`` in a checkout without ``raw.Statement``."""
    try:
        from linkloom.store import raw
    except ImportError:
        return None
    run = raw.Statement._run
    hot = session.Database._sync_hot_write

    def record(conn: Any, compiled: Any, bound: Any, *, many: bool) -> Any:
        recorded[-1].append((compiled.sql, list(bound) if many else bound, many))
        return run(conn, compiled, bound, many=many)

    def transaction(self: session.Database, fn: Any) -> Any:
        recorded.append([])
        return hot(self, fn)

    raw.Statement._run = staticmethod(record)  # type: ignore[method-assign]
    session.Database._sync_hot_write = transaction  # type: ignore[method-assign]

    def undo() -> None:
        raw.Statement._run = staticmethod(run)  # type: ignore[method-assign]
        session.Database._sync_hot_write = hot  # type: ignore[method-assign]

    return undo


def replay(path: str, recorded: Recorded) -> float:
    """Run the recorded transactions on a bare connection to ``path``; CPU per transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    started = time.thread_time()
    for statements in recorded:
        conn.execute("BEGIN IMMEDIATE")
        for sql, bound, many in statements:
            cursor = conn.executemany(sql, bound) if many else conn.execute(sql, bound)
            cursor.fetchall()
        conn.execute("COMMIT")
    spent = time.thread_time() - started
    conn.close()
    return spent / len(recorded)


def copy(source: str, target: str) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000, help="completions timed (default 2000)")
    parser.add_argument(
        "--steps", type=int, default=3, help="steps of the run, each read (default 3)"
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the bare sqlite3 replay (for callgrind)"
    )
    args = parser.parse_args()
    started_load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    recorded: Recorded = []
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/loom.db"
        url = f"sqlite+aiosqlite:///{path}"
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
        undo = None
        if args.count and not args.no_baseline:
            copy(path, f"{tmp}/bare.db")  # the state the recorded completions start from
            undo = recording(recorded)
            if undo is not None:
                for _ in range(args.count):
                    await store.update_run_many("r", [mutate])
                undo()
        _spent[0] = 0.0
        for _ in range(args.count):
            await store.update_run_many("r", [mutate])
        await store.db.dispose()
        bare = replay(f"{tmp}/bare.db", recorded) if recorded else 0.0
    per = _spent[0] / args.count * 1e6 if args.count else 0.0
    ended_load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"writer-thread CPU per completion transaction: {per:.0f} µs "
        f"({args.count} runs, {args.steps} steps)"
    )
    if recorded:
        statements = sum(len(t) for t in recorded) / len(recorded)
        print(
            f"baseline, the same statements on a bare sqlite3 connection: {bare * 1e6:.0f} µs "
            f"per transaction ({statements:.0f} statements each); writer / bare "
            f"{per / (bare * 1e6):.2f}×"
        )
    elif args.count and not args.no_baseline:
        print("baseline: skipped (this checkout has no linkloom.store.raw to record)")
    print(f"load average: {started_load} at the start, {ended_load} at the end")


if __name__ == "__main__":
    asyncio.run(main())
