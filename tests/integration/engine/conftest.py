"""Fixtures for engine integration tests (defined in ``engine_harness``).

pytest imports every directory's conftest under the module name ``conftest``, so modules that do
``from conftest import require, POSTGRES_URL`` may get this one: it offers the same names.
"""

from __future__ import annotations

from engine_harness import (
    POSTGRES_URL,
    backend,
    db_url,
    engine,
    pg_database,
    sqlite_template,
)
from engine_harness import _require as require

__all__ = [
    "POSTGRES_URL",
    "backend",
    "db_url",
    "engine",
    "pg_database",
    "require",
    "sqlite_template",
]
