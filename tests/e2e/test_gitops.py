"""The GitOps proof, end to end: a real server process (API, workers and scheduler), a real git
flows repo, the real example backend and a real Docker engine running the sandbox.

Production runs of daily-report are recorded (an every-2-seconds schedule); an engineer changes
one transform step's template with ``loom proposal open``; the sandbox replays recent production
runs in docker; the diff shows exactly that output change and nothing else; the author's own
approval is refused; another reviewer approves; promotion makes a commit on main; the next
scheduled run uses the new version; rollback restores the old one. A second proposal that calls
a new endpoint shows the call as unrecorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import git
import httpx
import pytest
import yaml
from typer.testing import CliRunner

from linkloom.access import Role
from linkloom.cli.main import app as cli_app
from linkloom.sandbox.docker import docker_available, image_exists
from linkloom.store import session
from linkloom.store.tokens import SqlTokenStore
from linkloom.testing import SystemClock
from tests.support.real import require
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SIGNING_KEY = "e2e-gitops-signing-key"
IMAGE = "linkloom/sandbox:latest"
OLD_TEXT = "{{ steps.process.outputs.valid }} valid records"
NEW_TEXT = "{{ steps.process.outputs.valid }} of {{ steps.fetch_data.outputs.count }} records valid"

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def flow(backend: str, *, text: str = OLD_TEXT, extra: list[dict[str, Any]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    spec = yaml.safe_load((ROOT / "examples/flows/daily-report/flow.yaml").read_text())
    for step in spec["steps"]:
        step["url"] = step["url"].replace("http://127.0.0.1:8081", backend)
    spec["inputs"]["count"]["default"] = 5
    spec["schedules"] = [{"id": "often", "interval": "2s"}]
    spec["defaults"]["retry"] = {"max_attempts": 1}
    spec["steps"].append(
        {
            "id": "summary",
            "type": "transform",
            "depends_on": ["send_email"],
            "template": {"text": text, "to": "{{ steps.send_email.output.to }}"},
        }
    )
    spec["steps"].extend(extra)
    return spec


def dump(spec: dict[str, Any]) -> str:
    return yaml.safe_dump(spec, sort_keys=False)


async def _tokens(url: str) -> dict[str, str]:
    await session.upgrade(url)
    db = session.Database(url)
    store = SqlTokenStore(db)
    out = {}
    for name, role in (
        ("ann", Role.reviewer),
        ("bob", Role.reviewer),
        ("ops", Role.admin),
        ("viewer", Role.viewer),
    ):
        out[name], _ = await store.create(name=name, role=role, now=SystemClock().now())
    await db.dispose()
    return out


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{log.read_text()[-3000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start:\n{log.read_text()[-3000:]}")


class World:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.backend_port = free_port()
        self.backend = f"http://127.0.0.1:{self.backend_port}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = tmp / "home"
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        seed = self.tmp / "seed" / "daily-report"
        seed.mkdir(parents=True)
        (seed / "flow.yaml").write_text(dump(flow(self.backend)))
        db_url = f"sqlite+aiosqlite:///{self.tmp / 'loom.db'}"
        self.tokens = asyncio.run(_tokens(db_url))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
        env.update(
            {
                "LOOM_HOME": str(self.home),
                "LOOM_DATABASE__URL": db_url,
                "LOOM_SECURITY__SIGNING_KEY": SIGNING_KEY,
                "LOOM_FLOWS__SEED_FROM": str(self.tmp / "seed"),
                "LOOM_SANDBOX__BACKEND": "docker",
                "LOOM_ENGINE__RECENT_FIXTURE_RUNS": "3",
                "LOOM_ENGINE__POLL_INTERVAL": "0.05",
                "LOOM_SCHEDULER__TICK_SECONDS": "0.25",
                "LOOM_LOG__FORMAT": "json",
                "LOOM_LOG__LEVEL": "WARNING",
                "PYTHONPATH": str(ROOT),
            }
        )
        backend_log = self.tmp / "backend.log"
        self.processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "examples.backend", "--port", str(self.backend_port)],
                cwd=ROOT,
                env=env,
                stdout=backend_log.open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        _wait_http(self.backend + "/docs", self.processes[-1], backend_log)
        self.log = self.tmp / "server.log"
        self.processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "linkloom.api.app:create_app", "--factory",
                 "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
                cwd=ROOT,
                env=env,
                stdout=self.log.open("wb"),
                stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        _wait_http(self.url + "/healthz", self.processes[-1], self.log)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def api(self, who: str = "ops") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=60)

    def loom(self, who: str, *args: str) -> Any:
        """Run a ``loom`` command as ``who`` against the server (in process, real HTTP)."""
        env = {"LOOM_SERVER_URL": self.url, "LOOM_TOKEN": self.tokens[who]}
        return CliRunner().invoke(cli_app, list(args), env=env)

    def scheduled_run_after(
        self, moment: str, *, within: float = 30, settle: float = 5.0
    ) -> dict[str, Any]:
        """The first finished scheduled run created ``settle`` seconds after ``moment``: a fire
        the scheduler decided just before (every 2 s) still runs the version it was decided on."""
        since = (datetime.fromisoformat(moment) + timedelta(seconds=settle)).isoformat()
        deadline = time.monotonic() + within
        with self.api("viewer") as client:
            while time.monotonic() < deadline:
                page = client.get(
                    "/runs", params={"flow": "daily-report", "trigger": "schedule", "since": since}
                ).json()
                done = [r for r in page["items"] if r["status"] in ("SUCCEEDED", "FAILED")]
                if done:
                    return min(done, key=lambda r: r["created_at"])
                time.sleep(0.2)
        raise AssertionError(f"no scheduled run after {moment}:\n{self.log.read_text()[-2000:]}")

    def summary_output(self, run_id: str) -> Any:
        with self.api("viewer") as client:
            steps = client.get(f"/runs/{run_id}/steps").json()
        items = steps["items"] if isinstance(steps, dict) else steps
        return next(s for s in items if s["step_id"] == "summary")["output"]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    require(
        docker_available() and image_exists(IMAGE),
        f"no Docker engine or no {IMAGE}: run scripts/provision-docker",
    )
    w = World(tmp_path)
    try:
        w.start()
        yield w
    finally:
        w.stop()


def test_gitops_end_to_end_with_docker_sandbox(world: World) -> None:
    with world.api() as ops:
        synced = ops.post("/repo/sync").json()
        assert synced["flows"]["daily-report"]["version"] == 1, synced
    repo = git.Repo(world.home / "flows")
    # Production runs are recorded: at least three scheduled runs of version 1.
    start = time.monotonic()
    first = world.scheduled_run_after("2000-01-01T00:00:00+00:00", settle=0)
    assert first["flow_version"] == 1
    while time.monotonic() - start < 30:
        with world.api("viewer") as client:
            runs = client.get(
                "/runs", params={"flow": "daily-report", "status": "SUCCEEDED"}
            ).json()["items"]
        if len(runs) >= 3:
            break
        time.sleep(0.5)
    assert len(runs) >= 3
    assert world.summary_output(first["id"]) == {
        "text": "4 valid records",
        "to": "admin@example.com",
    }

    # An engineer edits the transform in a checkout of the flows repo and opens a proposal.
    checkout = world.tmp / "checkout"
    git.Repo.clone_from(world.home / "flows", checkout)
    spec_file = checkout / "flows" / "daily-report" / "flow.yaml"
    spec_file.write_text(dump(flow(world.backend, text=NEW_TEXT)))
    opened = world.loom(
        "ann", "proposal", "open", str(spec_file), "-m", "Say how many of all", "-o", "json"
    )
    assert opened.exit_code == 0, opened.output
    proposal = json.loads(opened.output)
    pid = proposal["id"]
    assert proposal["status"] == "ready-for-review", proposal
    # The summary's text changes in every case: the diff check asks a reviewer to look.
    statuses = [c["status"] for c in proposal["checks"]]
    assert statuses == ["passed", "passed", "passed", "attention"], proposal["checks"]
    assert repo.commit(f"proposals/{pid}").message.startswith("Say how many of all")

    with world.api("viewer") as viewer:
        checks = {c["name"]: c for c in viewer.get(f"/proposals/{pid}/checks").json()}
        diff = viewer.get(f"/proposals/{pid}/diff").json()
        plan = viewer.get(f"/proposals/{pid}/plan").json()
    assert checks["sandbox"]["details"]["backend"] == "docker"
    assert "network: none" in checks["sandbox"]["details"]["flows"]["daily-report"]["isolation"]
    assert diff["backend"] == "docker"
    flow_diff = diff["flows"]["daily-report"]
    assert flow_diff["summary"]["cases"] == 3
    for case in flow_diff["cases"]:
        changes = {s["step_id"]: s["change"] for s in case["steps"]}
        assert changes == {
            "fetch_data": "unchanged",
            "process": "unchanged",
            "send_email": "unchanged",
            "summary": "changed",
        }, case
        (summary,) = [s for s in case["steps"] if s["step_id"] == "summary"]
        assert [(c["path"], c["production"], c["proposed"]) for c in summary["changes"]] == [
            ("output.text", "4 valid records", "4 of 5 records valid")
        ]
        assert case["unrecorded"] == []
        assert case["changed_requests"] == []
        assert case["run_output_changes"] == []
    assert any("~ step summary: template.text" in line for line in plan["text"])
    rendered = world.loom("viewer", "proposal", "diff", pid, "--cases")
    assert rendered.exit_code == 8, rendered.output  # attention
    assert "summary: output.text" in rendered.output  # the finding
    assert "4 of 5 records valid" in rendered.output  # the per-case table

    # The author's own approval is refused; another reviewer approves; promotion merges.
    refused = world.loom("ann", "proposal", "approve", pid)
    # (CliRunner skips main()'s error printing; the error carries the exit code it maps to.)
    assert getattr(refused.exception, "exit_code", None) == 5, refused.output
    assert "cannot approve their own" in str(refused.exception)
    approved = world.loom("bob", "proposal", "approve", pid, "-m", "good", "-o", "json")
    assert approved.exit_code == 0, approved.output
    assert json.loads(approved.output)["status"] == "approved"
    promoted = world.loom("bob", "proposal", "promote", pid, "-o", "json")
    assert promoted.exit_code == 0, promoted.output
    result = json.loads(promoted.output)
    assert result["status"] == "promoted"
    assert result["promoted_versions"] == {"daily-report": 2}
    head = repo.commit("main")
    assert head.hexsha == result["promoted_commit"]
    assert f"Promote proposal {pid}" in head.message
    assert "Approved-by: bob" in head.message
    assert len(head.parents) == 2  # a real merge commit of proposals/<id>
    promoted_at = result["updated_at"]

    # The next scheduled run uses the new version.
    run = world.scheduled_run_after(promoted_at)
    assert run["flow_version"] == 2
    assert world.summary_output(run["id"])["text"] == "4 of 5 records valid"

    # Rollback restores the old spec with a commit on main and a new version.
    rolled = world.loom("bob", "flow", "rollback", "daily-report", "--to", "1")
    assert rolled.exit_code == 0, rolled.output
    assert "restored as version 3" in rolled.output
    main = repo.commit("main")
    assert main.message.startswith("Roll back daily-report to version 1")
    assert (
        yaml.safe_load(main.tree["flows/daily-report/flow.yaml"].data_stream.read())["steps"][-1][
            "template"
        ]["text"]
        == OLD_TEXT
    )
    with world.api("viewer") as viewer:
        rolled_at = viewer.get("/flows/daily-report/history").json()[0]["created_at"]
    run = world.scheduled_run_after(rolled_at)
    assert run["flow_version"] == 3
    assert world.summary_output(run["id"])["text"] == "4 valid records"
    history = world.loom("viewer", "flow", "history", "daily-report")
    assert history.exit_code == 0, history.output
    assert "rollback" in history.output
    assert "promotion" in history.output

    # A second proposal calls an endpoint production never called: listed as unrecorded.
    audit_step = {
        "id": "audit",
        "type": "http",
        "url": f"{world.backend}/api/tasks/audit-trail",
        "depends_on": ["summary"],
    }
    with world.api("ann") as ann:
        second = ann.post(
            "/proposals",
            json={"title": "Audit trail", "specs": [dump(flow(world.backend, extra=[audit_step]))]},
        ).json()
    with world.api("viewer") as viewer:
        diff = viewer.get(f"/proposals/{second['id']}/diff").json()
    assert diff["attention"] is True
    for case in diff["flows"]["daily-report"]["cases"]:
        assert [(u["method"], u["url"]) for u in case["unrecorded"]] == [
            ("POST", f"{world.backend}/api/tasks/audit-trail")
        ]
        (audit,) = [s for s in case["steps"] if s["step_id"] == "audit"]
        assert audit["change"] == "newly_failing"  # an added step that fails
        assert "unrecorded request: POST" in audit["proposed_error"]
    assert diff["status"] == "failed"

    with world.api("ops") as ops:
        entries = ops.get("/audit", params={"object_id": pid, "limit": 100}).json()["items"]
    actions = {(e["actor"], e["action"]) for e in entries}
    assert {("ann", "proposal.open"), ("ann", "proposal.approve_refused"),
            ("bob", "proposal.approve"), ("bob", "proposal.promote")} <= actions  # fmt: skip
