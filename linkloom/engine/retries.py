"""Retry policy math: which failures are retried, and after how long.

Backoff for the n-th failed attempt (1-based): exponential ``initial_delay * 2**(n-1)`` or fixed
``initial_delay``, capped at ``max_delay``; with ``jitter`` the delay is drawn uniformly from
``[delay/2, delay]`` ("equal jitter": spreads retries without ever retrying at once). A server's
``Retry-After`` is honoured: the delay is at least that long.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from linkloom.engine.models import StepError

if TYPE_CHECKING:
    from linkloom.flows.spec import FlowSpec, RetryPolicy, StepBase

# Retry-After values beyond this are treated as "give up retrying soon"; a day at most.
MAX_RETRY_AFTER = 86_400.0


def effective_policy(step: StepBase, spec: FlowSpec) -> RetryPolicy:
    """The step's own policy, else the flow's ``defaults.retry``."""
    return step.retry or spec.defaults.retry


def effective_timeout(step: StepBase, spec: FlowSpec) -> float:
    return step.timeout if step.timeout is not None else spec.defaults.timeout


def is_retryable(error: StepError, policy: RetryPolicy) -> bool:
    """Retry what the executor marked retryable (connection errors, timeouts, 5xx, 429), and any
    HTTP status listed in ``retry_on_status``; never other failures."""
    if error.retryable:
        return True
    return error.status is not None and error.status in policy.retry_on_status


def should_retry(error: StepError, *, attempts_used: int, policy: RetryPolicy) -> bool:
    return attempts_used < policy.max_attempts and is_retryable(error, policy)


def backoff_delay(
    policy: RetryPolicy, attempt: int, *, rng: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    if policy.backoff == "fixed":
        delay = policy.initial_delay
    else:
        delay = policy.initial_delay * (2 ** max(0, min(attempt - 1, 60)))
    delay = min(delay, policy.max_delay)
    if policy.jitter:
        delay = delay / 2 + rng() * delay / 2
    return delay


def retry_delay(
    error: StepError,
    policy: RetryPolicy,
    attempt: int,
    *,
    rng: Callable[[], float] = random.random,
) -> float:
    delay = backoff_delay(policy, attempt, rng=rng)
    if error.retry_after is not None:
        delay = max(delay, min(error.retry_after, MAX_RETRY_AFTER))
    return delay
