"""Executing one claimed step run: the per-attempt logic between a claim and its outcome.

``StepRunner.run(claim)`` renders ``when`` and ``for_each`` for a logical step, or calls the
step type's executor under the step's timeout, turns the ``StepResult`` into an ``Outcome``
(retry with backoff, fail, suspend, wait for a callback, succeed with rendered outputs), scrubs
secrets from everything that will persist, and writes it with one ``update_run``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import structlog

from linkloom import logs, metrics, tracing
from linkloom.engine import callbacks, contexts, dag, rendering, retries, transitions
from linkloom.engine.models import Exchange, LogLine, RunInfo, StepError, StepResult
from linkloom.engine.ports import Clock, StepContext, StepExecutor, StepServices
from linkloom.engine.records import Claim, Run, RunChanges, RunSnapshot, StepRun
from linkloom.engine.redaction import redact_headers, scrub, secret_values
from linkloom.engine.specs import CompiledFlow, SpecCache
from linkloom.engine.store_port import CALLBACK_OWNER, Mutation, RunStore
from linkloom.engine.transitions import OutcomeKind
from linkloom.flows.spec import FlowSpec, StepBase

log = structlog.get_logger(__name__)

MAX_FANOUT_ITEMS = 10_000


class StepRunner:
    """Runs claimed step runs for a worker (or a test, or the sandbox)."""

    def __init__(
        self,
        *,
        store: RunStore,
        executors: Mapping[str, StepExecutor],
        services: StepServices,
        specs: SpecCache | None = None,
        rng: Callable[[], float] = random.random,
        on_run_finished: Callable[[Run], Any] | None = None,
        writer: Callable[[str, Mutation], Awaitable[RunChanges | None]] | None = None,
    ) -> None:
        self.store = store
        self.writer = writer or store.update_run
        self.executors = executors
        self.services = services
        self.specs = specs or SpecCache(store)
        self.rng = rng
        self.on_run_finished = on_run_finished

    @property
    def clock(self) -> Clock:
        return self.services.clock

    def context(self, compiled: CompiledFlow) -> transitions.Context:
        secrets = self.services.secrets
        return transitions.Context(
            plan=compiled.plan,
            now=self.clock.now(),
            flow_outputs=contexts.flow_outputs_renderer(compiled.spec, secrets),
            step_outputs=contexts.fanout_outputs_renderer(compiled.spec, secrets),
        )

    async def run(self, claim: Claim, *, owner: str) -> RunChanges | None:
        step, run = claim.step, claim.run
        # Each claim runs in its own task, so these ids stay with this attempt's log lines.
        logs.bind(run_id=run.id, flow_id=run.flow_id, step_id=step.step_id, attempt=step.attempt)
        compiled = await self.specs.get(run.flow_id, run.version)
        spec_step = compiled.spec.step(step.step_id)
        # Upstream outputs live on logical steps; fan-out children are not needed here. A step
        # with no upstream (a root) may only reference inputs: no read needed.
        snapshot = claim.snapshot
        if snapshot is None and not compiled.plan.nodes[step.step_id].depends_on:
            snapshot = RunSnapshot(run=run, steps=())
        if snapshot is None:
            snapshot = await self.store.snapshot(run.id, parents_only=True)
        if snapshot is None:
            return None
        base = contexts.base_context(run, snapshot, self.services.secrets)
        if step.item_index is None:
            early = await self._before_execution(step, spec_step, compiled, base, owner=owner)
            if early is not None:
                return await self._write(run.id, early)
        started = time.perf_counter()
        outcome = await self._attempt(step, spec_step, compiled.spec, run, base)
        mutation = transitions.apply_outcome(
            step.id, attempt=step.attempt, owner=owner, outcome=outcome, ctx=self.context(compiled)
        )
        changes = await self._write(run.id, mutation)
        if changes is not None and not changes.empty:
            _count_attempt(run, spec_step, outcome, time.perf_counter() - started)
        return changes

    async def _write(self, run_id: str, mutation: Mutation) -> RunChanges | None:
        changes = await self.writer(run_id, mutation)
        if changes is not None and changes.run is not None and changes.run.status.terminal:
            finished = changes.run
            seconds = None
            if finished.finished_at is not None:
                seconds = (finished.finished_at - finished.created_at).total_seconds()
            log.info(
                "run_finished", run_id=run_id, flow_id=finished.flow_id,
                status=finished.status.value, seconds=seconds,
            )  # fmt: skip
            metrics.run_finished(flow_id=finished.flow_id, status=finished.status, seconds=seconds)
            if finished.finished_at is not None:
                tracing.run_finished(
                    run_id=run_id, flow_id=finished.flow_id, status=finished.status,
                    started_at=finished.created_at, finished_at=finished.finished_at,
                )  # fmt: skip
            if self.on_run_finished is not None:
                result = self.on_run_finished(changes.run)
                if asyncio.iscoroutine(result):
                    await result
        return changes

    async def _before_execution(
        self,
        step: StepRun,
        spec_step: StepBase,
        compiled: CompiledFlow,
        base: dict[str, Any],
        *,
        owner: str,
    ) -> Mutation | None:
        """``when`` false → skip; ``for_each`` → expand children. None: execute normally."""
        ctx = self.context(compiled)
        if spec_step.when is not None:
            try:
                go = rendering.evaluate(spec_step.when, base)
            except Exception as exc:
                return self._template_failure(step, ctx, owner, f"when: {exc}")
            if not go:
                outcome = transitions.Outcome(kind=OutcomeKind.SKIPPED, skip_reason=dag.SKIP_WHEN)
                return transitions.apply_outcome(
                    step.id, attempt=step.attempt, owner=owner, outcome=outcome, ctx=ctx
                )
        if spec_step.for_each is None:
            return None
        try:
            items = rendering.render(spec_step.for_each, base)
        except Exception as exc:
            return self._template_failure(step, ctx, owner, f"for_each: {exc}")
        if isinstance(items, dict):
            items = [{"key": k, "value": v} for k, v in items.items()]
        if not isinstance(items, list):
            return self._template_failure(
                step, ctx, owner, f"for_each must render to a list, got {type(items).__name__}"
            )
        if len(items) > MAX_FANOUT_ITEMS:
            return self._template_failure(
                step,
                ctx,
                owner,
                f"for_each has {len(items)} items; the limit is {MAX_FANOUT_ITEMS}",
            )
        return transitions.expand_fanout(
            step.id, attempt=step.attempt, owner=owner, items=items, ctx=ctx
        )

    def _template_failure(
        self, step: StepRun, ctx: transitions.Context, owner: str, message: str
    ) -> Mutation:
        error = StepError(kind="template", message=self._scrub(message))
        outcome = transitions.Outcome(kind=OutcomeKind.FAILED, error=error)
        return transitions.apply_outcome(
            step.id, attempt=step.attempt, owner=owner, outcome=outcome, ctx=ctx
        )

    async def _attempt(
        self,
        step: StepRun,
        spec_step: StepBase,
        spec: FlowSpec,
        run: Run,
        base: dict[str, Any],
    ) -> transitions.Outcome:
        step_type = getattr(spec_step, "type", "")
        executor = self.executors.get(step_type)
        timeout = retries.effective_timeout(spec_step, spec)
        ctx = StepContext(
            run=_run_info(run),
            step=spec_step,
            attempt=step.attempt,
            idempotency_key=step.idempotency_key,
            upstream=base["steps"],  # the view base_context built from the snapshot
            services=self.services,
            timeout=timeout,
            state=dict(step.state),
            item=step.state.get("item") if step.item_index is not None else None,
            index=step.item_index,
            attempt_id=f"{step.id}.{step.attempt}",
        )
        started = time.perf_counter()
        if executor is None:
            result = StepResult(
                error=StepError(
                    kind="config",
                    message=f"no executor for step type {step_type!r} on this server",
                )
            )
        else:
            with tracing.step_span(
                run_id=run.id, flow_id=run.flow_id, step_id=step.step_id,
                step_type=step_type, attempt=step.attempt,
            ) as span:  # fmt: skip
                result = await self._call(executor, ctx, timeout)
                span.set_attribute("loom.ok", result.ok)
        log.debug(
            "step_attempt_finished", run_id=run.id, step_id=step.step_id,
            attempt=step.attempt, ok=result.ok,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )  # fmt: skip
        return self._outcome(step, spec_step, spec, ctx, result, base)

    async def _call(self, executor: StepExecutor, ctx: StepContext, seconds: float) -> StepResult:
        try:
            async with asyncio.timeout(seconds if seconds > 0 else None):
                return await executor.execute(ctx)
        except TimeoutError:
            return StepResult(
                error=StepError(
                    kind="timeout", message=f"the step timed out after {seconds:g}s", retryable=True
                ),
                logs=tuple(ctx.logs),
                exchanges=tuple(ctx.exchanges),
            )
        except Exception as exc:  # an executor bug must not kill the worker
            log.exception("executor_crashed", step_id=ctx.step.id)
            return StepResult(
                error=StepError(kind="internal", message=f"{type(exc).__name__}: {exc}"),
                logs=tuple(ctx.logs),
                exchanges=tuple(ctx.exchanges),
            )

    def _outcome(
        self,
        step: StepRun,
        spec_step: StepBase,
        spec: FlowSpec,
        ctx: StepContext,
        result: StepResult,
        base: dict[str, Any],
    ) -> transitions.Outcome:
        now = self.clock.now()
        logs = tuple(ctx.logs) + tuple(result.logs)
        exchanges = tuple(result.exchanges) or tuple(ctx.exchanges)
        sent = sorted(ctx.sent_secrets)  # what the request derived from secrets: echoes are masked
        logs = tuple(replace(line, message=self._scrub(line.message, sent)) for line in logs)
        exchanges = tuple(self._redact_exchange(x, sent) for x in exchanges)
        state = dict(result.state) if result.state is not None else dict(ctx.state)
        if result.error is not None:
            return self._failure(
                step, spec_step, spec, result.error, logs, exchanges, state, sent=sent
            )
        if result.suspend_until is not None:
            return transitions.Outcome(
                kind=OutcomeKind.SUSPEND, ready_at=result.suspend_until, state=state,
                logs=logs, exchanges=exchanges,
            )  # fmt: skip
        if result.wait_for_callback:
            deadline = result.callback_deadline or now + timedelta(seconds=ctx.timeout)
            return transitions.Outcome(
                kind=OutcomeKind.WAIT, deadline=deadline, state=state, logs=logs,
                exchanges=exchanges,
            )  # fmt: skip
        output = self._scrub(result.output, sent)
        try:
            context = {**base, "output": result.output, "response": _response_view(exchanges)}
            if ctx.index is not None:
                context["item"], context["index"] = ctx.item, ctx.index
            outputs = contexts.render_step_outputs(
                spec_step.outputs, context, self.services.secrets
            )
            outputs = scrub(outputs, sent) if sent and outputs else outputs
        except Exception as exc:
            error = StepError(kind="template", message=f"outputs: {exc}")
            return self._failure(step, spec_step, spec, error, logs, exchanges, state, sent=sent)
        return transitions.Outcome(
            kind=OutcomeKind.SUCCEEDED, output=output, outputs=outputs, state=state, logs=logs,
            exchanges=exchanges,
        )  # fmt: skip

    def _failure(
        self,
        step: StepRun,
        spec_step: StepBase,
        spec: FlowSpec,
        error: StepError,
        logs: tuple[LogLine, ...],
        exchanges: tuple[Exchange, ...],
        state: dict[str, Any],
        *,
        sent: Sequence[str] = (),
    ) -> transitions.Outcome:
        policy = retries.effective_policy(spec_step, spec)
        used = step.attempt - int(step.state.get("attempt_base", 0))
        recorded = replace(
            error,
            kind=self._scrub(error.kind, sent),
            message=self._scrub(error.message, sent),
            attempt=step.attempt,
        )
        state = {k: v for k, v in state.items() if k != "callback"}
        if retries.should_retry(error, attempts_used=used, policy=policy):
            delay = retries.retry_delay(error, policy, used, rng=self.rng)
            return transitions.Outcome(
                kind=OutcomeKind.RETRY, error=recorded, state=state, logs=logs,
                exchanges=exchanges, ready_at=self.clock.now() + timedelta(seconds=delay),
            )  # fmt: skip
        if retries.is_retryable(error, policy):
            recorded = replace(
                recorded, message=f"{recorded.message} (gave up after {used} attempts)"
            )
        return transitions.Outcome(
            kind=OutcomeKind.FAILED, error=recorded, state=state, logs=logs, exchanges=exchanges
        )

    def expired_outcome(
        self, step: StepRun, spec_step: StepBase, spec: FlowSpec
    ) -> transitions.Outcome:
        """An async step whose callback deadline passed: a failed, retryable attempt."""
        error = StepError(
            kind="timeout",
            message="no callback or heartbeat arrived before the deadline",
            retryable=True,
        )
        return self._failure(step, spec_step, spec, error, (), (), dict(step.state))

    async def expire(self, step: StepRun, *, owner: str, force: bool = False) -> None:
        """Handle one expired lease: a lost worker's step is re-queued; a missed callback fails
        its attempt (and is retried per policy)."""
        run = await self.store.get_run(step.run_id)
        if run is None:
            return
        compiled = await self.specs.get(run.flow_id, run.version)
        ctx = self.context(compiled)
        if owner == CALLBACK_OWNER:
            outcome = self.expired_outcome(step, compiled.spec.step(step.step_id), compiled.spec)
            mutation = transitions.apply_outcome(
                step.id, attempt=step.attempt, owner=CALLBACK_OWNER, outcome=outcome, ctx=ctx
            )
        else:
            mutation = transitions.reclaim_lease(step.id, owner=owner, ctx=ctx, force=force)
        await self._write(run.id, mutation)

    def _scrub(self, value: Any, sent: Sequence[str] = ()) -> Any:
        return scrub(value, [*secret_values(self.services.secrets), *sent])

    def _redact_exchange(self, x: Exchange, sent: Sequence[str] = ()) -> Exchange:
        values = [*secret_values(self.services.secrets), *sent]
        return replace(
            x,
            url=scrub(x.url, values),
            request_headers=redact_headers(x.request_headers, values),
            request_body=scrub(x.request_body, values),
            response_headers=redact_headers(x.response_headers, values),
            response_body=scrub(x.response_body, values),
            error=scrub(x.error, values) if x.error else None,
        )


def _count_attempt(
    run: Run, spec_step: StepBase, outcome: transitions.Outcome, seconds: float
) -> None:
    step_type = str(getattr(spec_step, "type", "unknown"))
    if outcome.kind in (OutcomeKind.SUSPEND, OutcomeKind.WAIT, OutcomeKind.SKIPPED):
        return
    status = "succeeded" if outcome.kind is OutcomeKind.SUCCEEDED else "failed"
    metrics.step_finished(step_type=step_type, status=status, seconds=seconds)
    if outcome.kind is OutcomeKind.RETRY:
        metrics.step_retried(step_type=step_type)
    elif outcome.kind is OutcomeKind.FAILED:
        metrics.dead_lettered(flow_id=run.flow_id)


def _run_info(run: Run) -> RunInfo:
    return RunInfo(
        id=run.id,
        flow_id=run.flow_id,
        version=run.version,
        trigger=run.trigger,
        inputs=run.inputs,
        scheduled_at=run.fire_time,
        sandbox=run.sandbox,
    )


def _response_view(exchanges: tuple[Exchange, ...]) -> dict[str, Any] | None:
    if not exchanges:
        return None
    last = exchanges[-1]
    return {"status": last.status, "headers": last.response_headers, "body": last.response_body}


def callback_token_for(services: StepServices, ctx: StepContext) -> str:
    """The callback token of this attempt (``ctx.attempt_id`` is ``<step_run_id>.<attempt>``)."""
    step_run_id, _, attempt = ctx.attempt_id.rpartition(".")
    return callbacks.make_token(services.signing_key, step_run_id=step_run_id, attempt=int(attempt))
