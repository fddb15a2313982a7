"""Pull requests are proposals: GitHub's published webhook payloads, signed as GitHub signs them,
arrive at the server; branches are pushed to a real remote with the git CLI; the results go back
to a forge double that validates every request against GitHub's OpenAPI description."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from linkloom.access import AuditFilter, Role
from tests.acceptance.api.api_harness import BACKEND, Api, start_api
from tests.support.forge_double import (
    ForgeDouble,
    github_pull_request,
    github_push,
    npm_packages_installed,
    signed,
)
from tests.support.git_remotes import BareRemote, Engineer, git
from tests.support.real import require

pytestmark = pytest.mark.timeout(300)  # real servers and sandboxes: slow under load

REPO = "Acme-Corp/flows"
SECRET = "whsec-forge-test"
TOKEN = "ghs_forge_api_token"


def spec(flow_id: str, *, to: str = "ops", broken: bool = False) -> str:
    flow: dict[str, Any] = {
        "id": flow_id,
        "inputs": {"to": {"type": "string", "default": to}},
        "steps": [
            {"id": "fetch", "type": "http", "method": "POST", "url": f"{BACKEND}/{flow_id}",
             "body": {"to": "{{ inputs.to }}"}},
            {"id": "shape", "type": "transform", "depends_on": ["fetch"],
             "template": {"to": "{{ inputs.to }}"}},
        ],
    }  # fmt: skip
    if broken:
        flow["steps"][1]["template"] = {"to": "{{ steps.nowhere.output }}"}
    return yaml.safe_dump(flow, sort_keys=False)


@dataclass
class World:
    api: Api
    remote: BareRemote
    forge: ForgeDouble
    engineer: Engineer
    deliveries: int = 0

    @property
    def service(self) -> Any:
        return self.api.services.gitops.forge

    async def send(self, event: str, payload: dict[str, Any], *, delivery: str | None = None,
                   secret: str = SECRET) -> Any:  # fmt: skip
        self.deliveries += 1
        body, headers = signed(
            "github", event, payload, secret=secret, delivery=delivery or f"d-{self.deliveries}"
        )
        async with self.api.client(None) as anonymous:
            return await anonymous.post("/api/v1/git/webhooks/github", content=body,
                                        headers=headers)  # fmt: skip

    async def settle(self, sha: str, *, state: str | None = None, within: float = 60) -> None:
        """Deliveries handled and the report on ``sha`` final (or in ``state``)."""
        await self.service.drain(within=within)
        async with asyncio.timeout(within):
            while True:
                await self.service.report_due()
                states = [s["state"] for s in self.forge.statuses.get(sha, [])]
                if states and (states[-1] == state if state else states[-1] != "pending"):
                    return
                await asyncio.sleep(0.1)

    def push_branch(self, branch: str, files: dict[str, str], message: str) -> str:
        self.engineer.branch(branch)
        for path, text in files.items():
            self.engineer.write(path, text)
        self.engineer.commit(message)
        return self.engineer.push(branch)

    def pull_heads(self) -> dict[int, str]:
        """``git for-each-ref refs/loom/pull`` in the server's flows repo: the fetched heads."""
        out = git("for-each-ref", "--format=%(refname) %(objectname)", "refs/loom/pull",
                  cwd=self.service.sync.remote.repo.path)  # fmt: skip
        pairs = (line.split() for line in out.splitlines())
        return {int(ref.rsplit("/", 1)[1]): sha for ref, sha in pairs}

    def opened(self, number: int, sha: str, branch: str, **kw: Any) -> dict[str, Any]:
        return github_pull_request("opened", repo=REPO, number=number, head_sha=sha,
                                   head_ref=branch, **kw)  # fmt: skip


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    require(npm_packages_installed(), "GitHub's npm packages are missing: scripts/provision-git")
    remote = BareRemote.create(
        tmp_path / "srv" / "flows.git",
        seed={"flows/report/flow.yaml": spec("report"), "flows/audit/flow.yaml": spec("audit")},
    )
    with ForgeDouble("github", token=TOKEN) as forge:
        url = f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"
        api, lifespan = await start_api(
            url, tmp_path / "home",
            flows={"remote": remote.file_url, "poll_seconds": 0},
            forge={"kind": "github", "api_url": forge.api_url, "token": TOKEN,
                   "webhook_secret": SECRET, "repo": REPO, "report_retry_seconds": 0.2},
            sandbox={"backend": "process"},
            server={"public_url": "https://loom.example.org"},
        )  # fmt: skip
        try:
            yield World(api=api, remote=remote, forge=forge,
                        engineer=Engineer.clone(remote.file_url, tmp_path / "eng"))  # fmt: skip
        finally:
            await lifespan.__aexit__(None, None, None)
    assert forge.problems == []  # every request matched GitHub's OpenAPI description


