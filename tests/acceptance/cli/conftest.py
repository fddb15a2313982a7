"""Fixtures for CLI acceptance tests (defined in ``cli_harness``)."""

from __future__ import annotations

from cli_harness import cli_server, loom_env

__all__ = ["cli_server", "loom_env"]
