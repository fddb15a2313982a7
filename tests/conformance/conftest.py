"""Fixtures of the conformance suite: one real ``loom server`` per database, one example backend
process per language, and the recording proxy between them (see README.md)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conformance.languages import LANGUAGES, Language, Process, base_env, prepare
from tests.conformance.proxy import Proxy
from tests.conformance.servers import Loom, ServerProcess, make_loom
from tests.support.databases import fresh_database, require_postgres
from tests.support.servers import free_port

KEY = "conformance-signing-key"


@pytest.fixture(scope="session")
def proxy() -> Iterator[Proxy]:
    with Proxy(KEY) as running:
        yield running


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def loom(request: pytest.FixtureRequest, proxy: Proxy, tmp_path_factory: Any) -> Iterator[Loom]:
    name = request.param
    home = tmp_path_factory.mktemp(f"loom-{name}")
    with contextlib.ExitStack() as stack:
        if name == "sqlite":
            url = f"sqlite+aiosqlite:///{home / 'loom.db'}"  # loom server migrates SQLite itself
        else:
            require_postgres()
            url = stack.enter_context(fresh_database("conformance", migrate=True))
        server = ServerProcess(
            home=home, db_url=url, port=free_port(), public_url=proxy.server_url(name), key=KEY
        )
        proxy.servers[name] = server.url
        stack.callback(server.stop)
        server.start()
        yield make_loom(name, server)


@dataclass
class Backend:
    """A language's example backend process, reachable directly and through the proxy."""

    lang: Language
    url: str
    process: Process
    home: Path

    @property
    def name(self) -> str:
        return self.lang.name

    def get(self, path: str) -> Any:
        answer = httpx.get(self.url + path, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def calls(self, name: str) -> int:
        return int(self.get("/stats")["calls"].get(name, 0))

    def effects(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.get("/effects")["effects"] if e["kind"] == kind]

    def worker(self, loom: Loom, *, queue: str, worker_id: str, concurrency: int = 4) -> Process:
        env = {
            **base_env(),
            "LOOM_SERVER_URL": loom.url,
            "LOOM_TOKEN": loom.worker_token,
            "LOOM_WORKER_QUEUES": queue,
            "LOOM_WORKER_ID": worker_id,
            "LOOM_WORKER_CONCURRENCY": str(concurrency),
        }
        log = self.home / f"worker-{worker_id}.log"
        return Process(cmd=self.lang.worker(), env=env, cwd=self.lang.cwd, log_path=log).start()


@pytest.fixture(scope="session", params=list(LANGUAGES))
def backend(
    request: pytest.FixtureRequest, proxy: Proxy, tmp_path_factory: Any
) -> Iterator[Backend]:
    lang = LANGUAGES[request.param]
    prepare(lang)
    home = tmp_path_factory.mktemp(f"backend-{lang.name}")
    port = free_port()
    env = {
        **base_env(),
        "LOOM_SECURITY__SIGNING_KEY": KEY,
        "LOOM_EXAMPLE_HEARTBEAT_SECONDS": "0.3",
    }
    process = Process(
        cmd=lang.serve(port), env=env, cwd=lang.cwd, log_path=home / "backend.log"
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_healthy(url)
        proxy.backends[lang.name] = url
        yield Backend(lang=lang, url=url, process=process, home=home)
    finally:
        process.stop()


def wait_until(predicate: Any, *, within: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {within}s waiting for {what}")
