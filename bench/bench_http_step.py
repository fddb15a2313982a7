"""CPU of the engine's event-loop half per http step, beside bare aiohttp in the same run.

Three measurements against the same local aiohttp backend (a child process), interleaved round
by round, each the median of ``--rounds`` CPU figures of this process (one thread: no store
thread takes part):

* **raw**: a bare ``aiohttp.ClientSession`` posting a small JSON envelope and reading the answer;
* **call**: one attempt of the ``http`` executor as the worker makes it (``StepContext`` of a
  chained step, the envelope, signing, recording), through the HTTP client ``wiring`` builds;
* **step**: a chain of 50 http steps run by the production ``Worker`` on the in-memory run store
  (rendering, the outcome, redaction, the mutation and its application; no SQL).

    .venv/bin/python bench/bench_http_step.py [--rounds 7] [--calls 300]

Machine load moves CPU time; instruction counts do not. ``--only call`` runs just that
measurement, once, for callgrind (the process's instructions at ``--calls N`` minus those at
``--calls 0``, divided by N, are the instructions per call):

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p .venv/bin/python \
        bench/bench_http_step.py --only call --calls 200
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import backend_process, chain_flow

from linkloom import config, logs, wiring
from linkloom.clock import SystemClock
from linkloom.engine.memory import InMemoryRunStore
from linkloom.engine.models import RunInfo
from linkloom.engine.ports import StepContext, StepServices
from linkloom.engine.secrets import StaticSecrets
from linkloom.engine.service import RunService
from linkloom.engine.steps import builtin_executors
from linkloom.engine.steps.http import HttpExecutor
from linkloom.engine.worker import Worker
from linkloom.flows.spec import FlowSpec

CHAIN = 50
BODY = b'{"run_id":"r","step_id":"s","inputs":{},"upstream":{}}'
HEADERS = {"Content-Type": "application/json"}


def step_services() -> StepServices:
    """The step services as ``wiring.build_services`` makes them (without a database)."""
    options: dict[str, Any] = {
        "clock": SystemClock(),
        "secrets": StaticSecrets({"token": "s3cret"}),
        "signing_key": "bench-signing-key",
        "public_url": "http://127.0.0.1:8080",
    }
    maker = getattr(wiring, "make_outbound", None)  # the engine's own HTTP port, when it has one
    if maker is not None:
        options["outbound"] = maker(concurrency=64)
    return StepServices(http=wiring.make_http_client(concurrency=64), **options)


async def raw(url: str, calls: int) -> float:
    async with aiohttp.ClientSession() as client:

        async def one() -> None:
            async with client.post(url, data=BODY, headers=HEADERS) as resp:
                await resp.json()

        await one()
        started = time.thread_time()
        for _ in range(calls):
            await one()
        return (time.thread_time() - started) / calls


async def call(url: str, calls: int, services: StepServices) -> float:
    flow = FlowSpec.model_validate(chain_flow(url, 2, "bench-call"))
    step = flow.step("s1")
    executor = HttpExecutor()
    run = RunInfo(id="run-1", flow_id="bench-call", version=1, trigger="manual", inputs={"n": 1})
    upstream = {"s0": {"status": "SUCCEEDED", "output": {"ok": True}, "outputs": {}}}

    async def one(n: int) -> None:
        ctx = StepContext(
            run=run, step=step, attempt=1, idempotency_key=f"run-1:s1:{n}", upstream=upstream,
            services=services, timeout=30.0, attempt_id=f"sr-{n}.1",
        )  # fmt: skip
        result = await executor.execute(ctx)
        assert result.ok, result.error

    await one(0)
    started = time.thread_time()
    for n in range(calls):
        await one(n)
    return (time.thread_time() - started) / calls


async def steps(url: str, services: StepServices, runs_: RunService, worker: Worker) -> float:
    started = time.thread_time()
    run = await runs_.trigger("bench-chain")
    await worker.run_until_idle()
    done = await runs_.get_run(run.id)
    assert done.status.value == "SUCCEEDED", done.status
    return (time.thread_time() - started) / CHAIN


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--only", choices=("call",), help="one measurement, once (callgrind)")
    args = parser.parse_args()
    logs.configure(config.load_settings(log={"level": "WARNING"}))
    with backend_process() as backend:
        await asyncio.sleep(0.5)
        services = step_services()
        store = InMemoryRunStore()
        runs_ = RunService(store=store, clock=services.clock, secrets=services.secrets)
        await runs_.apply_flow(FlowSpec.model_validate(chain_flow(backend, CHAIN, "bench-chain")))
        worker = Worker(
            store=store, executors=builtin_executors(), services=services, owner="bench",
            concurrency=64, lease_seconds=60, poll_interval=1.0, specs=runs_.specs,
        )  # fmt: skip
        if args.only == "call":
            await call(backend, args.calls, services)
            await services.http.aclose()
            outbound = getattr(services, "outbound", None)
            if outbound is not None:
                await outbound.aclose()
            return
        await steps(backend, services, runs_, worker)  # warm up
        figures: dict[str, list[float]] = {"raw": [], "call": [], "step": []}
        for _ in range(args.rounds):
            figures["raw"].append(await raw(f"{backend}/raw", args.calls))
            figures["call"].append(await call(backend, args.calls, services))
            figures["step"].append(await steps(backend, services, runs_, worker))
        await services.http.aclose()
        close = getattr(getattr(services, "outbound", None), "aclose", None)
        if close is not None:
            await close()
    med = {k: statistics.median(v) * 1e6 for k, v in figures.items()}
    load = " / ".join(f"{x:.1f}" for x in __import__("os").getloadavg())
    print(f"CPU per call, medians of {args.rounds} rounds (load average {load}):")
    rows = (
        ("raw aiohttp POST + JSON", "raw"),
        ("http executor, one attempt", "call"),
        ("http step in a worker (in-memory)", "step"),
    )
    for label, key in rows:
        print(f"  {label:<34} {med[key]:6.0f} µs  ({med[key] / med['raw']:.2f}x raw)")


if __name__ == "__main__":
    asyncio.run(main())
