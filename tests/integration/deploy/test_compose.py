"""docker-compose.yml, run for real: the server image (scripts/build-server-image) and a
PostgreSQL image built from Debian's packages (scripts/build-postgres-image), no registry.

Migrations run, the API, the scheduler and two workers come up healthy, flows run through the
API, ``--scale worker=3`` adds a worker that takes work, and a worker stopped while runs are in
flight loses none of them. A small backend container (the server image's Python and aiohttp)
answers the flows' http steps after a short delay, so work is spread and in flight.
``scripts/provision-compose`` installs docker-compose and builds both images (CI runs it).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.real import require
from tests.support.servers import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).parents[3]
SERVER_IMAGE = "linkloom/server:latest"
POSTGRES_IMAGE = "linkloom/postgres:15"
BACKEND = """
import asyncio, json
from aiohttp import web

async def handle(request):
    body = await request.json()
    await asyncio.sleep(0.3)
    return web.json_response({"status": "SUCCESS", "output": {"item": body.get("item")}})

app = web.Application()
app.router.add_post("/{tail:.*}", handle)
web.run_app(app, port=8000, print=None)
"""
FLOW = {
    "id": "compose-proof",
    "steps": [
        {"id": "start", "type": "http", "url": "http://backend:8000/start", "timeout": 30},
        {
            "id": "each",
            "type": "http",
            "url": "http://backend:8000/each",
            "depends_on": ["start"],
            "for_each": [1, 2, 3, 4, 5, 6],
            "timeout": 30,
        },
        {"id": "count", "type": "transform", "depends_on": ["each"], "template": 6},
    ],
}


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return ["docker", "compose"] if plugin.returncode == 0 else []


def image_exists(name: str) -> bool:
    done = subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=False)
    return done.returncode == 0


class Deployment:
    def __init__(self, tmp_path: Path) -> None:
        self.project = f"loomproof{secrets.token_hex(3)}"
        self.port = free_port()
        data = tmp_path / "data"
        data.mkdir()
        os.chown(data, 10001, 10001)
        override = tmp_path / "override.yml"
        override.write_text(
            yaml.safe_dump(
                {
                    "services": {
                        "backend": {
                            "image": SERVER_IMAGE,
                            "entrypoint": ["python3", "-c", BACKEND],
                        }
                    }
                }
            )
        )
        self.base = [
            *compose_command(),
            "-p", self.project,
            "-f", str(ROOT / "docker-compose.yml"),
            "-f", str(override),
        ]  # fmt: skip
        socket_gid = os.stat("/var/run/docker.sock").st_gid
        self.env = {
            **os.environ,
            "POSTGRES_PASSWORD": secrets.token_hex(8),
            "LOOM_SIGNING_KEY": secrets.token_hex(16),
            "POSTGRES_IMAGE": POSTGRES_IMAGE,
            "LOOM_PORT": str(self.port),
            "LOOM_DATA_DIR": str(data),
            "LOOM_PUBLIC_URL": "http://api:8080",
            "DOCKER_GID": str(socket_gid),
        }
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ""

    def compose(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [*self.base, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"compose {args} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).split()

    def health(self, container: str) -> str:
        done = subprocess.run(
            ["docker", "inspect", "--format", "{{json .State}}", container],
            capture_output=True,
            text=True,
            check=True,
        )
        state = json.loads(done.stdout)
        return str((state.get("Health") or {}).get("Status") or state.get("Status"))

    def attempts_by(self, container: str) -> int:
        """Step attempts this worker container finished (its own /metrics exporter)."""
        code = (
            "import urllib.request;"
            "print(urllib.request.urlopen('http://127.0.0.1:9100/metrics').read().decode())"
        )
        done = subprocess.run(
            ["docker", "exec", container, "python3", "-c", code],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in done.stdout.splitlines()
                if line.startswith("loom_step_attempt_duration_seconds_count")
            )
        )

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )


def wait_for(check: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, subprocess.CalledProcessError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    require(compose_command(), "neither docker-compose nor the compose plugin is installed")
    require(shutil.which("docker") and image_exists(SERVER_IMAGE), f"no image {SERVER_IMAGE}")
    require(image_exists(POSTGRES_IMAGE), f"no image {POSTGRES_IMAGE}")
    running = Deployment(tmp_path)
    try:
        yield running
    finally:
        logs = subprocess.run(
            [*running.base, "logs", "--no-color", "--tail", "40"],
            env=running.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        (tmp_path / "compose.log").write_text(logs.stdout + logs.stderr)
        subprocess.run(
            [*running.base, "down", "-v", "--remove-orphans", "-t", "5"],
            env=running.env, capture_output=True, check=False, timeout=300,
        )  # fmt: skip


def trigger_and_wait(client: httpx.Client, count: int, *, timeout: float = 240) -> list[str]:
    ids = []
    for _ in range(count):
        answer = client.post("/api/v1/flows/compose-proof/runs", json={"inputs": {}})
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    return ids


def wait_finished(client: httpx.Client, ids: list[str], *, timeout: float = 300) -> list[str]:
    def finished() -> list[str] | None:
        statuses = [client.get(f"/api/v1/runs/{run_id}").json()["status"] for run_id in ids]
        done = all(s in ("SUCCEEDED", "FAILED", "CANCELLED") for s in statuses)
        return statuses if done else None

    found: list[str] = wait_for(finished, timeout=timeout, what="runs to finish")
    return found


def test_compose_deployment_runs_scales_and_loses_nothing(deployment: Deployment) -> None:
    d = deployment
    d.compose("up", "-d", "api", "scheduler", "worker", "backend")
    workers = d.containers("worker")
    assert len(workers) == 2, "the compose file starts two workers"
    migrate = d.containers("migrate")
    assert migrate, "the migrate service ran"

    def ready() -> dict[str, Any] | None:
        body = httpx.get(f"{d.url}/readyz", timeout=5).json()
        checks = body["checks"]
        if body["ready"] and checks.get("worker_processes") == "2":
            return dict(checks)
        return None

    checks = wait_for(ready, timeout=300, what="/readyz with two workers")
    assert checks["migrations"] is True
    assert checks["scheduler_processes"] == "1"
    for service in ("api", "scheduler", "worker"):
        for container in d.containers(service):
            wait_for(
                lambda c=container: d.health(c) == "healthy",
                timeout=180,
                what=f"{service} {container[:12]} healthy",
            )
    created = d.compose("exec", "-T", "api", "loom", "token", "create", "--local",
                        "--name", "proof", "--role", "admin", "--output", "json")  # fmt: skip
    d.token = json.loads(created)["secret"]

    with d.api() as client:
        applied = client.put("/api/v1/flows/compose-proof", json={"spec": FLOW})
        assert applied.status_code in (200, 201), applied.text
        first = wait_finished(client, trigger_and_wait(client, 6))
        assert first == ["SUCCEEDED"] * 6

        d.compose("up", "-d", "--no-recreate", "--scale", "worker=3", "worker")
        third = [c for c in d.containers("worker") if c not in workers]
        assert len(third) == 1
        wait_for(
            lambda: (
                httpx.get(f"{d.url}/readyz", timeout=5).json()["checks"].get("worker_processes")
                == "3"
            ),
            timeout=120,
            what="a third worker's heartbeat",
        )
        # A worker that finishes a step claims the steps it made ready, so the added worker
        # gets work by winning the claim of a run's first step: a race a cold worker on a
        # loaded machine may lose a dozen times. It must win within a few dozen runs.
        for _ in range(4):
            scaled = wait_finished(client, trigger_and_wait(client, 12))
            assert scaled == ["SUCCEEDED"] * 12
            if d.attempts_by(third[0]) > 0:
                break
        assert d.attempts_by(third[0]) > 0, "the added worker took no work in 48 runs"

        in_flight = trigger_and_wait(client, 12)
        time.sleep(2)  # steps are leased and running on every worker
        subprocess.run(["docker", "stop", "-t", "60", workers[0]], check=True, timeout=120)
        survived = wait_finished(client, in_flight)
        assert survived == ["SUCCEEDED"] * 12, "a stopped worker lost runs"
        for run_id in in_flight:
            steps = client.get(f"/api/v1/runs/{run_id}/steps").json()
            items = [s for s in steps if s["step_id"] == "each" and s["index"] is not None]
            assert sorted(s["output"]["item"] for s in items) == [1, 2, 3, 4, 5, 6]
