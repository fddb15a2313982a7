"""The GitOps proof with the team's git host, end to end, on PostgreSQL: a real server process
(API, workers, scheduler) whose flows repo mirrors a bare remote served over git's smart HTTP
with a token, the real example backend, and a forge double that validates every request against
GitHub's OpenAPI description.

An engineer clones the remote, edits flows/daily-report/flow.yaml on a branch and pushes; GitHub's
pull_request webhook (its published example, signed as GitHub signs) opens the proposal; the
sandbox replays recorded production runs; the forge gets a pending then a success status with
the proposal's link and one comment with the diff; a second push edits the same comment;
merging on the remote plus its webhooks promotes, and the next scheduled run uses the new
version; ``loom flow rollback`` pushes a revert commit to the remote. Then the same flow through
``loom proposal ci`` as the GitHub Actions job runs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.test_gitops import NEW_TEXT, OLD_TEXT, _tokens, _wait_http, dump, flow
from tests.support.databases import fresh_database
from tests.support.forge_double import (
    ForgeDouble,
    github_pull_request,
    github_push,
    npm_packages_installed,
    signed,
)
from tests.support.git_remotes import BareRemote, Engineer, SmartHttpServer
from tests.support.real import require
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
REPO = "acme/flows"
SECRET = "e2e-webhook-secret"
GIT_TOKEN = "e2e-git-token-value"
API_TOKEN = "e2e-forge-api-token"
SPEC = "flows/daily-report/flow.yaml"

# About 100 s alone on a quiet machine: above the suite's 120 s per-test limit under load.
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(900)]


class World:
    def __init__(self, tmp: Path, git_http: SmartHttpServer, forge: ForgeDouble) -> None:
        self.tmp = tmp
        self.git_http = git_http
        self.forge = forge
        self.backend_port = free_port()
        self.backend = f"http://127.0.0.1:{self.backend_port}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.remote = BareRemote.create(
            tmp / "srv" / "flows.git", seed={SPEC: dump(flow(self.backend))}
        )
        self.remote_url = git_http.url_for(self.remote)
        self.deliveries = 0

    def start(self, db_url: str) -> None:
        self.tokens = asyncio.run(_tokens(db_url))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
        env.update(
            {
                "LOOM_HOME": str(self.tmp / "home"),
                "LOOM_DATABASE__URL": db_url,
                "LOOM_SECURITY__SIGNING_KEY": "e2e-gitops-remote-signing-key",
                "LOOM_SERVER__PUBLIC_URL": self.url,
                "LOOM_FLOWS__REMOTE": self.remote_url,
                "LOOM_FLOWS__REMOTE_TOKEN": GIT_TOKEN,
                "LOOM_FLOWS__POLL_SECONDS": "0",
                "LOOM_FORGE__KIND": "github",
                "LOOM_FORGE__API_URL": self.forge.api_url,
                "LOOM_FORGE__TOKEN": API_TOKEN,
                "LOOM_FORGE__WEBHOOK_SECRET": SECRET,
                "LOOM_FORGE__REPO": REPO,
                "LOOM_SANDBOX__BACKEND": "process",
                "LOOM_ENGINE__RECENT_FIXTURE_RUNS": "3",
                "LOOM_ENGINE__POLL_INTERVAL": "0.05",
                "LOOM_SCHEDULER__TICK_SECONDS": "0.25",
                "LOOM_LOG__FORMAT": "json",
                "LOOM_LOG__LEVEL": "INFO",
                "PYTHONPATH": str(ROOT),
            }
        )
        backend_log = self.tmp / "backend.log"
        self.processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "examples.backend", "--port", str(self.backend_port)],
                cwd=ROOT, env=env, stdout=backend_log.open("wb"), stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        _wait_http(self.backend + "/docs", self.processes[-1], backend_log)
        self.log = self.tmp / "server.log"
        self.processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "linkloom.api.app:create_app", "--factory",
                 "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
                cwd=ROOT, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        _wait_http(self.url + "/healthz", self.processes[-1], self.log, within=180)

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
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=120)

    def send(self, event: str, payload: dict[str, Any]) -> httpx.Response:
        self.deliveries += 1
        body, headers = signed("github", event, payload, secret=SECRET,
                               delivery=f"e2e-{self.deliveries}")  # fmt: skip
        return httpx.post(self.url + "/api/v1/git/webhooks/github", content=body,
                          headers=headers, timeout=30)  # fmt: skip

    def wait(self, what: str, check: Any, *, within: float = 300) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.3)
        raise AssertionError(f"{what} did not happen:\n{self.log.read_text()[-4000:]}")

    def final_status(self, sha: str) -> dict[str, Any] | None:
        """The status once the checks are done: success or failure, or pending on a review."""
        statuses = self.forge.statuses.get(sha) or []
        last = statuses[-1] if statuses else None
        if last is None or (last["state"] == "pending" and "approval" not in last["description"]):
            return None
        return last

    def approved_status(self, sha: str) -> dict[str, Any] | None:
        statuses = self.forge.statuses.get(sha) or []
        return statuses[-1] if statuses and statuses[-1]["state"] == "success" else None

    def scheduled_run_after(self, moment: str, *, settle: float = 5.0) -> dict[str, Any]:
        """The first scheduled run created ``settle`` seconds after ``moment``: a fire the
        scheduler decided just before (every 2 s) still runs the version it was decided on."""
        since = (datetime.fromisoformat(moment) + timedelta(seconds=settle)).isoformat()

        def found() -> dict[str, Any] | None:
            with self.api("viewer") as client:
                page = client.get("/runs", params={"flow": "daily-report", "trigger": "schedule",
                                                   "since": since}).json()  # fmt: skip
            done = [r for r in page["items"] if r["status"] in ("SUCCEEDED", "FAILED")]
            return min(done, key=lambda r: r["created_at"]) if done else None

        return self.wait(f"a scheduled run after {moment}", found, within=180)  # type: ignore[no-any-return]

    def summary_text(self, run_id: str) -> str:
        with self.api("viewer") as client:
            steps = client.get(f"/runs/{run_id}/steps").json()
        items = steps["items"] if isinstance(steps, dict) else steps
        return str(next(s for s in items if s["step_id"] == "summary")["output"]["text"])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    require(npm_packages_installed(), "GitHub's npm packages are missing: scripts/provision-git")
    with (
        fresh_database("gitops_remote") as db_url,
        SmartHttpServer(tmp_path / "srv", username="x-access-token", token=GIT_TOKEN) as git,
        ForgeDouble("github", token=API_TOKEN) as forge,
    ):
        w = World(tmp_path, git, forge)
        try:
            w.start(db_url)
            yield w
        finally:
            w.stop()
        assert forge.problems == []  # every call matched GitHub's OpenAPI description
        # Every request that sent credentials sent the right ones (git's first request is
        # anonymous until the 401), and none carried the token in its URL.
        assert all(r["authorized"] for r in git.requests if r["header"])
        assert not any(GIT_TOKEN in r["path"] for r in git.requests)


def test_pull_request_to_production_and_back_through_the_team_remote(world: World) -> None:
    # Production runs are recorded: the remote's version 1, every 2 seconds.
    def recorded() -> list[Any] | None:
        with world.api("viewer") as client:
            runs = client.get("/runs", params={"flow": "daily-report",
                                               "status": "SUCCEEDED"}).json()["items"]  # fmt: skip
        return runs if len(runs) >= 3 else None

    runs = world.wait("three recorded production runs", recorded, within=180)
    assert {r["flow_version"] for r in runs} == {1}
    with world.api("viewer") as viewer:
        status = viewer.get("/repo/remote").json()
    assert status["state"] == "in-sync"
    assert status["remote"] == world.remote_url  # no credentials in what is shown

    # An engineer clones over HTTP, changes the summary on a branch and pushes.
    clone_url = world.remote_url.replace("http://", f"http://x-access-token:{GIT_TOKEN}@")
    engineer = Engineer.clone(clone_url, world.tmp / "engineer")
    engineer.branch("feature/summary")
    engineer.write(SPEC, dump(flow(world.backend, text=NEW_TEXT)))
    engineer.commit("Say how many of all")
    first = engineer.push("feature/summary")
    world.remote.set_pull_ref(1, first)
    opened = world.send("pull_request", github_pull_request(
        "opened", repo=REPO, number=1, head_sha=first, head_ref="feature/summary",
        title="Say how many of all", user="alice"))  # fmt: skip
    assert opened.status_code == 202, opened.text

    final = world.wait("the final status of the first head", lambda: world.final_status(first))
    # Results change: the status waits for a reviewer, so a protected branch waits too.
    assert final["state"] == "pending", final
    assert final["description"].startswith("results change, waiting for approval"), final
    assert final["context"] == "linkloom"
    proposal_id = final["target_url"].rsplit("/", 1)[-1]
    assert final["target_url"] == f"{world.url}/proposals/{proposal_id}"
    (comment,) = world.forge.comment_bodies(1)
    assert "- ⚠️ summary: output" in comment  # one finding, the cases folded below it
    with world.api("bob") as bob:
        assert bob.post(f"/proposals/{proposal_id}/approve").status_code == 200
    approved = world.wait("the approved status", lambda: world.approved_status(first))
    assert approved["description"].startswith("approved: "), approved
    with world.api("viewer") as viewer:
        proposal = viewer.get(f"/proposals/{proposal_id}").json()
        pull = viewer.get(f"/proposals/{proposal_id}/pull-request").json()
    assert proposal["author"] == "github:alice"
    assert proposal["head_commit"] == first
    assert pull["url"] == f"https://github.com/{REPO}/pull/1"

    # A second push: a new revision, the same comment edited.
    engineer.write(SPEC, dump(flow(world.backend, text=NEW_TEXT + "!")))
    engineer.commit("Exclaim")
    second = engineer.push("feature/summary")
    world.send("pull_request", github_pull_request(
        "synchronize", repo=REPO, number=1, head_sha=second, head_ref="feature/summary",
        user="alice"))  # fmt: skip
    world.wait("the final status of the second head", lambda: world.final_status(second))
    comments = [c for c in world.forge.comments.values() if c["number"] == 1]
    assert len(comments) == 1
    assert comments[0]["edits"] >= 2
    assert "revision 2" in comments[0]["body"]

    # Merged on the forge: the webhooks promote it; the next scheduled run uses it.
    before = world.remote.head()
    merge = world.remote.merge(
        "feature/summary", message="Merge pull request #1 from acme/feature/summary"
    )
    world.send("push", github_push(repo=REPO, ref="refs/heads/main", before=before, after=merge,
                                   pusher="bob"))  # fmt: skip
    world.send("pull_request", github_pull_request(
        "closed", repo=REPO, number=1, head_sha=second, head_ref="feature/summary",
        merged_by="bob", merge_commit=merge))  # fmt: skip

    def promoted() -> dict[str, Any] | None:
        with world.api("viewer") as viewer:
            found = viewer.get(f"/proposals/{proposal_id}").json()
        return found if found["status"] == "promoted" else None

    done = world.wait("the promotion", promoted)
    assert done["promoted_commit"] == merge
    assert done["promoted_versions"] == {"daily-report": 2}
    run = world.scheduled_run_after(done["updated_at"])
    assert run["flow_version"] == 2
    assert world.summary_text(run["id"]) == "4 of 5 records valid!"
    with world.api("ops") as ops:
        entries = ops.get("/audit", params={"object_id": proposal_id, "limit": 100}).json()
    promote = next(e for e in entries["items"] if e["action"] == "proposal.promote")
    assert promote["actor"] == "github:bob"

    # Rollback in Link Loom pushes a revert commit to the remote, never forced.
    from typer.testing import CliRunner

    from linkloom.cli.main import app as cli_app

    rolled = CliRunner().invoke(
        cli_app, ["flow", "rollback", "daily-report", "--to", "1"],
        env={"LOOM_SERVER_URL": world.url, "LOOM_TOKEN": world.tokens["bob"]},
    )  # fmt: skip
    assert rolled.exit_code == 0, rolled.output
    assert "restored as version 3" in rolled.output
    assert world.remote.log()[0].endswith("Roll back daily-report to version 1")
    assert merge in world.remote.log()[1]
    text = yaml.safe_load(world.remote.file_at("main", SPEC))["steps"][-1]["template"]["text"]
    assert text == OLD_TEXT
    with world.api("viewer") as viewer:
        assert viewer.get("/repo/remote").json()["state"] == "in-sync"

    # The same change through CI mode, as the GitHub Actions job runs it.
    engineer.branch("feature/ci")
    engineer.write(SPEC, dump(flow(world.backend, text=NEW_TEXT)))
    engineer.commit("Again, from CI")
    head = engineer.push("feature/ci")
    event = github_pull_request("opened", repo=REPO, number=2, head_sha=head,
                                head_ref="feature/ci", title="Again, from CI")  # fmt: skip
    (world.tmp / "event.json").write_text(json.dumps(event))
    summary = world.tmp / "summary.md"
    job = yaml.safe_load((ROOT / "examples/ci/github-actions.yml").read_text())
    step = next(s for s in job["jobs"]["proposal"]["steps"] if s.get("name") == "proposal")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOOM_")},
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "GITHUB_ACTIONS": "true", "GITHUB_EVENT_PATH": str(world.tmp / "event.json"),
        "GITHUB_REPOSITORY": REPO, "GITHUB_BASE_REF": "main", "GITHUB_HEAD_REF": "feature/ci",
        "GITHUB_STEP_SUMMARY": str(summary),
        "LOOM_SERVER_URL": world.url, "LOOM_TOKEN": world.tokens["ann"],
    }  # fmt: skip
    done_ci = subprocess.run(["bash", "-c", step["run"]], cwd=engineer.work, env=env,
                             capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    out = done_ci.stdout + done_ci.stderr
    assert done_ci.returncode == 0, out  # exit 8 (results differ) passes with a warning
    assert re.search(r"proposal \w+ revision 1: attention", out), out
    assert "::warning::Link Loom: results differ from production" in out
    assert "- ⚠️ summary: output" in summary.read_text()

    # Credentials never reach the logs, the audit log or the API.
    with world.api("ops") as ops:
        audit = ops.get("/audit", params={"limit": 1000}).text
        remote = ops.get("/repo/remote").text
    for secret in (GIT_TOKEN, API_TOKEN, SECRET):
        assert secret not in world.log.read_text()
        assert secret not in audit + remote
