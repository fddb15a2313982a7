"""Switches for tests that need real PostgreSQL, Docker or a browser.

``require(cond, reason)`` skips loudly on a laptop without the dependency and fails in CI
(``CI=true`` or ``LOOM_TEST_REQUIRE_ALL=1``), where ``.ci/run`` provisions everything.
"""

from __future__ import annotations

import os

import pytest

POSTGRES_URL = os.environ.get("LOOM_TEST_POSTGRES_URL", "")
REQUIRE_ALL = os.environ.get("LOOM_TEST_REQUIRE_ALL") == "1" or os.environ.get("CI") == "true"
MISSING = "missing real dependency"


def require(condition: object, reason: str) -> None:
    """Skip when a real dependency is missing, except in CI where that is a failure."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"CI requires this test to run, but: {reason}")
    pytest.skip(f"SKIPPED ({MISSING}): {reason}")
