"""Shared test setup: a clean environment, and the switches for real PostgreSQL and Docker."""

from __future__ import annotations

import os

# A developer's shell must not leak into tests; keep only the test switches.
for _name in list(os.environ):
    if _name.startswith("LOOM_") and not _name.startswith("LOOM_TEST_"):
        del os.environ[_name]

from tests.support.real import (  # noqa: E402
    MISSING,
    NO_POSTGRES,
    POSTGRES_URL,
    REQUIRE_ALL,
    require,
)

__all__ = ["POSTGRES_URL", "REQUIRE_ALL", "require"]


def pytest_report_header(config):  # type: ignore[no-untyped-def]
    """Say which PostgreSQL server the run uses (tests make throwaway databases on it)."""
    if not POSTGRES_URL:
        return f"postgresql: none ({NO_POSTGRES})"
    from sqlalchemy.engine import make_url

    where = make_url(POSTGRES_URL).set(database=None).render_as_string(hide_password=True)
    found = "LOOM_TEST_POSTGRES_URL" if os.environ.get("LOOM_TEST_POSTGRES_URL") else "found"
    return f"postgresql: {where} ({found}; each test module makes a throwaway database)"


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    skipped = terminalreporter.stats.get("skipped", [])
    missing = [r for r in skipped if MISSING in str(getattr(r, "longrepr", ""))]
    if missing:
        terminalreporter.write_sep(
            "!", f"{len(missing)} tests SKIPPED for missing PostgreSQL/Docker/browser", red=True
        )
