"""Benchmark: a proposal's full check turnaround through ``ProposalService`` — validate + plan +
sandbox + diff — for a 20-step flow over 10 fixture cases, on each sandbox backend, with both
sides replayed (the proposed and the production version on every case) beside the proposed side
alone (what the diff cost before production was replayed too), in the same run.

    .venv/bin/python bench/bench_proposal.py [--repeat 3] [--cases 10] [--steps 20]

Unlike ``bench_sandbox.py`` this goes through the service as the API does: the proposal's spec is
read from its git branch, the cases are collected from the last N successful production runs in
the run store (scrubbed), the plan is computed, the sandbox runs and the diff is stored. Each
repeat revises the proposal (a real commit) and runs the checks again. The baseline, measured in
the same run, executes the same 10 runs directly on the engine in this process (what production
does, minus the network). The targets, both sides replayed, on a quiet machine: under 5 s with
docker, under 3 s with the process backend.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import structlog
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from bench_sandbox import T0, backend, make_flow, production

from linkloom.engine.ports import StepServices
from linkloom.engine.service import RunService
from linkloom.engine.steps import builtin_executors
from linkloom.engine.worker import Worker
from linkloom.flows import loading
from linkloom.flows.gitstore import FlowsRepo
from linkloom.proposals.memory import InMemoryProposalStore
from linkloom.proposals.models import CheckName, ProposalSettings, ProposalStatus
from linkloom.proposals.service import ProposalService
from linkloom.sandbox.docker import DockerRunner, docker_available, image_exists
from linkloom.sandbox.inprocess import InProcessRunner
from linkloom.sandbox.process import ProcessRunner
from linkloom.testing import FrozenClock, InMemoryRunStore, StaticSecrets

SPEC = "flows/bench/flow.yaml"


async def world(flow: dict[str, Any], days: list[str], root: Path) -> tuple[Any, Any]:
    """A flows repo with ``flow`` on main and a run store holding its production runs."""
    seed = root / "seed" / "bench"
    seed.mkdir(parents=True)
    (seed / "flow.yaml").write_text(yaml.safe_dump(flow, sort_keys=False))
    repo = FlowsRepo(root / "flows")
    head = repo.init(seed_from=root / "seed")
    store = InMemoryRunStore()
    clock = FrozenClock(T0)
    secrets = StaticSecrets({})
    runs = RunService(store=store, clock=clock, secrets=secrets)
    await runs.apply_flow(loading.load_flow(yaml.safe_dump(flow)), git_commit=head)
    async with httpx.AsyncClient(transport=httpx.MockTransport(backend)) as http:
        services = StepServices(http=http, clock=clock, secrets=secrets)
        worker = Worker(
            store=store, executors=builtin_executors(), services=services, specs=runs.specs
        )
        for day in days:
            clock.advance(60)
            await runs.trigger(flow["id"], inputs={"day": day})
            await worker.run_until_idle()
    return repo, runs


async def turnarounds(
    runner: Any, *, repo: Any, runs: Any, proposed: list[str], cases: int, both: bool = True
) -> tuple[list[float], str]:
    async def select() -> Any:
        return runner

    service = ProposalService(
        repo=repo,
        store=InMemoryProposalStore(),
        runs=runs,
        clock=runs.clock,
        runner=select,
        settings=ProposalSettings(fixture_runs=cases),
    )
    if not both:  # the proposed side alone: the sandbox's cost before production was replayed
        whole = service.checker.bundle

        async def one_side(*args: Any) -> Any:
            bundle = await whole(*args)
            return None if bundle is None else replace(bundle, production=None, versions={})

        service.checker.bundle = one_side  # type: ignore[method-assign]
    times = []
    summary = ""
    proposal = await service.open(
        title="bench", author="ann", files={SPEC: proposed[0]}, run_checks=False
    )
    for n, text in enumerate(proposed):
        if n:
            proposal = await service.revise(
                proposal.id, actor="ann", files={SPEC: text}, run_checks=False
            )
        started = time.perf_counter()
        proposal = await service.run_checks(proposal.id)
        times.append(time.perf_counter() - started)
        assert proposal.status is ProposalStatus.READY, proposal
        diff = await service.check(proposal.id, CheckName.DIFF)
        assert diff is not None
        summary = diff.summary
    return times, summary


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    flow = make_flow(args.steps)
    days = [f"2026-11-{d:02d}" for d in range(1, args.cases + 1)]
    proposed = []
    for n in range(args.repeat):
        changed = copy.deepcopy(flow)
        changed["steps"][-1 if args.steps % 2 == 0 else -2]["template"] = {"changed": n + 1}
        proposed.append(yaml.safe_dump(changed, sort_keys=False))
    runners: dict[str, Any] = {"inprocess": InProcessRunner(), "process": ProcessRunner()}
    if docker_available() and image_exists("linkloom/sandbox:latest"):
        runners["docker"] = DockerRunner()
    else:
        print("docker: not available (run scripts/provision-docker)")
    baseline = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        await production(flow, days, record=False)
        baseline.append(time.perf_counter() - started)
    base = statistics.median(baseline)
    print(f"{args.steps}-step flow, {args.cases} cases, median of {args.repeat}")
    print(f"baseline  direct engine runs in-process:        {base * 1000:8.1f} ms")
    for name, runner in runners.items():
        medians = {}
        for both in (False, True):
            with tempfile.TemporaryDirectory(prefix="loom-bench-") as tmp:
                repo, runs = await world(flow, days, Path(tmp))
                times, summary = await turnarounds(
                    runner, repo=repo, runs=runs, proposed=proposed, cases=args.cases, both=both
                )
            medians[both] = med = statistics.median(times)
            label = "both sides (proposed + production)" if both else "proposed side only"
            print(
                f"{name:9} {label:35} {med * 1000:8.1f} ms  ({med / base:5.1f}x baseline)  "
                f"{summary}"
            )
        print(f"{name:9} both sides cost {medians[True] / medians[False]:4.2f}x one side")


if __name__ == "__main__":
    asyncio.run(main())
