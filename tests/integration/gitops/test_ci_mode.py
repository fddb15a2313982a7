"""``loom proposal ci`` as the shipped CI jobs run it: the commands of examples/ci/*.yml, run
with the environment GitHub Actions and GitLab CI give a job, in an engineer's real checkout,
against a real server (uvicorn on a port) whose flows repo mirrors a real remote."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml

from linkloom import config, wiring
from linkloom.access import Role
from linkloom.api.app import create_app
from tests.support.forge_double import github_pull_request, npm_packages_installed
from tests.support.git_remotes import BareRemote, Engineer
from tests.support.real import require
from tests.support.servers import free_port

pytestmark = pytest.mark.timeout(300)  # real servers and sandboxes: slow under load

ROOT = Path(__file__).resolve().parents[3]
REPO = "acme/flows"
SECRET = "ci-mode-webhook-secret"


def spec(*, to: str = "ops", broken: bool = False) -> str:
    flow: dict[str, Any] = {
        "id": "report",
        "inputs": {"to": {"type": "string", "default": to}},
        "steps": [{"id": "shape", "type": "transform", "template": {"to": "{{ inputs.to }}"}}],
    }
    if broken:
        flow["steps"][0]["depends_on"] = ["missing"]
    return yaml.safe_dump(flow, sort_keys=False)


@dataclass
class Server:
    url: str
    token: str
    app: Any


@pytest.fixture
def remote(tmp_path: Path) -> BareRemote:
    seed = {"flows/report/flow.yaml": spec()}
    return BareRemote.create(tmp_path / "srv" / "flows.git", seed=seed)


async def serve(tmp_path: Path, **overrides: Any) -> AsyncIterator[Server]:
    port = free_port()
    settings = config.load_settings(
        home=tmp_path / "home",
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"},
        server={"public_url": f"http://127.0.0.1:{port}", "run_scheduler": False},
        security={"signing_key": "ci-mode-signing-key"},
        sandbox={"backend": "process"},
        **overrides,
    )
    app = create_app(settings, wiring.build_services(settings))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(60):
        while not server.started:
            if task.done():
                task.result()  # it failed to start: say why
            await asyncio.sleep(0.05)
    secret, _ = await app.state.services.tokens.create(
        name="ci", role=Role.author, now=app.state.services.runs.clock.now()
    )
    try:
        yield Server(url=f"http://127.0.0.1:{port}", token=secret, app=app)
    finally:
        server.should_exit = True
        await task


def job_commands(path: Path) -> tuple[list[str], dict[str, str]]:
    """The shell commands a CI file's Link Loom job runs (installing Link Loom excepted: this
    checkout's ``loom`` is on the PATH), and the environment it sets."""
    data = yaml.safe_load(path.read_text())
    if "jobs" in data:  # GitHub Actions
        steps = data["jobs"]["proposal"]["steps"]
        step = next(s for s in steps if s.get("name") == "proposal")
        return [step["run"]], dict(step.get("env") or {})
    job = data["linkloom"]
    return list(job["script"]), {k: str(v) for k, v in (job.get("variables") or {}).items()}


