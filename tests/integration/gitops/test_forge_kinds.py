"""GitLab and Gitea/Forgejo speak their own dialects: GitLab's documented Merge Request Hook and
Push Hook with X-Gitlab-Token, Gitea's pull_request with its bare X-Gitea-Signature; reports go to
each one's commit status and note/comment APIs, checked against their documented shapes."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from linkloom.forges.models import ForgeKind
from tests.acceptance.api.api_harness import BACKEND, Api, start_api
from tests.support.forge_double import (
    ForgeDouble,
    github_pull_request,
    npm_packages_installed,
    signed,
)
from tests.support.git_remotes import BareRemote, Engineer
from tests.support.real import require

pytestmark = pytest.mark.timeout(300)  # real servers and sandboxes: slow under load

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "forges"
SECRET = "forge-kinds-secret"
TOKEN = "glpat-or-gitea-token"


def spec(to: str) -> str:
    return yaml.safe_dump(
        {
            "id": "report",
            "inputs": {"to": {"type": "string", "default": to}},
            "steps": [
                {"id": "fetch", "type": "http", "url": f"{BACKEND}/report"},
                {"id": "shape", "type": "transform", "depends_on": ["fetch"],
                 "template": {"to": "{{ inputs.to }}"}},
            ],
        },
        sort_keys=False,
    )  # fmt: skip


async def started(tmp_path: Path, kind: str, repo: str) -> tuple[Api, Any, BareRemote, ForgeDouble]:
    remote = BareRemote.create(
        tmp_path / "srv" / "flows.git", seed={"flows/report/flow.yaml": spec("ops")}
    )
    forge = ForgeDouble(kind, token=TOKEN).__enter__()
    api, lifespan = await start_api(
        f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}", tmp_path / "home",
        flows={"remote": remote.file_url, "poll_seconds": 0},
        forge={"kind": kind, "api_url": forge.api_url, "token": TOKEN, "webhook_secret": SECRET,
               "repo": repo, "report_retry_seconds": 0.2},
        sandbox={"backend": "process"},
    )  # fmt: skip
    return api, lifespan, remote, forge


async def deliver(api: Api, kind: str, event: str, payload: dict[str, Any], n: int,
                  **options: Any) -> Any:  # fmt: skip
    body, headers = signed(kind, event, payload, secret=SECRET, delivery=f"delivery-{n}")
    for name in options.get("drop", ()):
        headers.pop(name)
    async with api.client(None) as anonymous:
        return await anonymous.post(f"/api/v1/git/webhooks/{kind}", content=body, headers=headers)


async def settle(api: Api, forge: ForgeDouble, sha: str) -> list[str]:
    service = api.services.gitops.forge
    await service.drain(within=60)
    async with asyncio.timeout(60):
        while True:
            await service.report_due()
            states = [s["state"] for s in forge.statuses.get(sha, [])]
            if states and states[-1] not in ("pending", "running"):
                return states
            await asyncio.sleep(0.1)


def merge_request(action: str, *, iid: int, sha: str, branch: str, oldrev: str | None = None,
                  user: str = "root") -> dict[str, Any]:  # fmt: skip
    payload = copy.deepcopy(json.loads((FIXTURES / "gitlab_merge_request_hook.json").read_text()))
    payload["project"]["path_with_namespace"] = "platform/Flows"
    payload["user"]["username"] = user
    mr = payload["object_attributes"]
    mr.update(iid=iid, action=action, source_branch=branch, target_branch="main",
              url=f"https://gitlab.example.org/platform/Flows/-/merge_requests/{iid}")  # fmt: skip
    mr["last_commit"]["id"] = sha
    if oldrev:
        mr["oldrev"] = oldrev
    return payload


@pytest.fixture
async def gitlab(tmp_path: Path) -> AsyncIterator[tuple[Api, BareRemote, ForgeDouble, Engineer]]:
    api, lifespan, remote, forge = await started(tmp_path, "gitlab", "platform/flows")
    try:
        yield api, remote, forge, Engineer.clone(remote.file_url, tmp_path / "eng")
    finally:
        await lifespan.__aexit__(None, None, None)
        forge.__exit__(None, None, None)
    assert forge.problems == []  # every call matched GitLab's documented request shapes


async def test_a_gitlab_merge_request_is_a_proposal_with_a_status_and_one_note(
    gitlab: tuple[Api, BareRemote, ForgeDouble, Engineer],
) -> None:
    api, remote, forge, engineer = gitlab
    engineer.branch("mr-1")
    engineer.write("flows/report/flow.yaml", spec("gitlab"))
    engineer.commit("GitLab change")
    first = engineer.push("mr-1")
    remote.set_pull_ref(4, first, prefix="refs/merge-requests")
    opened = await deliver(api, "gitlab", "Merge Request Hook",
                           merge_request("open", iid=4, sha=first, branch="mr-1"), 1)  # fmt: skip
    assert opened.status_code == 202, opened.text
    states = await settle(api, forge, first)
    assert states[0] == "running"  # GitLab's word for pending
    assert states[-1] == "success"
    assert forge.statuses[first][-1]["name"] == "linkloom"
    (note,) = forge.comment_bodies(4)
    assert "<!-- linkloom:proposal -->" in note

    retitled = merge_request("update", iid=4, sha=first, branch="mr-1")
    answer = await deliver(api, "gitlab", "Merge Request Hook", retitled, 2)
    assert "changes nothing here" in answer.json()["reason"]  # an update without new commits

    engineer.write("flows/report/flow.yaml", spec("gitlab-2"))
    engineer.commit("Again")
    second = engineer.push("mr-1")
    pushed = merge_request("update", iid=4, sha=second, branch="mr-1", oldrev=first)
    assert (await deliver(api, "gitlab", "Merge Request Hook", pushed, 3)).status_code == 202
    await settle(api, forge, second)
    (note,) = forge.comment_bodies(4)
    assert "revision 2" in note

    replay = await deliver(api, "gitlab", "Merge Request Hook", pushed, 3)
    assert replay.status_code == 401
    assert replay.json()["code"] == "webhook_replayed"
    wrong = await deliver(api, "gitlab", "Merge Request Hook", pushed, 9, drop=("X-Gitlab-Token",))
    assert wrong.json()["code"] == "webhook_rejected"

    before = remote.head()
    merge = remote.merge("mr-1", message="Merge branch 'mr-1' into 'main'\n\nSee merge request "
                         "platform/flows!4", author="Maintainer <m@example.org>")  # fmt: skip
    push = json.loads((FIXTURES / "gitlab_push_hook.json").read_text())
    push.update(ref="refs/heads/main", before=before, after=merge, user_username="maintainer")
    push["project"]["path_with_namespace"] = "platform/flows"
    assert (await deliver(api, "gitlab", "Push Hook", push, 4)).status_code == 202
    await api.services.gitops.forge.drain(within=60)
    link = await api.services.gitops.forge.store.get_link(ForgeKind.GITLAB, "platform/flows", 4)
    proposal = await api.services.gitops.sync.service.get(link.proposal_id)
    assert proposal.status.value == "promoted"
    assert (await api.services.runs.get_spec("report")).inputs["to"].default == "gitlab-2"


async def test_a_gitea_pull_request_signed_with_its_bare_signature(tmp_path: Path) -> None:
    require(npm_packages_installed(), "GitHub's npm packages are missing: scripts/provision-git")
    api, lifespan, remote, forge = await started(tmp_path, "gitea", "team/flows")
    try:
        engineer = Engineer.clone(remote.file_url, tmp_path / "eng")
        engineer.branch("gitea-pr")
        engineer.write("flows/report/flow.yaml", spec("gitea"))
        engineer.commit("Gitea change")
        sha = engineer.push("gitea-pr")
        payload = github_pull_request("opened", repo="team/flows", number=2, head_sha=sha,
                                      head_ref="gitea-pr")  # fmt: skip
        answer = await deliver(api, "gitea", "pull_request", payload, 1,
                               drop=("X-Hub-Signature-256",))  # fmt: skip
        assert answer.status_code == 202, answer.text
        states = await settle(api, forge, sha)
        assert states[-1] == "success"
        assert forge.statuses[sha][-1]["context"] == "linkloom"
        assert len(forge.comment_bodies(2)) == 1
        assert forge.problems == []
    finally:
        await lifespan.__aexit__(None, None, None)
        forge.__exit__(None, None, None)
