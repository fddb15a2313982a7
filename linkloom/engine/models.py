"""Domain types of execution: runs, step runs, attempts, results, exchanges and events.

Plain frozen dataclasses; ``store`` converts rows to and from them, executors return them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    PENDING = "PENDING"  # created, no step started yet
    RUNNING = "RUNNING"  # at least one step started, not all done
    SUCCEEDED = "SUCCEEDED"  # every step ended well (succeeded or skipped)
    FAILED = "FAILED"  # a step failed for good
    CANCELLED = "CANCELLED"  # cancelled by a person or an overlap policy

    @property
    def terminal(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class StepStatus(StrEnum):
    PENDING = "PENDING"  # waiting for its dependencies
    QUEUED = "QUEUED"  # ready; claimable once ready_at has passed (backoff, durable delay)
    RUNNING = "RUNNING"  # claimed under a lease, or waiting for an async callback
    SUCCEEDED = "SUCCEEDED"  # done, output stored
    FAILED = "FAILED"  # attempts exhausted or a non-retryable error; dead-lettered
    SKIPPED = "SKIPPED"  # its condition was false, its branch not taken, or its join rule unmet
    CANCELLED = "CANCELLED"  # its run was cancelled

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STEP_STATUSES


TERMINAL_STEP_STATUSES = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepError:
    """Why an attempt failed. ``retryable`` decides whether another attempt follows."""

    kind: str  # connection, timeout, http_status, bad_response, template, config, cancelled, ...
    message: str
    retryable: bool = False
    retry_after: float | None = None  # seconds a server asked us to wait (Retry-After)
    status: int | None = None  # the HTTP status, for ``retry_on_status``
    attempt: int | None = None  # the attempt it ended, once the worker has decided

    def to_dict(self) -> dict[str, Any]:
        """The JSON a step run, attempt, dead letter or event stores."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "message": self.message,
            "retryable": self.retryable,
        }
        if self.status is not None:
            out["status"] = self.status
        if self.attempt is not None:
            out["attempt"] = self.attempt
        return out


# The httpx request extension through which ``transport.HttpxPort`` hands an httpx transport
# what the engine records of a request ({"record": Exchange, "step_id", "item_index"}): the
# sandbox's replay matches on it when it is reached through httpx.
RECORD_EXTENSION = "loom.record"


@dataclass(frozen=True, slots=True, kw_only=True)
class Exchange:
    """One recorded external call (HTTP or LLM), secrets already redacted."""

    method: str
    url: str
    request_headers: dict[str, str] = field(default_factory=dict)
    request_body: Any = None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: Any = None
    duration_ms: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "url": self.url,
            "request_headers": self.request_headers,
            "request_body": self.request_body,
            "status": self.status,
            "response_headers": self.response_headers,
            "response_body": self.response_body,
            "duration_ms": self.duration_ms,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundRequest:
    """One HTTP request of the ``http`` step, as it goes out through the ``HttpPort``."""

    method: str
    url: str  # the full URL as sent: the rendered query merged in
    headers: dict[str, str]  # the step's own headers (a port adds Host, Accept, User-Agent…)
    content: bytes  # b"": no body
    record: Exchange  # what is recorded of it: secrets masked, no body for GET/HEAD
    step_id: str
    item_index: int | None = None
    max_body: int  # answers larger than this are not read: ``InboundResponse.too_large``


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundResponse:
    """The answer to an ``OutboundRequest``, its body read (and decoded) whole."""

    status: int
    headers: dict[str, str]  # lower-case names; a repeated header's values joined with ", "
    body: bytes = b""
    too_large: bool = False  # the body passed ``max_body``: ``body`` is empty, nothing was kept


@dataclass(frozen=True, slots=True, kw_only=True)
class LogLine:
    message: str
    level: str = "info"
    at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    """What one attempt of a step produced.

    Exactly one outcome applies, checked in this order: ``error`` (failed; retried when
    ``error.retryable`` and attempts remain), ``suspend_until`` (re-queue at that time without
    using an attempt, keeping ``state``: durable delays), ``wait_for_callback`` (stay RUNNING until
    an async callback or heartbeat deadline), otherwise success with ``output``.
    """

    output: Any = None
    logs: tuple[LogLine, ...] = ()
    error: StepError | None = None
    suspend_until: datetime | None = None
    wait_for_callback: bool = False
    callback_deadline: datetime | None = None
    state: dict[str, Any] | None = None
    exchanges: tuple[Exchange, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None and self.suspend_until is None and not self.wait_for_callback


@dataclass(frozen=True, slots=True, kw_only=True)
class RunInfo:
    """What a step may know about the run it belongs to."""

    id: str
    flow_id: str
    version: int
    trigger: str
    inputs: dict[str, Any]
    scheduled_at: datetime | None = None
    sandbox: bool = False
