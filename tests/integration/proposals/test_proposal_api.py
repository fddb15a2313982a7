"""The proposal routes on the fully wired API (SQLite, real git repo, in-process sandbox)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from linkloom.access import AuditFilter, Role
from linkloom.api.routes.proposals import proposal_service
from linkloom.sandbox.inprocess import InProcessRunner
from tests.acceptance.api.api_harness import BACKEND, Api, start_api

FLOW: dict[str, Any] = {
    "id": "report",
    "inputs": {"to": {"type": "string", "default": "ops"}},
    "steps": [
        {"id": "fetch", "type": "http", "url": f"{BACKEND}/fetch"},
        {
            "id": "shape",
            "type": "transform",
            "depends_on": ["fetch"],
            "template": {"where": "{{ steps.fetch.output.path }}", "to": "{{ inputs.to }}"},
        },
    ],
}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    seed = tmp_path / "seed" / "report"
    seed.mkdir(parents=True)
    (seed / "flow.yaml").write_text(yaml.safe_dump(FLOW, sort_keys=False))
    url = f"sqlite+aiosqlite:///{tmp_path / 'loom.db'}"
    running, lifespan = await start_api(
        url,
        tmp_path,
        sandbox_runner=InProcessRunner(),
        flows={"seed_from": str(tmp_path / "seed")},
    )
    yield running
    await lifespan.__aexit__(None, None, None)


def changed() -> str:
    flow = copy.deepcopy(FLOW)
    flow["steps"][1]["template"]["to"] = "team {{ inputs.to }}"
    return yaml.safe_dump(flow, sort_keys=False)


async def test_proposal_flow_through_the_api(api: Api) -> None:
    admin, reviewer = api.client(Role.admin), api.client(Role.reviewer)
    author, viewer = api.client(Role.author), api.client(Role.viewer)
    try:
        synced = (await admin.post("/api/v1/repo/sync")).json()
        assert synced["flows"]["report"] == {"version": 1, "created": True}
        run = (await admin.post("/api/v1/flows/report/runs", json={"inputs": {}})).json()
        assert (await api.wait_run(run["id"])).status.value == "SUCCEEDED"

        opened = await reviewer.post(
            "/api/v1/proposals", json={"title": "Team recipients", "specs": [changed()]}
        )
        assert opened.status_code == 201, opened.text
        p = opened.json()
        assert p["status"] == "ready-for-review", p
        # The proposal changes shape's output: the diff check asks a reviewer to look.
        assert [c["status"] for c in p["checks"]] == ["passed", "passed", "passed", "attention"]
        assert p["promotion"]["allowed"] is False
        assert (await viewer.post(f"/api/v1/proposals/{p['id']}/approve")).status_code == 403
        selfish = await reviewer.post(f"/api/v1/proposals/{p['id']}/approve")
        assert selfish.status_code == 403
        assert selfish.json()["code"] == "self_approval"

        diff = (await viewer.get(f"/api/v1/proposals/{p['id']}/diff")).json()
        (case,) = diff["flows"]["report"]["cases"]
        changes = {s["step_id"]: s["change"] for s in case["steps"]}
        assert changes == {"fetch": "unchanged", "shape": "changed"}
        plan = (await viewer.get(f"/api/v1/proposals/{p['id']}/plan")).json()
        assert any("~ step shape: template.to" in line for line in plan["text"])

        await author.post(f"/api/v1/proposals/{p['id']}/comments", json={"body": "ok?"})
        approved = (await admin.post(f"/api/v1/proposals/{p['id']}/approve")).json()
        assert approved["status"] == "approved"
        assert approved["approvers"] == ["admin-user"]
        assert (await author.post(f"/api/v1/proposals/{p['id']}/promote")).status_code == 403
        promoted = (await reviewer.post(f"/api/v1/proposals/{p['id']}/promote")).json()
        assert promoted["status"] == "promoted"
        assert promoted["promoted_versions"] == {"report": 2}
        flow = (await viewer.get("/api/v1/flows/report")).json()
        assert flow["version"] == 2

        rolled = await reviewer.post("/api/v1/flows/report/versions/1/promote")
        assert rolled.status_code == 200, rolled.text
        assert rolled.json()["versions"] == {"report": 3}
        history = (await viewer.get("/api/v1/flows/report/history")).json()
        assert [h["source"] for h in history] == ["rollback", "promotion", "sync"]
        assert history[0]["current"] is True

        fixture = (await viewer.get(f"/api/v1/runs/{run['id']}/fixture")).json()
        assert fixture["path"] == f"flows/report/fixtures/{fixture['name']}.yaml"
        assert "exchanges" in fixture["yaml"]
        drift = (await viewer.get("/api/v1/flows/report/fixtures/drift")).json()
        assert drift == {"flow_id": "report", "ok": True, "cases": []}
    finally:
        for client in (admin, reviewer, author, viewer):
            await client.aclose()
    entries, _ = await api.services.audit.list(AuditFilter(object_id=p["id"]), limit=100)
    actions = {(e.actor, e.action) for e in entries}
    assert ("reviewer-user", "proposal.open") in actions
    assert ("reviewer-user", "proposal.approve_refused") in actions
    assert ("admin-user", "proposal.approve") in actions
    assert ("reviewer-user", "proposal.promote") in actions
    assert ("author-user", "proposal.comment") in actions
    assert await proposal_service(api.app) is api.app.state.services.proposals


async def test_every_proposal_route_that_changes_something_is_audited(api: Api) -> None:
    from linkloom.api.routes.fixtures import mutating_routes

    exercised: set[tuple[str, str]] = set()

    async def step(client: Any, template: str, url: str, **kwargs: Any) -> Any:
        before, _ = await api.services.audit.list(AuditFilter(), limit=1000)
        response = await client.post(url, **kwargs)
        assert response.is_success, (template, response.status_code, response.text)
        after, _ = await api.services.audit.list(AuditFilter(), limit=1000)
        assert len(after) > len(before), template
        exercised.add(("POST", template))
        return response.json()

    admin, reviewer, author = (api.client(r) for r in (Role.admin, Role.reviewer, Role.author))
    pid = "/api/v1/proposals/{proposal_id}"
    try:
        await step(admin, "/api/v1/repo/sync", "/api/v1/repo/sync")
        run = (await admin.post("/api/v1/flows/report/runs", json={"inputs": {}})).json()
        await api.wait_run(run["id"])
        p = await step(reviewer, "/api/v1/proposals", "/api/v1/proposals", json={
            "title": "one", "specs": [changed()]})  # fmt: skip
        other = copy.deepcopy(FLOW)
        other["inputs"]["to"]["default"] = "sre"
        q = await step(author, "/api/v1/proposals", "/api/v1/proposals", json={
            "title": "two", "specs": [yaml.safe_dump(other, sort_keys=False)]})  # fmt: skip
        url = f"/api/v1/proposals/{p['id']}"
        revised = yaml.safe_load(changed())
        revised["steps"][1]["template"]["to"] = "team: {{ inputs.to }}"
        await step(reviewer, pid + "/revisions", url + "/revisions", json={
            "specs": [yaml.safe_dump(revised, sort_keys=False)]})  # fmt: skip
        await step(reviewer, pid + "/checks", url + "/checks")
        await step(author, pid + "/comments", url + "/comments", json={"body": "hm"})
        await step(admin, pid + "/request-changes", url + "/request-changes", json={"comment": "x"})
        await step(admin, pid + "/approve", url + "/approve")
        await step(reviewer, pid + "/promote", url + "/promote")
        rebased = await step(author, pid + "/rebase", f"/api/v1/proposals/{q['id']}/rebase")
        assert rebased["status"] == "ready-for-review"
        await step(author, pid + "/close", f"/api/v1/proposals/{q['id']}/close")
        versions = "/api/v1/flows/{flow_id}/versions/{version}/promote"
        await step(reviewer, versions, "/api/v1/flows/report/versions/1/promote")
    finally:
        for client in (admin, reviewer, author):
            await client.aclose()
    assert mutating_routes() - exercised == set()
