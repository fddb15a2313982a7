"""Single-use callback tokens for async steps, and reading a backend's result payload.

A token names one attempt of one step run and is signed with the server's signing key:
``<step_run_id>.<attempt>.<mac>``. It is derived, not stored, so a backend may call back before
the worker has even recorded that the step is waiting.
"""

from __future__ import annotations

import hmac
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from linkloom import signing
from linkloom.engine import retries, transitions
from linkloom.engine.errors import CallbackTokenInvalid
from linkloom.engine.models import LogLine, StepError, StepResult
from linkloom.engine.transitions import OutcomeKind

if TYPE_CHECKING:
    from linkloom.engine.records import StepRun
    from linkloom.flows.spec import FlowSpec


def make_token(key: str, *, step_run_id: str, attempt: int) -> str:
    return f"{step_run_id}.{attempt}.{signing.token(key, step_run_id, str(attempt))}"


def parse_token(key: str, token: str) -> tuple[str, int]:
    """Return ``(step_run_id, attempt)``.

    Raises:
        CallbackTokenInvalid: malformed, or not signed with ``key``.
    """
    parts = token.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        raise CallbackTokenInvalid()
    step_run_id, attempt, mac = parts
    expected = signing.token(key, step_run_id, attempt)
    if not hmac.compare_digest(expected, mac):
        raise CallbackTokenInvalid()
    return step_run_id, int(attempt)


def callback_urls(public_url: str, token: str) -> dict[str, str]:
    base = public_url.rstrip("/") + f"/api/v1/callbacks/{token}"
    return {"url": base, "heartbeat_url": base + "/heartbeat"}


def read_logs(value: Any) -> tuple[LogLine, ...]:
    """``logs`` as backends send it: a text (one line per line) or a list of lines/objects."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(LogLine(message=line) for line in value.splitlines() if line.strip())
    if isinstance(value, list):
        out = []
        for item in value:
            if isinstance(item, dict):
                out.append(
                    LogLine(
                        message=str(item.get("message", item.get("msg", item))),
                        level=str(item.get("level", "info")).lower(),
                    )
                )
            else:
                out.append(LogLine(message=str(item)))
        return tuple(out)
    return (LogLine(message=str(value)),)


def read_result(payload: Any) -> StepResult:
    """Interpret a backend's answer as the result of its step's attempt.

    ``{"status": "SUCCESS"|"FAILED", "output", "logs", "error"}``; any other JSON is the output.
    A FAILED answer is a ``backend`` error, retryable only when the answer says
    ``"retryable": true`` (the SDK's ``TaskResult.failed(..., retryable=True)``).
    """
    if isinstance(payload, dict) and str(payload.get("status", "")).upper() in (
        "SUCCESS",
        "SUCCEEDED",
        "FAILED",
        "FAILURE",
        "ERROR",
    ):
        logs = read_logs(payload.get("logs"))
        status = str(payload["status"]).upper()
        if status in ("SUCCESS", "SUCCEEDED"):
            return StepResult(output=payload.get("output"), logs=logs)
        error = payload.get("error") or "the backend reported FAILED"
        if isinstance(error, dict):
            error = error.get("message") or str(error)
        return StepResult(
            output=payload.get("output"),
            logs=logs,
            error=StepError(
                kind="backend", message=str(error), retryable=payload.get("retryable") is True
            ),
        )
    return StepResult(output=payload)


def failed_outcome(
    error: StepError,
    *,
    output: Any,
    logs: tuple[LogLine, ...],
    step: StepRun,
    spec: FlowSpec,
    now: datetime,
) -> transitions.Outcome:
    """A FAILED callback fails the attempt; it is retried (per the step's retry policy) only
    when the backend marked it ``"retryable": true`` (the SDK does for ``Retryable``)."""
    policy = retries.effective_policy(spec.step(step.step_id), spec)
    used = step.attempt - int(step.state.get("attempt_base", 0))
    recorded = replace(error, attempt=step.attempt)
    if retries.should_retry(error, attempts_used=used, policy=policy):
        delay = retries.retry_delay(error, policy, used)
        return transitions.Outcome(
            kind=OutcomeKind.RETRY,
            error=recorded,
            state={k: v for k, v in step.state.items() if k != "callback"},
            logs=logs,
            ready_at=now + timedelta(seconds=delay),
        )
    if error.retryable:
        recorded = replace(recorded, message=f"{recorded.message} (gave up after {used} attempts)")
    return transitions.Outcome(kind=OutcomeKind.FAILED, output=output, error=recorded, logs=logs)