async def test_a_pull_request_opens_a_proposal_and_gets_a_status_and_one_comment(
    world: World,
) -> None:
    sha = world.push_branch("feature/team", {"flows/report/flow.yaml": spec("report", to="team")},
                            "Report to the team")  # fmt: skip
    world.remote.set_pull_ref(5, sha)
    answer = await world.send("pull_request", world.opened(5, sha, "feature/team"))
    assert answer.status_code == 202, answer.text
    assert answer.json()["handling"] == "queued"
    await world.settle(sha)

    states = [s["state"] for s in world.forge.statuses[sha]]
    assert states[0] == "pending", states
    assert states[-1] == "success", states
    final = world.forge.statuses[sha][-1]
    assert final["context"] == "linkloom"
    link = await world.service.store.get_link(*_key(5))
    assert link.proposal_id
    assert final["target_url"] == f"https://loom.example.org/proposals/{link.proposal_id}"
    (comment,) = world.forge.comment_bodies(5)
    assert "<!-- linkloom:proposal -->" in comment
    assert "flow report (modified, production version 1)" in comment  # the plan
    assert "| sandbox | passed |" in comment
    proposal = await world.api.services.runs.store.get_flow("report") and (
        await world.api.services.gitops.sync.service.get(link.proposal_id)
    )
    assert proposal.author == "github:octocat"
    assert proposal.head_commit == sha
    assert proposal.status.value == "ready-for-review"

    async with world.api.client(Role.viewer) as viewer:
        shown = (await viewer.get(f"/api/v1/proposals/{link.proposal_id}/pull-request")).json()
    assert shown["number"] == 5
    assert shown["url"].endswith("/pull/5")
    assert shown["report"]["status"] == "sent"
    assert TOKEN not in json.dumps(shown)

    # The public URL is https, so the session cookie is Secure: browse over https.
    async with world.api.client(
        None, follow_redirects=False, base_url="https://loom.test"
    ) as browser:
        signed_in = await browser.post(
            "/login", data={"token": world.api.tokens[Role.viewer], "next": "/"},
            headers={"Origin": "https://loom.test"},
        )  # fmt: skip
        assert signed_in.status_code == 303, signed_in.text
        page = (await browser.get(f"/proposals/{link.proposal_id}")).text
    assert f'<a href="https://github.com/{REPO}/pull/5" rel="noopener">{REPO} #5</a>' in page
    assert f"head <code>{sha[:10]}</code>" in page
    assert 'class="badge report-sent">sent</span>' in page


async def test_a_new_head_is_a_new_revision_and_the_same_comment_is_edited(
    world: World,
) -> None:
    first = world.push_branch("feature/x", {"flows/report/flow.yaml": spec("report", to="a")},
                              "To a")  # fmt: skip
    await world.send("pull_request", world.opened(6, first, "feature/x"))
    await world.settle(first)
    world.engineer.write("flows/report/flow.yaml", spec("report", to="b"))
    world.engineer.commit("To b")
    second = world.engineer.push("feature/x", force=True)
    sync = github_pull_request("synchronize", repo=REPO, number=6, head_sha=second,
                               head_ref="feature/x")  # fmt: skip
    assert (await world.send("pull_request", sync)).status_code == 202
    await world.settle(second)
    (comment_id,) = [cid for cid, c in world.forge.comments.items() if c["number"] == 6]
    assert world.forge.comments[comment_id]["edits"] >= 1
    assert "revision 2" in world.forge.comments[comment_id]["body"]
    link = await world.service.store.get_link(*_key(6))
    proposal = await world.api.services.gitops.sync.service.get(link.proposal_id)
    assert (proposal.revision, proposal.head_commit) == (2, second)


async def test_bad_signatures_and_replays_are_401_and_create_nothing(world: World) -> None:
    sha = world.push_branch("feature/y", {"flows/report/flow.yaml": spec("report", to="y")}, "y")
    payload = world.opened(7, sha, "feature/y")
    forged = await world.send("pull_request", payload, secret="not-the-secret")
    assert forged.status_code == 401
    assert forged.json()["code"] == "webhook_rejected"
    assert await world.service.store.get_link(*_key(7)) is None

    first = await world.send("pull_request", payload, delivery="same-id")
    assert first.status_code == 202
    again = await world.send("pull_request", payload, delivery="same-id")
    new_id = await world.send("pull_request", payload, delivery="another-id")
    assert (again.status_code, again.json()["code"]) == (401, "webhook_replayed")
    assert (new_id.status_code, new_id.json()["code"]) == (401, "webhook_replayed")
    await world.settle(sha)
    proposals = await world.api.services.gitops.sync.service.list()
    assert len(proposals) == 1


