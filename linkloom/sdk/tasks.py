"""The types a task handler sees and returns: ``TaskRequest``, ``TaskResult``, ``Deferred``.

Wire format (see docs/sdk.md): the server POSTs the task envelope ``{"run_id", "flow_id",
"flow_version", "step_id", "attempt", "idempotency_key", "inputs", "upstream", "item", "index",
"callback"}`` — or the step's own rendered ``body``, with the metadata only in ``X-Loom-*``
headers — and the backend answers ``{"status": "SUCCESS"|"FAILED", "output", "logs", "error"}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic_core import to_jsonable_python

_MISSING: Any = object()
RESULT_KEYS = frozenset({"status", "output", "logs", "error", "retryable"})


class BadTaskRequest(ValueError):
    """The request body is not valid JSON or not a task."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRequest:
    """One delivery of a step to this backend, parsed from the envelope and ``X-Loom-*`` headers.

    ``body`` is the parsed JSON body as sent: the envelope, or the step's own ``body`` when the
    flow declares one (then ``inputs``/``upstream`` are empty and ``is_envelope`` is False).
    ``log(line)`` collects lines that are returned to the server in ``logs``.
    """

    run_id: str | None = None
    flow_id: str | None = None
    flow_version: int | None = None
    step_id: str | None = None
    attempt: int = 1
    idempotency_key: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    upstream: dict[str, dict[str, Any]] = field(default_factory=dict)
    item: Any = None
    index: int | None = None
    callback_url: str | None = None
    heartbeat_url: str | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    is_envelope: bool = False
    logs: list[str] = field(default_factory=list)

    @property
    def is_async(self) -> bool:
        """True when the server waits for a callback (the step is ``mode: async``)."""
        return self.callback_url is not None

    def log(self, message: str) -> None:
        """Add a log line; the lines are returned with the result."""
        self.logs.append(str(message))

    def output_of(self, step_id: str, default: Any = _MISSING) -> Any:
        """The ``output`` of an upstream step, as the envelope carries it."""
        if step_id in self.upstream:
            return self.upstream[step_id].get("output")
        if default is _MISSING:
            known = ", ".join(sorted(self.upstream)) or "none"
            raise KeyError(f"no upstream step {step_id!r} in this task (upstream steps: {known})")
        return default

    @classmethod
    def from_http(cls, body: bytes, headers: Mapping[str, str]) -> TaskRequest:
        """Parse a delivery. Raises ``BadTaskRequest`` when the body is not JSON."""
        lower = {k.lower(): v for k, v in headers.items()}
        if body.strip():
            try:
                data = json.loads(body)
            except ValueError as exc:
                raise BadTaskRequest(f"the request body is not JSON: {exc}") from exc
        else:
            data = None
        envelope = isinstance(data, dict) and "run_id" in data and "step_id" in data
        env: dict[str, Any] = data if envelope else {}
        callback = _dict(env.get("callback"))
        upstream = _dict(env.get("upstream"))
        inputs = _dict(env.get("inputs"))
        return cls(
            run_id=_str(env.get("run_id")) or lower.get("x-loom-run-id"),
            flow_id=_str(env.get("flow_id")) or lower.get("x-loom-flow-id"),
            flow_version=_int(env.get("flow_version"), lower.get("x-loom-flow-version")),
            step_id=_str(env.get("step_id")) or lower.get("x-loom-step-id"),
            attempt=_int(env.get("attempt"), lower.get("x-loom-attempt")) or 1,
            # The envelope's key is signed with the body; the header is not (a replay could
            # change it), so it only counts for a delivery whose body carries none.
            idempotency_key=_str(env.get("idempotency_key")) or lower.get("idempotency-key"),
            inputs=dict(inputs),
            upstream={k: v if isinstance(v, dict) else {"output": v} for k, v in upstream.items()},
            item=env.get("item"),
            index=_int(env.get("index"), None),
            callback_url=_str(callback.get("url")) or lower.get("x-loom-callback-url"),
            heartbeat_url=_str(callback.get("heartbeat_url")) or lower.get("x-loom-heartbeat-url"),
            body=data,
            headers=lower,
            is_envelope=envelope,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskResult:
    """What a handler may return to control the reply fully. A plain value means SUCCESS."""

    status: Literal["SUCCESS", "FAILED"] = "SUCCESS"
    output: Any = None
    logs: tuple[str, ...] = ()
    error: str | None = None
    retryable: bool = False  # a FAILED result the server may retry (sent as "retryable": true)

    @classmethod
    def success(
        cls, output: Any = None, *, logs: str | list[str] | tuple[str, ...] = ()
    ) -> TaskResult:
        return cls(status="SUCCESS", output=output, logs=_lines(logs))

    @classmethod
    def failed(
        cls,
        error: str,
        *,
        output: Any = None,
        logs: str | list[str] | tuple[str, ...] = (),
        retryable: bool = False,
    ) -> TaskResult:
        return cls(
            status="FAILED", output=output, error=error, logs=_lines(logs), retryable=retryable
        )

    def to_wire(self, *, extra_logs: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
        """The JSON reply: request logs first, then the result's own."""
        wire: dict[str, Any] = {
            "status": self.status,
            "output": to_jsonable_python(self.output, fallback=str),
            "logs": [*extra_logs, *self.logs],
        }
        if self.error is not None:
            wire["error"] = self.error
        if self.retryable and self.status == "FAILED":
            wire["retryable"] = True
        return wire


@dataclass(frozen=True, slots=True)
class Deferred:
    """Return from a handler to answer ``202 Accepted`` now and finish later.

    With ``work``, the SDK runs ``work(request)`` in the background, posts heartbeats while it
    runs and posts its result to the callback URL. Without it, the application posts the result
    itself (``CallbackSender.complete``) using ``request.callback_url``.
    """

    work: Callable[[TaskRequest], Any] | None = None


def as_result(value: Any) -> TaskResult:
    """Turn a handler's return value into a ``TaskResult``.

    A ``TaskResult`` is kept; a dict that is already the response format (only the keys
    status/output/logs/error, with status SUCCESS or FAILED) is read as one; anything else is the
    output of a successful task.
    """
    if isinstance(value, TaskResult):
        return value
    if (
        isinstance(value, dict)
        and value.get("status") in ("SUCCESS", "FAILED")
        and set(value) <= RESULT_KEYS
    ):
        error = value.get("error")
        return TaskResult(
            status=value["status"],
            output=value.get("output"),
            logs=_lines(value.get("logs") or ()),
            error=None if error is None else str(error),
            retryable=bool(value.get("retryable", False)),
        )
    return TaskResult(status="SUCCESS", output=value)


def _lines(logs: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(logs, str):
        return tuple(logs.splitlines())
    return tuple(str(line) for line in logs)


def _dict(value: Any) -> dict[str, Any]:
    """``value`` when the JSON held an object there, else an empty dict."""
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any, fallback: str | None) -> int | None:
    for candidate in (value, fallback):
        if candidate is None or isinstance(candidate, bool):
            continue
        try:
            return int(candidate)
        except (TypeError, ValueError):
            continue
    return None
