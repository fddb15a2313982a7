"""Run, step, attempt, event, exchange and dead-letter shapes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from linkloom.engine.records import (
    Attempt,
    DeadLetter,
    ExchangeRecord,
    Run,
    RunEvent,
    StepRun,
)

_RUN_EXAMPLE: dict[str, Any] = {
    "id": "01HX3Z6V4Q8M2T",
    "flow_id": "daily-report",
    "flow_version": 3,
    "status": "SUCCEEDED",
    "trigger": "manual",
    "trigger_info": {},
    "inputs": {"count": 20, "to": "admin@example.com"},
    "outputs": {"fetched": 20, "valid": 18, "emailed_to": "admin@example.com"},
    "error": None,
    "created_by": "ci",
    "created_at": "2024-05-01T03:00:00Z",
    "started_at": "2024-05-01T03:00:00Z",
    "finished_at": "2024-05-01T03:00:02Z",
}


class StepOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "step_id": "fetch_data",
                    "status": "SUCCEEDED",
                    "attempt": 1,
                    "index": None,
                    "output": {"count": 20},
                    "outputs": {"count": 20},
                    "error": None,
                    "logs": ["Fetched 20 records"],
                    "started_at": "2024-05-01T03:00:00Z",
                    "finished_at": "2024-05-01T03:00:01Z",
                }
            ]
        }
    )

    step_id: str
    status: str
    attempt: int
    index: int | None = None
    output: Any = None
    outputs: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    logs: list[str] = Field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def from_domain(cls, step: StepRun, logs: Sequence[str] = ()) -> StepOut:
        return cls(
            step_id=step.step_id,
            status=step.status.value,
            attempt=step.attempt,
            index=step.item_index,
            output=step.output,
            outputs=step.outputs,
            error=step.error,
            logs=list(logs),
            started_at=step.started_at,
            finished_at=step.finished_at,
        )


class RunOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_RUN_EXAMPLE]})

    id: str
    flow_id: str
    flow_version: int
    status: str
    trigger: str
    trigger_info: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    created_by: str | None = None
    parent_run_id: str | None = None
    schedule_id: str | None = None
    fire_time: datetime | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def from_domain(cls, run: Run) -> RunOut:
        return cls(**_run_fields(run))


class RunDetailOut(RunOut):
    """A run with its steps (in spec order, fan-out items after their parent) and their logs."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_RUN_EXAMPLE,
                    "steps": [
                        {
                            "step_id": "fetch_data",
                            "status": "SUCCEEDED",
                            "attempt": 1,
                            "logs": ["Fetched 20 records"],
                        }
                    ],
                }
            ]
        }
    )

    steps: list[StepOut] = Field(default_factory=list)

    @classmethod
    def build(cls, run: Run, steps: Sequence[StepRun], logs: dict[str, list[str]]) -> RunDetailOut:
        seen: set[str] = set()
        out = []
        for step in steps:
            # A step's log lines go on its first row (the parent of a fan-out).
            lines = logs.get(step.step_id, []) if step.step_id not in seen else []
            seen.add(step.step_id)
            out.append(StepOut.from_domain(step, lines))
        return cls(**_run_fields(run), steps=out)


def _run_fields(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "flow_id": run.flow_id,
        "flow_version": run.version,
        "status": run.status.value,
        "trigger": run.trigger,
        "trigger_info": run.trigger_info or {},
        "inputs": run.inputs or {},
        "outputs": run.outputs,
        "error": run.error,
        "created_by": run.created_by,
        "parent_run_id": run.parent_run_id,
        "schedule_id": run.schedule_id,
        "fire_time": run.fire_time,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


class AttemptOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "step_id": "process",
                    "index": None,
                    "number": 1,
                    "status": "FAILED",
                    "error": {"kind": "http", "message": "503", "retryable": True},
                    "started_at": "2024-05-01T03:00:01Z",
                    "finished_at": "2024-05-01T03:00:01Z",
                    "duration_ms": 12.5,
                }
            ]
        }
    )

    step_id: str
    index: int | None = None
    number: int
    status: str
    error: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None

    @classmethod
    def from_domain(cls, attempt: Attempt) -> AttemptOut:
        return cls(
            step_id=attempt.step_id,
            index=attempt.item_index,
            number=attempt.number,
            status=attempt.status.value,
            error=attempt.error,
            started_at=attempt.started_at,
            finished_at=attempt.finished_at,
            duration_ms=attempt.duration_ms,
        )


