"""The engine's speed against a local user backend, beside raw HTTP clients in the same run.

The engine runs in this process exactly as ``loom server`` wires it (``wiring.build_services``:
the store, a worker, the http step's aiohttp port, in-process wake-ups); the backend is an
aiohttp server in a child process on 127.0.0.1 answering ``{"status": "SUCCESS", ...}`` at once.
Workloads, each a median over ``--rounds``:

A) a chain of 50 http steps: wall time from trigger to finished run, vs 50 sequential requests;
B) a fan-out of 200 http steps (``for_each``) and a join: steps/s vs requests/s of the raw client
   sending 200 requests at the same concurrency (``--concurrency``), and the ratio;
C) a 3-step chain triggered 100 times one after another: trigger-to-finish latency p50/p99,
   vs 3 sequential requests.

Baselines: ``httpx.AsyncClient`` (default pool, as a user would write it) and ``aiohttp``; every
engine figure is also printed as a ratio to raw aiohttp, and beside issue 18's targets
(A < 150 ms, B < 200 ms, C p50 < 6 ms, CPU per step < 1.2 ms on SQLite).

    .venv/bin/python bench/bench_engine.py [--db sqlite,postgres] [--rounds 5] [--profile C]

PostgreSQL comes from ``LOOM_TEST_POSTGRES_URL`` (a scratch database is created and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import multiprocessing
import os
import pstats
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from linkloom import config, logs, wiring
from linkloom.flows.spec import FlowSpec

CHAIN = 50
FANOUT = 200
LATENCY_RUNS = 100


# ---- the backend (child process) -----------------------------------------------------------
def _backend_main(sock: socket.socket) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "SUCCESS", "output": {"ok": True}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, sock=sock, access_log=None, print=None, handle_signals=True)


@contextlib.contextmanager
def backend_process() -> Any:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    proc = multiprocessing.get_context("fork").Process(target=_backend_main, args=(sock,))
    proc.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.join(5)
        sock.close()


# ---- raw baselines ---------------------------------------------------------------------------
BODY = b'{"run_id":"r","step_id":"s","inputs":{},"upstream":{}}'
HEADERS = {"Content-Type": "application/json"}


async def raw_httpx(url: str, *, count: int, concurrency: int) -> float:
    async with httpx.AsyncClient() as client:
        await client.post(url, content=BODY, headers=HEADERS)  # connect once
        return await _timed(
            lambda: _json(client.post(url, content=BODY, headers=HEADERS)), count, concurrency
        )


async def raw_aiohttp(url: str, *, count: int, concurrency: int) -> float:
    async with aiohttp.ClientSession() as client:

        async def one() -> None:
            async with client.post(url, data=BODY, headers=HEADERS) as resp:
                await resp.json()

        await one()
        return await _timed(one, count, concurrency)


async def _json(call: Awaitable[httpx.Response]) -> None:
    (await call).json()


async def _timed(one: Callable[[], Awaitable[None]], count: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def guarded() -> None:
        async with sem:
            await one()

    started = time.perf_counter()
    if concurrency == 1:
        for _ in range(count):
            await one()
    else:
        await asyncio.gather(*(guarded() for _ in range(count)))
    return time.perf_counter() - started


async def raw_latencies(url: str, *, count: int, calls: int) -> list[float]:
    """``calls`` sequential requests, ``count`` times: what the 3-step chain costs in HTTP."""
    out = []
    async with httpx.AsyncClient() as client:
        await client.post(url, content=BODY, headers=HEADERS)
        for _ in range(count):
            started = time.perf_counter()
            for _ in range(calls):
                (await client.post(url, content=BODY, headers=HEADERS)).json()
            out.append(time.perf_counter() - started)
    return out


async def raw_aiohttp_latencies(url: str, *, count: int, calls: int) -> list[float]:
    """The same as ``raw_latencies`` on a bare ``aiohttp.ClientSession``."""
    out = []
    async with aiohttp.ClientSession() as client:

        async def one() -> None:
            async with client.post(url, data=BODY, headers=HEADERS) as resp:
                await resp.json()

        await one()
        for _ in range(count):
            out.append(await _timed(one, calls, 1))
    return out


# ---- flows -----------------------------------------------------------------------------------
def chain_flow(url: str, n: int, flow_id: str) -> dict[str, Any]:
    steps = [{"id": "s0", "type": "http", "url": f"{url}/s0"}]
    steps += [
        {"id": f"s{i}", "type": "http", "url": f"{url}/s{i}", "depends_on": [f"s{i - 1}"]}
        for i in range(1, n)
    ]
    return {"id": flow_id, "steps": steps}


def fanout_flow(url: str) -> dict[str, Any]:
    return {
        "id": "bench-fanout",
        "inputs": {"n": {"type": "integer", "default": FANOUT}},
        "steps": [
            {
                "id": "each",
                "type": "http",
                "url": f"{url}/each",
                "for_each": "{{ range(inputs.n) | list }}",
            },
            {"id": "join", "type": "http", "url": f"{url}/join", "depends_on": ["each"]},
        ],
    }


# ---- the engine ------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def database(kind: str, *, async_commit: bool = False) -> AsyncIterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite+aiosqlite:///{tmp}/loom.db"
        return
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(os.environ["LOOM_TEST_POSTGRES_URL"])
    name = f"loom_bench_{uuid.uuid4().hex[:8]}"
    admin = base.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        if async_commit:  # commits stop waiting for the WAL flush (fsync): --pg-async-commit
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    try:
        yield base.set(database=name).render_as_string(False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def engine(url: str, *, concurrency: int) -> AsyncIterator[wiring.Services]:
    settings = config.load_settings(
        database={"url": url},
        engine={"concurrency": concurrency, "per_host_limit": concurrency, "poll_interval": 1.0},
        log={"level": "WARNING"},
    )
    logs.configure(settings)
    services = wiring.build_services(settings)
    await services.start(migrate=True)
    try:
        yield services
    finally:
        await services.stop()


async def run_once(services: wiring.Services, flow_id: str) -> float:
    started = time.perf_counter()
    run = await services.runs.trigger(flow_id)
    done = await services.runs.wait(run.id, poll=5)
    elapsed = time.perf_counter() - started
    if done.status.value != "SUCCEEDED":
        raise SystemExit(f"{flow_id} run {run.id} ended {done.status.value}")
    return elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench_db(kind: str, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    async with (
        database(kind, async_commit=args.pg_async_commit) as url,
        engine(url, concurrency=args.concurrency) as services,
    ):
        for raw in (chain_flow(backend, CHAIN, "bench-chain"), fanout_flow(backend),
                    chain_flow(backend, 3, "bench-three")):  # fmt: skip
            await services.runs.apply_flow(FlowSpec.model_validate(raw))
        for flow in ("bench-chain", "bench-fanout", "bench-three"):
            await run_once(services, flow)  # warm caches and connections
        profiler = cProfile.Profile() if args.profile else None
        cpu, main_cpu = time.process_time(), time.thread_time()
        a = [await _maybe(profiler, "A" in args.profile, run_once(services, "bench-chain"))
             for _ in range(args.rounds)]  # fmt: skip
        b = [await _maybe(profiler, "B" in args.profile, run_once(services, "bench-fanout"))
             for _ in range(args.rounds)]  # fmt: skip
        c = [await _maybe(profiler, "C" in args.profile, run_once(services, "bench-three"))
             for _ in range(LATENCY_RUNS)]  # fmt: skip
        cpu, main_cpu = time.process_time() - cpu, time.thread_time() - main_cpu
        if profiler is not None:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
        steps = args.rounds * (CHAIN + FANOUT + 2) + LATENCY_RUNS * 3
    return {"A": statistics.median(a), "B": statistics.median(b), "C50": pct(c, 0.5),
            "C99": pct(c, 0.99), "cpu_per_step": cpu / steps,
            "main_cpu_per_step": main_cpu / steps}  # fmt: skip


async def _maybe(profiler: Any, on: bool, coro: Awaitable[float]) -> float:
    if profiler is None or not on:
        return await coro
    profiler.enable()
    try:
        return await coro
    finally:
        profiler.disable()


async def baselines(backend: str, args: argparse.Namespace) -> dict[str, float]:
    url = f"{backend}/raw"
    rounds = args.rounds
    hx_chain = [await raw_httpx(url, count=CHAIN, concurrency=1) for _ in range(rounds)]
    ah_chain = [await raw_aiohttp(url, count=CHAIN, concurrency=1) for _ in range(rounds)]
    hx_fan = [
        await raw_httpx(url, count=FANOUT, concurrency=args.concurrency) for _ in range(rounds)
    ]
    cpu = time.process_time()
    ah_fan = [
        await raw_aiohttp(url, count=FANOUT, concurrency=args.concurrency) for _ in range(rounds)
    ]
    ah_cpu = (time.process_time() - cpu) / (rounds * (FANOUT + 1))
    three = await raw_latencies(url, count=LATENCY_RUNS, calls=3)
    ah_three = await raw_aiohttp_latencies(url, count=LATENCY_RUNS, calls=3)
    return {
        "httpx_chain": statistics.median(hx_chain),
        "aiohttp_chain": statistics.median(ah_chain),
        "httpx_fan": FANOUT / statistics.median(hx_fan),
        "aiohttp_fan": FANOUT / statistics.median(ah_fan),
        "httpx_three50": pct(three, 0.5),
        "httpx_three99": pct(three, 0.99),
        "aiohttp_three50": pct(ah_three, 0.5),
        "aiohttp_cpu": ah_cpu,
    }


def report(kind: str, found: dict[str, Any], base: dict[str, float], conc: int) -> None:
    fan = FANOUT / found["B"]
    print(f"\n== {kind} == (load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())})")
    print(
        f"A chain of {CHAIN}: engine {found['A'] * 1000:.0f} ms | raw httpx "
        f"{base['httpx_chain'] * 1000:.0f} ms, aiohttp {base['aiohttp_chain'] * 1000:.0f} ms | "
        f"engine/httpx {found['A'] / base['httpx_chain']:.2f}x time, "
        f"engine/aiohttp {found['A'] / base['aiohttp_chain']:.2f}x, "
        f"{found['A'] / CHAIN * 1000:.2f} ms per step (target < 150 ms on SQLite)"
    )
    print(
        f"B fan-out {FANOUT} + join @ concurrency {conc}: engine {fan:.0f} steps/s "
        f"({found['B'] * 1000:.0f} ms; target < 200 ms on SQLite) | raw httpx "
        f"{base['httpx_fan']:.0f} req/s, aiohttp "
        f"{base['aiohttp_fan']:.0f} req/s | ratio vs httpx {fan / base['httpx_fan']:.2f} "
        f"(target >= 0.5), vs aiohttp {fan / base['aiohttp_fan']:.2f}"
    )
    print(
        f"C 3-step chain x{LATENCY_RUNS}: p50 {found['C50'] * 1000:.1f} ms, p99 "
        f"{found['C99'] * 1000:.1f} ms (target p50 < 6 ms on SQLite) | raw httpx 3 calls p50 "
        f"{base['httpx_three50'] * 1000:.1f} ms, p99 {base['httpx_three99'] * 1000:.1f} ms, "
        f"aiohttp p50 {base['aiohttp_three50'] * 1000:.1f} ms | engine/aiohttp p50 "
        f"{found['C50'] / base['aiohttp_three50']:.1f}x"
    )
    print(
        f"CPU (this process, all workloads): engine {found['cpu_per_step'] * 1000:.2f} ms per "
        f"step ({found['main_cpu_per_step'] * 1000:.2f} in the event loop's thread) | "
        f"raw aiohttp {base['aiohttp_cpu'] * 1000:.2f} ms per request | engine/aiohttp "
        f"{found['cpu_per_step'] / base['aiohttp_cpu']:.1f}x (target < 1.2 ms per step on SQLite)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--pg-async-commit",
        action="store_true",
        help="PostgreSQL with synchronous_commit=off (shows what the WAL fsync per commit costs)",
    )
    parser.add_argument("--profile", default="", help="workloads to profile, e.g. 'BC'")
    args = parser.parse_args()
    kinds = [k for k in args.db.split(",") if k]
    if "postgres" in kinds and not os.environ.get("LOOM_TEST_POSTGRES_URL"):
        print("LOOM_TEST_POSTGRES_URL is not set: skipping PostgreSQL")
        kinds.remove("postgres")
    with backend_process() as backend:
        await asyncio.sleep(0.5)
        for kind in kinds:
            base = await baselines(backend, args)
            found = await bench_db(kind, backend, args)
            label = (
                f"{kind} (synchronous_commit=off)"
                if kind != "sqlite" and args.pg_async_commit
                else kind
            )
            report(label, found, base, args.concurrency)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
