"""``RunService``: the use cases on flows and runs that the API, CLI and scheduler call.

Async, keyword-only. Errors are ``linkloom.engine.errors``. Every state change of a run goes
through ``RunStore.update_run`` with a transition from ``engine.transitions``; after a change
that makes work ready, ``wake()`` nudges in-process workers (others poll or get NOTIFY).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from linkloom import metrics
from linkloom.engine import callbacks, contexts, errors, transitions
from linkloom.engine.inputs import validate_inputs
from linkloom.engine.models import RunStatus, StepError, StepStatus
from linkloom.engine.ports import Clock, SecretResolver
from linkloom.engine.records import (
    Attempt,
    Claim,
    DeadLetter,
    ExchangeRecord,
    Flow,
    FlowVersion,
    Page,
    Run,
    RunChanges,
    RunEvent,
    RunFilter,
    RunSnapshot,
    StepRun,
    apply_changes,
)
from linkloom.engine.specs import CompiledFlow, SpecCache, content_hash, spec_to_json
from linkloom.engine.store_port import RunStore
from linkloom.engine.transitions import OutcomeKind
from linkloom.flows.spec import FlowSpec

TRIGGERS = ("manual", "schedule", "webhook", "event", "subflow", "backfill", "retry", "redrive")


class _NoSecrets:
    def get(self, name: str) -> str | None:
        return None

    def names(self) -> list[str]:
        return []


@dataclass(frozen=True, slots=True, kw_only=True)
class _NewRun:
    """What ``trigger`` was asked for, besides the flow and its version."""

    inputs: dict[str, Any] | None
    trigger: str
    trigger_info: dict[str, Any]
    actor: str | None
    schedule_id: str | None
    fire_time: datetime | None
    parent_run_id: str | None
    parent_step_id: str | None
    sandbox: bool
    seed: Sequence[StepRun]


class LocalWorker(Protocol):
    """What ``trigger`` needs of a worker running in the same process
    (``engine.worker.Worker``)."""

    def reserve_first_steps(self, created: RunSnapshot) -> RunChanges | None: ...

    def start_reserved(self, claims: list[Claim]) -> None: ...

    def drop_reserved(self, count: int) -> None: ...


class RunService:
    """Flows and runs: apply, trigger, inspect, cancel, retry, re-drive, callbacks."""

    def __init__(
        self,
        *,
        store: RunStore,
        clock: Clock,
        secrets: SecretResolver | None = None,
        signing_key: str = "",
        wake: Callable[[], None] | None = None,
        per_run_limit: int | None = None,
        on_run_finished: Callable[[Run], Any] | None = None,
        on_cancel: Callable[[str], Any] | None = None,
        local_worker: Callable[[], LocalWorker | None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.secrets = secrets or _NoSecrets()
        self.signing_key = signing_key
        self.specs = SpecCache(store)
        self._wake = wake or (lambda: None)
        self.per_run_limit = per_run_limit
        self.on_run_finished = on_run_finished
        self.on_cancel = on_cancel  # in-process workers abandon the run's in-flight attempts
        # A worker in this process that takes a new run's first steps as the run is created.
        self.local_worker = local_worker
        self._waiters: dict[str, list[asyncio.Future[Run]]] = {}
        # Each flow's current version as last seen here: a hint that trigger() has the store
        # confirm while creating the run (another process may have changed it since).
        self._current_versions: dict[str, int] = {}
        # Runs whose first steps this process's worker took (oldest first, bounded): until
        # ``notify_finished``, waiting for them needs no read.
        self._running_here: dict[str, None] = {}

    def wake(self) -> None:
        self._wake()

    # ---- flows -------------------------------------------------------------------------
    async def apply_flow(
        self,
        spec: FlowSpec,
        *,
        source: str = "apply",
        actor: str | None = None,
        git_commit: str | None = None,
    ) -> FlowVersion:
        """Store ``spec`` as the flow's new current version, unless its content is unchanged."""
        version, _created = await self.store.save_flow_version(
            flow_id=spec.id,
            name=spec.name,
            spec=spec_to_json(spec),
            content_hash=content_hash(spec),
            source=source,
            actor=actor,
            git_commit=git_commit,
            now=self.clock.now(),
        )
        self._note_current(spec.id, version.version)
        return version

    async def get_flow(self, flow_id: str) -> Flow:
        flow = await self.store.get_flow(flow_id)
        if flow is None or flow.deleted_at is not None:
            self._current_versions.pop(flow_id, None)
            raise errors.FlowNotFound(flow_id=flow_id)
        self._note_current(flow_id, flow.current_version)
        return flow

    def _note_current(self, flow_id: str, version: int) -> None:
        _remember(self._current_versions, flow_id, version, limit=4096)

    async def list_flows(self) -> list[Flow]:
        return await self.store.list_flows()

    async def get_flow_version(self, flow_id: str, version: int | None = None) -> FlowVersion:
        if version is None:
            version = (await self.get_flow(flow_id)).current_version
        found = await self.store.get_flow_version(flow_id, version)
        if found is None:
            raise errors.FlowVersionNotFound(flow_id=flow_id, version=version)
        return found

    async def list_flow_versions(self, flow_id: str) -> list[FlowVersion]:
        await self.get_flow(flow_id)
        return await self.store.list_flow_versions(flow_id)

    async def get_spec(self, flow_id: str, version: int | None = None) -> FlowSpec:
        if version is None:
            version = (await self.get_flow(flow_id)).current_version
        return (await self.specs.get(flow_id, version)).spec

    async def delete_flow(self, flow_id: str) -> None:
        flow = await self.get_flow(flow_id)
        now = self.clock.now()
        await self.store.update_flow(replace(flow, deleted_at=now, updated_at=now))
        self._current_versions.pop(flow_id, None)

    async def set_paused(self, flow_id: str, paused: bool) -> Flow:
        flow = replace(await self.get_flow(flow_id), paused=paused, updated_at=self.clock.now())
        await self.store.update_flow(flow)
        return flow

    async def rollback(
        self, flow_id: str, *, version: int, actor: str | None = None
    ) -> FlowVersion:
        """Make an earlier version current again, as a new version with ``source='rollback'``."""
        old = await self.get_flow_version(flow_id, version)
        spec = FlowSpec.model_validate(old.spec)
        created, _ = await self.store.save_flow_version(
            flow_id=flow_id,
            name=spec.name,
            spec=old.spec,
            content_hash=content_hash(spec),
            source="rollback",
            actor=actor,
            git_commit=old.git_commit,
            now=self.clock.now(),
        )
        self._note_current(flow_id, created.version)
        return created

    # ---- runs --------------------------------------------------------------------------
    async def trigger(
        self,
        flow_id: str,
        *,
        inputs: dict[str, Any] | None = None,
        trigger: str = "manual",
        trigger_info: dict[str, Any] | None = None,
        actor: str | None = None,
        version: int | None = None,
        schedule_id: str | None = None,
        fire_time: datetime | None = None,
        parent_run_id: str | None = None,
        parent_step_id: str | None = None,
        sandbox: bool = False,
        seed: Sequence[StepRun] = (),
    ) -> Run:
        """Create a run of the flow's current (or given) version and queue its first steps.

        Raises:
            FlowNotFound, FlowVersionNotFound, InputsInvalid, DuplicateRun (same schedule and
            fire time: another scheduler already fired it).
        """
        if trigger not in TRIGGERS:
            raise errors.InvalidInput(f"unknown trigger {trigger!r}; use one of {TRIGGERS}")
        request = _NewRun(
            inputs=inputs, trigger=trigger, trigger_info=trigger_info or {}, actor=actor,
            schedule_id=schedule_id, fire_time=fire_time, parent_run_id=parent_run_id,
            parent_step_id=parent_step_id, sandbox=sandbox, seed=seed,
        )  # fmt: skip
        cached = self._current_versions.get(flow_id)
        # The version last seen current (asked for, or the one the caller names, as the
        # scheduler does for every fire): the creating transaction checks it still is, which
        # saves reading the flow first. Any doubt: read it and create as below.
        known = cached if version is None or version == cached else None
        if known is not None:
            try:
                return await self._create_run(flow_id, known, request, if_current=True)
            except (errors.FlowChanged, errors.FlowVersionNotFound, errors.InputsInvalid):
                self._current_versions.pop(flow_id, None)
        flow = await self.get_flow(flow_id)
        return await self._create_run(
            flow_id, version or flow.current_version, request, if_current=False
        )

    async def _create_run(
        self, flow_id: str, version: int, request: _NewRun, *, if_current: bool
    ) -> Run:
        compiled = await self.specs.get(flow_id, version)
        checked = validate_inputs(compiled.spec, request.inputs)
        trigger, actor = request.trigger, request.actor
        now = self.clock.now()
        run_id = transitions.new_id()
        limits = [
            x for x in (compiled.spec.concurrency.max_parallel_steps, self.per_run_limit) if x
        ]
        run = Run(
            id=run_id,
            flow_id=flow_id,
            version=compiled.version,
            status=RunStatus.PENDING,
            trigger=trigger,
            trigger_info=request.trigger_info,
            inputs=checked,
            schedule_id=request.schedule_id,
            fire_time=request.fire_time,
            parent_run_id=request.parent_run_id,
            parent_step_id=request.parent_step_id,
            created_by=actor,
            created_at=now,
            sandbox=request.sandbox,
            max_parallel=min(limits) if limits else None,
        )
        steps = transitions.initial_steps(compiled.plan, run_id=run_id, now=now, seed=request.seed)
        queued = RunSnapshot(run=run, steps=tuple(steps))
        event = RunEvent(
            run_id=run_id,
            kind="run_created",
            message=f"run created by {trigger} trigger" + (f" ({actor})" if actor else ""),
            data={"version": compiled.version},
            at=now,
        )
        worker = self.local_worker() if self.local_worker is not None else None
        # This process's worker leases the first steps in the creating transaction itself.
        taken = worker.reserve_first_steps(queued) if worker is not None else None
        if worker is None or taken is None:
            await self.store.create_run(run, steps, [event], if_current=if_current)
            created, claimed = run, 0
        else:
            # Once the run may be written, its leased steps must be started (or their slots
            # freed), even if our caller is cancelled meanwhile: shielded.
            creating = asyncio.ensure_future(
                self._create_leased(worker, queued, taken, event, if_current=if_current)
            )
            creating.add_done_callback(_retrieve)
            created, claimed = await asyncio.shield(creating), len(taken.steps)
        metrics.run_started(flow_id=flow_id, trigger=trigger)
        if claimed < sum(s.status is StepStatus.QUEUED for s in steps):
            self.wake()
        return created

    async def _create_leased(
        self,
        worker: LocalWorker,
        queued: RunSnapshot,
        taken: RunChanges,
        event: RunEvent,
        *,
        if_current: bool,
    ) -> Run:
        created = apply_changes(queued, taken)
        try:
            await self.store.create_run(created.run, created.steps, [event], if_current=if_current)
        except BaseException:
            worker.drop_reserved(len(taken.steps))
            raise
        run = created.run
        _remember(self._running_here, run.id, None, limit=10_000)
        worker.start_reserved([Claim(step=s, run=run, snapshot=queued) for s in taken.steps])
        return run

    async def get_run(self, run_id: str) -> Run:
        run = await self.store.get_run(run_id)
        if run is None:
            raise errors.RunNotFound(run_id=run_id)
        return run

    async def list_runs(
        self, filters: RunFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        return await self.store.list_runs(
            filters or RunFilter(), limit=max(1, min(limit, 1000)), cursor=cursor
        )

    async def recent_runs(self, flow_ids: Sequence[str], *, limit: int) -> dict[str, list[Run]]:
        """Each flow's newest ``limit`` runs, newest first, in one read."""
        return await self.store.recent_runs(flow_ids, limit=max(0, min(limit, 1000)))

    async def list_steps(self, run_id: str) -> list[StepRun]:
        snapshot = await self.store.snapshot(run_id)
        if snapshot is None:
            raise errors.RunNotFound(run_id=run_id)
        compiled = await self.specs.get(snapshot.run.flow_id, snapshot.run.version)
        return sorted(snapshot.steps, key=_step_order(list(compiled.plan.nodes)))

    async def list_items(
        self, run_id: str, step_id: str, *, after: int | None = None, limit: int = 100
    ) -> list[StepRun]:
        """One page of a fan-out step's children (items), by index."""
        await self.get_run(run_id)
        return await self.store.list_items(
            run_id, step_id, after=after, limit=max(1, min(limit, 5000))
        )

    async def list_attempts(self, run_id: str) -> list[Attempt]:
        await self.get_run(run_id)
        return await self.store.list_attempts(run_id)

    async def list_exchanges(
        self, run_id: str, *, step_id: str | None = None
    ) -> list[ExchangeRecord]:
        await self.get_run(run_id)
        return await self.store.list_exchanges(run_id, step_id=step_id)

    async def events(self, run_id: str, *, after_id: int = 0, limit: int = 1000) -> list[RunEvent]:
        await self.get_run(run_id)
        return await self.store.list_events(run_id, after_id=after_id, limit=limit)

    async def follow(
        self, run_id: str, *, after_id: int = 0, poll: float = 0.2
    ) -> AsyncIterator[RunEvent]:
        """Yield the run's events as they are written, until the run has finished."""
        await self.get_run(run_id)
        last = after_id
        while True:
            batch = await self.store.list_events(run_id, after_id=last, limit=1000)
            for event in batch:
                last = event.id
                yield event
            if batch:
                continue
            run = await self.get_run(run_id)
            if run.status.terminal:
                tail = await self.store.list_events(run_id, after_id=last)
                for event in tail:
                    yield event
                return
            await asyncio.sleep(poll)

    async def wait(self, run_id: str, *, poll: float = 0.5) -> Run:
        """Wait until the run is terminal and return it (bound it with ``asyncio.timeout``).

        Woken at once when a worker in this process finishes the run (``notify_finished``);
        polls every ``poll`` seconds for runs finished elsewhere. A run that this process's
        worker is executing is not read before the first wait: its end is notified here.
        """
        read = run_id not in self._running_here
        while True:
            future: asyncio.Future[Run] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(run_id, []).append(future)
            try:
                if read:
                    run = await self.get_run(run_id)
                    if run.status.terminal:
                        return run
                read = True
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll):
                        return await future
            finally:
                waiting = self._waiters.get(run_id, [])
                if future in waiting:
                    waiting.remove(future)
                if not waiting:
                    self._waiters.pop(run_id, None)

    def notify_finished(self, run: Run) -> None:
        """Wake ``wait()`` callers of this run (workers in this process call it)."""
        self._running_here.pop(run.id, None)
        for future in self._waiters.pop(run.id, []):
            if not future.done():
                future.set_result(run)

    async def cancel(self, run_id: str, *, actor: str | None = None, reason: str = "") -> Run:
        """Cancel a run: unfinished steps become CANCELLED, in-flight attempts are abandoned."""
        compiled = await self._compiled_for(run_id)
        why = reason or (f"cancelled by {actor}" if actor else "cancelled")
        ctx = transitions.Context(plan=compiled.plan, now=self.clock.now())
        await self.store.update_run(run_id, transitions.cancel_run(ctx=ctx, reason=why))
        if self.on_cancel is not None:
            self.on_cancel(run_id)
        run = await self.get_run(run_id)
        await self._finished(run)
        return run

    async def _finished(self, run: Run) -> None:
        """A run changed here: if it has ended, wake its waiters and listeners."""
        if not run.status.terminal:
            return
        self.notify_finished(run)
        if self.on_run_finished is not None:
            result = self.on_run_finished(run)
            if asyncio.iscoroutine(result):
                await result

    async def retry(self, run_id: str, *, actor: str | None = None) -> Run:
        """Run a FAILED/CANCELLED run again from its failed steps (same run id)."""
        compiled = await self._compiled_for(run_id)
        ctx = self._context(compiled)
        await self.store.update_run(run_id, transitions.retry_run(ctx=ctx))
        self.wake()
        return await self.get_run(run_id)

    async def _compiled_for(self, run_id: str) -> CompiledFlow:
        run = await self.get_run(run_id)
        return await self.specs.get(run.flow_id, run.version)

    def _context(self, compiled: CompiledFlow) -> transitions.Context:
        return transitions.Context(
            plan=compiled.plan,
            now=self.clock.now(),
            flow_outputs=contexts.flow_outputs_renderer(compiled.spec, self.secrets),
            step_outputs=contexts.fanout_outputs_renderer(compiled.spec, self.secrets),
        )

    # ---- dead letters ------------------------------------------------------------------
    async def list_dead_letters(
        self, *, flow_id: str | None = None, include_redriven: bool = False, limit: int = 100
    ) -> list[DeadLetter]:
        return await self.store.list_dead_letters(
            flow_id=flow_id, include_redriven=include_redriven, limit=limit
        )

    async def redrive(
        self,
        ids: Sequence[str],
        *,
        on: str = "failed_version",
        actor: str | None = None,
    ) -> list[Run]:
        """Start a new run per dead letter's run, with the same inputs; on the failed version
        its succeeded steps keep their outputs so only the failed part runs again."""
        if on not in ("failed_version", "current_version"):
            raise errors.InvalidInput("redrive 'on' must be 'failed_version' or 'current_version'")
        letters = []
        for letter_id in ids:
            letter = await self.store.get_dead_letter(letter_id)
            if letter is None:
                raise errors.DeadLetterNotFound(dead_letter_id=letter_id)
            letters.append(letter)
        started: dict[str, Run] = {}
        for letter in letters:
            if letter.run_id not in started:
                original = await self.get_run(letter.run_id)
                seed: Sequence[StepRun] = ()
                version = original.version
                if on == "failed_version":
                    snapshot = await self.store.snapshot(original.id)
                    seed = snapshot.steps if snapshot else ()
                else:
                    version = (await self.get_flow(original.flow_id)).current_version
                started[letter.run_id] = await self.trigger(
                    original.flow_id,
                    inputs=original.inputs,
                    trigger="redrive",
                    trigger_info={"original_run_id": original.id, "dead_letter_id": letter.id},
                    actor=actor,
                    version=version,
                    seed=seed,
                )
            await self.store.mark_redriven(
                letter.id, run_id=started[letter.run_id].id, at=self.clock.now()
            )
        return list(started.values())

    # ---- async callbacks ---------------------------------------------------------------
    async def complete_callback(self, token: str, payload: Any) -> None:
        """Complete an async step with its backend's result.

        Raises:
            CallbackTokenInvalid, CallbackNotFound, CallbackAlreadyUsed (409: second callback).
        """
        step_run_id, attempt = callbacks.parse_token(self.signing_key, token)
        step = await self.store.find_step_run(step_run_id)
        if step is None:
            raise errors.CallbackNotFound()
        snapshot = await self.store.snapshot(step.run_id)
        assert snapshot is not None
        compiled = await self.specs.get(snapshot.run.flow_id, snapshot.run.version)
        result = callbacks.read_result(payload)
        output, logs = result.output, result.logs
        if result.error is None:
            declared = compiled.spec.step(step.step_id).outputs
            context = {
                **contexts.base_context(snapshot.run, snapshot, self.secrets),
                "output": output,
            }
            if step.item_index is not None:
                context["item"] = step.state.get("item")
                context["index"] = step.item_index
            try:
                outs = contexts.render_step_outputs(declared, context, self.secrets)
                outcome = transitions.Outcome(
                    kind=OutcomeKind.SUCCEEDED, output=output, outputs=outs, logs=logs
                )
            except Exception as exc:
                outcome = transitions.Outcome(
                    kind=OutcomeKind.FAILED,
                    error=StepError(kind="template", message=f"outputs: {exc}"),
                    logs=logs,
                )
        else:
            outcome = callbacks.failed_outcome(
                result.error,
                output=output,
                logs=logs,
                step=step,
                spec=compiled.spec,
                now=self.clock.now(),
            )
        changes = await self.store.update_run(
            step.run_id,
            transitions.apply_outcome(
                step_run_id,
                attempt=attempt,
                owner=None,
                outcome=outcome,
                ctx=self._context(compiled),
                callback=True,
            ),
        )
        self.wake()
        if changes is not None and changes.run is not None:
            await self._finished(changes.run)

    async def heartbeat(self, token: str, *, signed_at: int | None = None) -> datetime:
        """Extend an async step's deadline by its ``heartbeat_timeout``; return the deadline.

        A heartbeat signed no later than the last one that counted (a replay) is accepted and
        changes nothing: the answer is the deadline as it stands.
        """
        step_run_id, attempt = callbacks.parse_token(self.signing_key, token)
        step = await self.store.find_step_run(step_run_id)
        if step is None:
            raise errors.CallbackNotFound()
        seconds = float(step.state.get("heartbeat_timeout") or 60.0)
        now = self.clock.now()
        until = transitions.deadline_after(now, seconds)
        changes = await self.store.update_run(
            step.run_id,
            transitions.extend_deadline(
                step_run_id, attempt=attempt, until=until, now=now, signed_at=signed_at
            ),
        )
        last = transitions.last_heartbeat(step, attempt)
        replayed = signed_at is not None and last is not None and signed_at <= last
        if replayed and (changes is None or not changes.steps) and step.lease_expires_at:
            return step.lease_expires_at
        return until


def _remember(table: dict[str, Any], key: str, value: Any, *, limit: int) -> None:
    """Set ``table[key]``, forgetting the oldest entry when ``limit`` entries are kept."""
    if key not in table and len(table) >= limit:
        table.pop(next(iter(table)))
    table[key] = value


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a shielded task's outcome as seen (its caller may have been cancelled)."""
    if not task.cancelled():
        task.exception()


def _step_order(order: Sequence[str]) -> Callable[[StepRun], tuple[Any, ...]]:
    """Spec order, each fan-out parent followed by its children."""
    position = {sid: n for n, sid in enumerate(order)}
    return lambda s: (
        position.get(s.step_id, len(position)),
        -1 if s.item_index is None else s.item_index,
    )
