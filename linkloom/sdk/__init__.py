"""The Python SDK: a client for the Link Loom API and helpers for writing task handlers.

* ``Client`` / ``AsyncClient``: register flows, trigger runs, wait for them, read runs and events,
  open proposals (``linkloom.sdk.client``).
* Task handlers for user backends: ``linkloom.sdk.fastapi.LoomRouter`` and
  ``linkloom.sdk.flask.loom_blueprint`` verify signatures, parse ``TaskRequest``, map return
  values and exceptions to the response format, de-duplicate by ``Idempotency-Key`` and run
  ``mode: async`` steps with heartbeats and callbacks (``linkloom.sdk.handlers``).
* ``Worker``: pull-mode worker for ``type: task`` steps, for backends the server cannot reach
  (``linkloom.sdk.worker``).

Contract: importing ``linkloom.sdk`` needs only the base install (httpx, pydantic, pyyaml); FastAPI
and Flask are imported only by their adapter modules, and nothing here imports the server.
"""

from __future__ import annotations

from linkloom.sdk.callbacks import CallbackOutcome, CallbackSender
from linkloom.sdk.client import AsyncClient, Client
from linkloom.sdk.errors import LinkloomAPIError, Retryable, RunWaitTimeout, ServerUnreachable
from linkloom.sdk.handlers import TaskDispatcher
from linkloom.sdk.idempotency import (
    IdempotencyStore,
    InMemoryIdempotencyStore,
    Reply,
    SqliteIdempotencyStore,
)
from linkloom.sdk.models import Event, Flow, FlowSummary, FlowVersion, Proposal, Run, StepRun
from linkloom.sdk.tasks import Deferred, TaskRequest, TaskResult
from linkloom.sdk.worker import Job, Worker

__all__ = [
    "AsyncClient",
    "CallbackOutcome",
    "CallbackSender",
    "Client",
    "Deferred",
    "Event",
    "Flow",
    "FlowSummary",
    "FlowVersion",
    "IdempotencyStore",
    "InMemoryIdempotencyStore",
    "Job",
    "LinkloomAPIError",
    "Proposal",
    "Reply",
    "Retryable",
    "Run",
    "RunWaitTimeout",
    "ServerUnreachable",
    "SqliteIdempotencyStore",
    "StepRun",
    "TaskDispatcher",
    "TaskRequest",
    "TaskResult",
    "Worker",
]
