"""Fixtures for the web UI's acceptance tests: the API harness (a fully wired app on a tmp
SQLite database with one token per role and a fake backend), and the same app with a real flows
repo and proposal service (``repo_api``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from linkloom.access import Role
from linkloom.sandbox.inprocess import InProcessRunner
from tests.acceptance.api.api_harness import BACKEND, Api, api, sqlite_template, start_api

__all__ = ["FLOW", "api", "repo_api", "sqlite_template"]

FLOW: dict[str, Any] = {
    "id": "report",
    "inputs": {"to": {"type": "string", "default": "ops"}},
    "steps": [
        {"id": "fetch", "type": "http", "url": f"{BACKEND}/fetch"},
        {
            "id": "shape",
            "type": "transform",
            "depends_on": ["fetch"],
            "template": {"to": "{{ inputs.to }}"},
        },
    ],
}


@pytest.fixture
async def repo_api(tmp_path: Path) -> AsyncIterator[Api]:
    """The wired app whose flows repo (a real git repo) holds ``report`` (synced as v1), with
    the proposal service on the in-process sandbox."""
    seed = tmp_path / "seed" / "report"
    seed.mkdir(parents=True)
    (seed / "flow.yaml").write_text("# the weekly report\n" + yaml.safe_dump(FLOW, sort_keys=False))
    url = f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"
    running, lifespan = await start_api(
        url,
        tmp_path,
        sandbox_runner=InProcessRunner(),
        flows={"seed_from": str(tmp_path / "seed")},
    )
    async with running.client(Role.admin) as admin:
        assert (await admin.post("/api/v1/repo/sync")).status_code == 200
    yield running
    await lifespan.__aexit__(None, None, None)