class EventOut(BaseModel):
    """One entry of a run's event stream; ``id`` is the cursor for ``after``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "run_id": "01HX3Z6V4Q8M2T",
                    "type": "log",
                    "step_id": "fetch_data",
                    "attempt": 1,
                    "level": "info",
                    "message": "Fetched 20 records",
                    "data": {},
                    "at": "2024-05-01T03:00:01Z",
                }
            ]
        }
    )

    id: int
    run_id: str
    type: str
    step_id: str | None = None
    attempt: int | None = None
    level: str = "info"
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    at: datetime

    @classmethod
    def from_domain(cls, event: RunEvent) -> EventOut:
        return cls(
            id=event.id,
            run_id=event.run_id,
            type=event.kind,
            step_id=event.step_id,
            attempt=event.attempt,
            level=event.level,
            message=event.message,
            data=event.data or {},
            at=event.at,
        )


class ExchangeOut(BaseModel):
    """A recorded external call of a step attempt (secrets already redacted)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "ex_1",
                    "step_id": "fetch_data",
                    "index": None,
                    "attempt": 1,
                    "seq": 0,
                    "method": "POST",
                    "url": "http://127.0.0.1:8081/api/tasks/fetch-data",
                    "request": {"headers": {}, "body": {}},
                    "response": {"headers": {}, "body": {"status": "SUCCESS"}},
                    "status": 200,
                    "duration_ms": 3.1,
                    "error": None,
                    "created_at": "2024-05-01T03:00:01Z",
                }
            ]
        }
    )

    id: str
    step_id: str
    index: int | None = None
    attempt: int
    seq: int
    method: str
    url: str
    request: dict[str, Any] = Field(default_factory=dict)
    response: dict[str, Any] | None = None
    status: int | None = None
    duration_ms: float = 0.0
    error: str | None = None
    created_at: datetime

    @classmethod
    def from_domain(cls, record: ExchangeRecord) -> ExchangeOut:
        return cls(
            id=record.id,
            step_id=record.step_id,
            index=record.item_index,
            attempt=record.attempt,
            seq=record.seq,
            method=record.method,
            url=record.url,
            request=record.request or {},
            response=record.response,
            status=record.status,
            duration_ms=record.duration_ms or 0.0,
            error=record.error,
            created_at=record.created_at,
        )


class DeadLetterOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "dl_1",
                    "run_id": "01HX3Z6V4Q8M2T",
                    "flow_id": "daily-report",
                    "version": 3,
                    "step_id": "process",
                    "index": None,
                    "error": {"kind": "http", "message": "500", "retryable": False},
                    "created_at": "2024-05-01T03:00:05Z",
                    "redriven_at": None,
                    "redrive_run_id": None,
                }
            ]
        }
    )

    id: str
    run_id: str
    flow_id: str
    version: int
    step_id: str
    index: int | None = None
    error: dict[str, Any] | None = None
    created_at: datetime
    redriven_at: datetime | None = None
    redrive_run_id: str | None = None

    @classmethod
    def from_domain(cls, letter: DeadLetter) -> DeadLetterOut:
        return cls(
            id=letter.id,
            run_id=letter.run_id,
            flow_id=letter.flow_id,
            version=letter.version,
            step_id=letter.step_id,
            index=letter.item_index,
            error=letter.error,
            created_at=letter.created_at,
            redriven_at=letter.redriven_at,
            redrive_run_id=letter.redrive_run_id,
        )


class RedriveIn(BaseModel):
    """Which dead letters to re-drive and on which version (explicitly)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"ids": ["dl_1", "dl_2"], "on": "failed_version"}]}
    )

    ids: list[str] = Field(min_length=1, max_length=1000)
    on: Literal["failed_version", "current_version"] = Field(
        description="failed_version: re-run the version that failed, keeping the steps that "
        "succeeded; current_version: a fresh run of the flow's current version."
    )


class RedriveOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"runs": [_RUN_EXAMPLE]}]})

    runs: list[RunOut]
