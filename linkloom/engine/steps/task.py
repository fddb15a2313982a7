"""The ``task`` step: work for pull-mode workers (``linkloom.sdk.Worker``) polling a queue.

The server does not call anyone: the attempt's task (the usual task envelope plus ``task``,
``queue`` and the rendered ``payload``) is put on the step's queue and the step waits, RUNNING
with no worker slot held, exactly like an async ``http`` step waiting for its callback. A
worker takes it under a lease, heartbeats, and reports the result, which completes the step
through the same callback path (a second result for the same attempt is refused). A task whose
worker stops heartbeating goes back on the queue with the same attempt and idempotency key.
The step's ``timeout`` bounds the attempt, waiting in the queue included: when it passes, the
attempt fails as ``timeout`` and is retried per the step's retry policy (a new attempt is queued).

The queue is ``services.extra["task_queue"]`` (a ``TaskQueue``: ``engine.pull``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from linkloom.engine import callbacks, rendering
from linkloom.engine.models import StepError, StepResult
from linkloom.engine.ports import StepContext


class TaskExecutor:
    """Queues ``task`` steps for pull-mode workers."""

    type_name: ClassVar[str] = "task"

    async def execute(self, ctx: StepContext) -> StepResult:
        step: Any = ctx.step
        queue = ctx.services.extra.get("task_queue")
        if queue is None:
            return StepResult(
                error=StepError(
                    kind="config",
                    message="task steps need pull-mode task queues: run them on a Link Loom "
                    "server or an embedded Loom, not in this process",
                )
            )
        try:
            payload = rendering.render(step.payload, ctx.template_context())
        except rendering.TemplateError as exc:
            return StepResult(error=StepError(kind="template", message=f"payload: {exc}"))
        step_run_id, _, attempt = ctx.attempt_id.rpartition(".")
        token = callbacks.make_token(
            ctx.services.signing_key, step_run_id=step_run_id, attempt=int(attempt or 0)
        )
        deps = step.depends_on or list(ctx.upstream)
        envelope = {
            "run_id": ctx.run.id,
            "flow_id": ctx.run.flow_id,
            "flow_version": ctx.run.version,
            "step_id": step.id,
            "attempt": ctx.attempt,
            "idempotency_key": ctx.idempotency_key,
            "queue": step.queue,
            "task": step.task,
            "payload": payload,
            "inputs": ctx.run.inputs,
            "upstream": {
                sid: {"output": v.get("output"), "outputs": v.get("outputs") or {}}
                for sid, v in ctx.upstream.items()
                if sid in deps
            },
            "item": ctx.item,
            "index": ctx.index,
            "token": token,
        }
        await queue.enqueue(
            token=token,
            step_run_id=step_run_id,
            attempt=int(attempt or 0),
            queue=step.queue,
            task=step.task,
            envelope=envelope,
        )
        ctx.log(f"queued task {step.task!r} on queue {step.queue!r}")
        wait = ctx.timeout
        return StepResult(
            wait_for_callback=True,
            callback_deadline=ctx.services.clock.now() + timedelta(seconds=wait),
            state={**ctx.state, "callback": True, "heartbeat_timeout": wait},
            logs=tuple(ctx.logs),
        )
