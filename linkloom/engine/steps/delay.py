"""The ``delay`` step: a durable timer that holds no worker.

The first execution computes the wake time (``duration`` from now, or ``until`` rendered to an
ISO 8601 datetime; a time without zone is UTC) and returns ``suspend_until`` with the wake time in
the step's durable ``state``; the engine re-queues the step for that time, so the timer survives
restarts. When executed again at or after the wake time the step succeeds with
``{"waited": seconds, "wake_at": iso}``. A wake time already past succeeds at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from linkloom.engine.models import StepResult
from linkloom.engine.ports import StepContext
from linkloom.engine.steps import outcomes
from linkloom.engine.steps.outcomes import StepConfigError


class DelayExecutor:
    """Runs ``delay`` steps with ``ctx.services.clock``."""

    type_name: ClassVar[str] = "delay"

    async def execute(self, ctx: StepContext) -> StepResult:
        return await outcomes.guarded(ctx, self._run)

    async def _run(self, ctx: StepContext) -> StepResult:
        now = ctx.services.clock.now()
        if "wake_at" in ctx.state:
            wake = _parse(ctx.state["wake_at"])
            started = _parse(ctx.state.get("started_at", ctx.state["wake_at"]))
        else:
            wake, started = self._wake_time(ctx, now), now
        state = {"wake_at": wake.isoformat(), "started_at": started.isoformat()}
        if now < wake:
            return StepResult(suspend_until=wake, state=state)
        waited = max(0.0, (now - started).total_seconds())
        return StepResult(output={"waited": round(waited, 3), "wake_at": wake.isoformat()})

    @staticmethod
    def _wake_time(ctx: StepContext, now: datetime) -> datetime:
        step: Any = ctx.step
        if step.duration is not None:
            return now + timedelta(seconds=float(step.duration))
        value = outcomes.render(ctx, step.until)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if not isinstance(value, str):
            raise StepConfigError(f"delay 'until' must be an ISO 8601 datetime; got {value!r:.80}")
        return _parse(value)


def _parse(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise StepConfigError(
            f"delay 'until' must be an ISO 8601 datetime such as 2026-01-01T09:00:00Z; "
            f"got {text!r:.80}"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
