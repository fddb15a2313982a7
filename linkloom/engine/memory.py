"""``InMemoryRunStore``: a complete ``linkloom.engine.store_port.RunStore`` in process memory,
with the same contracts as the SQL store (atomic ``update_run``, exclusive ``claim``). The sandbox
runs the production engine on it; tests use it for the engine without a database.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from linkloom.engine import errors
from linkloom.engine.cursors import decode_cursor, encode_cursor
from linkloom.engine.models import RunStatus, StepStatus
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
    merge_changes,
)
from linkloom.engine.store_port import CALLBACK_OWNER, FANOUT_OWNER, Mutation


class InMemoryRunStore:
    """A complete ``RunStore`` in process memory (nothing survives the process)."""

    def __init__(self) -> None:
        self.flows: dict[str, Flow] = {}
        self.versions: dict[tuple[str, int], FlowVersion] = {}
        self.runs: dict[str, Run] = {}
        self.steps: dict[str, StepRun] = {}
        self.steps_by_run: dict[str, list[str]] = {}
        self.attempts: list[Attempt] = []
        self.exchanges: list[ExchangeRecord] = []
        self.events: list[RunEvent] = []
        self.dead_letters: dict[str, DeadLetter] = {}
        self._event_ids = itertools.count(1)

    # ---- flows -------------------------------------------------------------------------
    async def save_flow_version(
        self,
        *,
        flow_id: str,
        name: str | None,
        spec: dict[str, Any],
        content_hash: str,
        source: str,
        actor: str | None,
        git_commit: str | None,
        now: datetime,
    ) -> tuple[FlowVersion, bool]:
        flow = self.flows.get(flow_id)
        if flow is not None and flow.deleted_at is None:
            current = self.versions[(flow_id, flow.current_version)]
            if current.content_hash == content_hash:
                return current, False
        latest = max((v for f, v in self.versions if f == flow_id), default=0)
        version = FlowVersion(
            flow_id=flow_id,
            version=latest + 1,
            spec=spec,
            content_hash=content_hash,
            source=source,
            created_by=actor,
            git_commit=git_commit,
            created_at=now,
        )
        self.versions[(flow_id, version.version)] = version
        if flow is None:
            flow = Flow(
                id=flow_id,
                name=name,
                current_version=version.version,
                created_at=now,
                updated_at=now,
            )
        else:
            flow = replace(
                flow, name=name, current_version=version.version, updated_at=now, deleted_at=None
            )
        self.flows[flow_id] = flow
        return version, True

    async def get_flow(self, flow_id: str) -> Flow | None:
        return self.flows.get(flow_id)

    async def list_flows(self, *, include_deleted: bool = False) -> list[Flow]:
        flows = sorted(self.flows.values(), key=lambda f: f.id)
        return [f for f in flows if include_deleted or f.deleted_at is None]

    async def get_flow_version(self, flow_id: str, version: int) -> FlowVersion | None:
        return self.versions.get((flow_id, version))

    async def list_flow_versions(self, flow_id: str) -> list[FlowVersion]:
        return sorted(
            (v for (f, _), v in self.versions.items() if f == flow_id), key=lambda v: v.version
        )

    async def update_flow(self, flow: Flow) -> None:
        if flow.id not in self.flows:
            raise errors.FlowNotFound(flow_id=flow.id)
        self.flows[flow.id] = flow

    # ---- runs --------------------------------------------------------------------------
    async def create_run(
        self,
        run: Run,
        steps: Sequence[StepRun],
        events: Sequence[RunEvent] = (),
        *,
        if_current: bool = False,
    ) -> None:
        if if_current:
            flow = self.flows.get(run.flow_id)
            if flow is None or flow.deleted_at is not None or flow.current_version != run.version:
                raise errors.FlowChanged(flow_id=run.flow_id)
        if run.schedule_id is not None and run.fire_time is not None:
            found = await self.find_scheduled_run(
                flow_id=run.flow_id, schedule_id=run.schedule_id, fire_time=run.fire_time
            )
            if found is not None:
                raise errors.DuplicateRun(
                    flow_id=run.flow_id, schedule_id=run.schedule_id, fire_time=run.fire_time
                )
        self.runs[run.id] = run
        self.steps_by_run[run.id] = []
        for step in steps:
            self.steps[step.id] = step
            self.steps_by_run[run.id].append(step.id)
        self._add_events(events)

    async def get_run(self, run_id: str) -> Run | None:
        return self.runs.get(run_id)

    async def find_scheduled_run(
        self, *, flow_id: str, schedule_id: str, fire_time: datetime
    ) -> Run | None:
        for run in self.runs.values():
            if (run.flow_id, run.schedule_id, run.fire_time) == (flow_id, schedule_id, fire_time):
                return run
        return None

    async def list_runs(
        self, filters: RunFilter, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        runs = [r for r in self.runs.values() if _matches(r, filters)]
        runs.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        if cursor:
            after = decode_cursor(cursor)
            runs = [r for r in runs if (r.created_at, r.id) < after]
        page = runs[:limit]
        more = len(runs) > limit
        return Page(items=tuple(page), next_cursor=encode_cursor(page[-1]) if more else None)

    async def recent_runs(self, flow_ids: Sequence[str], *, limit: int) -> dict[str, list[Run]]:
        found: dict[str, list[Run]] = {flow_id: [] for flow_id in flow_ids}
        for run in sorted(self.runs.values(), key=lambda r: (r.created_at, r.id), reverse=True):
            runs = found.get(run.flow_id)
            if runs is not None and len(runs) < limit:
                runs.append(run)
        return found

    async def count_active_runs(self, flow_id: str) -> int:
        active = (RunStatus.PENDING, RunStatus.RUNNING)
        return sum(1 for r in self.runs.values() if r.flow_id == flow_id and r.status in active)

    async def snapshot(self, run_id: str, *, parents_only: bool = False) -> RunSnapshot | None:
        run = self.runs.get(run_id)
        if run is None:
            return None
        steps = tuple(self.steps[sid] for sid in self.steps_by_run.get(run_id, []))
        if parents_only:
            steps = tuple(s for s in steps if s.item_index is None)
        return RunSnapshot(run=run, steps=steps)

    async def list_items(
        self, run_id: str, step_id: str, *, after: int | None = None, limit: int = 100
    ) -> list[StepRun]:
        items = [
            self.steps[sid]
            for sid in self.steps_by_run.get(run_id, [])
            if self.steps[sid].step_id == step_id
            and self.steps[sid].item_index is not None
            and (after is None or (self.steps[sid].item_index or 0) > after)
        ]
        items.sort(key=lambda s: s.item_index or 0)
        return items[:limit]

    async def update_run(self, run_id: str, mutate: Mutation) -> RunChanges | None:
        results = await self.update_run_many(run_id, [mutate])
        if results is None:
            return None
        if isinstance(results[0], Exception):
            raise results[0]
        return results[0]

    async def update_run_many(
        self, run_id: str, mutations: Sequence[Mutation]
    ) -> list[RunChanges | Exception] | None:
        # No await between reading and writing: atomic on one event loop.
        snapshot = await self.snapshot(run_id)
        if snapshot is None:
            return None
        results: list[RunChanges | Exception] = []
        merged = RunChanges()
        for mutate in mutations:
            try:
                changes = mutate(snapshot)
            except Exception as exc:
                results.append(exc)
                continue
            results.append(changes)
            snapshot = apply_changes(snapshot, changes)
            merged = merge_changes(merged, changes)
        self._write(run_id, merged)
        return results

    def _write(self, run_id: str, changes: RunChanges) -> None:
        if changes.run is not None:
            self.runs[run_id] = changes.run
        for step in changes.steps:
            self.steps[step.id] = step
        for step in changes.new_steps:
            if any(
                self.steps[s].step_id == step.step_id
                and self.steps[s].item_index == step.item_index
                for s in self.steps_by_run[run_id]
            ):
                continue
            self.steps[step.id] = step
            self.steps_by_run[run_id].append(step.id)
        self.attempts.extend(changes.attempts)
        self.exchanges.extend(changes.exchanges)
        self._add_events(changes.events)
        for letter in changes.dead_letters:
            self.dead_letters[letter.id] = letter

    def _add_events(self, events: Sequence[RunEvent]) -> list[RunEvent]:
        saved = [replace(e, id=next(self._event_ids)) for e in events]
        self.events.extend(saved)
        return saved

    async def find_step_run(self, step_run_id: str) -> StepRun | None:
        return self.steps.get(step_run_id)

    async def list_attempts(self, run_id: str) -> list[Attempt]:
        return [a for a in self.attempts if a.run_id == run_id]

    async def list_exchanges(
        self, run_id: str, *, step_id: str | None = None
    ) -> list[ExchangeRecord]:
        return [
            x
            for x in self.exchanges
            if x.run_id == run_id and (step_id is None or x.step_id == step_id)
        ]

    async def list_events(
        self, run_id: str, *, after_id: int = 0, limit: int = 1000
    ) -> list[RunEvent]:
        found = [e for e in self.events if e.run_id == run_id and e.id > after_id]
        return found[:limit]

    # ---- workers -----------------------------------------------------------------------
    async def claim(
        self,
        *,
        owner: str,
        now: datetime,
        lease_seconds: float,
        limit: int,
        per_flow_limit: int | None = None,
    ) -> list[Claim]:
        ready = [
            s
            for s in self.steps.values()
            if s.status is StepStatus.QUEUED and (s.ready_at is None or s.ready_at <= now)
        ]
        ready.sort(key=lambda s: s.ready_at or now)
        running_by_run: dict[str, int] = {}
        running_by_flow: dict[str, int] = {}
        for s in self.steps.values():
            if s.status is StepStatus.RUNNING and s.lease_owner not in (
                FANOUT_OWNER,
                CALLBACK_OWNER,
            ):
                running_by_run[s.run_id] = running_by_run.get(s.run_id, 0) + 1
                flow_id = self.runs[s.run_id].flow_id
                running_by_flow[flow_id] = running_by_flow.get(flow_id, 0) + 1
        claims: list[Claim] = []
        until = now + timedelta(seconds=lease_seconds)
        for step in ready:
            if len(claims) >= limit:
                break
            run = self.runs[step.run_id]
            if run.max_parallel is not None and running_by_run.get(run.id, 0) >= run.max_parallel:
                continue
            if per_flow_limit is not None and running_by_flow.get(run.flow_id, 0) >= per_flow_limit:
                continue
            running_by_run[run.id] = running_by_run.get(run.id, 0) + 1
            running_by_flow[run.flow_id] = running_by_flow.get(run.flow_id, 0) + 1
            claimed = replace(
                step,
                status=StepStatus.RUNNING,
                attempt=step.attempt + 1,
                lease_owner=owner,
                lease_expires_at=until,
                started_at=now,
            )
            self.steps[step.id] = claimed
            claims.append(Claim(step=claimed, run=run))
        return claims

    async def mark_runs_started(self, run_ids: Sequence[str], *, now: datetime) -> None:
        for run_id in run_ids:
            run = self.runs.get(run_id)
            if run is not None and run.status is RunStatus.PENDING:
                self.runs[run_id] = replace(run, status=RunStatus.RUNNING, started_at=now)

    async def renew_leases(
        self, *, owner: str, step_run_ids: Sequence[str], until: datetime
    ) -> set[str]:
        held: set[str] = set()
        for sid in step_run_ids:
            step = self.steps.get(sid)
            if step and step.status is StepStatus.RUNNING and step.lease_owner == owner:
                self.steps[sid] = replace(step, lease_expires_at=until)
                held.add(sid)
        return held

    async def expired_leases(self, *, now: datetime, limit: int = 100) -> list[StepRun]:
        found = [
            s
            for s in self.steps.values()
            if s.status is StepStatus.RUNNING
            and s.lease_expires_at is not None
            and s.lease_expires_at < now
        ]
        return found[:limit]

    async def next_ready_at(self) -> datetime | None:
        times = [
            s.ready_at
            for s in self.steps.values()
            if s.status is StepStatus.QUEUED and s.ready_at is not None
        ]
        return min(times, default=None)

    async def next_lease_expiry(self, *, after: datetime) -> datetime | None:
        times = [
            s.lease_expires_at
            for s in self.steps.values()
            if s.status is StepStatus.RUNNING
            and s.lease_owner != FANOUT_OWNER
            and s.lease_expires_at is not None
            and s.lease_expires_at > after
        ]
        return min(times, default=None)

    # ---- dead letters ------------------------------------------------------------------
    async def list_dead_letters(
        self, *, flow_id: str | None = None, include_redriven: bool = False, limit: int = 100
    ) -> list[DeadLetter]:
        found = [
            d
            for d in self.dead_letters.values()
            if (flow_id is None or d.flow_id == flow_id)
            and (include_redriven or d.redriven_at is None)
        ]
        found.sort(key=lambda d: d.created_at, reverse=True)
        return found[:limit]

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        return self.dead_letters.get(dead_letter_id)

    async def mark_redriven(self, dead_letter_id: str, *, run_id: str, at: datetime) -> None:
        letter = self.dead_letters.get(dead_letter_id)
        if letter is None:
            raise errors.DeadLetterNotFound(dead_letter_id=dead_letter_id)
        self.dead_letters[dead_letter_id] = replace(letter, redriven_at=at, redrive_run_id=run_id)


def _matches(run: Run, f: RunFilter) -> bool:
    return (
        (f.flow_id is None or run.flow_id == f.flow_id)
        and (f.status is None or run.status == f.status)
        and (f.trigger is None or run.trigger == f.trigger)
        and (f.parent_run_id is None or run.parent_run_id == f.parent_run_id)
        and (f.schedule_id is None or run.schedule_id == f.schedule_id)
        and (f.created_after is None or run.created_at >= f.created_after)
        and (f.created_before is None or run.created_at < f.created_before)
    )