async def test_ignored_deliveries_say_why(world: World) -> None:
    readme = world.push_branch("docs", {"README.md": "how we work\n"}, "Docs")
    other_repo = github_pull_request("opened", repo="someone/else", number=1, head_sha=readme,
                                     head_ref="docs")  # fmt: skip
    answer = await world.send("pull_request", other_repo)
    assert answer.json()["handling"] == "ignored"
    assert "someone/else is not this server's flows repo" in answer.json()["reason"]
    labeled = github_pull_request("labeled", repo=REPO, number=8, head_sha=readme,
                                  head_ref="docs")  # fmt: skip
    assert "changes nothing here" in (await world.send("pull_request", labeled)).json()["reason"]

    assert (await world.send("pull_request", world.opened(8, readme, "docs"))).status_code == 202
    await world.settle(readme)
    (status,) = world.forge.statuses[readme]
    assert status["state"] == "success"
    assert "touches no file under flows/" in status["description"]
    assert world.forge.comment_bodies(8) == []
    assert await world.api.services.gitops.sync.service.list() == []


async def test_an_invalid_spec_fails_the_status_with_file_and_line(world: World) -> None:
    sha = world.push_branch("broken", {"flows/report/flow.yaml": spec("report", broken=True)},
                            "Break it")  # fmt: skip
    await world.send("pull_request", world.opened(9, sha, "broken"))
    await world.settle(sha)
    final = world.forge.statuses[sha][-1]
    assert final["state"] == "failure"
    assert final["description"].startswith("validate failed: flows/report/flow.yaml:")
    (comment,) = world.forge.comment_bodies(9)
    assert "`flows/report/flow.yaml:" in comment  # file:line:column of the problem


async def test_a_forge_that_is_down_is_retried_and_never_blocks_the_checks(
    world: World,
) -> None:
    world.forge.down = True
    sha = world.push_branch("slow", {"flows/report/flow.yaml": spec("report", to="slow")}, "s")
    await world.send("pull_request", world.opened(10, sha, "slow"))
    await world.service.drain(within=60)
    link = await world.service.store.get_link(*_key(10))
    proposal = await world.api.services.gitops.sync.service.get(link.proposal_id)
    assert proposal.status.value == "ready-for-review"  # the checks ran regardless
    await world.service.report_due()
    link = await world.service.store.get_link(*_key(10))
    assert link.report.status.value == "pending"
    assert "HTTP 503" in link.report.error
    assert TOKEN not in link.report.error
    world.forge.down = False
    await world.settle(sha)
    assert world.forge.statuses[sha][-1]["state"] == "success"
    link = await world.service.store.get_link(*_key(10))
    assert link.report.status.value == "sent"


async def test_merging_on_the_forge_promotes_with_the_merger_and_closing_closes(
    world: World,
) -> None:
    sha = world.push_branch("merge-me", {"flows/report/flow.yaml": spec("report", to="merged")},
                            "Merged")  # fmt: skip
    await world.send("pull_request", world.opened(11, sha, "merge-me"))
    await world.settle(sha)
    before = world.remote.head()
    merge = world.remote.merge("merge-me", message="Merge pull request #11 from acme/merge-me")
    merged = github_pull_request(
        "closed", repo=REPO, number=11, head_sha=sha, head_ref="merge-me", merged_by="hubot",
        merge_commit=merge,
    )  # fmt: skip
    await world.send("push", github_push(repo=REPO, ref="refs/heads/main", before=before,
                                         after=merge, pusher="hubot"))  # fmt: skip
    await world.send("pull_request", merged)
    await world.service.drain(within=60)
    link = await world.service.store.get_link(*_key(11))
    proposal = await world.api.services.gitops.sync.service.get(link.proposal_id)
    assert proposal.status.value == "promoted"
    assert proposal.promoted_commit == merge
    flow = await world.api.services.runs.get_spec("report")
    assert flow.inputs["to"].default == "merged"
    entries, _ = await world.api.services.audit.list(AuditFilter(object_id=proposal.id))
    promote = next(e for e in entries if e.action == "proposal.promote")
    assert promote.actor == "github:hubot"  # the push of the merge button is the merger's
    assert promote.details["via"] == "github pull request #11"

    other = world.push_branch("abandon", {"flows/report/flow.yaml": spec("report", to="no")}, "n")
    await world.send("pull_request", world.opened(12, other, "abandon"))
    await world.settle(other)
    closed = github_pull_request("closed", repo=REPO, number=12, head_sha=other,
                                 head_ref="abandon")  # fmt: skip
    await world.send("pull_request", closed)
    await world.service.drain(within=60)
    link = await world.service.store.get_link(*_key(12))
    proposal = await world.api.services.gitops.sync.service.get(link.proposal_id)
    assert proposal.status.value == "closed"


