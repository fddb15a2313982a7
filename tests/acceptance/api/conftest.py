"""Fixtures for API acceptance tests (defined in ``api_harness``)."""

from __future__ import annotations

from api_harness import any_api, api, pg_database, sqlite_template

__all__ = ["any_api", "api", "pg_database", "sqlite_template"]
