"""A server whose flows repo mirrors a real remote: it imports the remote's production branch at
start and on each fetch, commit by commit, idempotently; refuses invalid specs and rewritten
history while keeping the last good production; and pushes its own promotions and rollbacks,
never forced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from linkloom.access import AuditFilter, Role
from tests.acceptance.api.api_harness import BACKEND, Api, start_api
from tests.support.git_remotes import HTTP_BACKEND, BareRemote, Engineer, SmartHttpServer
from tests.support.real import require

pytestmark = pytest.mark.timeout(300)  # real servers and sandboxes: slow under load

TOKEN = "glpat-remote-sync-secret"


def spec(flow_id: str, *, to: str = "ops", broken: bool = False) -> str:
    flow: dict[str, Any] = {
        "id": flow_id,
        "inputs": {"to": {"type": "string", "default": to}},
        "steps": [
            {"id": "fetch", "type": "http", "method": "GET", "url": f"{BACKEND}/{flow_id}",
             "query": {"for": "{{ inputs.to }}"}},
            {"id": "shape", "type": "transform", "depends_on": ["fetch"],
             "template": {"to": "{{ inputs.to }}", "path": "{{ steps.fetch.output.path }}"}},
        ],
    }  # fmt: skip
    if broken:
        flow["steps"][1]["depends_on"] = ["nowhere"]
    return yaml.safe_dump(flow, sort_keys=False)


@pytest.fixture
def remote(tmp_path: Path) -> BareRemote:
    return BareRemote.create(
        tmp_path / "srv" / "flows.git",
        seed={"flows/Billing-Sync/flow.yaml": spec("billing-sync"), "README.md": "flows\n"},
    )


@pytest.fixture
async def api(tmp_path: Path, remote: BareRemote) -> AsyncIterator[Api]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"
    running, lifespan = await start_api(
        url, tmp_path, flows={"remote": remote.file_url, "poll_seconds": 0},
        sandbox={"backend": "process"},
    )  # fmt: skip
    yield running
    await lifespan.__aexit__(None, None, None)


def engineer(tmp_path: Path, remote: BareRemote, name: str = "eng") -> Engineer:
    return Engineer.clone(remote.file_url, tmp_path / name)


async def versions(api: Api, flow_id: str) -> list[dict[str, Any]]:
    async with api.client(Role.viewer) as viewer:
        answer = await viewer.get(f"/api/v1/flows/{flow_id}/history")
    return [] if answer.status_code == 404 else list(answer.json())


async def fetch(api: Api) -> dict[str, Any]:
    async with api.client(Role.admin) as admin:
        answer = await admin.post("/api/v1/repo/remote/fetch")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_the_remote_is_imported_at_start_and_each_new_commit_once(
    api: Api, remote: BareRemote, tmp_path: Path
) -> None:
    """Directory names are flow ids as written; a direct push is applied but audited unreviewed."""
    async with api.client(Role.viewer) as viewer:
        status = (await viewer.get("/api/v1/repo/remote")).json()
    assert status["state"] == "in-sync"
    assert status["production_commit"] == remote.head()
    assert status["remote"] == remote.file_url
    assert (await versions(api, "billing-sync")) == []  # a mis-cased directory is not a flow

    eng = engineer(tmp_path, remote)
    eng.write("flows/report/flow.yaml", spec("report"))
    eng.write("flows/audit/flow.yaml", spec("audit"))
    first = eng.commit("Add report and audit")
    eng.write("flows/report/flow.yaml", spec("report", to="team"))
    second = eng.commit("Report to the team")
    eng.push("main")

    fetched = await fetch(api)
    assert [(i["commit"], i["reviewed"]) for i in fetched["imported"]] == [
        (first, False),
        (second, False),
    ]
    assert fetched["imported"][0]["versions"] == {"audit": 1, "report": 1}
    assert fetched["imported"][1]["versions"] == {"report": 2}
    history = await versions(api, "report")
    assert [(v["version"], v["git_commit"], v["source"]) for v in history] == [
        (2, second, "push"),
        (1, first, "push"),
    ]
    flow = await api.services.runs.get_spec("report")
    assert flow.inputs["to"].default == "team"

    again = await fetch(api)
    assert again["imported"] == []
    assert len(await versions(api, "report")) == 2  # the same commits twice create nothing

    entries, _ = await api.services.audit.list(AuditFilter(action="flows.push_unreviewed"))
    assert [(e.object_id, e.actor) for e in reversed(entries)] == [
        (first, "git:Test Engineer"),
        (second, "git:Test Engineer"),
    ]


async def test_an_invalid_spec_on_the_remote_keeps_the_last_good_production(
    api: Api, remote: BareRemote, tmp_path: Path
) -> None:
    eng = engineer(tmp_path, remote)
    eng.write("flows/report/flow.yaml", spec("report"))
    good = eng.commit("Add report")
    eng.push("main")
    await fetch(api)

    eng.write("flows/report/flow.yaml", spec("report", to="x", broken=True))
    bad = eng.commit("Break report")
    eng.push("main")
    fetched = await fetch(api)
    assert fetched["imported"] == []
    status = fetched["status"]
    assert status["state"] == "behind"
    assert status["production_commit"] == good
    assert status["refused"]["commit"] == bad
    assert "flows/report/flow.yaml" in status["refused"]["reason"]
    assert [v["version"] for v in await versions(api, "report")] == [1]
    await fetch(api)  # refused again, alerted once
    refusals, _ = await api.services.audit.list(AuditFilter(action="flows.remote_refused"))
    assert len(refusals) == 1

    eng.write("flows/report/flow.yaml", spec("report", to="fixed"))
    fixed = eng.commit("Fix report")
    eng.push("main")
    fetched = await fetch(api)
    assert [i["commit"] for i in fetched["imported"]] == [fixed]
    assert fetched["status"]["state"] == "in-sync"
    assert fetched["status"]["refused"] is None
    assert (await api.services.runs.get_spec("report")).inputs["to"].default == "fixed"


async def test_a_force_push_on_the_production_branch_is_refused_and_alerted(
    api: Api, remote: BareRemote, tmp_path: Path
) -> None:
    eng = engineer(tmp_path, remote)
    eng.write("flows/report/flow.yaml", spec("report"))
    eng.commit("Add report")
    eng.push("main")
    await fetch(api)
    production = remote.head()

    from tests.support.git_remotes import git

    git("reset", "-q", "--hard", "HEAD~1", cwd=eng.work)
    eng.write("flows/report/flow.yaml", spec("report", to="rewritten"))
    eng.commit("Rewrite history")
    eng.push("main", force=True)
    fetched = await fetch(api)
    assert fetched["imported"] == []
    assert fetched["status"]["state"] == "diverged"
    assert fetched["status"]["production_commit"] == production
    assert "force-pushed" in fetched["status"]["refused"]["reason"]
    assert (await api.services.runs.get_spec("report")).inputs["to"].default == "ops"
    alerts, _ = await api.services.audit.list(AuditFilter(action="flows.remote_refused"))
    assert [e.details["kind"] for e in alerts] == ["diverged"]
    async with api.client(Role.reviewer) as reviewer:
        refused = await reviewer.post("/api/v1/flows/report/versions/1/promote")
    assert refused.status_code == 409
    assert refused.json()["code"] == "flows_remote_diverged"


async def test_rollback_in_link_loom_pushes_a_commit_to_the_remote(
    api: Api, remote: BareRemote, tmp_path: Path
) -> None:
    eng = engineer(tmp_path, remote)
    eng.write("flows/report/flow.yaml", spec("report"))
    eng.commit("Add report")
    eng.write("flows/report/flow.yaml", spec("report", to="team"))
    eng.commit("Team")
    eng.push("main")
    await fetch(api)
    async with api.client(Role.reviewer) as reviewer:
        rolled = await reviewer.post("/api/v1/flows/report/versions/1/promote")
    assert rolled.status_code == 200, rolled.text
    commit = rolled.json()["commit"]
    assert remote.head() == commit  # pushed, a plain fast-forward
    assert remote.log()[0].endswith("Roll back report to version 1")
    assert "default: ops" in remote.file_at("main", "flows/report/flow.yaml")
    assert (await fetch(api))["imported"] == []  # its own push is not imported again


async def test_a_promotion_after_the_remote_moved_is_rebased_when_clean_refused_when_not(
    api: Api, remote: BareRemote, tmp_path: Path
) -> None:
    eng = engineer(tmp_path, remote)
    eng.write("flows/report/flow.yaml", spec("report"))
    eng.write("flows/audit/flow.yaml", spec("audit"))
    eng.commit("Add flows")
    eng.push("main")
    await fetch(api)

    async def proposal(flow_id: str, to: str) -> str:
        async with api.client(Role.author) as author:
            body = {"title": f"{flow_id} to {to}", "specs": [spec(flow_id, to=to)]}
            opened = await author.post("/api/v1/proposals", json=body)
        assert opened.status_code == 201, opened.text
        async with api.client(Role.reviewer) as reviewer:
            approved = await reviewer.post(f"/api/v1/proposals/{opened.json()['id']}/approve")
        assert approved.json()["status"] == "approved", approved.text
        return str(opened.json()["id"])

    clean = await proposal("report", "clean")
    eng.branch("main")
    eng.write("flows/audit/flow.yaml", spec("audit", to="elsewhere"))
    theirs = eng.commit("Audit elsewhere")
    eng.push("main")  # the remote moves; Link Loom has not fetched it
    async with api.client(Role.admin) as admin:
        promoted = await admin.post(f"/api/v1/proposals/{clean}/promote")
    assert promoted.status_code == 200, promoted.text
    merge = promoted.json()["promoted_commit"]
    assert remote.head() == merge
    assert theirs in remote.log()[1]  # their commit first, imported, then our merge on top
    assert (await api.services.runs.get_spec("audit")).inputs["to"].default == "elsewhere"
    assert (await api.services.runs.get_spec("report")).inputs["to"].default == "clean"

    conflicting = await proposal("report", "mine")
    eng.branch("main")
    eng.write("flows/report/flow.yaml", spec("report", to="theirs"))
    eng.commit("Report theirs")
    eng.push("main")
    async with api.client(Role.admin) as admin:
        refused = await admin.post(f"/api/v1/proposals/{conflicting}/promote")
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "proposal_stale"
    assert (await api.services.runs.get_spec("report")).inputs["to"].default == "theirs"
    assert "Report theirs" in remote.log()[0]


async def test_a_token_remote_that_goes_down_keeps_production_and_says_so_in_readyz(
    tmp_path: Path, remote: BareRemote
) -> None:
    require(HTTP_BACKEND.exists(), "git http-backend is not installed")
    url = f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"
    with SmartHttpServer(tmp_path / "srv", username="oauth2", token=TOKEN) as http:
        eng = Engineer.clone(remote.file_url, tmp_path / "eng")
        eng.write("flows/report/flow.yaml", spec("report"))
        eng.commit("Add report")
        eng.push("main")
        running, lifespan = await start_api(
            url, tmp_path / "home",
            flows={"remote": http.url_for(remote), "remote_username": "oauth2",
                   "remote_token": TOKEN, "poll_seconds": 0},
        )  # fmt: skip
        try:
            assert (await running.services.runs.get_spec("report")).inputs["to"].default == "ops"
            http.down = True
            async with running.client(Role.admin) as admin:
                failed = await admin.post("/api/v1/repo/remote/fetch")
                ready = (await admin.get("/readyz")).json()
                status = (await admin.get("/api/v1/repo/remote")).json()
            assert failed.status_code == 503
            assert "Could not fetch the flows remote" in failed.json()["detail"]
            assert ready["checks"]["flows_remote"].startswith("error: Could not fetch")
            assert status["last_error"].startswith("Could not fetch")
            assert TOKEN not in failed.text + str(ready) + str(status)
            entries = await running.app.state.services.audit.list(AuditFilter(), limit=500)
            assert TOKEN not in str(entries)
            assert (await running.services.runs.get_spec("report")).inputs["to"].default == "ops"
        finally:
            await lifespan.__aexit__(None, None, None)
    assert all(r["authorized"] for r in http.requests if not http.down)
    assert TOKEN not in (tmp_path / "home" / "flows" / ".git" / "config").read_text()


async def test_unreviewed_pushes_and_refusals_are_notified(
    api: Api, remote: BareRemote, tmp_path: Path
) -> None:
    from tests.support.notify_receivers import WebhookReceiver
    from tests.support.servers import free_port

    port = free_port()
    async with api.client(Role.admin) as admin:
        await admin.post(
            "/api/v1/notifications/channels",
            json={
                "name": "ops",
                "kind": "webhook",
                "config": {"url": f"http://127.0.0.1:{port}/h"},
            },
        )
        rule = await admin.post(
            "/api/v1/notifications/rules",
            json={"name": "git", "events": ["unreviewed_change", "remote_refused"],
                  "channels": ["ops"], "quiet_seconds": 0},
        )  # fmt: skip
        assert rule.status_code == 201, rule.text
    with WebhookReceiver(port=port) as receiver:
        eng = engineer(tmp_path, remote)
        eng.write("flows/report/flow.yaml", spec("report"))
        pushed = eng.commit("Hotfix straight to main")
        eng.push("main")
        await fetch(api)
        eng.write("flows/report/flow.yaml", spec("report", broken=True))
        broken = eng.commit("Break it")
        eng.push("main")
        await fetch(api)
        notifications = api.services.notifications
        await notifications.drain()
        for _ in range(100):
            if len(receiver.received) >= 2:
                break
            await asyncio.sleep(0.1)
    texts = sorted(r.json["text"] for r in receiver.received)
    assert len(texts) == 2, texts
    assert texts[0].startswith("Production did not follow the flows remote: commit " + broken[:12])
    assert texts[1].startswith(f"Unreviewed change: git:Test Engineer pushed {pushed[:12]} to main")
    assert "report v1 now in production" in texts[1]
