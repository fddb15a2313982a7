"""Shared test setup: a clean environment, and the switches for real PostgreSQL and Docker."""

from __future__ import annotations

import os

import pytest

# A developer's shell must not leak into tests; keep only the test switches.
for _name in list(os.environ):
    if _name.startswith("LOOM_") and not _name.startswith("LOOM_TEST_"):
        del os.environ[_name]

POSTGRES_URL = os.environ.get("LOOM_TEST_POSTGRES_URL", "")
REQUIRE_ALL = os.environ.get("LOOM_TEST_REQUIRE_ALL") == "1" or os.environ.get("CI") == "true"


def require(condition: bool, reason: str) -> None:
    """Skip when a real dependency is missing, except in CI where that is a failure."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"CI requires this test to run, but: {reason}")
    pytest.skip(f"SKIPPED (missing real dependency): {reason}")


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    skipped = terminalreporter.stats.get("skipped", [])
    missing = [r for r in skipped if "missing real dependency" in str(getattr(r, "longrepr", ""))]
    if missing:
        terminalreporter.write_sep(
            "!", f"{len(missing)} tests SKIPPED for missing PostgreSQL/Docker/browser", red=True
        )
