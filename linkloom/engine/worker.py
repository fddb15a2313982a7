"""``Worker``: claims ready step runs under a lease and executes them concurrently.

One loop claims up to the free slots (``concurrency``), runs each claim as a named task, and
sleeps until woken (``wake()``: a trigger or completion in this process, or a NOTIFY from
another), until the next ``ready_at``, or for ``poll_interval`` at most. A housekeeping task
renews the leases of in-flight attempts (an attempt whose lease was lost, because its run was
cancelled or another worker reclaimed it, is abandoned) and reclaims expired leases of dead
workers and missed callback deadlines. ``stop()`` stops claiming and lets in-flight attempts
finish for ``grace`` seconds; what remains is abandoned and reclaimed after its lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog

from linkloom.engine import transitions
from linkloom.engine.execution import StepRunner
from linkloom.engine.ports import Clock, StepExecutor, StepServices
from linkloom.engine.records import Claim, Run, RunChanges, RunSnapshot
from linkloom.engine.specs import SpecCache
from linkloom.engine.store_port import CALLBACK_OWNER, FANOUT_OWNER, Mutation, RunStore

log = structlog.get_logger(__name__)


class WriteBatcher:
    """Writes step outcomes, batching those that arrive together: all pending mutations of one
    run are applied in ONE transaction (``update_run_many``). A fan-out's children finishing at
    once cost a few transactions instead of one each; with no concurrency it adds nothing.

    With ``claim``/``on_claimed`` the same transaction also claims the run's steps that became
    ready (``transitions.ReadyClaim``), saving a claim round trip per step. ``on_claimed`` is
    called once per claim when its write is over, with what it claimed (maybe nothing).
    """

    def __init__(
        self,
        store: RunStore,
        *,
        claim: Callable[[int], transitions.ReadyClaim | None] | None = None,
        on_claimed: Callable[[transitions.ReadyClaim, list[Claim]], None] | None = None,
    ) -> None:
        self.store = store
        self._claim = claim
        self._on_claimed = on_claimed
        self._pending: list[tuple[str, Mutation, asyncio.Future[RunChanges | None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, run_id: str, mutation: Mutation) -> RunChanges | None:
        future: asyncio.Future[RunChanges | None] = asyncio.get_running_loop().create_future()
        self._pending.append((run_id, mutation, future))
        if self._task is None or self._task.done():
            # A separate task: cancelling one submitter must not strand the others' writes.
            self._task = asyncio.create_task(self._drain(), name="worker-writes")
        return await future

    async def drain(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            by_run: dict[str, list[tuple[Mutation, asyncio.Future[RunChanges | None]]]] = {}
            for run_id, mutation, future in batch:
                by_run.setdefault(run_id, []).append((mutation, future))
            if self._claim is None:
                await asyncio.gather(*(self._flush(rid, items) for rid, items in by_run.items()))
            else:
                for rid, items in by_run.items():  # in turn: each flush sees the slots left
                    await self._flush(rid, items)

    async def _flush(
        self, run_id: str, items: list[tuple[Mutation, asyncio.Future[RunChanges | None]]]
    ) -> None:
        mutations = [m for m, _ in items]
        claim = self._claim(len(items)) if self._claim is not None else None
        if claim is not None:
            mutations.append(claim)
        results: list[RunChanges | Exception] | None = None
        try:
            results = await self.store.update_run_many(run_id, mutations)
        except Exception as exc:
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            if claim is not None and self._on_claimed is not None:
                self._on_claimed(claim, _claims_made(claim, results))
        for index, (_, future) in enumerate(items):
            if future.done():
                continue
            if results is None:
                future.set_result(None)
            elif isinstance(results[index], Exception):
                future.set_exception(results[index])  # type: ignore[arg-type]
            else:
                future.set_result(results[index])  # type: ignore[arg-type]


def _claims_made(
    claim: transitions.ReadyClaim, results: list[RunChanges | Exception] | None
) -> list[Claim]:
    claimed = results[-1] if results else None
    if not isinstance(claimed, RunChanges) or not claimed.steps or claimed.run is None:
        return []
    return [Claim(step=s, run=claimed.run, snapshot=claim.seen) for s in claimed.steps]


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    def __init__(
        self,
        *,
        store: RunStore,
        executors: Mapping[str, StepExecutor],
        services: StepServices,
        owner: str | None = None,
        concurrency: int = 64,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
        per_flow_limit: int | None = None,
        specs: SpecCache | None = None,
        on_run_finished: Callable[[Run], Any] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.owner = owner or default_owner()
        self._clock = clock or services.clock  # leases and claims; executors use services.clock
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.per_flow_limit = per_flow_limit
        # Claims made in a store transaction (a completion's, or a new run's in this process)
        # need the run's rows, which a per-flow limit's count of other runs cannot see.
        self._claims_inline = per_flow_limit is None
        self.writes = WriteBatcher(
            store,
            claim=self._inline_claim if self._claims_inline else None,
            on_claimed=self._claimed_inline,
        )
        self.runner = StepRunner(
            store=store,
            executors=executors,
            services=services,
            specs=specs,
            on_run_finished=on_run_finished,
            writer=self._write,
        )
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._sweep = asyncio.Event()  # set: a callback deadline nearer than the next sweep
        self._sweep_at: datetime | None = None  # when housekeeping next runs
        self._lost: set[str] = set()
        self._runs: dict[str, str] = {}  # in-flight step run id → run id
        self._claims: dict[str, Claim] = {}  # in-flight step run id → its claim
        # Slots promised to claims whose transaction is still being written: counted as busy,
        # so concurrent claims (loop, completions, new runs) never exceed ``concurrency``.
        self._reserved = 0
        self._starved = False  # the claim loop waits for a free slot: wake it when one frees
        self._none_reserved = asyncio.Event()
        self._none_reserved.set()
        self._event = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._house_task: asyncio.Task[None] | None = None
        self.steps_done = 0
        self._wake_at: datetime | None = None  # earliest known future ready_at
        self._next_check: datetime | None = None  # when to ask the store for it again

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    async def _write(self, run_id: str, mutation: Mutation) -> RunChanges | None:
        changes = await self.writes.submit(run_id, mutation)
        self.note_changes(changes)
        return changes

    def wake(self) -> None:
        """Claim now (call after creating or completing work)."""
        self._event.set()

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        if self.running:
            return
        self._stopping = False
        self._loop_task = asyncio.create_task(self._loop(), name=f"worker:{self.owner}")
        self._house_task = asyncio.create_task(
            self._housekeeping(), name=f"worker-leases:{self.owner}"
        )
        log.info("worker_started", owner=self.owner, concurrency=self.concurrency)

    async def stop(self, *, grace: float = 10.0) -> None:
        """Stop claiming; wait up to ``grace`` seconds for in-flight attempts, abandon the rest."""
        self._stopping = True
        self._event.set()
        if self._loop_task is not None:
            await asyncio.gather(self._loop_task, return_exceptions=True)
        # Claims being written (new runs, completions) become in-flight attempts first.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._none_reserved.wait()
        pending = list(self._inflight.values())
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace)
            abandoned = [c for sid, c in self._claims.items() if self._inflight.get(sid) in still]
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
            await self._release(abandoned)
        await self.writes.drain()
        if self._house_task is not None:
            self._house_task.cancel()
            await asyncio.gather(self._house_task, return_exceptions=True)
        self._loop_task = self._house_task = None
        log.info("worker_stopped", owner=self.owner, steps=self.steps_done)

    async def run_until_idle(self, *, reclaim: bool = True) -> int:
        """Execute until nothing is claimable now and nothing is in flight (for tests and the
        sandbox). Returns the number of attempts executed."""
        before = self.steps_done
        while True:
            if reclaim:
                await self.reclaim_expired()
            await self._claim_and_spawn()
            if not self._inflight:
                if not await self._claim_and_spawn():
                    return self.steps_done - before
                continue
            await asyncio.wait(list(self._inflight.values()), return_when=asyncio.FIRST_COMPLETED)

    # ---- claiming ----------------------------------------------------------------------
    async def _loop(self) -> None:
        while not self._stopping:
            self._event.clear()
            free = self.free_slots
            try:
                claimed = await self._claim_and_spawn()
            except Exception:
                log.exception("claim_failed", owner=self.owner)
                claimed = 0
            if self._stopping:
                break
            if claimed and claimed >= free and self.free_slots > 0:
                continue  # a full batch: there may be more ready work
            # Asleep with every slot taken: a slot freeing up wakes it (``_execute``).
            self._starved = self.free_slots <= 0
            await self._sleep()

    async def _sleep(self) -> None:
        """Wait for a wake-up, the earliest known future ``ready_at``, or ``poll_interval``."""
        now = self.clock.now()
        if self._next_check is None or now >= self._next_check:
            # Ask the store now and then; between, local writes keep ``_wake_at`` current.
            self._next_check = now + timedelta(seconds=self.poll_interval)
            with contextlib.suppress(Exception):
                nxt = await self.store.next_ready_at()
                if nxt is not None and (self._wake_at is None or nxt < self._wake_at):
                    self._wake_at = nxt
        timeout = self.poll_interval
        if self._wake_at is not None:
            until = (self._wake_at - self.clock.now()).total_seconds()
            if until <= 0:
                self._wake_at = None
            timeout = max(0.0, min(timeout, until))
        if timeout <= 0:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._event.wait()

    def note_changes(self, changes: RunChanges | None) -> None:
        """Remember when work this worker just queued for later becomes ready. Work ready now
        is not noted: the same write claimed it inline, or a freed slot wakes the loop for it
        (noting it cost an empty claim per completion)."""
        if changes is None:
            return
        now = self.clock.now()
        for step in changes.steps:
            ready = step.ready_at
            if step.status.value == "QUEUED" and ready is not None and ready > now:
                self._wake_at = ready if self._wake_at is None else min(ready, self._wake_at)
            deadline = step.lease_expires_at
            if (
                step.lease_owner == CALLBACK_OWNER
                and deadline is not None
                and (self._sweep_at is None or deadline < self._sweep_at)
            ):
                self._sweep.set()  # an async step now waits: sweep when its deadline passes

    @property
    def free_slots(self) -> int:
        return self.concurrency - len(self._inflight) - self._reserved

    def _reserve(self, count: int) -> None:
        self._reserved += count
        if self._reserved:
            self._none_reserved.clear()

    def _unreserve(self, count: int, *, wake: bool = True) -> None:
        self._reserved = max(0, self._reserved - count)
        if not self._reserved:
            self._none_reserved.set()
        if wake and self._starved and self.free_slots > 0:
            self._event.set()  # the claim loop slept for want of a slot

    async def _claim_and_spawn(self) -> int:
        free = self.free_slots
        self._starved = free <= 0
        if free <= 0:
            return 0
        self._reserve(free)
        try:
            claims = await self.store.claim(
                owner=self.owner,
                now=self.clock.now(),
                lease_seconds=self.lease_seconds,
                limit=free,
                per_flow_limit=self.per_flow_limit,
            )
        finally:
            self._unreserve(free, wake=False)  # the loop itself decides whether to go on
        if not claims:
            return 0
        pending = [c.run.id for c in claims if c.run.status.value == "PENDING"]
        if pending:
            await self.store.mark_runs_started(sorted(set(pending)), now=self.clock.now())
        for claim in claims:
            self._spawn(claim)
        return len(claims)

    def _inline_claim(self, completing: int) -> transitions.ReadyClaim | None:
        """A claim for the run whose completions are being written (``completing`` tasks are
        about to free their slots); its slots stay reserved until the write is over."""
        if self._stopping:
            return None
        free = self.free_slots + completing
        if free <= 0:
            return None
        self._reserve(free)
        return transitions.ReadyClaim(
            owner=self.owner, now=self.clock.now(), lease_seconds=self.lease_seconds, limit=free
        )

    def _claimed_inline(self, claim: transitions.ReadyClaim, claims: list[Claim]) -> None:
        self._start(claims, reserved=claim.limit)

    def reserve_first_steps(self, created: RunSnapshot) -> RunChanges | None:
        """Lease the first steps of a run being created in this process (``created``, not yet
        written) to this worker, within its free slots and the run's ``max_parallel``: the
        changes to write with the run. Their slots stay reserved until ``start_reserved``
        (the run was written) or ``drop_reserved`` (it was not). None: nothing leased."""
        if not self.running or not self._claims_inline:
            return None
        claim = self._inline_claim(0)
        if claim is None:
            return None
        taken = claim(created)
        self._unreserve(claim.limit - len(taken.steps))
        return taken if taken.steps else None

    def start_reserved(self, claims: list[Claim]) -> None:
        """Start the attempts ``reserve_first_steps`` leased, now that the run is written."""
        self._start(claims, reserved=len(claims))

    def _start(self, claims: list[Claim], *, reserved: int) -> None:
        """Start claimed attempts; the ``reserved`` slots held for them are theirs now."""
        self._unreserve(reserved)
        for claim in claims:
            self._spawn(claim)

    def drop_reserved(self, count: int) -> None:
        """The run whose first steps were reserved was not written."""
        self._unreserve(count)

    def _spawn(self, claim: Claim) -> None:
        step = claim.step
        label = step.step_id if step.item_index is None else f"{step.step_id}[{step.item_index}]"
        # A context of its own: not the trigger's or the claiming task's (log ids, spans).
        task = asyncio.create_task(
            self._execute(claim), name=f"step:{label}:{step.id}", context=contextvars.Context()
        )
        self._inflight[step.id] = task
        self._runs[step.id] = claim.run.id
        self._claims[step.id] = claim

    async def _execute(self, claim: Claim) -> None:
        step_run_id = claim.step.id
        try:
            await self.runner.run(claim, owner=self.owner)
        except asyncio.CancelledError:
            if step_run_id in self._lost:
                log.info("attempt_abandoned", step_run_id=step_run_id, reason="lease lost")
                return
            raise
        except Exception:
            # Store unavailable or a bug: the lease expires and another worker takes over.
            log.exception("step_execution_failed", step_run_id=step_run_id)
        finally:
            self._inflight.pop(step_run_id, None)
            self._runs.pop(step_run_id, None)
            self._claims.pop(step_run_id, None)
            self._lost.discard(step_run_id)
            self.steps_done += 1
            if self._starved or not self._claims_inline:
                # A slot opened that the claim loop may fill. (Work this step made ready in
                # its own run was claimed inline when it was written.)
                self._event.set()

    def abandon_run(self, run_id: str) -> int:
        """Stop in-flight attempts of a run (it was cancelled); returns how many."""
        count = 0
        for sid, task in list(self._inflight.items()):
            if self._runs.get(sid) == run_id and not task.done():
                self._lost.add(sid)
                task.cancel()
                count += 1
        return count

    # ---- leases ------------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        interval = max(0.05, min(self.lease_seconds / 3, 10.0))
        while True:
            pause = interval
            try:
                await self.renew_leases()
                await self.reclaim_expired()
                pause = await self._until_next_expiry(interval)
            except Exception:
                log.exception("lease_housekeeping_failed", owner=self.owner)
            self._sweep_at = self.clock.now() + timedelta(seconds=pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sweep.wait(), timeout=pause)
            if self._sweep.is_set():  # a nearer deadline: plan the sleep again, from it
                self._sweep.clear()

    async def _until_next_expiry(self, interval: float) -> float:
        """Seconds until the earliest lease or callback deadline ahead, at most ``interval``:
        an async step's deadline (a heartbeat timeout of a few seconds) is enforced when it
        passes, not at the next renewal tick."""
        now = self.clock.now()
        due = await self.store.next_lease_expiry(after=now)
        if due is None:
            return interval
        return min(interval, max(0.05, (due - now).total_seconds() + 0.01))

    async def renew_leases(self) -> None:
        ids = list(self._inflight)
        if not ids:
            return
        until = self.clock.now() + timedelta(seconds=self.lease_seconds)
        held = await self.store.renew_leases(owner=self.owner, step_run_ids=ids, until=until)
        for sid in ids:
            task = self._inflight.get(sid)
            if sid not in held and task is not None and not task.done():
                # Cancelled, reclaimed, or already completed by a callback: stop working on it.
                self._lost.add(sid)
                task.cancel()

    async def _release(self, claims: list[Claim]) -> None:
        """Re-queue attempts abandoned at shutdown now, rather than after their lease expires."""
        for claim in claims:
            with contextlib.suppress(Exception):
                await self.runner.expire(claim.step, owner=self.owner, force=True)

    async def recover_orphans(self) -> int:
        """Re-queue every step RUNNING under another worker's lease, without waiting for the
        lease to expire. Only for single-process deployments (embedded SQLite) at start, where
        any such lease belongs to a process that died."""
        far = self.clock.now() + timedelta(days=36500)
        count = 0
        for _ in range(1000):  # bounded, whatever the store answers
            found = [
                s
                for s in await self.store.expired_leases(now=far, limit=500)
                if s.lease_owner not in (None, FANOUT_OWNER, CALLBACK_OWNER, self.owner)
            ]
            if not found:
                break
            for step in found:
                assert step.lease_owner is not None
                await self.runner.expire(step, owner=step.lease_owner, force=True)
                count += 1
            if len(found) < 500:
                break
        if count:
            log.warning("orphaned_steps_requeued", count=count)
        return count

    async def reclaim_expired(self) -> int:
        expired = await self.store.expired_leases(now=self.clock.now(), limit=100)
        count = 0
        for step in expired:
            if step.id in self._inflight or step.lease_owner in (None, FANOUT_OWNER):
                continue
            owner = step.lease_owner
            if owner != CALLBACK_OWNER:
                log.warning("lease_expired", step_run_id=step.id, owner=owner)
            await self.runner.expire(step, owner=owner)
            count += 1
        if count:
            self._event.set()
        return count
