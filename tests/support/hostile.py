"""A real ``loom server`` process for the hostile-input suite (``tests/security/``), on SQLite or
PostgreSQL, with what an attacker would find on a real deployment: a flows repo with flows, one
token per role (and a second author, and a revoked token), secrets with mixed-case names, and a
real user backend (``ShopBackend``) the flows call.

One server per database kind serves every module of the suite (started on first use, stopped at
the end of the session), so the suite pays the start-up once::

    @pytest.fixture(scope="module", params=KINDS)
    def server(request): return hostile.shared(request)

``snapshot()`` captures what a refused request must not change: the row count of every table,
the flows repo's refs and objects (and its files, ``.git/config`` and hooks included), and the
files under the server's home. ``audit()`` reads the audit log as an admin.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web

from linkloom.access import Role
from linkloom.store import session
from linkloom.store.tokens import SqlTokenStore
from tests.support import databases
from tests.support.servers import free_port
from tests.support.shop_backend import ShopBackend

ROOT = Path(__file__).resolve().parents[2]
KINDS = ["sqlite", "postgres"]
SIGNING_KEY = "hostile-suite-signing-key"
# Secrets with mixed-case names; flows read them as {{ secrets.ShopKey }} (set in a config file)
# and {{ secrets.api_Token }} (set as LOOM_SECRETS__api_Token: both keep the names' case).
SECRETS = {"ShopKey": "Sk-Ho5tile-8d1e77c0a4", "api_Token": "tok-Q9v3Zt27mWx"}
# Who holds a token: a name (recorded as the audit entries' actor) and a role.
PEOPLE = {
    "viewer": Role.viewer,
    "author": Role.author,
    "author2": Role.author,
    "reviewer": Role.reviewer,
    "admin": Role.admin,
}
REVOKED = "revoked"  # an admin token, revoked before the server starts


class HostileBackend(ShopBackend):
    """The shop API, plus ``POST /async``: answers 202 and keeps the callback URLs it was sent
    (``callbacks``), so a test can complete the step by a signed callback."""

    def __init__(self) -> None:
        super().__init__()
        self.callbacks: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/async":
            self.callbacks.append((await request.json())["callback"])
            return web.json_response({"status": "ACCEPTED"}, status=202)
        return await super().handle(request)


def plain_flow(flow_id: str = "plain", backend: str = "") -> dict[str, Any]:
    """A small flow: a POST to the backend's ``/notify`` and a transform."""
    return {
        "id": flow_id,
        "inputs": {"to": {"type": "string", "default": "ops"}},
        "triggers": [{"type": "webhook", "id": "push"}],
        "steps": [
            {
                "id": "ping",
                "type": "http",
                "method": "POST",
                "url": f"{backend}/notify",
                "body": {"to": "{{ inputs.to }}"},
                "retry": {"max_attempts": 1},
            },
            {
                "id": "shape",
                "type": "transform",
                "depends_on": ["ping"],
                "template": {"to": "{{ inputs.to }}"},
            },
        ],
    }


def secret_flow(flow_id: str = "secretive", backend: str = "BACKEND") -> dict[str, Any]:
    """A flow that uses both secrets, raw and through filters, in an http step's query and
    headers, in a transform and in a POST body the backend echoes back (raw and filtered)."""
    key, token = "secrets.ShopKey", "secrets.api_Token"
    return {
        "id": flow_id,
        "inputs": {"region": {"type": "string", "default": "eu"}},
        "steps": [
            {
                "id": "rates",
                "type": "http",
                "method": "GET",
                "url": f"{backend}/rates",
                "query": {
                    "region": "{{ inputs.region }}",
                    "key": f"{{{{ {key} }}}}",
                    "rkey": f"{{{{ {key} | reverse }}}}",
                },
                "headers": {
                    "Authorization": f"Bearer {{{{ {token} | upper }}}}",
                    "X-Shop": f"{{{{ {key}[::-1] }}}}",
                    "X-Joined": f"{{{{ {token} | join('-') }}}}",
                },
                "retry": {"max_attempts": 1},
                "outputs": {"rate": "{{ response.body.rate }}"},
            },
            {
                "id": "mix",
                "type": "transform",
                "depends_on": ["rates"],
                "template": {
                    "rate": "{{ steps.rates.outputs.rate }}",
                    "up": f"{{{{ {key} | upper }}}}",
                    "low": f"{{{{ {token} | lower }}}}",
                    "rev": f"{{{{ {token} | reverse }}}}",
                    "joined": f"{{{{ {key} | join('.') }}}}",
                    "head": f"{{{{ {token}[2:9] }}}}",
                    "back": f"{{{{ {key}[::-1] }}}}",
                    "both": f"{{{{ {key} ~ ':' ~ {token} }}}}",
                },
            },
            {
                "id": "notify",
                "type": "http",
                "method": "POST",
                "url": f"{backend}/notify",
                "depends_on": ["mix"],
                # the backend echoes the body back: the filtered forms must be masked there too
                "body": {
                    "key": f"{{{{ {key} }}}}",
                    "up": f"{{{{ {token} | upper }}}}",
                    "note": f"sent {{{{ {key} | reverse }}}} at {{{{ run.id }}}}",
                    "rate": "{{ steps.mix.output.rate }}",
                },
                "retry": {"max_attempts": 1},
            },
        ],
    }


