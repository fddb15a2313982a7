"""Runs one fixture case on the production engine (``linkloom.engine``), in memory.

The same ``RunService``, ``Worker`` and built-in step executors as production, on an
``InMemoryRunStore``, with the replay as its HTTP (the http step's port, and the httpx client of
the others), a frozen clock and redacted secrets. Time never passes by itself: when the worker
is idle, the clock jumps to the next moment something is due (a retry's backoff, a durable
delay, a lease or callback deadline), so retries and delays cost no wall-clock time and results
are deterministic.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from linkloom.engine.memory import InMemoryRunStore
from linkloom.engine.ports import HttpPort, StepServices
from linkloom.engine.service import RunService
from linkloom.engine.steps import builtin_executors
from linkloom.engine.worker import Worker
from linkloom.flows.spec import FlowSpec
from linkloom.sandbox.runner import CaseOutcome, StepOutcome

SIGNING_KEY = "sandbox-signing-key"  # nothing leaves the sandbox; signatures only need to exist
PUBLIC_URL = "http://loom-sandbox.invalid"
LEASE_SECONDS = 300.0
MAX_CLOCK_JUMPS = 10_000  # a run that keeps rescheduling itself forever is cut off here


async def run_case(
    *,
    flow: dict[str, Any],
    case: Any,
    http: Any,
    outbound: HttpPort,
    clock: Any,
    secrets: Any,
    settings: Any,
) -> CaseOutcome:
    spec = FlowSpec.model_validate(flow)
    store = InMemoryRunStore()
    runs = RunService(store=store, clock=clock, secrets=secrets, signing_key=SIGNING_KEY)
    await runs.apply_flow(spec, source="sandbox")
    services = StepServices(
        http=http,
        outbound=outbound,
        clock=clock,
        secrets=secrets,
        signing_key=SIGNING_KEY,
        public_url=PUBLIC_URL,
        shell_enabled=settings.shell_enabled,
        max_response_bytes=settings.max_response_bytes,
    )
    worker = Worker(
        store=store,
        executors=builtin_executors(),
        services=services,
        owner="sandbox",
        concurrency=16,
        lease_seconds=LEASE_SECONDS,
        poll_interval=0.01,
        specs=runs.specs,
    )
    run = await runs.trigger(spec.id, inputs=dict(case.inputs), trigger="manual", sandbox=True)
    for _ in range(MAX_CLOCK_JUMPS):
        await worker.run_until_idle()
        run = await runs.get_run(run.id)
        if run.status.terminal:
            break
        due = await store.next_ready_at()
        if due is None:
            # Waiting on a lease or callback deadline: move past it so it expires.
            due = clock.now() + timedelta(seconds=LEASE_SECONDS + 1)
        clock.set(max(due, clock.now()) + timedelta(microseconds=1))
    else:
        await runs.cancel(run.id, reason="the sandbox stopped a run that never finished")
        run = await runs.get_run(run.id)
    steps: dict[str, StepOutcome] = {}
    for step in await runs.list_steps(run.id):
        if step.item_index is not None:
            continue
        error = step.error.get("message") if isinstance(step.error, dict) else step.error
        steps[step.step_id] = StepOutcome(
            status=step.status.value,
            output=step.output,
            outputs=dict(step.outputs or {}),
            error=str(error) if error else None,
            skip_reason=(step.state or {}).get("skip_reason")
            if step.status.value == "SKIPPED"
            else None,
        )
    return CaseOutcome(
        run_status=run.status.value, steps=steps, run_outputs=dict(run.outputs or {})
    )