def _key(number: int) -> tuple[Any, str, int]:
    from linkloom.forges.models import ForgeKind

    return ForgeKind.GITHUB, REPO, number


async def test_two_pull_requests_merged_in_quick_succession_are_both_promoted_in_order(
    world: World,
) -> None:
    heads = {}
    for number, flow_id in ((21, "report"), (22, "audit")):
        heads[number] = world.push_branch(
            f"pr-{number}", {f"flows/{flow_id}/flow.yaml": spec(flow_id, to=f"pr{number}")},
            f"{flow_id} to pr{number}",
        )  # fmt: skip
        await world.send("pull_request", world.opened(number, heads[number], f"pr-{number}"))
    for number in heads:
        await world.settle(heads[number])
    before = world.remote.head()
    first = world.remote.merge("pr-21", message="Merge pull request #21", author="Ann <a@x.org>")
    second = world.remote.merge("pr-22", message="Merge pull request #22", author="Bob <b@x.org>")
    # The webhooks arrive together, the later push first: nothing is lost, the order is git's.
    await world.send("push", github_push(repo=REPO, ref="refs/heads/main", before=first,
                                         after=second, pusher="bob"))  # fmt: skip
    await world.send("push", github_push(repo=REPO, ref="refs/heads/main", before=before,
                                         after=first, pusher="ann"))  # fmt: skip
    await world.service.drain(within=60)
    promoted = {}
    for number in heads:
        link = await world.service.store.get_link(*_key(number))
        proposal = await world.api.services.gitops.sync.service.get(link.proposal_id)
        assert proposal.status.value == "promoted"
        promoted[number] = proposal.promoted_commit
    assert promoted == {21: first, 22: second}
    actors = {}
    for number in heads:
        link = await world.service.store.get_link(*_key(number))
        entries, _ = await world.api.services.audit.list(AuditFilter(object_id=link.proposal_id))
        actors[number] = next(e.actor for e in entries if e.action == "proposal.promote")
    assert actors == {21: "git:Ann", 22: "github:bob"}  # each merge by whoever made it
    history = await world.api.services.runs.list_flow_versions("report")
    assert max(v.version for v in history) == 2
    assert (await world.api.services.runs.get_spec("report")).inputs["to"].default == "pr21"
    assert (await world.api.services.runs.get_spec("audit")).inputs["to"].default == "pr22"


async def test_a_pull_request_over_the_proposal_limits_gets_a_failure_status_and_no_proposal(
    world: World,
) -> None:
    big = "name: big\ninputs: {}\nrecordings: []\n# " + "z" * (2 * 1024 * 1024 + 10) + "\n"
    sha = world.push_branch("huge", {"flows/report/fixtures/big.yaml": big}, "A huge fixture")
    assert (await world.send("pull_request", world.opened(11, sha, "huge"))).status_code == 202
    await world.settle(sha)
    (status,) = world.forge.statuses[sha]
    assert status["state"] == "failure"
    assert status["description"].startswith("refused: The proposal is too large")
    assert "flows/report/fixtures/big.yaml" in status["description"]
    assert await world.api.services.gitops.sync.service.list() == []
    branches = world.api.services.gitops.sync.service.repo.sync.branches("proposals/")
    assert branches == []
    assert world.pull_heads() == {}  # the refused head was fetched, and is not kept

    # The author makes it small: the new head is fetched again and opens a proposal.
    world.engineer.branch("huge")
    world.engineer.write("flows/report/flow.yaml", spec("report", to="small"))
    world.engineer.commit("A small change instead")
    small = world.engineer.push("huge", force=True)
    sync = github_pull_request("synchronize", repo=REPO, number=11, head_sha=small,
                               head_ref="huge")  # fmt: skip
    await world.send("pull_request", sync)
    await world.settle(small)
    assert world.forge.statuses[small][-1]["state"] == "success"
    assert world.pull_heads() == {11: small}

    # A huge head again: refused, and not kept, though the proposal stays open at ``small``.
    world.engineer.write("flows/report/fixtures/big.yaml", big)
    huge = world.engineer.commit("Huge again")
    world.engineer.push("huge")
    sync = github_pull_request("synchronize", repo=REPO, number=11, head_sha=huge,
                               head_ref="huge")  # fmt: skip
    await world.send("pull_request", sync)
    await world.settle(huge)
    assert world.forge.statuses[huge][-1]["description"].startswith("refused:")
    (proposal,) = await world.api.services.gitops.sync.service.list()
    assert (proposal.status.finished, proposal.head_commit) == (False, small)
    assert world.pull_heads() == {}


