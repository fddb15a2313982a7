"""Schemas of the pull-mode worker API (``/api/v1/workers``, ``/queues/poll``, ``/tasks``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

QUEUE = r"^[a-z0-9][a-z0-9_-]{0,63}$"


Queue = Annotated[str, Field(pattern=QUEUE)]


class WorkerIn(BaseModel):
    id: str | None = Field(
        default=None, min_length=1, max_length=200, description="Chosen by the worker."
    )
    host: str = Field(min_length=1, max_length=200)
    queues: list[Queue] = Field(min_length=1, max_length=100)
    version: str = Field(default="", max_length=64)


class WorkerOut(BaseModel):
    id: str
    host: str
    queues: list[str]
    version: str
    status: str = Field(description="active, lost (no heartbeat within lost_after) or stopped.")
    started_at: datetime
    last_heartbeat: datetime
    current_tasks: list[str] = Field(description="'<run_id>:<step_id>' of the tasks it holds.")


class RegisteredOut(WorkerOut):
    lease_seconds: float
    heartbeat_interval: float


class WorkerList(BaseModel):
    items: list[WorkerOut]
    next_cursor: str | None = None


class PollIn(BaseModel):
    worker_id: str = Field(min_length=1, max_length=200)
    queues: list[Queue] = Field(min_length=1, max_length=100)
    max_tasks: int = Field(default=1, ge=1, le=100)
    wait: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="Long-poll: seconds to wait for work (capped by the server's pull.max_wait).",
    )


class TaskOut(BaseModel):
    token: str = Field(description="Names this attempt: heartbeat and report with it.")
    queue: str
    task: str
    deliveries: int = Field(description="How many times this attempt was handed out (1: first).")
    lease_until: datetime | None
    envelope: dict[str, Any] = Field(
        description="run_id, flow_id, flow_version, step_id, attempt, idempotency_key, payload, "
        "inputs, upstream, item, index."
    )


class PollOut(BaseModel):
    tasks: list[TaskOut]


class HeartbeatIn(BaseModel):
    tasks: list[str] = Field(default_factory=list, max_length=1000)


class HeartbeatOut(BaseModel):
    held: list[str] = Field(description="Tokens still leased to this worker; drop the others.")
    lease_seconds: float


class ResultIn(BaseModel):
    worker_id: str = Field(min_length=1, max_length=200)
    status: Literal["SUCCESS", "FAILED"] = "SUCCESS"
    output: Any = None
    logs: str | list[Any] | None = None
    error: str | None = None
    retryable: bool = Field(
        default=False, description="A FAILED result that may succeed later: retried per policy."
    )
