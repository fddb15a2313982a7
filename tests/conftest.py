"""Shared test setup: a clean environment, and the switches for real PostgreSQL and Docker."""

from __future__ import annotations

import os

# A developer's shell must not leak into tests; keep only the test switches.
for _name in list(os.environ):
    if _name.startswith("LOOM_") and not _name.startswith("LOOM_TEST_"):
        del os.environ[_name]

from tests.support.real import MISSING, POSTGRES_URL, REQUIRE_ALL, require  # noqa: E402

__all__ = ["POSTGRES_URL", "REQUIRE_ALL", "require"]


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    skipped = terminalreporter.stats.get("skipped", [])
    missing = [r for r in skipped if MISSING in str(getattr(r, "longrepr", ""))]
    if missing:
        terminalreporter.write_sep(
            "!", f"{len(missing)} tests SKIPPED for missing PostgreSQL/Docker/browser", red=True
        )