FLOWS = [plain_flow("plain", "BACKEND"), secret_flow()]


def dump(spec: dict[str, Any]) -> str:
    return yaml.safe_dump(spec, sort_keys=False)


@dataclass(frozen=True)
class Snapshot:
    rows: dict[str, int]
    refs: str
    objects: frozenset[str]
    files: dict[str, str]

    def changes(self, other: Snapshot) -> list[str]:
        """What differs from ``other``, as readable lines (empty: nothing)."""
        found = [
            f"table {t}: {self.rows.get(t)} -> {other.rows.get(t)} rows"
            for t in sorted(set(self.rows) | set(other.rows))
            if self.rows.get(t) != other.rows.get(t)
        ]
        if self.refs != other.refs:
            found.append(f"refs: {self.refs!r} -> {other.refs!r}")
        if self.objects != other.objects:
            found.append(f"git objects added: {sorted(other.objects - self.objects)[:5]}")
        for path in sorted(set(self.files) | set(other.files)):
            if self.files.get(path) != other.files.get(path):
                found.append(f"file {path} changed")
        return found


@dataclass
class HostileServer:
    kind: str
    url: str
    db_url: str
    home: Path
    tokens: dict[str, str]
    backend: HostileBackend
    process: subprocess.Popen[bytes]
    log_path: Path
    _clients: dict[str, httpx.Client] = field(default_factory=dict)

    @property
    def repo(self) -> Path:
        return self.home / "flows"

    def client(self, who: str | None) -> httpx.Client:
        """A client sending ``who``'s token (``None``: no ``Authorization`` header)."""
        key = who or ""
        if key not in self._clients:
            headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
            self._clients[key] = httpx.Client(base_url=self.url, headers=headers, timeout=120)
        return self._clients[key]

    def alive(self) -> bool:
        if self.process.poll() is not None:
            return False
        try:
            return httpx.get(self.url + "/healthz", timeout=10).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def audit(self, **params: Any) -> list[dict[str, Any]]:
        found = self.client("admin").get("/api/v1/audit", params={"limit": 1000, **params})
        assert found.status_code == 200, found.text
        return list(found.json()["items"])

    def wait_run(self, run_id: str, within: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            run = self.client("viewer").get(f"/api/v1/runs/{run_id}").json()
            if run["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                return dict(run)
            assert time.monotonic() < deadline, run
            time.sleep(0.05)

    # ---- what a refused request must not change -------------------------------------------

    def rows(self) -> dict[str, int]:
        if self.kind == "sqlite":
            path = self.db_url.split("///", 1)[1]
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                names = [
                    r[0]
                    for r in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type='table' "
                        "AND name NOT LIKE 'sqlite_%'"
                    )
                ]
                return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
        import psycopg

        with psycopg.connect(self.db_url.replace("+psycopg", "")) as conn:
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                ).fetchall()
            ]
            counts = {}
            for n in names:
                row = conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()
                counts[n] = int(row[0]) if row else 0
            return counts

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.repo), *args], capture_output=True, check=True, timeout=60
        )
        return done.stdout.decode(errors="replace")

    def snapshot(self) -> Snapshot:
        objects = self.git("cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
        files = {}
        for path in sorted(self.home.rglob("*")):
            rel = path.relative_to(self.home).as_posix()
            if not path.is_file() or rel.startswith("loom.db") or rel == "server.log":
                continue
            if "/.git/objects/" in f"/{rel}" or rel.endswith(("index", ".lock")):
                continue  # objects are compared by id; git rewrites its index on reads
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        return Snapshot(
            rows=self.rows(),
            refs=self.git("for-each-ref", "--format=%(refname) %(objectname)"),
            objects=frozenset(objects.split()),
            files=files,
        )

    def settled_snapshot(self, within: float = 60) -> Snapshot:
        """A snapshot once work still in flight (checks run in the background, runs) is done:
        two snapshots half a second apart agree."""
        deadline = time.monotonic() + within
        last = self.snapshot()
        while True:
            time.sleep(0.5)
            now = self.snapshot()
            if not last.changes(now) or time.monotonic() > deadline:
                return now
            last = now


async def _tokens(db_url: str) -> dict[str, str]:
    db = session.Database(db_url)
    try:
        store = SqlTokenStore(db)
        out = {}
        for name, role in {**PEOPLE, REVOKED: Role.admin}.items():
            out[name], token = await store.create(name=name, role=role, now=datetime.now(UTC))
        await store.revoke(token.id, now=datetime.now(UTC))
        return out
    finally:
        await db.dispose()


def start(kind: str, home: Path, *, flows: list[dict[str, Any]] = FLOWS) -> HostileServer:
    """Migrate a database, make the tokens, seed the flows repo and start ``loom server``."""
    home.mkdir(parents=True, exist_ok=True)
    if kind == "postgres":
        db_url = databases.create_database("hostile")
        databases.upgrade(db_url)
    else:
        db_url = databases.sqlite_url(databases.migrated_sqlite(home / "loom.db"))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        tokens = pool.submit(asyncio.run, _tokens(db_url)).result()
    backend = HostileBackend().__enter__()
    seed = home.parent / f"{home.name}-seed"
    for spec in flows:
        (seed / spec["id"]).mkdir(parents=True, exist_ok=True)
        (seed / spec["id"] / "flow.yaml").write_text(dump(spec).replace("BACKEND", backend.url))
    config_file = home.parent / f"{home.name}-loom.toml"
    shop_key = SECRETS["ShopKey"]
    config_file.write_text(f'[secrets]\nShopKey = "{shop_key}"\n')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
    env.update(
        {
            "LOOM_CONFIG_FILE": str(config_file),
            "LOOM_SECRETS__api_Token": SECRETS["api_Token"],
            "LOOM_HOME": str(home),
            "LOOM_DATABASE__URL": db_url,
            "LOOM_SECURITY__SIGNING_KEY": SIGNING_KEY,
            "LOOM_SERVER__PUBLIC_URL": f"http://127.0.0.1:{port}",
            "LOOM_FLOWS__SEED_FROM": str(seed),
            "LOOM_ENGINE__POLL_INTERVAL": "0.05",
            "LOOM_SANDBOX__BACKEND": "process",
            "LOOM_SANDBOX__WALL_CLOCK_SECONDS": "60",
            "LOOM_LOG__FORMAT": "json",
            "LOOM_LOG__LEVEL": "INFO",
        }
    )
    log_path = home / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "linkloom", "server", "--port", str(port), "--no-scheduler"],
        cwd=home,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = HostileServer(
        kind=kind,
        url=f"http://127.0.0.1:{port}",
        db_url=db_url,
        home=home,
        tokens=tokens,
        backend=backend,
        process=process,
        log_path=log_path,
    )
    deadline = time.monotonic() + 120  # a loaded 2-core machine is slow to import everything
    while not server.alive():
        if process.poll() is not None or time.monotonic() > deadline:
            stop(server)
            raise RuntimeError(f"loom server did not start:\n{server.log()[-3000:]}")
        time.sleep(0.2)
    synced = server.client("admin").post("/api/v1/repo/sync")
    assert synced.status_code == 200, synced.text
    return server


def stop(server: HostileServer) -> None:
    for client in server._clients.values():
        client.close()
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)
    server.backend.__exit__(None, None, None)
    if server.kind == "postgres":
        databases.drop_database(server.db_url)


_SHARED: dict[str, HostileServer] = {}


def shared(request: pytest.FixtureRequest) -> HostileServer:
    """The session's server on ``request.param`` (``sqlite`` or ``postgres``), started on first
    use with ``FLOWS`` in its flows repo (``plain`` and ``secretive``)."""
    kind = request.param
    if kind == "postgres":
        databases.require_postgres()
    server = _SHARED.get(kind)
    if server is None:
        home = request.config._tmp_path_factory.mktemp(f"hostile-{kind}") / "home"  # type: ignore[attr-defined]
        server = _SHARED[kind] = start(kind, home)
        request.config.add_cleanup(lambda: stop(_SHARED.pop(kind)))
    assert server.alive(), f"the {kind} server died:\n{server.log()[-3000:]}"
    return server
