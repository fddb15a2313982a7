"""A real Link Loom server process and the real example backend, for browser tests.

``LoomServer.start(tmp_path, backend_url=…)`` migrates a fresh SQLite database, creates one
token per role, starts ``uvicorn linkloom.api.app:create_app --factory`` on a free port as a
child process and applies the example flows with their URLs pointed at the backend.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from linkloom.access import Role
from linkloom.store import session
from linkloom.store.tokens import SqlTokenStore
from linkloom.testing import SystemClock
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SIGNING_KEY = "e2e-web-signing-key"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "tests" / "artifacts" / "screenshots"
EDITOR_JS = ROOT / "linkloom" / "web" / "static" / "editor" / "editor.js"


def build_front_end() -> None:
    """``scripts/build-web`` (npm, from the committed lock file; skipped when up to date)."""
    import shutil

    from tests.support.real import require

    require(shutil.which("node") and shutil.which("npm"), "Node.js 20+ and npm are not installed")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-web")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"scripts/build-web failed:\n{done.stdout}\n{done.stderr}"
    assert EDITOR_JS.is_file()


async def _prepare(url: str) -> dict[Role, str]:
    await session.upgrade(url)
    db = session.Database(url)
    store = SqlTokenStore(db)
    tokens = {}
    for role in Role:
        secret, _ = await store.create(
            name=f"{role.value}-user", role=role, now=SystemClock().now()
        )
        tokens[role] = secret
    await db.dispose()
    return tokens


@dataclass
class LoomServer:
    url: str
    process: subprocess.Popen[bytes]
    tokens: dict[Role, str]
    log_path: Path
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def start(cls, tmp: Path) -> LoomServer:
        db_url = f"sqlite+aiosqlite:///{tmp / 'loom.db'}"
        tokens = asyncio.run(_prepare(db_url))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
        env.update(
            {
                "LOOM_HOME": str(tmp / "home"),
                "LOOM_DATABASE__URL": db_url,
                "LOOM_SECURITY__SIGNING_KEY": SIGNING_KEY,
                "LOOM_SERVER__PORT": str(port),
                "LOOM_SERVER__RUN_SCHEDULER": "false",
                "LOOM_ENGINE__POLL_INTERVAL": "0.05",
                # the proposal lifecycle's own e2e covers docker; here the UI is under test
                "LOOM_SANDBOX__BACKEND": "process",
                "LOOM_LOG__FORMAT": "json",
                "LOOM_LOG__LEVEL": "WARNING",
            }
        )
        log_path = tmp / "server.log"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "linkloom.api.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        server = cls(
            url=f"http://127.0.0.1:{port}", process=process, tokens=tokens, log_path=log_path
        )
        server._wait_ready()
        return server

    def _wait_ready(self, within: float = 90.0) -> None:  # a loaded 2-core machine is slow
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the server did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def api(self, role: Role = Role.admin) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[role]}"}, timeout=10
        )

    def apply(self, spec: dict[str, Any]) -> None:
        with self.api() as client:
            response = client.put(f"/api/v1/flows/{spec['id']}", json={"spec": spec})
            assert response.status_code == 200, response.text
        self.flows[spec["id"]] = spec

    def trigger(self, flow_id: str, inputs: dict[str, Any] | None = None) -> str:
        with self.api(Role.author) as client:
            response = client.post(f"/api/v1/flows/{flow_id}/runs", json={"inputs": inputs or {}})
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

    def wait_run(self, run_id: str, within: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        with self.api(Role.viewer) as client:
            while time.monotonic() < deadline:
                run = client.get(f"/api/v1/runs/{run_id}").json()
                if run["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                    return dict(run)
                time.sleep(0.05)
        raise AssertionError(f"run {run_id} did not finish within {within} s")


def example_flow(name: str, backend_url: str) -> dict[str, Any]:
    """An example flow's spec with the example backend's address replaced by ``backend_url``."""
    text = (ROOT / "examples" / "flows" / name / "flow.yaml").read_text()
    spec: dict[str, Any] = yaml.safe_load(text.replace("http://127.0.0.1:8081", backend_url))
    return spec


def failing_flow(backend_url: str) -> dict[str, Any]:
    """Two steps; the second calls the example backend's ``/api/tasks/fail`` (no retries)."""
    return {
        "id": "nightly-export",
        "name": "Nightly export",
        "tags": ["demo"],
        "inputs": {"error": {"type": "string", "default": "warehouse rejected the export"}},
        "defaults": {"retry": {"max_attempts": 1}, "timeout": "10s"},
        "steps": [
            {
                "id": "collect",
                "type": "http",
                "method": "POST",
                "url": f"{backend_url}/api/tasks/fetch-data",
            },
            {
                "id": "export",
                "type": "http",
                "method": "POST",
                "url": f"{backend_url}/api/tasks/fail",
                "depends_on": ["collect"],
            },
        ],
    }
