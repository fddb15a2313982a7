"""The ``flow`` step: start another flow with mapped inputs and wait for its outputs.

The first execution renders ``inputs``, starts the child run through
``ctx.services.start_subflow`` and suspends, keeping the child run id in the durable state. Later
executions read the child with ``ctx.services.read_run`` and suspend again until it ends (the
poll interval starts at ``POLL_SECONDS`` and doubles up to ``MAX_POLL_SECONDS``). SUCCEEDED
gives the child's outputs as the step output; FAILED or CANCELLED fails the step (not
retryable: a retry would start a second child).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from linkloom.engine.models import StepResult
from linkloom.engine.ports import StepContext
from linkloom.engine.steps import outcomes

POLL_SECONDS = 1.0
MAX_POLL_SECONDS = 15.0


class SubflowExecutor:
    """Runs ``flow`` steps through the sub-flow services."""

    type_name: ClassVar[str] = "flow"

    def __init__(
        self, *, poll_seconds: float = POLL_SECONDS, max_poll_seconds: float = MAX_POLL_SECONDS
    ) -> None:
        self.poll_seconds = poll_seconds
        self.max_poll_seconds = max_poll_seconds

    async def execute(self, ctx: StepContext) -> StepResult:
        return await outcomes.guarded(ctx, self._run)

    async def _run(self, ctx: StepContext) -> StepResult:
        services = ctx.services
        if services.start_subflow is None or services.read_run is None:
            return outcomes.failed("config", "sub-flow steps are not available in this engine")
        step: Any = ctx.step
        child_id = ctx.state.get("child_run_id")
        if child_id is None:
            inputs = outcomes.render(ctx, dict(step.inputs))
            try:
                child_id = await services.start_subflow(
                    flow_id=step.flow,
                    inputs=inputs,
                    parent_run_id=ctx.run.id,
                    parent_step_id=ctx.step.id,
                )
            except Exception as exc:  # the starter reports unknown flows, bad inputs, …
                return outcomes.failed("subflow", f"could not start flow {step.flow!r}: {exc}")
            ctx.log(f"started sub-flow {step.flow!r} as run {child_id}")
            return self._poll_later(ctx, str(child_id))
        status, outputs = await services.read_run(child_id)
        if status == "SUCCEEDED":
            return StepResult(output=outputs)
        if status in ("FAILED", "CANCELLED"):
            return outcomes.failed(
                "subflow",
                f"sub-flow {step.flow!r} run {child_id} ended {status}",
                output={"run_id": child_id, "status": status},
            )
        return self._poll_later(ctx, child_id)

    def _poll_later(self, ctx: StepContext, child_id: str) -> StepResult:
        polls = int(ctx.state.get("polls", 0)) if ctx.state.get("child_run_id") else 0
        delay = min(self.poll_seconds * 2 ** min(polls, 16), self.max_poll_seconds)
        wake = ctx.services.clock.now() + timedelta(seconds=delay)
        state = {**ctx.state, "child_run_id": child_id, "polls": polls + 1}
        return StepResult(suspend_until=wake, state=state)
