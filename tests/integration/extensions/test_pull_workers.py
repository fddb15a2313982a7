"""Pull-mode workers for real: a live API server, SDK worker processes on one queue.

The proof: two worker processes, one killed (SIGKILL) mid-task. Every task still completes
once its lease expires (redelivered with the same idempotency key), none is lost, and the
worker list shows the killed worker as lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from linkloom import config, logs, wiring
from linkloom.access import Role
from linkloom.api.app import create_app
from linkloom.flows.spec import FlowSpec
from linkloom.store import session
from linkloom.store.tokens import SqlTokenStore
from tests.support.servers import ThreadedUvicorn

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
ITEMS = 6

FLOW = {
    "id": "pull-proof",
    "steps": [
        {
            "id": "square",
            "type": "task",
            "queue": "proof",
            "task": "square",
            "for_each": list(range(ITEMS)),
            "payload": {"n": "{{ item }}", "sleep": "{{ inputs.sleep }}"},
            "timeout": 60,
        },
        {
            "id": "total",
            "type": "transform",
            "depends_on": ["square"],
            "template": "{{ steps.square.output | map(attribute='square') | sum }}",
        },
    ],
    "inputs": {"sleep": {"type": "number", "default": 0.1}},
    "outputs": {"total": "{{ steps.total.output }}"},
}


@dataclass
class Server:
    url: str
    token: str  # author
    viewer: str


async def _prepare(db_url: str) -> tuple[str, str]:
    await session.upgrade(db_url)
    settings = config.load_settings(database={"url": db_url})
    services = wiring.build_services(settings)
    try:
        await services.runs.apply_flow(FlowSpec.model_validate(FLOW), source="test")
        store = SqlTokenStore(services.db)
        author, _ = await store.create(name="worker", role=Role.author, now=datetime.now(UTC))
        viewer, _ = await store.create(name="ops", role=Role.viewer, now=datetime.now(UTC))
        return author, viewer
    finally:
        await services.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"
    author, viewer = asyncio.run(_prepare(db_url))
    http = ThreadedUvicorn()
    settings = config.load_settings(
        home=tmp_path,
        database={"url": db_url},
        server={"run_scheduler": False, "port": http.port},
        engine={"poll_interval": 0.05},
        pull={"lease_seconds": 1.5, "lost_after": 3.0},
    )
    logs.configure(
        settings, fmt="json", level="WARNING", stream=(tmp_path / "server.log").open("w")
    )
    app = create_app(settings, wiring.build_services(settings))
    try:
        with http.serving(app):
            yield Server(url=http.url, token=author, viewer=viewer)
    finally:
        logs.reset()


def _worker(server: Server, marks: Path, log: Path, concurrency: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen(
        [sys.executable, str(HERE / "pull_worker_process.py"), server.url, server.token,
         str(marks), str(concurrency)],
        env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )  # fmt: skip


def _api(server: Server, token: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=server.url + "/api/v1",
        headers={"Authorization": f"Bearer {token or server.token}"},
        timeout=30,
    )


def _wait_for(predicate, *, within: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _key(mark: Path) -> str:
    return mark.name.split("-", 1)[1].rsplit("-", 1)[0]


def _run_status(api: httpx.Client, run_id: str) -> dict:  # type: ignore[type-arg]
    return api.get(f"/runs/{run_id}").json()


@pytest.mark.slow
def test_pull_workers_one_killed_mid_task_lose_nothing(server: Server, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    api = _api(server)
    first = _worker(server, marks, tmp_path / "w1.log", concurrency=3)
    second = _worker(server, marks, tmp_path / "w2.log", concurrency=3)
    try:
        viewer = _api(server, server.viewer)
        _wait_for(
            lambda: len(viewer.get("/workers").json()["items"]) == 2,
            within=30, what="both workers to register",
        )  # fmt: skip
        run = api.post("/flows/pull-proof/runs", json={"inputs": {"sleep": 3.0}})
        assert run.status_code in (200, 201, 202), run.text
        run_id = run.json()["id"]
        # both take tasks; the first is killed while its tasks run
        _wait_for(
            lambda: list(marks.glob(f"started-*-{first.pid}"))
            and list(marks.glob(f"started-*-{second.pid}")),
            within=30, what="both workers to start tasks",
        )  # fmt: skip
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        started = {_key(p) for p in marks.glob(f"started-*-{first.pid}")}
        killed = started - {_key(p) for p in marks.glob(f"done-*-{first.pid}")}
        assert killed, "the kill came after the first worker's tasks ended"

        final = _wait_for(
            lambda: (r := _run_status(api, run_id))["status"] in ("SUCCEEDED", "FAILED") and r,
            within=60, what="the run to finish",
        )  # fmt: skip
        assert final["status"] == "SUCCEEDED", final
        assert final["outputs"] == {"total": sum(n * n for n in range(ITEMS))}
        # every task the killed worker held was redelivered to the survivor and completed there
        for key in killed:
            again = marks / f"started-{key}-{second.pid}"
            assert again.exists(), f"task {key} was not redelivered"
            assert int(again.read_text()) >= 2  # a redelivery of the same attempt
            assert (marks / f"done-{key}-{second.pid}").exists()
        done = {_key(p) for p in marks.glob("done-*")}
        assert len(done) == ITEMS  # none lost
        workers = {w["id"]: w for w in _api(server, server.viewer).get("/workers").json()["items"]}
        assert workers[f"proof-{first.pid}"]["status"] == "lost"
        assert workers[f"proof-{second.pid}"]["status"] == "active"
        assert workers[f"proof-{second.pid}"]["queues"] == ["proof"]
        # the CLI shows the same registry
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
        env.update(LOOM_SERVER_URL=server.url, LOOM_TOKEN=server.viewer,
                   XDG_CONFIG_HOME=str(tmp_path / "cfg"))  # fmt: skip
        listed = subprocess.run(
            [sys.executable, "-m", "linkloom", "worker", "list", "-o", "json"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        rows = {w["id"]: w for w in json.loads(listed.stdout)}
        assert rows[f"proof-{first.pid}"]["status"] == "lost"
        assert set(rows[f"proof-{second.pid}"]) >= {
            "host",
            "queues",
            "version",
            "last_heartbeat",
            "current_tasks",
        }
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        api.close()
