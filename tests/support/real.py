"""Switches for tests that need real PostgreSQL, Docker or a browser.

``require(cond, reason)`` skips loudly on a laptop without the dependency and fails in CI
(``CI=true`` or ``LOOM_TEST_REQUIRE_ALL=1``), where ``.ci/run`` provisions everything.

PostgreSQL is ``LOOM_TEST_POSTGRES_URL`` when set. Unset, a server on 127.0.0.1:5432 that lets
the ``postgres`` role in without a password (a developer's local one, CI's) is found and used.
``LOOM_TEST_POSTGRES_URL=off`` runs the suite without PostgreSQL even when one is there. Tests
never use that database itself: ``tests.support.databases`` makes a throwaway one per use.
"""

from __future__ import annotations

import os
import socket

import pytest

REQUIRE_ALL = os.environ.get("LOOM_TEST_REQUIRE_ALL") == "1" or os.environ.get("CI") == "true"
MISSING = "missing real dependency"

ENV = "LOOM_TEST_POSTGRES_URL"
LOCAL_HOST, LOCAL_PORT = "127.0.0.1", 5432
LOCAL_URL = f"postgresql+psycopg://postgres@{LOCAL_HOST}:{LOCAL_PORT}/postgres"
OFF = ("off", "none", "no", "0", "false")


def _find_server() -> tuple[str, str]:
    """(the server's URL, "") or ("", why there is none)."""
    configured = os.environ.get(ENV, "").strip()
    if configured.lower() in OFF:
        return "", f"PostgreSQL switched off ({ENV}={configured})"
    if configured:
        return configured, ""
    try:
        socket.create_connection((LOCAL_HOST, LOCAL_PORT), timeout=0.5).close()
    except OSError:
        return "", (
            f"no PostgreSQL at {LOCAL_HOST}:{LOCAL_PORT}: start one, or point {ENV} at a server "
            "where the user may create databases"
        )
    try:
        import psycopg

        plain = LOCAL_URL.replace("+psycopg", "")
        with psycopg.connect(plain, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return "", (
            f"PostgreSQL at {LOCAL_HOST}:{LOCAL_PORT} did not let 'postgres' in without a "
            f"password ({reason}): set {ENV}=postgresql+psycopg://USER:PASSWORD@HOST:PORT/postgres"
        )
    return LOCAL_URL, ""


POSTGRES_URL, NO_POSTGRES = _find_server()


def require(condition: object, reason: str) -> None:
    """Skip when a real dependency is missing, except in CI where that is a failure."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"CI requires this test to run, but: {reason}")
    pytest.skip(f"SKIPPED ({MISSING}): {reason}")
