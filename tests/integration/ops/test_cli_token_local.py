"""``loom token … --local``, the rescue command on the server's host (the only admin token lost),
imports what it needs and nothing of the server: settings, SQLAlchemy, the migrations and the
token store, on SQLite and on PostgreSQL. Its start-up is measured in ``bench/bench_cli.py``;
this pins the property that keeps it small."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.crash.engine_process import fresh_database

# What the engine, the API and the flows repo load; the token store needs none of it.
SERVER_ONLY = ("aiohttp", "httpx", "fastapi", "starlette", "uvicorn", "git", "jinja2", "docker")
# Runs ``loom ARGS…`` in this interpreter, then prints every module it loaded.
PROBE = """
import json, sys
from linkloom.cli.main import main
sys.argv = ["loom", *sys.argv[1:]]
try:
    main()
except SystemExit as stop:
    if stop.code:
        raise
print(json.dumps(sorted(sys.modules)))
"""


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path) as url:
        yield url


def loom_local(db_url: str, home: Path, *args: str) -> tuple[str, set[str]]:
    """What ``loom ARGS…`` printed before its module list, and that list."""
    env = {**os.environ, "LOOM_DATABASE__URL": db_url, "LOOM_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    printed, _, modules = done.stdout.rstrip().rpartition("\n")
    return printed, set(json.loads(modules))


def test_loom_token_local_imports_the_token_store_and_not_the_engine(
    db_url: str, tmp_path: Path
) -> None:
    created, loaded = loom_local(
        db_url, tmp_path, "token", "create", "--local", "--name", "rescue", "--role", "admin"
    )
    listed, _ = loom_local(db_url, tmp_path, "token", "list", "--local", "-o", "json")
    assert "(rescue, admin) created" in created
    assert [t["name"] for t in json.loads(listed)] == ["rescue"]
    tops = {m.split(".")[0] for m in loaded}
    assert tops.isdisjoint(SERVER_ONLY), tops & set(SERVER_ONLY)
    ours = sorted(m for m in loaded if m.startswith(("linkloom.engine", "linkloom.wiring.")))
    assert ours == ["linkloom.wiring.storage"]
