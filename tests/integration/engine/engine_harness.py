"""Helpers and fixtures: a real engine on real databases (a SQLite file, and PostgreSQL when
available) calling a real local HTTP backend whose answers each test scripts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from linkloom.engine.ports import StepServices
from linkloom.engine.service import RunService
from linkloom.engine.steps import builtin_executors
from linkloom.engine.worker import Worker
from linkloom.flows.spec import FlowSpec
from linkloom.store import session
from linkloom.store.runs import SqlRunStore
from linkloom.testing import StaticSecrets, SystemClock
from linkloom.wiring import make_http_client, make_outbound
from tests.support import databases
from tests.support.real import POSTGRES_URL

SIGNING_KEY = "test-signing-key"
SECRET = "sup3r-secret-token"


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON body; a str/bytes is sent raw
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering


@dataclass
class Backend:
    """A local HTTP server: ``script[path]`` is a list of replies used in order (the last one
    repeats); without a script it answers SUCCESS echoing the step id."""

    url: str = ""
    script: dict[str, list[Reply]] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0  # the most requests it was answering at once

    def on(self, path: str, *replies: Reply) -> None:
        self.script[path] = list(replies)

    def calls_to(self, path: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["path"] == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode()
        self.calls.append(
            {"path": request.path, "headers": CIMultiDict(request.headers), "body": body}
        )
        replies = self.script.get(request.path)
        if not replies:
            step = body.get("step_id") if isinstance(body, dict) else None
            return web.json_response(
                {"status": "SUCCESS", "output": {"step": step}, "logs": [f"ran {step}"]}
            )
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if isinstance(reply.body, str | bytes):
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    b = Backend()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", b.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    b.url = f"http://127.0.0.1:{port}"
    yield b
    await runner.cleanup()


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str | None]:
    """A fresh migrated PostgreSQL database for this module (None without a server)."""
    if not POSTGRES_URL:
        yield None
        return
    with databases.fresh_database("t", migrate=True) as url:
        yield url


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating takes most of a second)."""
    return databases.migrated_sqlite(tmp_path_factory.mktemp("sqlite-template") / "loom.db")


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each test gets an empty migrated SQLite file, or this module's PostgreSQL database
    (tests use distinct flow ids, so they do not see each other's data)."""
    if request.param == "sqlite":
        yield databases.copy_sqlite(request.getfixturevalue("sqlite_template"), tmp_path)
        return
    databases.require_postgres()
    yield request.getfixturevalue("pg_database")


@dataclass
class Engine:
    db: session.Database
    store: SqlRunStore
    runs: RunService
    worker: Worker
    backend: Backend

    async def apply(self, raw: dict[str, Any]) -> FlowSpec:
        spec = FlowSpec.model_validate(raw)
        await self.runs.apply_flow(spec)
        return spec

    async def run(self, flow_id: str, inputs: dict[str, Any] | None = None, *, wait: float = 10):
        run = await self.runs.trigger(flow_id, inputs=inputs or {})
        async with asyncio.timeout(wait):
            return await self.runs.wait(run.id)


@pytest.fixture
async def engine(db_url: str, backend: Backend) -> AsyncIterator[Engine]:
    db = session.Database(db_url)
    store = SqlRunStore(db)
    clock = SystemClock()
    secrets = StaticSecrets({"api_token": SECRET})
    holder: dict[str, Worker] = {}
    runs = RunService(
        store=store,
        clock=clock,
        secrets=secrets,
        signing_key=SIGNING_KEY,
        wake=lambda: holder["w"].wake() if "w" in holder else None,
        local_worker=lambda: holder.get("w"),  # as wired in ``loom server``
    )
    http = make_http_client(concurrency=16)
    outbound = make_outbound(concurrency=16)
    services = StepServices(
        http=http,
        outbound=outbound,
        clock=clock,
        secrets=secrets,
        signing_key=SIGNING_KEY,
        public_url="http://127.0.0.1:9",
    )
    worker = Worker(
        store=store,
        executors=builtin_executors(),
        services=services,
        concurrency=16,
        lease_seconds=5,
        poll_interval=0.05,
        specs=runs.specs,
        on_run_finished=runs.notify_finished,
    )
    holder["w"] = worker
    runs.on_cancel = worker.abandon_run
    await worker.start()
    yield Engine(db=db, store=store, runs=runs, worker=worker, backend=backend)
    await worker.stop(grace=1)
    await http.aclose()
    await outbound.aclose()
    await db.dispose()


def step(step_id: str, backend: Backend, **extra: Any) -> dict[str, Any]:
    """An http step calling ``<backend>/<step_id>``."""
    return {"id": step_id, "type": "http", "url": f"{backend.url}/{step_id}", **extra}


FAST_RETRY = {"max_attempts": 3, "initial_delay": 0.01, "max_delay": 0.05, "jitter": False}
