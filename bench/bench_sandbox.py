"""Benchmark: the turnaround of a proposal's checks — validate + sandbox + diff — for a 20-step
flow over 10 fixture cases recorded from production, on each sandbox backend.

    .venv/bin/python bench/bench_sandbox.py [--repeat 3] [--cases 10] [--steps 20]

The cases come from real engine runs (in memory, a mock backend). For each backend (inprocess,
process, docker when an engine and the image exist) it times validate (``check_flow``) + one
sandbox run of all cases + the diff, and prints medians over the repeats. The baseline, measured
in the same run, is executing the same 10 runs directly on the engine in this process (what
production does, minus the network): the ratio is the price of isolation and replay.
The issue's target: under 5 s with docker. ``plan`` is the proposal service's and not included.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
import yaml

from linkloom.engine.ports import StepServices
from linkloom.engine.service import RunService
from linkloom.engine.steps import builtin_executors
from linkloom.engine.worker import Worker
from linkloom.flows.loading import check_flow
from linkloom.flows.spec import FlowSpec
from linkloom.proposals import diff, render
from linkloom.sandbox import fixtures
from linkloom.sandbox.bundle import SandboxBundle
from linkloom.sandbox.docker import DockerRunner, docker_available, image_exists
from linkloom.sandbox.inprocess import InProcessRunner
from linkloom.sandbox.process import ProcessRunner
from linkloom.testing import FrozenClock, InMemoryRunStore, StaticSecrets

T0 = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
BACKEND = "http://127.0.0.1:8081/api/tasks"


def make_flow(steps: int) -> dict[str, Any]:
    """Alternating http and transform steps in a chain with a few side branches."""
    out: list[dict[str, Any]] = []
    for i in range(steps):
        deps = [f"s{i - 1}"] if i else []
        if i >= 3 and i % 4 == 0:
            deps.append(f"s{i - 3}")
        if i % 2 == 0:
            out.append(
                {"id": f"s{i}", "type": "http", "url": f"{BACKEND}/step{i}", "depends_on": deps}
            )
        else:
            out.append(
                {
                    "id": f"s{i}",
                    "type": "transform",
                    "depends_on": deps,
                    "template": {
                        "n": f"{{{{ steps.s{i - 1}.output.n }}}}",
                        "label": f"step {i} of {{{{ inputs.day }}}}",
                    },
                }
            )
    return {"id": "bench", "inputs": {"day": {"type": "string"}}, "steps": out}


def backend(request: httpx.Request) -> httpx.Response:
    envelope = json.loads(request.content)
    return httpx.Response(
        200,
        json={
            "status": "SUCCESS",
            "output": {
                "n": len(json.dumps(envelope["upstream"])),
                "day": envelope["inputs"]["day"],
            },
        },
    )


async def production(flow: dict[str, Any], days: list[str], *, record: bool):
    store = InMemoryRunStore()
    clock = FrozenClock(T0)
    secrets = StaticSecrets({})
    runs = RunService(store=store, clock=clock, secrets=secrets)
    cases = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(backend)) as http:
        services = StepServices(http=http, clock=clock, secrets=secrets)
        worker = Worker(
            store=store, executors=builtin_executors(), services=services, specs=runs.specs
        )
        await runs.apply_flow(FlowSpec.model_validate(flow))
        for day in days:
            run = await runs.trigger(flow["id"], inputs={"day": day})
            await worker.run_until_idle()
            if record:
                run = await runs.get_run(run.id)
                cases.append(
                    fixtures.case_from_run(
                        run=run,
                        steps=await runs.list_steps(run.id),
                        exchanges=await runs.list_exchanges(run.id),
                        name=f"day-{day}",
                    )
                )
    return cases


async def turnaround(runner: Any, proposed: dict[str, Any], cases: list[Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    checked = check_flow(yaml.safe_dump(proposed))
    assert checked.spec is not None, checked
    result = await runner.run(
        SandboxBundle(flow=checked.spec.model_dump(mode="json", by_alias=True), cases=tuple(cases))
    )
    d = diff.diff_results(cases, result)
    return time.perf_counter() - started, d


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    flow = make_flow(args.steps)
    days = [f"2026-11-{d:02d}" for d in range(1, args.cases + 1)]
    cases = await production(flow, days, record=True)
    proposed = copy.deepcopy(flow)
    proposed["steps"][-1 if args.steps % 2 == 0 else -2]["template"] = {"changed": True}
    runners: dict[str, Any] = {"inprocess": InProcessRunner(), "process": ProcessRunner()}
    if docker_available() and image_exists("linkloom/sandbox:latest"):
        runners["docker"] = DockerRunner()
    else:
        print("docker: not available (run scripts/provision-docker)")
    await turnaround(runners["inprocess"], proposed, cases)  # warm imports
    baseline = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        await production(flow, days, record=False)
        baseline.append(time.perf_counter() - started)
    base = statistics.median(baseline)
    print(f"{args.steps}-step flow, {args.cases} cases, median of {args.repeat}")
    print(f"baseline  direct engine runs in-process: {base * 1000:8.1f} ms")
    for name, runner in runners.items():
        times = []
        for _ in range(args.repeat):
            seconds, d = await turnaround(runner, proposed, cases)
            times.append(seconds)
        med = statistics.median(times)
        print(
            f"{name:9} validate+sandbox+diff:          {med * 1000:8.1f} ms  "
            f"({med / base:5.1f}x baseline)  diff: {render.summary_line(d.summary)}"
        )


if __name__ == "__main__":
    asyncio.run(main())
