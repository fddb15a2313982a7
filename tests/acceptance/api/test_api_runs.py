"""Flows and runs through the HTTP API: apply, trigger with input checks, read, logs, cancel."""

from __future__ import annotations

import uuid

from api_harness import Api, flow_spec

from linkloom.access import Role


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_api_apply_trigger_and_read_a_run(any_api: Api) -> None:
    flow_id = _id("report")
    async with any_api.client(Role.admin) as admin:
        applied = await admin.put(f"/api/v1/flows/{flow_id}", json={"spec": flow_spec(flow_id)})
        assert applied.status_code == 200, applied.text
        assert applied.json()["version"] == 1
        assert applied.json()["created"] is True
        again = await admin.put(f"/api/v1/flows/{flow_id}", json={"spec": flow_spec(flow_id)})
        assert again.json() == {**again.json(), "version": 1, "created": False}

        started = await admin.post(f"/api/v1/flows/{flow_id}/runs", json={"inputs": {"to": "a"}})
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        assert started.json()["inputs"] == {"count": 3, "to": "a"}
        await any_api.wait_run(run_id)

        run = (await admin.get(f"/api/v1/runs/{run_id}")).json()
        assert run["status"] == "SUCCEEDED"
        assert [s["step_id"] for s in run["steps"]] == ["fetch", "process", "send"]
        assert run["steps"][0]["logs"] == ["/fetch done"]
        logs = (await admin.get(f"/api/v1/runs/{run_id}/logs")).json()
        assert [line["message"] for line in logs] == ["/fetch done", "/process done", "/send done"]
        listed = (await admin.get("/api/v1/runs", params={"flow": flow_id})).json()
        assert [r["id"] for r in listed["items"]] == [run_id]
        flows = (await admin.get("/api/v1/flows")).json()["items"]
        assert flow_id in [f["id"] for f in flows]


async def test_api_trigger_names_each_bad_input(api: Api) -> None:
    async with api.client(Role.admin) as admin:
        await admin.put("/api/v1/flows/report", json={"spec": flow_spec()})
        bad = await admin.post(
            "/api/v1/flows/report/runs", json={"inputs": {"count": "many", "colour": "red"}}
        )
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    body = bad.json()
    assert body["code"] == "inputs_invalid"
    problems = " ".join(body["problems"])
    assert "'count'" in problems
    assert "'colour'" in problems
    assert "'to'" in problems
    assert await api.services.runs.list_runs() is not None
    assert (await api.services.runs.list_runs()).items == ()


async def test_api_invalid_spec_is_a_422_with_line_numbers(api: Api) -> None:
    text = "id: broken\nsteps:\n  - id: a\n    type: http\n    depends_on: [nope]\n"
    async with api.client(Role.admin) as admin:
        response = await admin.put("/api/v1/flows/broken", json={"spec": text})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "spec_invalid"
    assert any(p["line"] >= 3 for p in body["problems"])


async def test_api_run_filters_and_pagination(api: Api) -> None:
    async with api.client(Role.admin) as admin:
        await admin.put("/api/v1/flows/report", json={"spec": flow_spec()})
        ids = []
        for n in range(5):
            r = await admin.post("/api/v1/flows/report/runs", json={"inputs": {"to": str(n)}})
            ids.append(r.json()["id"])
        for run_id in ids:
            await api.wait_run(run_id)
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await admin.get("/api/v1/runs", params=params)).json()
            seen += [r["id"] for r in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(ids)
        assert len(seen) == 5
        failed = (await admin.get("/api/v1/runs", params={"status": "FAILED"})).json()
        assert failed["items"] == []
        manual = (await admin.get("/api/v1/runs", params={"trigger": "manual"})).json()
        assert len(manual["items"]) == 5
        future = (await admin.get("/api/v1/runs", params={"since": "2999-01-01T00:00:00Z"})).json()
        assert future["items"] == []
        past = (await admin.get("/api/v1/runs", params={"until": "2000-01-01T00:00:00Z"})).json()
        assert past["items"] == []
        bad = await admin.get("/api/v1/runs", params={"status": "DONE"})
        assert bad.status_code == 422
        assert "SUCCEEDED" in bad.json()["detail"]


async def test_api_failed_run_dead_letters_redrive_on_chosen_version(api: Api) -> None:
    api.backend.fail.add("process")
    async with api.client(Role.admin) as admin:
        await admin.put("/api/v1/flows/report", json={"spec": flow_spec()})
        run_id = (
            await admin.post("/api/v1/flows/report/runs", json={"inputs": {"to": "x"}})
        ).json()["id"]
        run = await api.wait_run(run_id)
        assert run.status.value == "FAILED"
        letters = (await admin.get("/api/v1/dead-letters", params={"flow": "report"})).json()
        assert [d["step_id"] for d in letters["items"]] == ["process"]
        letter_id = letters["items"][0]["id"]
        assert letters["next_cursor"] is None
        bad_cursor = await admin.get("/api/v1/dead-letters", params={"cursor": "x"})
        assert bad_cursor.status_code == 422

        missing_on = await admin.post("/api/v1/dead-letters/redrive", json={"ids": [letter_id]})
        assert missing_on.status_code == 422

        api.backend.fail.clear()
        api.backend.calls.clear()
        redriven = await admin.post(
            "/api/v1/dead-letters/redrive", json={"ids": [letter_id], "on": "failed_version"}
        )
        assert redriven.status_code == 200, redriven.text
        new_run = redriven.json()["runs"][0]
        assert new_run["trigger"] == "redrive"
        assert (await api.wait_run(new_run["id"])).status.value == "SUCCEEDED"
        assert api.backend.calls == ["/process", "/send"]  # fetch kept its output
        left = (await admin.get("/api/v1/dead-letters", params={"flow": "report"})).json()
        assert left["items"] == []


async def test_api_cancel_and_retry_are_audited(api: Api) -> None:
    api.backend.fail.add("send")
    async with api.client(Role.author) as author, api.client(Role.admin) as admin:
        await admin.put("/api/v1/flows/report", json={"spec": flow_spec()})
        run_id = (
            await author.post("/api/v1/flows/report/runs", json={"inputs": {"to": "x"}})
        ).json()["id"]
        await api.wait_run(run_id)
        api.backend.fail.clear()
        retried = await author.post(f"/api/v1/runs/{run_id}/retry")
        assert retried.status_code == 200, retried.text
        assert (await api.wait_run(run_id)).status.value == "SUCCEEDED"
        again = await author.post(f"/api/v1/runs/{run_id}/cancel")
        assert again.status_code == 409
        audit = (await admin.get("/api/v1/audit", params={"object_id": run_id})).json()["items"]
        assert [(e["actor"], e["action"]) for e in audit] == [
            ("author-user", "run.retry"),
            ("author-user", "run.trigger"),
        ]


async def test_api_unknown_run_and_endpoint_are_problems(api: Api) -> None:
    async with api.client(Role.viewer) as viewer:
        missing = await viewer.get("/api/v1/runs/nope")
        nowhere = await viewer.get("/api/v1/nowhere")
    assert missing.status_code == 404
    assert missing.json()["code"] == "run_not_found"
    assert "loom run list" in missing.json()["detail"]
    assert nowhere.status_code == 404
    assert nowhere.json()["code"] == "endpoint_not_found"
