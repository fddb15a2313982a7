"""Retry/backoff math and which failures are retried."""

from __future__ import annotations

import pytest

from linkloom.engine import retries
from linkloom.engine.models import StepError
from linkloom.flows.spec import RetryPolicy


def test_exponential_backoff_doubles_and_caps() -> None:
    p = RetryPolicy(initial_delay=1, max_delay=10, jitter=False)
    assert [retries.backoff_delay(p, n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_fixed_backoff() -> None:
    p = RetryPolicy(backoff="fixed", initial_delay=3, jitter=False)
    assert [retries.backoff_delay(p, n) for n in (1, 2, 5)] == [3, 3, 3]


def test_jitter_stays_between_half_and_full_delay() -> None:
    p = RetryPolicy(initial_delay=4, max_delay=100, jitter=True)
    assert retries.backoff_delay(p, 2, rng=lambda: 0.0) == 4.0
    assert retries.backoff_delay(p, 2, rng=lambda: 1.0) == 8.0
    assert retries.backoff_delay(p, 2, rng=lambda: 0.5) == 6.0


def test_huge_attempt_numbers_do_not_overflow() -> None:
    p = RetryPolicy(initial_delay=1, max_delay=300, jitter=False)
    assert retries.backoff_delay(p, 10_000) == 300


def test_retry_after_is_honoured() -> None:
    p = RetryPolicy(initial_delay=1, jitter=False)
    err = StepError(kind="http_status", message="429", retryable=True, retry_after=30, status=429)
    assert retries.retry_delay(err, p, 1) == 30
    short = StepError(kind="http_status", message="503", retryable=True, retry_after=0, status=503)
    assert retries.retry_delay(short, p, 3) == 4


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (StepError(kind="connection", message="x", retryable=True), True),
        (StepError(kind="timeout", message="x", retryable=True), True),
        (StepError(kind="http_status", message="x", retryable=True, status=503), True),
        (StepError(kind="http_status", message="x", retryable=False, status=404), False),
        (StepError(kind="http_status", message="x", retryable=False, status=409), True),
        (StepError(kind="bad_response", message="x"), False),
    ],
)
def test_should_retry_follows_retryable_and_retry_on_status(error: StepError, retry: bool) -> None:
    p = RetryPolicy(max_attempts=3, retry_on_status=[409])
    assert retries.should_retry(error, attempts_used=1, policy=p) is retry


def test_should_retry_stops_when_attempts_are_used_up() -> None:
    p = RetryPolicy(max_attempts=3)
    err = StepError(kind="timeout", message="x", retryable=True)
    assert retries.should_retry(err, attempts_used=2, policy=p)
    assert not retries.should_retry(err, attempts_used=3, policy=p)
