"""Fixtures for engine integration tests (defined in ``engine_harness``)."""

from __future__ import annotations

from engine_harness import (
    backend,
    db_url,
    engine,
    pg_database,
    sqlite_template,
)

__all__ = [
    "backend",
    "db_url",
    "engine",
    "pg_database",
    "sqlite_template",
]
