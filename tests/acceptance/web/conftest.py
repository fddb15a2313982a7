"""Fixtures for the web UI's acceptance tests: the API harness (a fully wired app on a tmp
SQLite database with one token per role and a fake backend)."""

from __future__ import annotations

from tests.acceptance.api.api_harness import api, sqlite_template

__all__ = ["api", "sqlite_template"]