async def test_a_closed_pull_requests_head_is_deleted_and_fetched_again_when_it_reopens(
    world: World,
) -> None:
    sha = world.push_branch("again", {"flows/report/flow.yaml": spec("report", to="again")},
                            "Again")  # fmt: skip
    await world.send("pull_request", world.opened(13, sha, "again"))
    await world.settle(sha)
    assert world.pull_heads() == {13: sha}  # kept while its proposal is open
    closed = github_pull_request("closed", repo=REPO, number=13, head_sha=sha, head_ref="again")
    await world.send("pull_request", closed)
    await world.service.drain(within=60)
    first = (await world.service.store.get_link(*_key(13))).proposal_id
    proposals = world.api.services.gitops.sync.service
    assert (await proposals.get(first)).status.value == "closed"
    assert world.pull_heads() == {}

    reopened = github_pull_request("reopened", repo=REPO, number=13, head_sha=sha,
                                   head_ref="again")  # fmt: skip
    await world.send("pull_request", reopened)
    await world.service.drain(within=60)
    link = await world.service.store.get_link(*_key(13))
    assert link.proposal_id != first
    again = await proposals.get(link.proposal_id)
    assert (again.status.value, again.head_commit) == ("ready-for-review", sha)
    assert world.pull_heads() == {13: sha}

    before = world.remote.head()
    merge = world.remote.merge("again", message="Merge pull request #13 from acme/again")
    await world.send("push", github_push(repo=REPO, ref="refs/heads/main", before=before,
                                         after=merge, pusher="hubot"))  # fmt: skip
    await world.send("pull_request", github_pull_request(
        "closed", repo=REPO, number=13, head_sha=sha, head_ref="again", merged_by="hubot",
        merge_commit=merge,
    ))  # fmt: skip
    await world.service.drain(within=60)
    assert (await proposals.get(link.proposal_id)).status.value == "promoted"
    assert world.pull_heads() == {}


async def test_heads_whose_proposal_ended_in_link_loom_are_pruned_and_open_ones_kept(
    world: World,
) -> None:
    heads = {}
    for number, flow_id in ((31, "report"), (32, "audit")):
        heads[number] = world.push_branch(
            f"pr-{number}", {f"flows/{flow_id}/flow.yaml": spec(flow_id, to=f"pr{number}")},
            f"{flow_id} to pr{number}",
        )  # fmt: skip
        await world.send("pull_request", world.opened(number, heads[number], f"pr-{number}"))
        await world.settle(heads[number])
    assert world.pull_heads() == heads
    link = await world.service.store.get_link(*_key(31))
    proposals = world.api.services.gitops.sync.service
    await proposals.close(link.proposal_id, actor="admin", reason="not now")  # the PR stays open
    assert await world.service.prune_heads() == [31]
    assert world.pull_heads() == {32: heads[32]}


async def test_reports_go_out_while_a_heads_checks_hold_the_head_lock(world: World) -> None:
    sha = world.push_branch("pr-41", {"flows/report/flow.yaml": spec("report", to="pr41")},
                            "report to pr41")  # fmt: skip
    await world.send("pull_request", world.opened(41, sha, "pr-41"))
    await world.settle(sha)
    sent = len(world.forge.statuses[sha])
    service = world.service
    async with service._head_lock:  # another head's checks: they hold it for minutes
        service._heads_pruned_at = None  # the periodic prune is due
        service._wake.set()
        await asyncio.sleep(1.0)  # a round of the report loop passes, the prune due in it
        link = await service.store.get_link(*_key(41))
        proposals = world.api.services.gitops.sync.service
        await proposals.close(link.proposal_id, actor="admin", reason="not now")
        service._wake.set()
        async with asyncio.timeout(20):  # the closed proposal is reported, lock or no lock
            while True:
                if len(world.forge.statuses[sha]) > sent:
                    break
                await asyncio.sleep(0.05)
        assert world.pull_heads() == {41: sha}  # not pruned under the lock...
    async with asyncio.timeout(20):  # ...but in a round after it is free
        while world.pull_heads():
            service._wake.set()
            await asyncio.sleep(0.1)
