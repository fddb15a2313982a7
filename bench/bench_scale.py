"""How Link Loom's cost grows with the work: history, fan-out, schedules, workers. Each figure
is printed beside the smallest case of the same run (a ratio), with the machine's load average.

The defaults are the full sizes, which run long (writing the 1,000,000 runs of history alone
took 639 s on PostgreSQL). Smoke runs, on SQLite about 45 s and 3 s:

    .venv/bin/python bench/bench_scale.py history --db sqlite --sizes 1000,5000 --requests 5
    .venv/bin/python bench/bench_scale.py fanout --db sqlite --items 200,1000

Real figures (``--requests`` at its default; PostgreSQL comes from ``LOOM_TEST_POSTGRES_URL``,
a scratch database is created and dropped):

    .venv/bin/python bench/bench_scale.py history [--db sqlite,postgres] [--sizes 10000,100000]
    .venv/bin/python bench/bench_scale.py fanout  [--db postgres] [--items 1000,10000]
    .venv/bin/python bench/bench_scale.py schedules [--schedules 10000] [--seconds 180]
    .venv/bin/python bench/bench_scale.py workers [--runs 200]

``bench_scale.py SUBCOMMAND --help`` describes each one and its options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from linkloom import config, logs, wiring  # noqa: E402
from linkloom.flows.spec import FlowSpec  # noqa: E402
from linkloom.store import session  # noqa: E402
from linkloom.store.retention import RetentionPolicy, SqlRetention  # noqa: E402
from linkloom.testing import SystemClock  # noqa: E402

FLOWS = 20
YEAR_SECONDS = 365 * 24 * 3600
LOOM = str(Path(sys.executable).with_name("loom"))


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---- databases --------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def database(kind: str) -> AsyncIterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/loom.db"
            await session.upgrade(url)
            yield url
        return
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(os.environ["LOOM_TEST_POSTGRES_URL"])
    name = f"loom_scale_{uuid.uuid4().hex[:8]}"
    admin = base.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base.set(database=name).render_as_string(False)
    try:
        await session.upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flow_spec(flow_id: str) -> FlowSpec:
    steps = [
        {"id": "s0", "type": "transform", "template": "{{ inputs.n | default(1) }}"},
        {"id": "s1", "type": "transform", "template": "{{ 2 }}", "depends_on": ["s0"]},
        {"id": "s2", "type": "transform", "template": "{{ 3 }}", "depends_on": ["s1"]},
    ]
    return FlowSpec.model_validate({"id": flow_id, "steps": steps})


def flow_ids() -> list[str]:
    return [f"flow-{i:02d}" for i in range(FLOWS)]


# ---- generating history ---------------------------------------------------------------------
# Run g (1-based) is created ``g * step`` seconds before ``newest``: growing the history adds
# older runs, so the newest pages stay the same runs at every size.
_PG_ID = "lpad(to_hex({g}), 8, '0') || '-{k:04x}-4000-8000-' || lpad(to_hex({g}), 12, '0')"
_SQLITE_ID = "printf('%08x-{k:04x}-4000-8000-%012x', {g}, {g})"


def _pg_history(start: int, end: int, newest: datetime, step: float) -> list[str]:
    rid = _PG_ID.format(g="g", k=0)
    parent = _PG_ID.format(g="(g - 1)", k=0)
    created = f"(TIMESTAMPTZ '{newest.isoformat()}' - g * interval '{step} seconds')"
    status = (
        "CASE WHEN g % 50 = 0 THEN 'FAILED' WHEN g % 97 = 0 THEN 'CANCELLED' ELSE 'SUCCEEDED' END"
    )
    trigger = (
        "CASE WHEN g % 100 = 1 AND g > 1 THEN 'subflow' WHEN g % 10 < 7 THEN 'schedule' "
        "WHEN g % 10 < 9 THEN 'manual' ELSE 'webhook' END"
    )
    series = f"generate_series({start}, {end}) g"
    steps = f"{series}, generate_series(0, 2) k"
    sid = (
        "lpad(to_hex(g), 8, '0') || '-' || lpad(to_hex(k + 1), 4, '0') || '-4000-8000-' "
        "|| lpad(to_hex(g), 12, '0')"
    )
    return [
        f"""INSERT INTO runs (id, flow_id, version, status, trigger, trigger_info, inputs, outputs,
            parent_run_id, created_at, started_at, finished_at, sandbox, lock_version)
            SELECT {rid}, 'flow-' || lpad((g % {FLOWS})::text, 2, '0'), 1, {status}, {trigger},
            '{{}}'::jsonb, jsonb_build_object('n', g), jsonb_build_object('total', g),
            CASE WHEN g % 100 = 1 AND g > 1 THEN {parent} END,
            {created}, {created}, {created} + interval '40 ms', false, 0 FROM {series}""",
        f"""INSERT INTO step_runs (id, run_id, step_id, status, attempt, output, state,
            idempotency_key, started_at, finished_at)
            SELECT {sid}, {rid}, 's' || k, 'SUCCEEDED', 1, jsonb_build_object('value', g),
            '{{}}'::jsonb, {rid} || ':s' || k, {created}, {created} + interval '10 ms'
            FROM {steps}""",
        f"""INSERT INTO step_attempts (id, step_run_id, run_id, step_id, number, status,
            started_at, finished_at, duration_ms)
            SELECT 'a' || {sid}, {sid}, {rid}, 's' || k, 1, 'SUCCEEDED', {created},
            {created} + interval '10 ms', 10 FROM {steps}""",
        f"""INSERT INTO exchanges (id, run_id, step_id, attempt, seq, method, url, request,
            response, status, duration_ms, created_at)
            SELECT 'x' || {sid}, {rid}, 's' || k, 1, 0, 'POST', 'http://backend/orders',
            jsonb_build_object('headers', '{{}}'::jsonb, 'body', jsonb_build_object('n', g)),
            jsonb_build_object('headers', '{{}}'::jsonb, 'body', jsonb_build_object('ok', true)),
            200, 3.5, {created} FROM {steps}""",
        f"""INSERT INTO run_events (run_id, step_id, attempt, kind, level, message, at)
            SELECT {rid}, CASE WHEN e BETWEEN 1 AND 3 THEN 's' || (e - 1) END,
            CASE WHEN e BETWEEN 1 AND 3 THEN 1 END,
            CASE e WHEN 0 THEN 'run_created' WHEN 4 THEN 'run_finished' ELSE 'log' END,
            'info', 'line ' || e || ' of run ' || g, {created}
            FROM {series}, generate_series(0, 4) e""",
    ]


def _sqlite_history(start: int, end: int, newest: datetime, step: float) -> list[str]:
    rid = _SQLITE_ID.format(g="x", k=0)
    parent = _SQLITE_ID.format(g="(x - 1)", k=0)
    epoch = newest.timestamp()
    created = f"(strftime('%Y-%m-%d %H:%M:%S', {epoch} - x * {step}, 'unixepoch') || '.000000')"
    done = f"(strftime('%Y-%m-%d %H:%M:%S', {epoch} - x * {step} + 1, 'unixepoch') || '.000000')"
    status = (
        "CASE WHEN x % 50 = 0 THEN 'FAILED' WHEN x % 97 = 0 THEN 'CANCELLED' ELSE 'SUCCEEDED' END"
    )
    trigger = (
        "CASE WHEN x % 100 = 1 AND x > 1 THEN 'subflow' WHEN x % 10 < 7 THEN 'schedule' "
        "WHEN x % 10 < 9 THEN 'manual' ELSE 'webhook' END"
    )
    series = (
        f"WITH RECURSIVE g(x) AS (SELECT {start} UNION ALL SELECT x + 1 FROM g WHERE x < {end})"
    )
    kk = "(SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2)"
    ee = "(SELECT 0 AS e " + "".join(f"UNION ALL SELECT {e} " for e in range(1, 5)) + ")"
    sid = "printf('%08x-%04x-4000-8000-%012x', x, k + 1, x)"
    return [
        f"""{series} INSERT INTO runs (id, flow_id, version, status, trigger, trigger_info, inputs,
            outputs, parent_run_id, created_at, started_at, finished_at, sandbox, lock_version)
            SELECT {rid}, printf('flow-%02d', x % {FLOWS}), 1, {status}, {trigger}, '{{}}',
            json_object('n', x), json_object('total', x),
            CASE WHEN x % 100 = 1 AND x > 1 THEN {parent} END, {created}, {created}, {done}, 0, 0
            FROM g""",
        f"""{series} INSERT INTO step_runs (id, run_id, step_id, status, attempt, output, state,
            idempotency_key, started_at, finished_at)
            SELECT {sid}, {rid}, 's' || k, 'SUCCEEDED', 1, json_object('value', x), '{{}}',
            {rid} || ':s' || k, {created}, {done} FROM g, {kk}""",
        f"""{series} INSERT INTO step_attempts (id, step_run_id, run_id, step_id, number, status,
            started_at, finished_at, duration_ms)
            SELECT 'a' || {sid}, {sid}, {rid}, 's' || k, 1, 'SUCCEEDED', {created}, {done}, 10
            FROM g, {kk}""",
        f"""{series} INSERT INTO exchanges (id, run_id, step_id, attempt, seq, method, url,
            request, response, status, duration_ms, created_at)
            SELECT 'x' || {sid}, {rid}, 's' || k, 1, 0, 'POST', 'http://backend/orders',
            json_object('headers', json('{{}}'), 'body', json_object('n', x)),
            json_object('headers', json('{{}}'), 'body', json_object('ok', json('true'))),
            200, 3.5, {created} FROM g, {kk}""",
        f"""{series} INSERT INTO run_events (run_id, step_id, attempt, kind, level, message, at)
            SELECT {rid}, CASE WHEN e BETWEEN 1 AND 3 THEN 's' || (e - 1) END,
            CASE WHEN e BETWEEN 1 AND 3 THEN 1 END,
            CASE e WHEN 0 THEN 'run_created' WHEN 4 THEN 'run_finished' ELSE 'log' END,
            'info', 'line ' || e || ' of run ' || x, {created} FROM g, {ee}""",
    ]


async def grow(url: str, *, have: int, want: int, newest: datetime, step: float) -> float:
    """Add runs ``have + 1 … want``; the seconds it took."""
    started = time.perf_counter()
    db = session.Database(url)
    chunk = 50_000
    try:
        for first in range(have + 1, want + 1, chunk):
            last = min(want, first + chunk - 1)
            make = _pg_history if db.dialect == "postgresql" else _sqlite_history
            statements = make(first, last, newest, step)
            if db.dialect == "postgresql":  # psycopg reads % as a placeholder
                statements = [s.replace("%", "%%") for s in statements]

            def write(conn: sa.Connection, statements: list[str] = statements) -> None:
                for statement in statements:
                    conn.exec_driver_sql(statement)

            await db.run_write(write)
        if db.dialect == "postgresql":
            async with db.writer.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql("VACUUM ANALYZE")
        else:
            await db.run_write(lambda c: c.exec_driver_sql("ANALYZE"))
    finally:
        await db.dispose()
    return time.perf_counter() - started


# ---- a real server ----------------------------------------------------------------------------
@contextlib.contextmanager
def server(url: str, home: Path) -> Iterator[str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOOM_")},
        "LOOM_DATABASE__URL": url,
        "LOOM_HOME": str(home),
        "LOOM_SERVER__PORT": str(port),
        "LOOM_SERVER__AUTH": "false",
        "LOOM_SERVER__RUN_WORKERS": "false",
        "LOOM_SERVER__RUN_SCHEDULER": "false",
        "LOOM_LOG__LEVEL": "WARNING",
        "LOOM_NOTIFICATIONS__ENABLED": "false",
    }
    log = (home / "server.log").open("w")
    proc = subprocess.Popen([LOOM, "server"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"loom server did not start: {(home / 'server.log').read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def timed(call: Callable[[], Any], count: int) -> list[float]:
    call()  # warm the server's caches and this client's connection
    found = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        found.append(time.perf_counter() - started)
    return found


def measure_pages(base: str, *, count: int, newest: datetime) -> dict[str, list[float]]:
    client = httpx.Client(base_url=base, timeout=60)
    found: dict[str, list[float]] = {}

    def get(path: str, **params: Any) -> Callable[[], httpx.Response]:
        def call() -> httpx.Response:
            response = client.get(path, params=params)
            response.raise_for_status()
            return response

        return call

    first = client.get("/api/v1/runs", params={"limit": 50}).json()
    run_id = first["items"][0]["id"]
    sub = client.get("/api/v1/runs", params={"trigger": "subflow", "limit": 1}).json()["items"]
    parent = sub[0]["parent_run_id"] if sub else run_id
    cursor = None
    for _ in range(20):  # the 21st page of 50: 1,000 runs deep
        page = client.get(
            "/api/v1/runs", params={"limit": 50, "cursor": cursor} if cursor else {"limit": 50}
        ).json()
        cursor = page["next_cursor"]
    month = (newest - timedelta(days=30)).isoformat()
    week = (newest - timedelta(days=23)).isoformat()
    cases: dict[str, Callable[[], Any]] = {
        "GET /runs": get("/api/v1/runs"),
        "GET /runs?flow=": get("/api/v1/runs", flow="flow-07"),
        "GET /runs?status=FAILED": get("/api/v1/runs", status="FAILED"),
        "GET /runs?status=RUNNING (none)": get("/api/v1/runs", status="RUNNING"),
        "GET /runs?trigger=webhook": get("/api/v1/runs", trigger="webhook"),
        "GET /runs?flow=&status=CANCELLED": get("/api/v1/runs", flow="flow-03", status="CANCELLED"),
        "GET /runs?since=&until=": get("/api/v1/runs", since=month, until=week),
        "GET /runs?parent=": get("/api/v1/runs", parent=parent),
        "GET /runs page 21 (cursor)": get("/api/v1/runs", limit=50, cursor=cursor),
        "GET /runs/{id}": get(f"/api/v1/runs/{run_id}"),
        "web run page": get(f"/runs/{run_id}"),
        "web dashboard": get("/"),
        "web flow page": get("/flows/flow-07"),
    }
    for name, call in cases.items():
        found[name] = timed(call, count)
    env = {**os.environ, "LOOM_SERVER_URL": base}
    env.pop("LOOM_TOKEN", None)

    def cli(*args: str) -> Callable[[], None]:
        def call() -> None:
            subprocess.run([LOOM, *args], env=env, check=True, capture_output=True)

        return call

    found["loom run list --help (start-up)"] = timed(
        cli("run", "list", "--help"), max(5, count // 3)
    )
    found["loom run list"] = timed(cli("run", "list", "--output", "json"), max(5, count // 3))
    found["loom run list --flow --status"] = timed(
        cli("run", "list", "--flow", "flow-07", "--status", "FAILED", "--output", "json"),
        max(5, count // 3),
    )
    client.close()
    return found


# ---- C: trigger to finish on an engine in this process ---------------------------------------
@contextlib.asynccontextmanager
async def engine(url: str) -> AsyncIterator[wiring.Services]:
    settings = config.load_settings(
        database={"url": url},
        engine={"poll_interval": 1.0},
        log={"level": "WARNING"},
        notifications={"enabled": False},
    )
    logs.configure(settings)
    services = wiring.build_services(settings)
    await services.start(migrate=False)
    try:
        yield services
    finally:
        await services.stop()


async def trigger_to_finish(services: wiring.Services, count: int) -> list[float]:
    found = []
    for _ in range(count + 3):
        started = time.perf_counter()
        run = await services.runs.trigger("c-flow")
        done = await services.runs.wait(run.id, poll=2)
        found.append(time.perf_counter() - started)
        if done.status.value != "SUCCEEDED":
            raise SystemExit(f"C run {run.id} ended {done.status.value}")
    return found[3:]


# ---- history: the report ---------------------------------------------------------------------
def print_history(kind: str, sizes: list[int], results: dict[int, dict[str, list[float]]]) -> None:
    small = sizes[0]
    head = f"{'':34}" + "".join(f"{f'{n:,} runs p50/p95 ms':>26}" for n in sizes)
    print(f"\n## history on {kind}: p50/p95 in ms, (×) = p95 against {small:,} runs\n")
    print(head)
    for name in results[small]:
        line = f"{name:34}"
        base95 = pct(results[small][name], 0.95)
        for n in sizes:
            values = results[n].get(name)
            if not values:
                line += f"{'-':>26}"
                continue
            p50, p95 = pct(values, 0.5) * 1000, pct(values, 0.95) * 1000
            line += f"{f'{p50:.1f}/{p95:.1f} ({p95 / 1000 / base95:.2f}×)':>26}"
        print(line)


async def history(args: argparse.Namespace) -> None:
    """One database grows to each size of finished runs (3 steps, 3 attempts, 3 recorded
    exchanges and 5 events each, 20 flows, a year of history; written in bulk by SQL straight
    into the store's tables, which is what years of runs leave behind). At each size a real
    ``loom server`` process (no workers, no scheduler, auth off) answers, and the bench measures
    p50/p95 over ``--requests`` calls: ``GET /api/v1/runs`` with each filter, a deep keyset page,
    a run, the web run page, the dashboard, a flow page, and ``loom run list`` as a process
    (beside ``loom run list --help``, the CLI's own start-up, and ``loom run list --flow
    --status``), each a third as many times (at least 5). C: trigger-to-finish of a 3-step run
    on an engine in this process. After the largest size, a retention purge of the oldest tenth
    runs while C is measured again. Every p95 is printed as a ratio to the smallest size; over
    few requests p95 is the slowest call, so keep ``--requests`` at its default for figures."""
    sizes = sorted(int(n) for n in args.sizes.split(","))
    newest = datetime.now(UTC) - timedelta(hours=1)
    step = YEAR_SECONDS / max(sizes)
    for kind in args.db.split(","):
        if kind == "postgres" and not os.environ.get("LOOM_TEST_POSTGRES_URL"):
            print("LOOM_TEST_POSTGRES_URL is not set: skipping PostgreSQL")
            continue
        results: dict[int, dict[str, list[float]]] = {}
        async with database(kind) as url:
            async with engine(url) as services:
                for flow_id in [*flow_ids(), "c-flow"]:
                    await services.runs.apply_flow(flow_spec(flow_id))
            have = 0
            for size in sizes:
                seconds = await grow(url, have=have, want=size, newest=newest, step=step)
                print(
                    f"[{kind}] {size:,} runs written ({seconds:.0f} s for {size - have:,}); "
                    f"load average {load()}",
                    flush=True,
                )
                have = size
                with tempfile.TemporaryDirectory() as home, server(url, Path(home)) as base:
                    found = await asyncio.to_thread(
                        measure_pages, base, count=args.requests, newest=newest
                    )
                async with engine(url) as services:
                    found["C: 3-step run, trigger to finish"] = await trigger_to_finish(
                        services, args.requests
                    )
                results[size] = found
                print(f"[{kind}] {size:,} runs measured; load average {load()}", flush=True)
            print_history(kind, sizes, results)
            await purge_while_running(url, newest=newest, requests=args.requests)
        print(f"load average at the end: {load()}")


async def purge_while_running(url: str, *, newest: datetime, requests: int) -> None:
    """Delete the oldest tenth of the history (a retention of 329 days) while C runs."""
    async with engine(url) as services:
        before = await trigger_to_finish(services, requests)
        db = session.Database(url)
        retention = SqlRetention(
            db, clock=SystemClock(), policy=RetentionPolicy(runs_days=328.5, fixture_runs=10)
        )
        purge = asyncio.create_task(retention.purge(now=newest + timedelta(hours=1)))
        during: list[float] = []
        while not purge.done():
            during.extend(await trigger_to_finish(services, 5))
        report = await purge
        await db.dispose()
    rate = report.runs / report.seconds if report.seconds else 0.0
    d50, d95 = pct(during, 0.5) * 1000, pct(during, 0.95) * 1000
    b50, b95 = pct(before, 0.5) * 1000, pct(before, 0.95) * 1000
    print(
        f"\nretention: {report.runs:,} runs purged in {report.batches} batches, "
        f"{report.seconds:.1f} s ({rate:,.0f} runs/s); load average {load()}\n"
        f"C while purging: p50 {d50:.1f} ms, p95 {d95:.1f} ms over {len(during)} runs | "
        f"before: p50 {b50:.1f} ms, p95 {b95:.1f} ms (ratio p95 {d95 / b95:.2f}×)"
    )


# ---- fan-out ----------------------------------------------------------------------------------
def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def fanout(args: argparse.Namespace) -> None:
    """A ``for_each`` over N items of a transform step (engine cost only, no HTTP), then the
    run read back as the API reads it (every step row)."""
    sizes = sorted(int(n) for n in args.items.split(","))
    for kind in args.db.split(","):
        if kind == "postgres" and not os.environ.get("LOOM_TEST_POSTGRES_URL"):
            print("LOOM_TEST_POSTGRES_URL is not set: skipping PostgreSQL")
            continue
        rows = []
        for size in sizes:
            async with database(kind) as url, engine(url) as services:
                spec = {
                    "id": "fan",
                    "inputs": {"n": {"type": "integer"}},
                    "steps": [
                        {
                            "id": "each",
                            "type": "transform",
                            "for_each": "{{ range(inputs.n) | list }}",
                            "template": "{{ item * 2 }}",
                        },
                        {"id": "done", "type": "transform", "depends_on": ["each"],
                         "template": "{{ steps.each.output | length }}"},
                    ],
                }  # fmt: skip
                await services.runs.apply_flow(FlowSpec.model_validate(spec))
                idle = rss_mb()
                started = time.perf_counter()
                cpu = time.process_time()
                run = await services.runs.trigger("fan", inputs={"n": size})
                try:
                    async with asyncio.timeout(args.timeout):
                        done = await services.runs.wait(run.id, poll=1)
                except TimeoutError:
                    rows.append((size, None, None, None, None, f"not done in {args.timeout:.0f} s"))
                    continue
                wall = time.perf_counter() - started
                cpu = time.process_time() - cpu
                peak = rss_mb()
                read = time.perf_counter()
                steps = await services.runs.list_steps(run.id)
                read = time.perf_counter() - read
                note = done.status.value if done.status.value != "SUCCEEDED" else ""
                if done.error:
                    note += f" {done.error.get('message', '')[:60]}"
                rows.append((size, wall, cpu, peak - idle, read, note or f"{len(steps)} rows"))
            print(f"[{kind}] {size:,} items done; load average {load()}", flush=True)
        small = next((r for r in rows if r[1] is not None), None)
        print(f"\n## fan-out on {kind} (transform children; per-item time against the smallest)\n")
        print(f"{'items':>8} {'wall s':>9} {'ms/item':>9} {'ratio':>7} {'cpu ms/item':>12} "
              f"{'RSS +MB':>8} {'MB/10k':>7} {'read run s':>11}  note")  # fmt: skip
        for size, wall, cpu, grown, read, note in rows:
            if wall is None:
                blank = " ".join(f"{'-':>{w}}" for w in (9, 9, 7, 12, 8, 7, 11))
                print(f"{size:>8,} {blank}  {note}")
                continue
            per = wall / size * 1000
            base = small[1] / small[0] * 1000 if small else per
            print(
                f"{size:>8,} {wall:>9.2f} {per:>9.3f} {per / base:>6.2f}× "
                f"{cpu / size * 1000:>12.3f} {grown:>8.1f} {grown / size * 10_000:>7.1f} "
                f"{read:>11.2f}  {note}"
            )
    print(f"load average at the end: {load()}")


# ---- schedules ----------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def schedules(args: argparse.Namespace) -> None:
    """``--schedules`` hourly cron schedules (``M * * * *``, minutes spread evenly) in flows of
    100, fired by ``--processes`` real ``loom scheduler`` processes on PostgreSQL for
    ``--seconds``; lateness of every fire (run created − fire time) and CPU per tick."""
    if not os.environ.get("LOOM_TEST_POSTGRES_URL"):
        raise SystemExit("set LOOM_TEST_POSTGRES_URL: this bench runs on PostgreSQL")
    per_flow = 100
    async with database("postgres") as url:
        async with engine(url) as services:
            for f in range(args.schedules // per_flow):
                spec = {
                    "id": f"sched-{f:04d}",
                    "schedules": [
                        {"id": f"s{i:03d}", "cron": f"{(f * per_flow + i) % 60} * * * *"}
                        for i in range(per_flow)
                    ],
                    "steps": [{"id": "t", "type": "transform", "template": 1}],
                }
                await services.runs.apply_flow(FlowSpec.model_validate(spec))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LOOM_")},
            "LOOM_DATABASE__URL": url,
            "LOOM_SCHEDULER__TICK_SECONDS": "1",
            "LOOM_LOG__LEVEL": "WARNING",
            "LOOM_NOTIFICATIONS__ENABLED": "false",
        }
        with tempfile.TemporaryDirectory() as home:
            env["LOOM_HOME"] = home
            procs = [
                subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
                    [LOOM, "scheduler"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(args.processes)
            ]
            try:
                await asyncio.sleep(15)  # start-up and the first (initialising) tick
                started = {p.pid: cpu_seconds(p.pid) for p in procs}
                since = datetime.now(UTC)
                await asyncio.sleep(args.seconds)
                spent = {p.pid: cpu_seconds(p.pid) - started[p.pid] for p in procs}
                until = datetime.now(UTC)
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait(15)
        db = session.Database(url)
        async with db.read() as conn:
            found = (
                await conn.execute(
                    sa.text(
                        "SELECT extract(epoch FROM created_at - fire_time) FROM runs "
                        "WHERE trigger = 'schedule' AND fire_time >= :since AND fire_time < :until"
                    ),
                    {"since": since, "until": until},
                )
            ).all()
            duplicates = (
                await conn.execute(
                    sa.text(
                        "SELECT count(*) - count(DISTINCT (flow_id, schedule_id, fire_time)) "
                        "FROM runs WHERE trigger = 'schedule'"
                    )
                )
            ).scalar_one()
        await db.dispose()
    late = sorted(float(r[0]) for r in found)
    expected = args.schedules * args.seconds / 3600
    print(f"\n## {args.schedules:,} cron schedules, {args.processes} scheduler processes, "
          f"{args.seconds:.0f} s on PostgreSQL (load average {load()})\n")  # fmt: skip
    if late:
        print(f"fires: {len(late):,} (≈{expected:,.0f} expected); lateness p50 "
              f"{pct(late, 0.5) * 1000:.0f} ms, p99 {pct(late, 0.99) * 1000:.0f} ms, max "
              f"{late[-1] * 1000:.0f} ms (target p99 < 1 s); "
              f"duplicate runs: {duplicates}")  # fmt: skip
    else:
        print(f"no fires in the window (≈{expected:,.0f} expected)")
    for pid, seconds in spent.items():
        print(f"scheduler pid {pid}: CPU {seconds:.2f} s = {seconds / args.seconds * 1000:.1f} "
              f"ms per 1-second tick")  # fmt: skip


# ---- workers ----------------------------------------------------------------------------------
async def workers(args: argparse.Namespace) -> None:
    """``--runs`` runs of a 3-step http flow (a local backend answering at once) executed by 1,
    then 2 real ``loom worker`` processes on PostgreSQL: runs/s, each worker's share, and the
    database's commits and rollbacks per second (claims that collide show as rollbacks)."""
    if not os.environ.get("LOOM_TEST_POSTGRES_URL"):
        raise SystemExit("set LOOM_TEST_POSTGRES_URL: this bench runs on PostgreSQL")
    from bench.bench_engine import backend_process

    with backend_process() as backend:
        results = []
        for count in (1, 2):
            async with database("postgres") as url:
                results.append(await _workers_round(url, backend, count, args.runs))
            print(f"[{count} worker(s)] done; load average {load()}", flush=True)
    base = results[0]["rate"]
    print(f"\n## {args.runs} runs of 3 http steps on PostgreSQL (load average {load()})\n")
    print(f"{'workers':>8} {'runs/s':>8} {'ratio':>7} {'commits/s':>10} {'rollbacks/s':>12}  share")
    for found in results:
        share = " / ".join(str(n) for n in found["share"])
        print(
            f"{found['workers']:>8} {found['rate']:>8.1f} {found['rate'] / base:>6.2f}× "
            f"{found['commits']:>10.0f} {found['rollbacks']:>12.1f}  {share} steps"
        )


async def _workers_round(url: str, backend: str, count: int, runs: int) -> dict[str, Any]:
    import socket

    ports = []
    for _ in range(count):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    settings = config.load_settings(
        database={"url": url}, log={"level": "WARNING"}, notifications={"enabled": False}
    )
    services = wiring.build_services(settings)
    await services.start(worker=False, migrate=False)
    steps = [
        {"id": f"s{i}", "type": "http", "url": f"{backend}/s{i}"}
        | ({"depends_on": [f"s{i - 1}"]} if i else {})
        for i in range(3)
    ]
    await services.runs.apply_flow(FlowSpec.model_validate({"id": "work", "steps": steps}))
    base_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOOM_")},
        "LOOM_DATABASE__URL": url,
        "LOOM_LOG__LEVEL": "WARNING",
        "LOOM_NOTIFICATIONS__ENABLED": "false",
    }
    with tempfile.TemporaryDirectory() as home:
        procs = [
            subprocess.Popen(  # noqa: ASYNC220 - started before anything is timed
                [LOOM, "worker"],
                env={**base_env, "LOOM_HOME": home, "LOOM_METRICS__PORT": str(port)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port in ports
        ]
        try:
            await asyncio.sleep(8)  # the workers connect and listen
            db = session.Database(url)
            stats = sa.text(
                "SELECT xact_commit, xact_rollback FROM pg_stat_database "
                "WHERE datname = current_database()"
            )
            async with db.read() as conn:
                before = (await conn.execute(stats)).one()
            started = time.perf_counter()
            ids = [(await services.runs.trigger("work")).id for _ in range(runs)]
            for run_id in ids:
                await services.runs.wait(run_id, poll=0.2)
            seconds = time.perf_counter() - started
            await asyncio.sleep(0.5)  # pg_stat counters are flushed now and then
            async with db.read() as conn:
                after = (await conn.execute(stats)).one()
            await db.dispose()
            share = []
            async with httpx.AsyncClient() as client:
                for port in ports:
                    text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                    share.append(
                        int(
                            sum(
                                float(line.rsplit(" ", 1)[1])
                                for line in text.splitlines()
                                if line.startswith("loom_step_attempt_duration_seconds_count")
                            )
                        )
                    )
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)
            await services.stop()
    return {
        "workers": count,
        "rate": runs / seconds,
        "commits": (after[0] - before[0]) / seconds,
        "rollbacks": (after[1] - before[1]) / seconds,
        "share": share,
    }


# ---- main -------------------------------------------------------------------------------------
class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written (paragraphs, command lines) and every option's default."""


def _doc(fn: Callable[..., Any]) -> str:
    return inspect.cleandoc(fn.__doc__ or "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_Help)
    sub = parser.add_subparsers(dest="what", required=True, metavar="SUBCOMMAND")
    dbs = "comma-separated: sqlite, postgres (needs LOOM_TEST_POSTGRES_URL; skipped when unset)"
    hist = sub.add_parser(
        "history",
        help="runs history: lists, pages, CLI, C, retention",
        description=_doc(history),
        formatter_class=_Help,
    )
    hist.add_argument("--db", default="sqlite,postgres", help=dbs)
    hist.add_argument(
        "--sizes",
        default="10000,100000,1000000",
        help="comma-separated numbers of runs the history grows to; smoke: 1000,5000",
    )
    hist.add_argument(
        "--requests",
        type=int,
        default=30,
        help="calls per API/web case and C runs per size (the CLI cases a third, at least 5); "
        "p95 of a few is the slowest call",
    )
    fan = sub.add_parser(
        "fanout",
        help="for_each over N items: time per item, RSS, reading it",
        description=_doc(fanout),
        formatter_class=_Help,
    )
    fan.add_argument("--db", default="sqlite,postgres", help=dbs)
    fan.add_argument(
        "--items",
        default="1000,10000,100000",
        help="comma-separated fan-out sizes, one fresh database each; smoke: 200,1000",
    )
    fan.add_argument(
        "--timeout", type=float, default=1800, help="seconds to wait for one fan-out run"
    )
    sched = sub.add_parser(
        "schedules",
        help="cron schedules fired by scheduler processes (PostgreSQL)",
        description=_doc(schedules),
        formatter_class=_Help,
    )
    sched.add_argument(
        "--schedules", type=int, default=10_000, help="hourly cron schedules, 100 per flow"
    )
    sched.add_argument(
        "--processes", type=int, default=2, help="`loom scheduler` processes started"
    )
    sched.add_argument(
        "--seconds", type=float, default=180, help="seconds the fires are measured over"
    )
    work = sub.add_parser(
        "workers",
        help="1 and 2 worker processes on the same work (PostgreSQL)",
        description=_doc(workers),
        formatter_class=_Help,
    )
    work.add_argument(
        "--runs", type=int, default=300, help="3-step http runs triggered for each round"
    )
    args = parser.parse_args()
    print(f"bench_scale {args.what}; load average {load()}; {os.cpu_count()} cores")
    if args.what == "history":
        asyncio.run(history(args))
    elif args.what == "fanout":
        asyncio.run(fanout(args))
    elif args.what == "schedules":
        asyncio.run(schedules(args))
    elif args.what == "workers":
        asyncio.run(workers(args))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
