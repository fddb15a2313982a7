"""Conversions between table rows and the engine's records (no ORM object leaves ``store``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from linkloom.engine.models import RunStatus, StepStatus
from linkloom.engine.records import (
    Attempt,
    DeadLetter,
    ExchangeRecord,
    Flow,
    FlowVersion,
    Run,
    RunEvent,
    StepRun,
)
from linkloom.store.session import utc as utc  # where the storage alone needs it (tokens)


def _req(value: datetime | None) -> datetime:
    out = utc(value)
    assert out is not None
    return out


def flow(row: Any) -> Flow:
    return Flow(
        id=row.id,
        name=row.name,
        current_version=row.current_version,
        paused=bool(row.paused),
        created_at=_req(row.created_at),
        updated_at=_req(row.updated_at),
        deleted_at=utc(row.deleted_at),
    )


def flow_version(row: Any) -> FlowVersion:
    return FlowVersion(
        flow_id=row.flow_id,
        version=row.version,
        spec=row.spec,
        content_hash=row.content_hash,
        source=row.source,
        created_by=row.created_by,
        git_commit=row.git_commit,
        created_at=_req(row.created_at),
    )


def run(row: Any) -> Run:
    return Run(
        id=row.id,
        flow_id=row.flow_id,
        version=row.version,
        status=RunStatus(row.status),
        trigger=row.trigger,
        trigger_info=row.trigger_info or {},
        inputs=row.inputs or {},
        outputs=row.outputs,
        error=row.error,
        schedule_id=row.schedule_id,
        fire_time=utc(row.fire_time),
        parent_run_id=row.parent_run_id,
        parent_step_id=row.parent_step_id,
        created_by=row.created_by,
        created_at=_req(row.created_at),
        started_at=utc(row.started_at),
        finished_at=utc(row.finished_at),
        sandbox=bool(row.sandbox),
        max_parallel=row.max_parallel,
    )


def run_values(r: Run) -> dict[str, Any]:
    return {
        "id": r.id,
        "flow_id": r.flow_id,
        "version": r.version,
        "status": r.status.value,
        "trigger": r.trigger,
        "trigger_info": r.trigger_info,
        "inputs": r.inputs,
        "outputs": r.outputs,
        "error": r.error,
        "schedule_id": r.schedule_id,
        "fire_time": r.fire_time,
        "parent_run_id": r.parent_run_id,
        "parent_step_id": r.parent_step_id,
        "created_by": r.created_by,
        "created_at": r.created_at,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "sandbox": r.sandbox,
        "max_parallel": r.max_parallel,
    }


def step_run(row: Any) -> StepRun:
    return StepRun(
        id=row.id,
        run_id=row.run_id,
        step_id=row.step_id,
        item_index=row.item_index,
        status=StepStatus(row.status),
        attempt=row.attempt,
        output=row.output,
        outputs=row.outputs,
        error=row.error,
        state=row.state or {},
        ready_at=utc(row.ready_at),
        lease_owner=row.lease_owner,
        lease_expires_at=utc(row.lease_expires_at),
        idempotency_key=row.idempotency_key,
        started_at=utc(row.started_at),
        finished_at=utc(row.finished_at),
    )


def step_values(s: StepRun) -> dict[str, Any]:
    return {
        "id": s.id,
        "run_id": s.run_id,
        "step_id": s.step_id,
        "item_index": s.item_index,
        "status": s.status.value,
        "attempt": s.attempt,
        "output": s.output,
        "outputs": s.outputs,
        "error": s.error,
        "state": s.state,
        "ready_at": s.ready_at,
        "lease_owner": s.lease_owner,
        "lease_expires_at": s.lease_expires_at,
        "idempotency_key": s.idempotency_key,
        "started_at": s.started_at,
        "finished_at": s.finished_at,
    }


def attempt(row: Any) -> Attempt:
    return Attempt(
        id=row.id,
        step_run_id=row.step_run_id,
        run_id=row.run_id,
        step_id=row.step_id,
        item_index=row.item_index,
        number=row.number,
        status=StepStatus(row.status),
        error=row.error,
        started_at=utc(row.started_at),
        finished_at=utc(row.finished_at),
        duration_ms=row.duration_ms,
    )


def attempt_values(a: Attempt) -> dict[str, Any]:
    return {
        "id": a.id,
        "step_run_id": a.step_run_id,
        "run_id": a.run_id,
        "step_id": a.step_id,
        "item_index": a.item_index,
        "number": a.number,
        "status": a.status.value,
        "error": a.error,
        "started_at": a.started_at,
        "finished_at": a.finished_at,
        "duration_ms": a.duration_ms,
    }


def exchange(row: Any) -> ExchangeRecord:
    return ExchangeRecord(
        id=row.id,
        run_id=row.run_id,
        step_id=row.step_id,
        item_index=row.item_index,
        attempt=row.attempt,
        seq=row.seq,
        method=row.method,
        url=row.url,
        request=row.request or {},
        response=row.response,
        status=row.status,
        duration_ms=row.duration_ms or 0.0,
        error=row.error,
        created_at=_req(row.created_at),
    )


def exchange_values(x: ExchangeRecord) -> dict[str, Any]:
    return {
        "id": x.id,
        "run_id": x.run_id,
        "step_id": x.step_id,
        "item_index": x.item_index,
        "attempt": x.attempt,
        "seq": x.seq,
        "method": x.method,
        "url": x.url,
        "request": x.request,
        "response": x.response,
        "status": x.status,
        "duration_ms": x.duration_ms,
        "error": x.error,
        "created_at": x.created_at,
    }


def event(row: Any) -> RunEvent:
    return RunEvent(
        id=row.id,
        run_id=row.run_id,
        step_id=row.step_id,
        attempt=row.attempt,
        kind=row.kind,
        level=row.level,
        message=row.message,
        data=row.data,
        at=_req(row.at),
    )


def event_values(e: RunEvent) -> dict[str, Any]:
    return {
        "run_id": e.run_id,
        "step_id": e.step_id,
        "attempt": e.attempt,
        "kind": e.kind,
        "level": e.level,
        "message": e.message,
        "data": e.data,
        "at": e.at,
    }


def dead_letter(row: Any) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        run_id=row.run_id,
        flow_id=row.flow_id,
        version=row.version,
        step_id=row.step_id,
        item_index=row.item_index,
        error=row.error,
        created_at=_req(row.created_at),
        redriven_at=utc(row.redriven_at),
        redrive_run_id=row.redrive_run_id,
    )


def dead_letter_values(d: DeadLetter) -> dict[str, Any]:
    return {
        "id": d.id,
        "run_id": d.run_id,
        "flow_id": d.flow_id,
        "version": d.version,
        "step_id": d.step_id,
        "item_index": d.item_index,
        "error": d.error,
        "created_at": d.created_at,
        "redriven_at": d.redriven_at,
        "redrive_run_id": d.redrive_run_id,
    }
