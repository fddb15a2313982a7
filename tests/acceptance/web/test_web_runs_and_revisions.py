"""The all-runs page (filters by flow, status, trigger and time) and a proposal's revise and
rebase buttons, on the fully wired app with a real flows repo and the in-process sandbox."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
import yaml

from linkloom.access import Role
from tests.acceptance.api.api_harness import Api, flow_spec
from tests.acceptance.web.conftest import FLOW
from tests.acceptance.web.web_client import browser, csrf_of


@pytest.fixture
def api(repo_api: Api) -> Api:
    """The wired app with a real flows repo (see conftest) for every test here."""
    return repo_api


def spec_text(to: str) -> str:
    flow = copy.deepcopy(FLOW)
    flow["steps"][1]["template"]["to"] = to
    return yaml.safe_dump(flow, sort_keys=False)


async def open_proposal(api: Api, title: str, text: str) -> str:
    async with api.client(Role.author) as author:
        opened = await author.post("/api/v1/proposals", json={"title": title, "specs": [text]})
        assert opened.status_code == 201, opened.text
        return str(opened.json()["id"])


async def wait_status(api: Api, proposal_id: str, *wanted: str) -> dict[str, Any]:
    async with api.client(Role.viewer) as viewer, asyncio.timeout(20):
        while True:
            found: dict[str, Any] = (await viewer.get(f"/api/v1/proposals/{proposal_id}")).json()
            if found["status"] in wanted:
                return found
            await asyncio.sleep(0.05)


async def test_web_runs_page_lists_every_flow_and_filters(api: Api) -> None:
    async with api.client(Role.admin) as admin:
        other = flow_spec("billing-sync")
        await admin.put("/api/v1/flows/billing-sync", json={"spec": other})
        api.backend.fail.add("fetch")
        runs = []
        for flow_id in ("report", "billing-sync"):
            made = await admin.post(f"/api/v1/flows/{flow_id}/runs", json={"inputs": {"to": "x"}})
            runs.append(made.json()["id"])
            await api.wait_run(runs[-1])
    async with browser(api, Role.viewer) as client:
        page = await client.get("/runs")
        assert page.status_code == 200
        assert all(f'data-run="{r}"' in page.text for r in runs)
        assert 'aria-current="page">Runs</a>' in page.text

        one = await client.get("/runs", params={"flow": "billing-sync"})
        assert f'data-run="{runs[1]}"' in one.text
        assert f'data-run="{runs[0]}"' not in one.text

        failed = await client.get("/runs", params={"status": "FAILED", "trigger": "manual"})
        assert f'data-run="{runs[1]}"' in failed.text  # billing-sync's fetch fails
        assert f'data-run="{runs[0]}"' in failed.text  # so does report's
        none = await client.get("/runs", params={"status": "SUCCEEDED"})
        assert "No runs yet." in none.text
        scheduled = await client.get("/runs", params={"trigger": "schedule"})
        assert "data-run=" not in scheduled.text

        future = await client.get("/runs", params={"since": "2999-01-01T00:00"})
        assert "data-run=" not in future.text
        window = await client.get(
            "/runs", params={"since": "2000-01-01T00:00", "until": "2999-01-01T00:00"}
        )
        assert all(f'data-run="{r}"' in window.text for r in runs)

        bad = await client.get("/runs", params={"since": "yesterday", "until": "2000-01-01T00:00"})
        assert bad.status_code == 422
        assert "From: &#39;yesterday&#39; is not a date and time" in bad.text
        backwards = await client.get(
            "/runs", params={"since": "2030-01-01T00:00", "until": "2020-01-01T00:00"}
        )
        assert "From must be earlier than To" in backwards.text


async def test_web_runs_page_pages_through_older_runs(api: Api) -> None:
    async with api.client(Role.admin) as admin:
        made = []
        for _ in range(53):
            run = await admin.post("/api/v1/flows/report/runs", json={"inputs": {}})
            made.append(run.json()["id"])
    async with browser(api, Role.viewer) as client:
        first = await client.get("/runs", params={"flow": "report"})
        assert first.text.count("data-run=") == 50
        link = first.text.split('id="runs-next" href="', 1)[1].split('"', 1)[0]
        rest = await client.get(link.replace("&amp;", "&"))
        assert rest.text.count("data-run=") == 3
        seen = {r for r in made if f'data-run="{r}"' in first.text + rest.text}
        assert seen == set(made)


async def test_web_author_revises_a_proposal_from_its_page(api: Api) -> None:
    proposal_id = await open_proposal(api, "Team recipients", spec_text("team {{ inputs.to }}"))
    async with browser(api, Role.author) as client:
        page = await client.get(f"/proposals/{proposal_id}")
        assert 'id="revise"' in page.text
        form = await client.get(f"/proposals/{proposal_id}/revise")
        assert form.status_code == 200
        assert "flows/report/flow.yaml" in form.text
        assert "team {{ inputs.to }}" in form.text  # the branch's text, not production's
        token = csrf_of(form.text)

        same = await client.post(
            f"/proposals/{proposal_id}/revise",
            data={"csrf": token, "file:flows/report/flow.yaml": spec_text("team {{ inputs.to }}")},
        )
        assert same.status_code == 422
        assert "identical to the current one" in same.text

        revised = await client.post(
            f"/proposals/{proposal_id}/revise",
            data={
                "csrf": token,
                "file:flows/report/flow.yaml": spec_text("crew {{ inputs.to }}"),
                "message": "Crew, not team",
            },
        )
        assert revised.status_code == 303
        assert revised.headers["location"] == f"/proposals/{proposal_id}#checks-h"
    done = await wait_status(api, proposal_id, "ready-for-review", "changes-requested")
    assert done["revision"] == 2
    assert done["status"] == "ready-for-review"
    async with api.client(Role.viewer) as viewer:
        plan = (await viewer.get(f"/api/v1/proposals/{proposal_id}/plan")).json()
        assert "crew {{ inputs.to }}" in "\n".join(f["spec_diff"] for f in plan["flows"])

    async with browser(api, Role.viewer) as client:
        page = await client.get(f"/proposals/{proposal_id}")
        assert 'id="revise"' not in page.text  # viewers read only
        refused = await client.get(f"/proposals/{proposal_id}/revise")
        assert refused.status_code == 403


async def test_web_author_rebases_a_stale_proposal_with_one_click(api: Api) -> None:
    first = await open_proposal(api, "First", spec_text("first {{ inputs.to }}"))
    second_text = spec_text("{{ inputs.to }}").replace("default: ops", "default: sales")
    second = await open_proposal(api, "Second", second_text)
    async with api.client(Role.reviewer) as reviewer:
        assert (await reviewer.post(f"/api/v1/proposals/{first}/approve")).status_code == 200
        promoted = await reviewer.post(f"/api/v1/proposals/{first}/promote")
        assert promoted.status_code == 200, promoted.text
    async with browser(api, Role.author) as client:
        page = await client.get(f"/proposals/{second}")
        assert 'id="proposal-status">stale' in page.text
        assert 'id="rebase"' in page.text
        token = csrf_of(page.text)
        rebased = await client.post(f"/proposals/{second}/rebase", data={"csrf": token})
        assert rebased.status_code == 303
    done = await wait_status(api, second, "ready-for-review", "changes-requested")
    assert done["status"] == "ready-for-review"
    assert done["base_versions"] == {"report": 2}  # on top of the first proposal's promotion
    async with browser(api, Role.author) as client:
        page = await client.get(f"/proposals/{second}")
        assert 'id="rebase"' not in page.text  # no longer stale
