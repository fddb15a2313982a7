"""The editor's calls on the fully wired app with a real flows repo: the step-type schema, the
validator (the server's policy included), and saving as a proposal or a new revision; roles,
CSRF and bad bodies refused with JSON errors; the editor pages for each role."""

from __future__ import annotations

import json
import re

import yaml

from linkloom.access import Role
from tests.acceptance.api.api_harness import Api
from tests.acceptance.web.conftest import FLOW
from tests.acceptance.web.web_client import browser


def boot_of(html: str) -> dict[str, object]:
    found = re.search(r'<script type="application/json" id="editor-boot">(.*?)</script>', html)
    assert found, "the editor page has no boot data"
    data: dict[str, object] = json.loads(found.group(1))
    return data


async def test_editor_page_boots_with_the_repo_file_and_the_role(repo_api: Api) -> None:
    async with browser(repo_api, Role.author) as client:
        page = await client.get("/flows/report/edit")
        assert page.status_code == 200
        boot = boot_of(page.text)
        assert boot["text"] == (
            "# the weekly report\n" + yaml.safe_dump(FLOW, sort_keys=False)
        )  # the file as committed, comment included
        assert boot["path"] == "flows/report/flow.yaml"
        assert boot["readOnly"] is False
        assert boot["shape"] == "canonical"
        missing = await client.get("/flows/nope/edit")
        assert missing.status_code == 404
    async with browser(repo_api, Role.viewer) as client:
        boot = boot_of((await client.get("/flows/report/edit")).text)
        assert boot["readOnly"] is True


async def test_editor_page_converts_a_seed_shape_and_says_which(repo_api: Api) -> None:
    tasks = {
        "id": "report",
        "tasks": [
            {"id": "fetch", "type": "http", "url": "http://backend.test/fetch"},
            {"id": "send", "type": "http", "url": "http://b.test/s", "dependsOn": ["fetch"]},
        ],
    }
    async with repo_api.client(Role.author) as author:
        opened = await author.post(
            "/api/v1/proposals",
            json={"title": "tasks shape", "files": {"flows/report/flow.yaml": yaml.dump(tasks)}},
        )
        assert opened.status_code == 201, opened.text
        pid = opened.json()["id"]
    async with browser(repo_api, Role.author) as client:
        boot = boot_of((await client.get(f"/proposals/{pid}/edit?flow=report")).text)
        assert boot["shape"] == "linkloom"
        assert "dependsOn" in str(boot["original"])
        assert "depends_on: [fetch]" in str(boot["text"])  # canonical, from the branch
        assert boot["mode"] == "proposal"
        other = await client.get(f"/proposals/{pid}/edit?flow=elsewhere")
        assert other.status_code == 404


async def test_editor_schema_lists_the_step_types(repo_api: Api) -> None:
    async with browser(repo_api, Role.viewer) as client:
        schema = (await client.get("/editor/schema")).json()
        mapping = schema["properties"]["steps"]["items"]["discriminator"]["mapping"]
        assert {"http", "transform", "condition", "delay"} <= set(mapping)


async def test_editor_validate_answers_the_validators_problems_with_paths(repo_api: Api) -> None:
    async with browser(repo_api, Role.viewer) as client:
        page = await client.get("/flows/report/edit")
        csrf = str(boot_of(page.text)["csrf"])
        text = "id: report\nsteps:\n  - id: a\n    type: http\n  - id: b\n    type: delay\n"
        text += "    duration: 1s\n    depends_on: [c]\n"
        found = await client.post(
            "/editor/validate", json={"text": text}, headers={"X-CSRF-Token": csrf}
        )
        assert found.status_code == 200
        body = found.json()
        assert body["valid"] is False
        paths = {p["path"]: p["message"] for p in body["problems"]}
        assert "missing required field 'url'" in paths["$.steps[0]"]
        assert any(path.startswith("$.steps[1].depends_on") for path in paths)
        valid = await client.post(
            "/editor/validate",
            json={"text": yaml.safe_dump(FLOW)},
            headers={"X-CSRF-Token": csrf},
        )
        assert valid.json() == {"valid": True, "errors": 0, "problems": [], "shape": "canonical"}
        no_token = await client.post("/editor/validate", json={"text": "id: x"})
        assert no_token.status_code == 403
        assert no_token.json()["code"] == "csrf_rejected"
        not_json = await client.post(
            "/editor/validate", content=b"[1]", headers={"X-CSRF-Token": csrf}
        )
        assert not_json.status_code == 422


async def test_editor_save_opens_a_proposal_then_a_revision(repo_api: Api) -> None:
    changed = yaml.safe_load(yaml.safe_dump(FLOW))
    changed["steps"][1]["template"]["to"] = "team {{ inputs.to }}"
    async with browser(repo_api, Role.author) as client:
        csrf = str(boot_of((await client.get("/flows/report/edit")).text)["csrf"])
        headers = {"X-CSRF-Token": csrf}
        untitled = await client.post(
            "/editor/save", json={"text": yaml.safe_dump(changed), "title": " "}, headers=headers
        )
        assert untitled.status_code == 422
        assert "title" in untitled.json()["error"]
        saved = await client.post(
            "/editor/save",
            json={"text": yaml.safe_dump(changed), "title": "Team", "description": "why"},
            headers=headers,
        )
        assert saved.status_code == 201, saved.text
        pid = saved.json()["proposal_id"]
        assert saved.json()["url"] == f"/proposals/{pid}"
        changed["steps"][1]["template"]["to"] = "crew {{ inputs.to }}"
        revised = await client.post(
            "/editor/save",
            json={"text": yaml.safe_dump(changed), "proposal_id": pid, "message": "crew"},
            headers=headers,
        )
        assert revised.status_code == 201, revised.text
    async with repo_api.client(Role.viewer) as viewer:
        proposal = (await viewer.get(f"/api/v1/proposals/{pid}")).json()
        assert proposal["revision"] == 2
        assert proposal["author"] == "author-user"
    async with browser(repo_api, Role.viewer) as client:
        csrf = str(boot_of((await client.get("/flows/report/edit")).text)["csrf"])
        refused = await client.post(
            "/editor/save",
            json={"text": yaml.safe_dump(changed), "title": "x"},
            headers={"X-CSRF-Token": csrf},
        )
        assert refused.status_code == 403
    async with browser(repo_api) as anonymous:
        gone = await anonymous.post("/editor/save", json={"text": "id: x"})
        assert gone.status_code == 401
