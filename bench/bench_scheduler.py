"""Benchmark the scheduler: 10,000 cron schedules, cost per tick and lateness of fires.

    .venv/bin/python bench/bench_scheduler.py [--schedules 10000] [--seconds 20]

Runs the real ``Scheduler`` over the in-memory store and run launcher (so the figures are the
scheduler's own cost, not the database's) with a real clock:

* idle tick: a pass over every schedule when nothing is due (the steady state), median;
* busy ticks: passes that create runs, median and p99, and runs created per second;
* lateness: creation time minus fire time of every run created, p50/p99/max.

Baseline, measured in the same run: bare ``croniter`` computing the next fire time of the same
10,000 expressions once (what any cron scheduler must at least do per cycle). Printed as a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog
from croniter import croniter

from linkloom.scheduler.memory import InMemoryRuns, InMemorySchedulerStore
from linkloom.scheduler.service import Scheduler

ZONES = ["UTC", "Europe/Kyiv", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def expressions(n: int, rng: random.Random, pattern: str) -> list[tuple[str, str]]:
    """Cron expressions with a seconds field (croniter's 6th), so a short run sees fires.

    ``dense``: every 5-60 s during some minutes (~450 fires/s for 10,000): a stress test.
    ``hourly``: once an hour at a random minute and second (~2.8 fires/s for 10,000): what
    10,000 real cron schedules look like.
    """
    out = []
    for _ in range(n):
        if pattern == "hourly":
            expr = f"{rng.randrange(60)} * * * * {rng.randrange(60)}"
        else:
            every = rng.choice([5, 10, 15, 20, 30, 60])
            minute = rng.choice(["*", "*/2", "*/5"])
            expr = f"{minute} * * * * */{every}"
        out.append((expr, rng.choice(ZONES)))
    return out


async def database_setup(url: str, specs: list[dict], clock: RealClock) -> tuple:
    """Insert the flows in bulk (the run service's apply is one transaction per flow)."""
    import hashlib
    import json

    from linkloom.engine.service import RunService
    from linkloom.flows.spec import FlowSpec
    from linkloom.store import session, tables
    from linkloom.store.runs import SqlRunStore
    from linkloom.store.schedules import SqlSchedulerStore

    await session.upgrade(url)
    db = session.Database(url)
    now = clock.now()
    async with db.begin() as conn:
        for table in reversed(tables.metadata.sorted_tables):
            await conn.execute(table.delete())
        flows, versions = [], []
        for spec in specs:
            data = FlowSpec.model_validate(spec).model_dump(mode="json", by_alias=True)
            digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
            flows.append(
                {"id": spec["id"], "name": None, "current_version": 1, "paused": False,
                 "created_at": now, "updated_at": now}
            )  # fmt: skip
            versions.append(
                {"flow_id": spec["id"], "version": 1, "spec": data, "content_hash": digest,
                 "source": "apply", "created_at": now}
            )  # fmt: skip
        await conn.execute(tables.flows.insert(), flows)
        await conn.execute(tables.flow_versions.insert(), versions)
    runs = RunService(store=SqlRunStore(db), clock=clock)
    return db, SqlSchedulerStore(db), runs


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def baseline(exprs: list[tuple[str, str]], repeat: int = 5) -> float:
    start = datetime.now()  # naive: croniter's cheapest path
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for expr, _zone in exprs:
            croniter(expr, start).get_next(datetime)
        best = min(best, time.perf_counter() - t0)
    return best


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pattern", choices=["dense", "hourly"], default="")
    parser.add_argument(
        "--db",
        default="",
        help="Run on a real database (a fresh, migrated one is recommended): runs are created "
        "by the real run service and schedule state lives in the database.",
    )
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    rng = random.Random(7)
    pattern = args.pattern or ("hourly" if args.db else "dense")
    exprs = expressions(args.schedules, rng, pattern)

    clock = RealClock()
    specs = [
        {
            "id": f"flow-{i:05d}",
            "schedules": [{"cron": expr, "timezone": zone}],
            "steps": [{"id": "s", "type": "transform", "template": 1}],
        }
        for i, (expr, zone) in enumerate(exprs)
    ]
    db = None
    if args.db:
        db, store, runs = await database_setup(args.db, specs, clock)
    else:
        runs = InMemoryRuns(clock)
        store = InMemorySchedulerStore(runs)
        for spec in specs:
            store.put_flow(spec)
    scheduler = Scheduler(store=store, runs=runs, clock=clock)

    t0 = time.perf_counter()
    await scheduler.tick()  # first pass: parses 10k specs and initialises every schedule
    first = time.perf_counter() - t0

    idle: list[float] = []
    busy: list[float] = []
    lateness: list[float] = []
    created = 0
    end = time.monotonic() + args.seconds
    # Fires that fell due during the first tick are caught up by the next one: warm-up, not
    # steady state. They are counted apart.
    warmup = await scheduler.tick()
    while time.monotonic() < end:
        t0 = time.perf_counter()
        report = await scheduler.tick()
        spent = time.perf_counter() - t0
        (busy if report.created else idle).append(spent)
        lateness.extend(report.lateness)
        created += report.created
        delay = 1.0
        if report.next_wakeup is not None:
            delay = min(delay, max((report.next_wakeup - clock.now()).total_seconds(), 0.0))
        await asyncio.sleep(max(delay, 0.005))

    if db is not None:
        await db.dispose()
    base = baseline(exprs)
    idle_med = statistics.median(idle) if idle else float("nan")
    busy_med = statistics.median(busy) if busy else float("nan")
    where = "database " + args.db.split("@")[-1] if args.db else "in-memory store"
    print(f"schedules: {args.schedules:,} ({where}, {pattern})   run: {args.seconds:.0f}s")
    print(f"runs created: {created:,}")
    print(f"first tick (parse + initialise every schedule): {first * 1000:.1f} ms")
    print(f"warm-up tick: created {warmup.created} runs that fell due during the first tick")
    print(f"idle tick (nothing due), median of {len(idle)}: {idle_med * 1000:.2f} ms")
    print(
        f"busy tick (creating runs), median of {len(busy)}: {busy_med * 1000:.2f} ms, "
        f"p99 {pct(busy, 0.99) * 1000:.2f} ms"
    )
    print(
        f"fire lateness: p50 {pct(lateness, 0.50) * 1000:.1f} ms, "
        f"p99 {pct(lateness, 0.99) * 1000:.1f} ms, max {max(lateness, default=0) * 1000:.1f} ms"
    )
    print(f"baseline: bare croniter next fire of the same {args.schedules:,}: {base * 1000:.1f} ms")
    print(f"ratio idle tick / baseline: {idle_med / base:.3g}x")
    print(f"ratio busy tick / baseline: {busy_med / base:.3g}x")


if __name__ == "__main__":
    asyncio.run(main())
