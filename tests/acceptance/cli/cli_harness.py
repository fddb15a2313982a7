"""A real API server (uvicorn on a random port, tmp SQLite, fake backend) for CLI tests.

``cli_server`` starts it once per module and points the CLI at it through ``LOOM_SERVER_URL``
and ``LOOM_TOKEN`` (an admin token); ``invoke(...)`` runs ``loom`` in-process with Typer's
``CliRunner`` and returns the result (``LinkloomError``s are mapped to exit codes the way
``cli.main.main`` maps them).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from linkloom import config, logs, wiring
from linkloom.access import Role
from linkloom.api.app import create_app
from linkloom.cli.main import app as loom_app
from linkloom.errors import LinkloomError
from linkloom.store import session
from linkloom.store.tokens import SqlTokenStore
from tests.acceptance.api.api_harness import SIGNING_KEY, FakeBackend
from tests.support.servers import ThreadedUvicorn


@dataclass
class CliServer:
    url: str
    tokens: dict[Role, str]
    backend: FakeBackend
    home: Path
    db_url: str


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None


def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    runner = CliRunner()
    result = runner.invoke(loom_app, list(args), env=env, input=input)
    code = result.exit_code
    if isinstance(result.exception, LinkloomError):
        code = result.exception.exit_code
    return Result(
        exit_code=code,
        stdout=result.stdout,
        stderr=result.stderr if result.stderr_bytes is not None else "",
        exception=result.exception if not isinstance(result.exception, SystemExit) else None,
    )


async def _tokens(db_url: str) -> dict[Role, str]:
    await session.upgrade(db_url)
    db = session.Database(db_url)
    try:
        store = SqlTokenStore(db)
        out = {}
        for role in Role:
            from datetime import UTC, datetime

            secret, _ = await store.create(
                name=f"{role.value}-cli", role=role, now=datetime.now(UTC)
            )
            out[role] = secret
        return out
    finally:
        await db.dispose()


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliServer]:
    home = tmp_path_factory.mktemp("cli-home")
    db_url = f"sqlite+aiosqlite:///{home / 'loom.db'}"
    tokens = asyncio.run(_tokens(db_url))
    backend = FakeBackend()
    server = ThreadedUvicorn()
    settings = config.load_settings(
        home=home,
        database={"url": db_url},
        server={"run_scheduler": False, "port": server.port},
        engine={"poll_interval": 0.05},
        security={"signing_key": SIGNING_KEY},
    )
    # The server's log lines must not land in the CLI output CliRunner captures.
    logs.configure(settings, fmt="json", level="WARNING", stream=io.StringIO())
    services = wiring.build_services(settings, http_transport=httpx.MockTransport(backend.handler))
    application = create_app(settings, services)
    try:
        with server.serving(application):
            yield CliServer(
                url=server.url, tokens=tokens, backend=backend, home=home, db_url=db_url
            )
    finally:
        logs.reset()


@pytest.fixture
def loom_env(cli_server: CliServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliServer:
    """The CLI pointed at the test server as admin, with a private config directory."""
    monkeypatch.setenv("LOOM_SERVER_URL", cli_server.url)
    monkeypatch.setenv("LOOM_TOKEN", cli_server.tokens[Role.admin])
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return cli_server


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path