async def run_job(commands: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    bin_dir = str(Path(sys.executable).parent)
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOOM_")},
        **env,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    script = "set -e\n" + "\n".join(commands)
    done = await asyncio.to_thread(
        subprocess.run, ["bash", "-c", script], cwd=cwd, env=full, capture_output=True,
        text=True, timeout=600, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def github_env(server: Server, event: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(event))
    summary = tmp_path / "summary.md"
    summary.write_text("")
    pr = event["pull_request"]
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_PATH": str(event_path),
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_BASE_REF": pr["base"]["ref"],
        "GITHUB_HEAD_REF": pr["head"]["ref"],
        "GITHUB_SHA": "0" * 40,  # on pull_request events: the merge commit, not the head
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_STEP_SUMMARY": str(summary),
        "LOOM_SERVER_URL": server.url,
        "LOOM_TOKEN": server.token,
    }


async def test_the_github_actions_job_reports_and_exits_like_checks_wait(
    tmp_path: Path, remote: BareRemote
) -> None:
    require(npm_packages_installed(), "GitHub's npm packages are missing: scripts/provision-git")
    async for server in serve(
        tmp_path,
        flows={"remote": remote.file_url, "poll_seconds": 0},
        forge={"kind": "github", "webhook_secret": SECRET, "repo": REPO},
    ):
        engineer = Engineer.clone(remote.file_url, tmp_path / "eng")
        engineer.branch("feature/team")
        engineer.write("flows/report/flow.yaml", spec(to="team"))
        engineer.commit("Report to the team")
        head = engineer.push("feature/team")
        event = github_pull_request("opened", repo=REPO, number=3, head_sha=head,
                                    head_ref="feature/team")  # fmt: skip
        commands, job_env = job_commands(ROOT / "examples/ci/github-actions.yml")
        env = github_env(server, event, tmp_path)
        assert set(job_env) == {"LOOM_SERVER_URL", "LOOM_TOKEN"}  # what the job passes through

        code, out = await run_job(commands, cwd=engineer.work, env=env)
        assert code == 0, out
        match = re.search(r"proposal (\w+) revision 1: passed", out)
        assert match, out
        summary = await asyncio.to_thread(Path(env["GITHUB_STEP_SUMMARY"]).read_text)
        assert f"Link Loom: proposal [`{match[1]}`]" in summary
        proposal = await server.app.state.services.gitops.sync.service.get(match[1])
        assert proposal.head_commit == head  # the pull request's own commit is the revision

        code, out = await run_job(commands, cwd=engineer.work, env=env)
        assert code == 0, out
        assert f"proposal {match[1]} revision 1: passed" in out  # same head: same revision

        code, shown = await run_job([f"loom proposal show {match[1]}"], cwd=tmp_path, env=env)
        assert code == 0, shown
        assert f"pull request https://github.com/{REPO}/pull/3 (github {REPO}#3)" in shown
        assert f"head {head[:12]}" in shown

        engineer.write("flows/report/flow.yaml", spec(broken=True))
        engineer.commit("Break it")
        broken = engineer.push("feature/team")
        event["pull_request"]["head"]["sha"] = broken
        code, out = await run_job(commands, cwd=engineer.work,
                                  env=github_env(server, event, tmp_path))  # fmt: skip
        assert code == 1, out
        assert "::error file=flows/report/flow.yaml,line=" in out
        assert f"proposal {match[1]} revision 2: failed" in out


async def test_the_gitlab_ci_job_works_without_a_forge_configured(
    tmp_path: Path, remote: BareRemote
) -> None:
    async for server in serve(tmp_path):  # no remote: the files are what is proposed
        engineer = Engineer.clone(remote.file_url, tmp_path / "eng")
        engineer.branch("mr-branch")
        engineer.write("flows/report/flow.yaml", spec(to="gitlab"))
        head = engineer.commit("For GitLab")
        commands, job_env = job_commands(ROOT / "examples/ci/gitlab-ci.yml")
        env = {
            **job_env,
            "GITLAB_CI": "true",
            "CI_PROJECT_PATH": "group/flows",
            "CI_PROJECT_URL": "https://gitlab.example.org/group/flows",
            "CI_MERGE_REQUEST_IID": "17",
            "CI_COMMIT_SHA": head,
            "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
            "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "mr-branch",
            "CI_MERGE_REQUEST_TITLE": "For GitLab",
            "LOOM_SERVER_URL": server.url,
            "LOOM_TOKEN": server.token,
        }
        code, out = await run_job(commands, cwd=engineer.work, env=env)
        assert code == 0, out
        assert re.search(r"proposal \w+ revision 1: passed", out), out
        assert "report" in out
