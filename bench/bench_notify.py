"""What notifications cost the engine: runs/s and trigger-to-finish latency of a one-step flow
with notifications off (the baseline, measured in the same run), on without rules, on with a
global rule sending a message for every run to a live webhook receiver, and to a receiver that
is down (every delivery retried in the background).

Runs alternate between failing and succeeding, so with the rule (quiet period 0) every run is
news: ``run_failed`` or ``run_recovered`` (fewer when concurrent runs finish out of order). The
engine is wired as ``loom server`` wires it (``wiring.build_services``), logging JSON at INFO;
the task backend and the webhook receiver are one aiohttp server in a child process.

    .venv/bin/python bench/bench_notify.py [--runs 200] [--rounds 3] [--db sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from linkloom import logs
from linkloom.config import load_settings
from linkloom.flows.spec import FlowSpec
from linkloom.notifications.models import ChannelKind, EventKind
from linkloom.store import session
from linkloom.wiring import build_services
from tests.support.notify_receivers import free_port


def _serve(ready: Any) -> None:
    """Child process: /task fails every other call; /hook accepts every message."""
    from aiohttp import web

    calls = [0]

    async def task(request: web.Request) -> web.Response:
        calls[0] += 1
        if calls[0] % 2:
            return web.json_response({"status": "FAILED", "error": "flip"})
        return web.json_response({"status": "SUCCESS", "output": {"ok": True}})

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/task", task)
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ready.put(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


async def scenario(
    name: str, *, db_url: str, home: Path, backend: str, runs: int, hook: str | None
) -> dict[str, float]:
    enabled = name != "off"
    settings = load_settings(
        home=home,
        database={"url": db_url},
        engine={"poll_interval": 0.05},
        notifications={"enabled": enabled, "poll_interval": 0.2, "timeout_seconds": 2},
    )
    services = build_services(settings)
    await services.start(migrate=False)
    flow = f"bench-{uuid.uuid4().hex[:6]}"
    try:
        spec = {"id": flow, "steps": [{"id": "t", "type": "http", "url": f"{backend}/task"}]}
        await services.runs.apply_flow(FlowSpec.model_validate(spec))
        notify = services.notifications
        if hook is not None and notify is not None:
            channel = await notify.create_channel(
                name=f"hook-{flow}", kind=ChannelKind.WEBHOOK, config={"url": hook}
            )
            await notify.create_rule(
                name="all", events=[EventKind.RUN_FAILED, EventKind.RUN_RECOVERED],
                channels=[channel.id], quiet_seconds=0,
            )  # fmt: skip
        started = time.perf_counter()
        triggered = [await services.runs.trigger(flow, inputs={}) for _ in range(runs)]
        for run in triggered:
            await services.runs.wait(run.id)
        throughput = runs / (time.perf_counter() - started)
        latencies = []
        for _ in range(30):
            t0 = time.perf_counter()
            run = await services.runs.trigger(flow, inputs={})
            await services.runs.wait(run.id)
            latencies.append((time.perf_counter() - t0) * 1000)
        sent = 0
        if notify is not None and hook is not None:
            sent = len(await notify.list_deliveries(channel=f"hook-{flow}", limit=100000))
        if notify is not None and hook is not None:  # leave no rule for the next scenario
            for rule in await notify.list_rules():
                await notify.delete_rule(rule.id)
            await notify.delete_channel(f"hook-{flow}")
        return {"runs_s": throughput, "p50_ms": statistics.median(latencies), "deliveries": sent}
    finally:
        await services.stop(grace=1)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="loom-bench-notify-"))
    # Log as a server does (JSON, INFO), to nowhere: the console renderer would dominate.
    logs.configure(load_settings(home=home), fmt="json", level="INFO", stream=io.StringIO())
    if args.db == "postgres":
        db_url = os.environ["LOOM_TEST_POSTGRES_URL"]
    else:
        db_url = f"sqlite+aiosqlite:///{home / 'loom.db'}"
    await session.upgrade(db_url)
    results: dict[str, list[dict[str, float]]] = {}
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    child = context.Process(target=_serve, args=(ready,), daemon=True)
    child.start()
    backend = f"http://127.0.0.1:{ready.get(timeout=30)}"
    try:
        down = f"http://127.0.0.1:{free_port()}/hook"
        scenarios = [
            ("off", None),
            ("on, no rules", None),
            ("rule, live receiver", f"{backend}/hook"),
            ("rule, receiver down", down),
        ]
        for round_ in range(args.rounds):
            # Rotate the order so no scenario always runs first (caches, CPU frequency).
            for name, hook in scenarios[round_ % 4 :] + scenarios[: round_ % 4]:
                url = db_url
                if args.db == "sqlite":  # a fresh database each time: no rules left over
                    fresh = home / f"{uuid.uuid4().hex}.db"
                    shutil.copy(home / "loom.db", fresh)
                    url = f"sqlite+aiosqlite:///{fresh}"
                found = await scenario(
                    name, db_url=url, home=home, backend=backend, runs=args.runs, hook=hook
                )
                results.setdefault(name, []).append(found)
    finally:
        child.kill()
    base = statistics.median(r["runs_s"] for r in results["off"])
    print(f"{args.runs} runs of a one-step flow on {args.db}, median of {args.rounds} rounds")
    header = f"{'scenario':<22} {'runs/s':>8} {'min-max':>13} {'vs off':>7} {'p50 ms':>7}"
    print(header + f" {'messages':>9}")
    for name, rounds in results.items():
        rates = [r["runs_s"] for r in rounds]
        rate = statistics.median(rates)
        spread = f"{min(rates):.0f}-{max(rates):.0f}"
        p50 = statistics.median(r["p50_ms"] for r in rounds)
        sent = statistics.median(r["deliveries"] for r in rounds)
        print(f"{name:<22} {rate:8.1f} {spread:>13} {rate / base:7.2f} {p50:7.1f} {sent:9.0f}")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    asyncio.run(main())
