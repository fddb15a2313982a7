"""Pure state transitions of a run: each builds a ``Mutation`` for ``RunStore.update_run``.

A mutation reads a ``RunSnapshot`` and returns ``RunChanges``; the store applies it in one
transaction under the run's lock. Every transition ends with ``settle``, which finishes fan-out
parents, asks the planner (``dag.advance``) which steps become QUEUED or SKIPPED, and finishes the
run when all steps are terminal. So a step's completion and its downstream readiness are written
together, and nothing here does I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from linkloom.engine import dag
from linkloom.engine.errors import CallbackAlreadyUsed, CallbackDeadlinePassed, InvalidTransition
from linkloom.engine.models import Exchange, LogLine, RunStatus, StepError, StepStatus
from linkloom.engine.records import (
    Attempt,
    DeadLetter,
    ExchangeRecord,
    Run,
    RunChanges,
    RunEvent,
    RunSnapshot,
    StepRun,
)
from linkloom.engine.store_port import CALLBACK_OWNER, FANOUT_OWNER, Mutation


class OutcomeKind(StrEnum):
    """Which way one attempt went; ``apply_outcome`` writes each differently."""

    SUCCEEDED = "succeeded"  # the step is done with its output
    FAILED = "failed"  # no attempt follows: the step fails and is dead-lettered
    RETRY = "retry"  # the attempt failed; the step is queued again at ``ready_at``
    SUSPEND = "suspend"  # a durable wait: queued again at ``ready_at`` without using an attempt
    WAIT = "wait"  # stays RUNNING until its callback arrives or ``deadline`` passes
    SKIPPED = "skipped"  # its ``when`` was false


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What the worker decided about one attempt, before it is written."""

    kind: OutcomeKind
    output: Any = None
    outputs: dict[str, Any] | None = None
    error: StepError | None = None  # retry / failed; stored as ``error.to_dict()``
    ready_at: datetime | None = None  # retry / suspend
    deadline: datetime | None = None  # wait: the callback deadline
    state: dict[str, Any] | None = None  # replaces the durable step state when given
    skip_reason: str | None = None
    logs: tuple[LogLine, ...] = ()
    exchanges: tuple[Exchange, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What transitions need besides the snapshot: the plan, the time, output renderers."""

    plan: dag.Plan
    now: datetime
    # Flow outputs of a succeeded run, from the final snapshot (raises to fail the run).
    flow_outputs: Callable[[RunSnapshot], dict[str, Any] | None] | None = None
    # A fan-out parent's declared outputs, from its collected list of child outputs.
    step_outputs: Callable[[str, Any, RunSnapshot], dict[str, Any] | None] | None = None
    new_id: Callable[[], str] = new_id


@dataclass(slots=True)
class _Work:
    snapshot: RunSnapshot
    ctx: Context
    run: Run | None = None
    steps: dict[str, StepRun] = field(default_factory=dict)
    new_steps: list[StepRun] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    exchanges: list[ExchangeRecord] = field(default_factory=list)
    events: list[RunEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def current_run(self) -> Run:
        return self.run or self.snapshot.run

    def view(self) -> list[StepRun]:
        merged = [self.steps.get(s.id, s) for s in self.snapshot.steps]
        return merged + self.new_steps

    def put(self, step: StepRun) -> None:
        for i, new in enumerate(self.new_steps):
            if new.id == step.id:
                self.new_steps[i] = step
                return
        self.steps[step.id] = step

    def event(self, kind: str, message: str, *, step: StepRun | None = None, **kw: Any) -> None:
        self.events.append(
            RunEvent(
                run_id=self.snapshot.run.id,
                step_id=step.step_id if step else None,
                attempt=step.attempt if step else None,
                kind=kind,
                level=kw.pop("level", "info"),
                message=message,
                data=kw or None,
                at=self.ctx.now,
            )
        )

    def changes(self) -> RunChanges:
        return RunChanges(
            run=self.run,
            steps=tuple(self.steps.values()),
            new_steps=tuple(self.new_steps),
            attempts=tuple(self.attempts),
            exchanges=tuple(self.exchanges),
            events=tuple(self.events),
            dead_letters=tuple(self.dead_letters),
        )


def _label(step: StepRun) -> str:
    return step.step_id if step.item_index is None else f"{step.step_id}[{step.item_index}]"


# ---------------------------------------------------------------------------- creation


def initial_steps(
    plan: dag.Plan,
    *,
    run_id: str,
    now: datetime,
    new_id: Callable[[], str] = new_id,
    seed: Sequence[StepRun] = (),
) -> list[StepRun]:
    """The step runs of a new run: roots QUEUED, the rest PENDING.

    ``seed`` carries SUCCEEDED step runs of an earlier run (re-drive): they are copied with their
    outputs and count as done, so only the rest runs again.
    """
    seeded = {
        s.step_id: s for s in seed if s.item_index is None and s.status is StepStatus.SUCCEEDED
    }
    states = {sid: dag.StepState(status=s.status, output=s.output) for sid, s in seeded.items()}
    decision = dag.advance(plan, states)
    steps: list[StepRun] = []
    for sid in plan.nodes:
        base = StepRun(
            id=new_id(),
            run_id=run_id,
            step_id=sid,
            status=StepStatus.PENDING,
            idempotency_key=f"{run_id}:{sid}",
        )
        if sid in seeded:
            old = seeded[sid]
            step = replace(
                base,
                status=StepStatus.SUCCEEDED,
                output=old.output,
                outputs=old.outputs,
                started_at=old.started_at,
                finished_at=old.finished_at,
                state={"seeded_from": old.run_id},
            )
        elif sid in decision.queue:
            step = replace(base, status=StepStatus.QUEUED, ready_at=now)
        elif sid in decision.skip:
            step = replace(
                base,
                status=StepStatus.SKIPPED,
                finished_at=now,
                state={"skip_reason": decision.skip[sid]},
            )
        else:
            step = base
        steps.append(step)
    return steps


# ---------------------------------------------------------------------------- attempts


def apply_outcome(
    step_run_id: str,
    *,
    attempt: int,
    owner: str | None,
    outcome: Outcome,
    ctx: Context,
    callback: bool = False,
) -> Mutation:
    """Write one attempt's outcome, then settle the run.

    The outcome is dropped (empty changes) when the step run is no longer this attempt's: it was
    cancelled, reclaimed after a lease expiry, or completed by a callback. With ``callback`` a
    stale outcome raises ``CallbackAlreadyUsed`` instead, so the caller can answer 409.
    """

    def mutate(snapshot: RunSnapshot) -> RunChanges:
        step = snapshot.by_id(step_run_id)
        stale = (
            step is None
            or step.status is not StepStatus.RUNNING
            or step.attempt != attempt
            or (owner is not None and step.lease_owner != owner)
            or snapshot.run.status.terminal
        )
        if stale:
            if callback:
                raise CallbackAlreadyUsed()
            return RunChanges()
        assert step is not None
        if callback:
            _refuse_after_deadline(step, ctx.now)
        work = _Work(snapshot=snapshot, ctx=ctx)
        _record_attempt_data(work, step, outcome)
        _apply(work, step, outcome)
        settle(work)
        return work.changes()

    return mutate


def _record_attempt_data(work: _Work, step: StepRun, outcome: Outcome) -> None:
    for line in outcome.logs:
        work.events.append(
            RunEvent(
                run_id=step.run_id,
                step_id=step.step_id,
                attempt=step.attempt,
                kind="log",
                level=line.level,
                message=line.message,
                data={"item_index": step.item_index} if step.item_index is not None else None,
                at=line.at or work.ctx.now,
            )
        )
    for seq, ex in enumerate(outcome.exchanges):
        work.exchanges.append(
            ExchangeRecord(
                id=work.ctx.new_id(),
                run_id=step.run_id,
                step_id=step.step_id,
                item_index=step.item_index,
                attempt=step.attempt,
                seq=seq,
                method=ex.method,
                url=ex.url,
                request={"headers": ex.request_headers, "body": ex.request_body},
                response=None
                if ex.status is None and ex.error
                else {"headers": ex.response_headers, "body": ex.response_body},
                status=ex.status,
                duration_ms=ex.duration_ms,
                error=ex.error,
                created_at=work.ctx.now,
            )
        )


def _json(error: StepError | None) -> dict[str, Any] | None:
    """A step error as the records store it."""
    return error.to_dict() if error is not None else None


def _attempt_row(work: _Work, step: StepRun, status: StepStatus, error: StepError | None) -> None:
    now = work.ctx.now
    started = step.started_at
    work.attempts.append(
        Attempt(
            id=work.ctx.new_id(),
            step_run_id=step.id,
            run_id=step.run_id,
            step_id=step.step_id,
            item_index=step.item_index,
            number=step.attempt,
            status=status,
            error=_json(error),
            started_at=started,
            finished_at=now,
            duration_ms=(now - started).total_seconds() * 1000 if started else None,
        )
    )


def _apply(work: _Work, step: StepRun, outcome: Outcome) -> None:
    now = work.ctx.now
    state = outcome.state if outcome.state is not None else step.state
    cleared: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}
    if outcome.kind is OutcomeKind.SUCCEEDED:
        _attempt_row(work, step, StepStatus.SUCCEEDED, None)
        done = replace(
            step,
            status=StepStatus.SUCCEEDED,
            output=outcome.output,
            outputs=outcome.outputs,
            error=None,
            state=state,
            finished_at=now,
            **cleared,
        )
        work.put(done)
        work.event("step_succeeded", f"{_label(step)} succeeded", step=step)
    elif outcome.kind is OutcomeKind.RETRY:
        _attempt_row(work, step, StepStatus.FAILED, outcome.error)
        work.put(
            replace(
                step,
                status=StepStatus.QUEUED,
                error=_json(outcome.error),
                state=state,
                ready_at=outcome.ready_at or now,
                **cleared,
            )
        )
        delay = ((outcome.ready_at or now) - now).total_seconds()
        work.event(
            "step_retrying",
            f"{_label(step)} attempt {step.attempt} failed: "
            f"{outcome.error.message if outcome.error else ''}; retrying in {delay:.1f}s",
            step=step,
            level="warning",
            error=_json(outcome.error),
            delay=delay,
        )
    elif outcome.kind is OutcomeKind.FAILED:
        _attempt_row(work, step, StepStatus.FAILED, outcome.error)
        _fail(work, step, outcome.error, state=state)
    elif outcome.kind is OutcomeKind.SUSPEND:
        # A durable wait does not use up an attempt.
        work.put(
            replace(
                step,
                status=StepStatus.QUEUED,
                attempt=step.attempt - 1,
                state=state,
                ready_at=outcome.ready_at or now,
                **cleared,
            )
        )
    elif outcome.kind is OutcomeKind.WAIT:
        work.put(
            replace(
                step, state=state, lease_owner=CALLBACK_OWNER, lease_expires_at=outcome.deadline
            )
        )
        work.event("step_waiting", f"{_label(step)} waits for its callback", step=step)
    elif outcome.kind is OutcomeKind.SKIPPED:
        work.put(
            replace(
                step,
                status=StepStatus.SKIPPED,
                attempt=max(0, step.attempt - 1),
                state={**state, "skip_reason": outcome.skip_reason or dag.SKIP_WHEN},
                finished_at=now,
                **cleared,
            )
        )
        work.event("step_skipped", f"{_label(step)} skipped ({outcome.skip_reason})", step=step)
    else:  # pragma: no cover - programming error
        raise ValueError(f"unknown outcome {outcome.kind!r}")


def _fail(work: _Work, step: StepRun, error: StepError | None, *, state: dict[str, Any]) -> None:
    run = work.current_run
    data = _json(error)
    work.put(
        replace(
            step,
            status=StepStatus.FAILED,
            error=data,
            state=state,
            finished_at=work.ctx.now,
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    work.dead_letters.append(
        DeadLetter(
            id=work.ctx.new_id(),
            run_id=run.id,
            flow_id=run.flow_id,
            version=run.version,
            step_id=step.step_id,
            item_index=step.item_index,
            error=data,
            created_at=work.ctx.now,
        )
    )
    work.event(
        "step_failed",
        f"{_label(step)} failed: {error.message if error else ''}",
        step=step,
        level="error",
        error=data,
    )


# ---------------------------------------------------------------------------- fan-out


def expand_fanout(
    step_run_id: str, *, attempt: int, owner: str, items: list[Any], ctx: Context
) -> Mutation:
    """Create one child per item (keeping children that already succeeded) and queue the first
    ``max_parallel``; the parent waits RUNNING under the ``fanout`` owner."""

    def mutate(snapshot: RunSnapshot) -> RunChanges:
        parent = snapshot.by_id(step_run_id)
        if (
            parent is None
            or parent.status is not StepStatus.RUNNING
            or parent.attempt != attempt
            or parent.lease_owner != owner
            or snapshot.run.status.terminal
        ):
            return RunChanges()
        work = _Work(snapshot=snapshot, ctx=ctx)
        existing = {c.item_index: c for c in snapshot.children(parent.step_id)}
        for index, item in enumerate(items):
            child = existing.get(index)
            if child is None:
                work.new_steps.append(
                    StepRun(
                        id=ctx.new_id(),
                        run_id=parent.run_id,
                        step_id=parent.step_id,
                        item_index=index,
                        status=StepStatus.PENDING,
                        state={"item": item},
                        idempotency_key=f"{parent.run_id}:{parent.step_id}:{index}",
                    )
                )
            elif child.status is not StepStatus.SUCCEEDED:
                work.put(
                    replace(
                        child,
                        status=StepStatus.PENDING,
                        state={**child.state, "item": item},
                        error=None,
                        ready_at=None,
                        lease_owner=None,
                        lease_expires_at=None,
                        finished_at=None,
                    )
                )
        work.put(
            replace(
                parent,
                lease_owner=FANOUT_OWNER,
                lease_expires_at=None,
                attempt=parent.attempt - 1,
                state={**parent.state, "items": len(items)},
            )
        )
        work.event(
            "fanout_started",
            f"{parent.step_id} fans out over {len(items)} items",
            step=parent,
            items=len(items),
        )
        settle(work)
        return work.changes()

    return mutate


def _settle_fanouts(work: _Work) -> None:
    view = work.view()
    for node in work.ctx.plan.nodes.values():
        if not node.fan_out:
            continue
        parent = next((s for s in view if s.step_id == node.id and s.item_index is None), None)
        if (
            parent is None
            or parent.status is not StepStatus.RUNNING
            or parent.lease_owner != FANOUT_OWNER
        ):
            continue
        count = int(parent.state.get("items", 0))
        children = sorted(
            (
                s
                for s in view
                if s.step_id == node.id and s.item_index is not None and s.item_index < count
            ),
            key=lambda s: s.item_index or 0,
        )
        decision = dag.fanout([c.status for c in children], node.max_parallel)
        for index in decision.queue:
            work.put(replace(children[index], status=StepStatus.QUEUED, ready_at=work.ctx.now))
        if not decision.done:
            continue
        now = work.ctx.now
        if decision.failed:
            bad = [c.item_index for c in children if c.status is not StepStatus.SUCCEEDED]
            error = StepError(
                kind="fanout",
                message=f"{len(bad)} of {len(children)} items failed (indices {bad[:20]})",
            )
            data = error.to_dict()
            work.put(
                replace(
                    parent, status=StepStatus.FAILED, error=data, finished_at=now, lease_owner=None
                )
            )
            work.event(
                "step_failed",
                f"{parent.step_id} failed: {error.message}",
                step=parent,
                level="error",
                error=data,
            )
            continue
        output = [c.output for c in children]
        outputs = None
        if work.ctx.step_outputs is not None:
            try:
                outputs = work.ctx.step_outputs(parent.step_id, output, work.snapshot)
            except Exception as exc:
                error = StepError(kind="template", message=f"outputs: {exc}")
                work.put(
                    replace(
                        parent,
                        status=StepStatus.FAILED,
                        error=error.to_dict(),
                        finished_at=now,
                        lease_owner=None,
                    )
                )
                continue
        work.put(
            replace(
                parent,
                status=StepStatus.SUCCEEDED,
                output=output,
                outputs=outputs,
                finished_at=now,
                lease_owner=None,
                error=None,
            )
        )
        work.event(
            "step_succeeded", f"{parent.step_id} succeeded ({len(children)} items)", step=parent
        )


# ---------------------------------------------------------------------------- settling


def settle(work: _Work) -> None:
    """Finish fan-outs, queue/skip what the planner says, and finish the run when done."""
    run = work.current_run
    if run.status.terminal:
        return
    if run.status is RunStatus.PENDING:  # its first claim's "started" write may have been lost
        work.run = run = replace(run, status=RunStatus.RUNNING, started_at=work.ctx.now)
    _settle_fanouts(work)
    parents = {s.step_id: s for s in work.view() if s.item_index is None}
    states = {sid: dag.StepState(status=s.status, output=s.output) for sid, s in parents.items()}
    decision = dag.advance(work.ctx.plan, states)
    now = work.ctx.now
    for sid in decision.queue:
        work.put(replace(parents[sid], status=StepStatus.QUEUED, ready_at=now))
    for sid, reason in decision.skip.items():
        step = parents[sid]
        work.put(
            replace(
                step,
                status=StepStatus.SKIPPED,
                finished_at=now,
                state={**step.state, "skip_reason": reason},
            )
        )
    if decision.done:
        _finish_run(work, decision.status or RunStatus.SUCCEEDED)


def _finish_run(work: _Work, status: RunStatus) -> None:
    run = work.current_run
    now = work.ctx.now
    outputs = None
    error = None
    if status is RunStatus.SUCCEEDED and work.ctx.flow_outputs is not None:
        final = RunSnapshot(run=run, steps=tuple(work.view()))
        try:
            outputs = work.ctx.flow_outputs(final)
        except Exception as exc:
            status = RunStatus.FAILED
            error = {"kind": "template", "message": f"flow outputs: {exc}"}
    if status is RunStatus.FAILED and error is None:
        failed = [s for s in work.view() if s.item_index is None and s.status is StepStatus.FAILED]
        if failed:
            first = failed[0]
            message = (first.error or {}).get("message", "")
            error = {
                "kind": "step_failed",
                "step_id": first.step_id,
                "message": f"step {first.step_id!r} failed: {message}",
            }
    work.run = replace(
        run,
        status=status,
        outputs=outputs,
        error=error,
        finished_at=now,
        started_at=run.started_at or now,
    )
    work.event(
        "run_finished",
        f"run {status.value.lower()}",
        status=status.value,
        level="error" if status is RunStatus.FAILED else "info",
    )


# ---------------------------------------------------------------------------- run commands


def cancel_run(*, ctx: Context, reason: str = "cancelled") -> Mutation:
    """Cancel every unfinished step; RUNNING attempts are recorded as CANCELLED."""

    def mutate(snapshot: RunSnapshot) -> RunChanges:
        run = snapshot.run
        if run.status.terminal:
            raise InvalidTransition(run_id=run.id, status=run.status.value, action="cancel")
        work = _Work(snapshot=snapshot, ctx=ctx)
        error = StepError(kind="cancelled", message=reason)
        for step in snapshot.steps:
            if step.status.terminal:
                continue
            if step.status is StepStatus.RUNNING and step.lease_owner != FANOUT_OWNER:
                _attempt_row(work, step, StepStatus.CANCELLED, error)
            work.put(
                replace(
                    step,
                    status=StepStatus.CANCELLED,
                    error=error.to_dict(),
                    finished_at=ctx.now,
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
        work.run = replace(
            run,
            status=RunStatus.CANCELLED,
            finished_at=ctx.now,
            error={"kind": "cancelled", "message": reason},
        )
        work.event("run_cancelled", f"run cancelled: {reason}", level="warning")
        return work.changes()

    return mutate


def retry_run(*, ctx: Context) -> Mutation:
    """Re-run a FAILED or CANCELLED run from its failed steps; succeeded steps keep outputs."""

    def mutate(snapshot: RunSnapshot) -> RunChanges:
        run = snapshot.run
        if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
            raise InvalidTransition(run_id=run.id, status=run.status.value, action="retry")
        work = _Work(snapshot=snapshot, ctx=ctx)
        for step in snapshot.steps:
            again = step.status in (StepStatus.FAILED, StepStatus.CANCELLED) or (
                step.status is StepStatus.SKIPPED and step.state.get("skip_reason") == dag.SKIP_JOIN
            )
            if not again:
                continue
            state = {k: v for k, v in step.state.items() if k not in ("skip_reason", "callback")}
            state["attempt_base"] = step.attempt
            work.put(
                replace(
                    step,
                    status=StepStatus.PENDING,
                    error=None,
                    ready_at=None,
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=None,
                    state=state,
                )
            )
        work.run = replace(
            run, status=RunStatus.RUNNING, error=None, outputs=None, finished_at=None
        )
        work.event("run_retried", "run retried from its failed steps")
        settle(work)
        return work.changes()

    return mutate


def reclaim_lease(step_run_id: str, *, owner: str, ctx: Context, force: bool = False) -> Mutation:
    """Put a step whose worker lease expired back in the queue (same idempotency key).

    The lost attempt does not count against the retry budget. ``force`` skips the expiry check
    (a single-process deployment restarting knows every old worker lease is orphaned).
    """

    def mutate(snapshot: RunSnapshot) -> RunChanges:
        step = snapshot.by_id(step_run_id)
        if (
            step is None
            or step.status is not StepStatus.RUNNING
            or step.lease_owner != owner
            or step.lease_expires_at is None
            or (step.lease_expires_at > ctx.now and not force)
            or snapshot.run.status.terminal
        ):
            return RunChanges()
        work = _Work(snapshot=snapshot, ctx=ctx)
        work.put(
            replace(
                step,
                status=StepStatus.QUEUED,
                attempt=max(0, step.attempt - 1),
                ready_at=ctx.now,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        work.event(
            "lease_expired",
            f"{_label(step)}: lease of {owner} expired; re-queued",
            step=step,
            level="warning",
        )
        return work.changes()

    return mutate


def extend_deadline(
    step_run_id: str,
    *,
    attempt: int,
    until: datetime,
    now: datetime,
    signed_at: int | None = None,
) -> Mutation:
    """A heartbeat: push an async step's callback deadline to ``until``.

    ``signed_at`` is the heartbeat's signed timestamp. One not later than the last heartbeat
    that moved the deadline changes nothing: a captured heartbeat replayed (or a retry signed in
    the same second) cannot keep a step alive after its backend stopped.
    """

    def mutate(snapshot: RunSnapshot) -> RunChanges:
        step = snapshot.by_id(step_run_id)
        if step is None or step.status is not StepStatus.RUNNING or step.attempt != attempt:
            raise CallbackAlreadyUsed()
        if step.lease_owner != CALLBACK_OWNER:
            return RunChanges()  # the worker has not recorded the wait yet; its lease holds
        _refuse_after_deadline(step, now)
        if signed_at is None:
            return RunChanges(steps=(replace(step, lease_expires_at=until),))
        last = last_heartbeat(step, attempt)
        if last is not None and signed_at <= last:
            return RunChanges()
        state = {**step.state, HEARTBEAT_SIGNED_AT: [attempt, signed_at]}
        return RunChanges(steps=(replace(step, lease_expires_at=until, state=state),))

    return mutate


HEARTBEAT_SIGNED_AT = "heartbeat_signed_at"  # step state: [attempt, signed timestamp]


def last_heartbeat(step: StepRun, attempt: int) -> int | None:
    """The signed timestamp of this attempt's last heartbeat that moved its deadline."""
    last = step.state.get(HEARTBEAT_SIGNED_AT)
    if isinstance(last, list) and len(last) == 2 and last[0] == attempt:
        return int(last[1])
    return None


def _refuse_after_deadline(step: StepRun, now: datetime) -> None:
    """A callback or heartbeat for an attempt whose deadline passed is refused even before a
    worker's sweep has failed the attempt: the deadline, not the sweep, decides."""
    deadline = step.lease_expires_at
    if step.lease_owner == CALLBACK_OWNER and deadline is not None and deadline <= now:
        raise CallbackDeadlinePassed(deadline=deadline.isoformat())


class ReadyClaim:
    """A mutation that claims this run's ready steps inside the transaction that just queued
    them, so a worker goes from one step to the next without a separate claim or read (it
    honours the run's max_parallel). ``seen`` keeps the snapshot it claimed from."""

    def __init__(self, *, owner: str, now: datetime, lease_seconds: float, limit: int) -> None:
        self.owner = owner
        self.now = now
        self.lease_seconds = lease_seconds
        self.limit = limit
        self.seen: RunSnapshot | None = None

    def __call__(self, snapshot: RunSnapshot) -> RunChanges:
        run = snapshot.run
        if run.status.terminal or self.limit <= 0:
            return RunChanges()
        now = self.now
        room = self.limit
        if run.max_parallel is not None:
            busy = sum(
                1
                for s in snapshot.steps
                if s.status is StepStatus.RUNNING
                and s.lease_owner not in (FANOUT_OWNER, CALLBACK_OWNER)
            )
            room = min(room, run.max_parallel - busy)
        ready = [
            s
            for s in snapshot.steps
            if s.status is StepStatus.QUEUED and (s.ready_at is None or s.ready_at <= now)
        ]
        ready.sort(key=lambda s: s.ready_at or now)
        ready = ready[: max(0, room)]
        if not ready:
            return RunChanges()
        until = now + timedelta(seconds=self.lease_seconds)
        claimed = tuple(
            replace(s, status=StepStatus.RUNNING, attempt=s.attempt + 1, lease_owner=self.owner,
                    lease_expires_at=until, started_at=now)
            for s in ready
        )  # fmt: skip
        if run.status is RunStatus.PENDING:
            run = replace(run, status=RunStatus.RUNNING, started_at=run.started_at or now)
        self.seen = snapshot
        return RunChanges(run=run, steps=claimed)


def deadline_after(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)
