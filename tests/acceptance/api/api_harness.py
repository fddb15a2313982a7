"""The fully wired API on a tmp database, driven through ``httpx.ASGITransport``.

``api`` gives an ``Api``: the app (lifespan running: migrations done, one worker), one token
per role, ``api.client(role)`` (an ``httpx.AsyncClient`` sending that role's token) and a fake
user backend behind the engine's HTTP transport (``api.backend``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from linkloom import config, wiring
from linkloom.access import Role
from linkloom.api.app import create_app
from tests.support import databases
from tests.support.real import POSTGRES_URL

SIGNING_KEY = "acceptance-signing-key"
BACKEND = "http://backend.test"


def flow_spec(flow_id: str = "report", **overrides: Any) -> dict[str, Any]:
    """A three-step chain against the fake backend, with two declared inputs."""
    spec: dict[str, Any] = {
        "id": flow_id,
        "name": "Report",
        "tags": ["demo"],
        "inputs": {
            "count": {"type": "integer", "default": 3},
            "to": {"type": "string", "required": True},
        },
        "steps": [
            {"id": "fetch", "type": "http", "method": "POST", "url": f"{BACKEND}/fetch"},
            {
                "id": "process",
                "type": "http",
                "method": "POST",
                "url": f"{BACKEND}/process",
                "depends_on": ["fetch"],
            },
            {
                "id": "send",
                "type": "http",
                "method": "POST",
                "url": f"{BACKEND}/send",
                "depends_on": ["process"],
            },
        ],
    }
    spec.update(overrides)
    return spec


@dataclass
class FakeBackend:
    """Answers every task with SUCCESS and a log line, unless ``fail`` names the path (FAILED) or
    ``unavailable`` does (HTTP 503, which the engine retries)."""

    calls: list[str] = field(default_factory=list)
    fail: set[str] = field(default_factory=set)
    unavailable: set[str] = field(default_factory=set)
    callbacks: list[dict[str, str]] = field(default_factory=list)  # from ``/async`` envelopes

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(path)
        if path == "/async":
            self.callbacks.append(json.loads(request.content)["callback"])
            return httpx.Response(202, content=b'{"status": "ACCEPTED"}', headers=_JSON)
        if path.strip("/") in self.unavailable:
            body = {"error": f"{path} is overloaded"}
            return httpx.Response(503, content=json.dumps(body).encode(), headers=_JSON)
        if path.strip("/") in self.fail:
            body = {"status": "FAILED", "error": f"{path} is broken", "logs": [f"{path} failed"]}
        else:
            body = {"status": "SUCCESS", "output": {"path": path}, "logs": [f"{path} done"]}
        return httpx.Response(200, content=json.dumps(body).encode(), headers=_JSON)


_JSON = {"Content-Type": "application/json"}


@dataclass
class Api:
    app: Any
    services: wiring.Services
    tokens: dict[Role, str]
    backend: FakeBackend

    def client(self, role: Role | None = Role.admin, **kwargs: Any) -> httpx.AsyncClient:
        """A client of the app as ``role`` (None: no token) on ``http://loom.test`` unless
        ``base_url`` says otherwise (``https://…`` where the app's public URL is https, whose
        session cookie is Secure)."""
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role is not None else {}
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        kwargs.setdefault("base_url", "http://loom.test")
        return httpx.AsyncClient(transport=transport, headers=headers, **kwargs)

    async def next_callback(self, within: float = 10.0) -> dict[str, str]:
        """The callback URLs of the first async delivery (waits for it)."""
        async with asyncio.timeout(within):
            while True:
                if self.backend.callbacks:
                    return self.backend.callbacks[0]
                await asyncio.sleep(0.02)

    async def wait_run(self, run_id: str, within: float = 10.0) -> Any:
        async with asyncio.timeout(within):
            return await self.services.runs.wait(run_id)


def settings_for(db_url: str, home: Path, **overrides: Any) -> config.Settings:
    server = {"run_scheduler": False, **overrides.pop("server", {})}
    return config.load_settings(
        home=home,
        database={"url": db_url},
        server=server,
        engine={"poll_interval": 0.05},
        security={"signing_key": SIGNING_KEY},
        **overrides,
    )


async def start_api(
    db_url: str,
    home: Path,
    *,
    tweak: Callable[[FakeBackend], None] | None = None,
    sandbox_runner: Any = None,
    **overrides: Any,
) -> tuple[Api, Any]:
    """The wired app, started; ``sandbox_runner``: the proposals' sandbox (default: settings')."""
    backend = FakeBackend()
    if tweak:
        tweak(backend)
    settings = settings_for(db_url, home, **overrides)
    services = wiring.build_services(
        settings,
        http_transport=httpx.MockTransport(backend.handler),
        sandbox_runner=sandbox_runner,
    )
    app = create_app(settings, services)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    tokens = {}
    for role in Role:
        secret, _token = await app.state.services.tokens.create(
            name=f"{role.value}-user", role=role, now=services.runs.clock.now()
        )
        tokens[role] = secret
    return Api(app=app, services=services, tokens=tokens, backend=backend), lifespan


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return databases.migrated_sqlite(tmp_path_factory.mktemp("api-sqlite") / "loom.db")


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str | None]:
    """This module's migrated PostgreSQL database (None without a server)."""
    if not POSTGRES_URL:
        yield None
        return
    with databases.fresh_database("api", migrate=True) as url:
        yield url


@pytest.fixture
async def api(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Api]:
    """The API on a fresh SQLite database."""
    running, lifespan = await start_api(databases.copy_sqlite(sqlite_template, tmp_path), tmp_path)
    yield running
    await lifespan.__aexit__(None, None, None)


@pytest.fixture(params=["sqlite", "postgres"])
async def any_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """The API on SQLite, then on this module's PostgreSQL database (distinct flow ids)."""
    if request.param == "sqlite":
        url = databases.copy_sqlite(request.getfixturevalue("sqlite_template"), tmp_path)
    else:
        databases.require_postgres()
        url = request.getfixturevalue("pg_database")
    running, lifespan = await start_api(url, tmp_path)
    yield running
    await lifespan.__aexit__(None, None, None)
