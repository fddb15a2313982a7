"""Signed inbound calls: webhooks (bad, stale, replayed) and async-step callbacks; SSE streams."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from api_harness import SIGNING_KEY, Api, flow_spec

from linkloom import signing
from linkloom.access import Role


def _hook_flow() -> dict[str, Any]:
    return flow_spec(
        "hooks",
        inputs={"ref": {"type": "string"}},
        triggers=[{"type": "webhook", "id": "push", "inputs": {"ref": "{{ payload.ref }}"}}],
        steps=[{"id": "fetch", "type": "http", "url": "http://backend.test/fetch"}],
    )


def _async_flow() -> dict[str, Any]:
    return flow_spec(
        "slow",
        inputs={},
        steps=[
            {
                "id": "wait",
                "type": "http",
                "url": "http://backend.test/async",
                "mode": "async",
                "heartbeat_timeout": "60s",
            }
        ],
    )


async def _runs(api: Api) -> int:
    return len((await api.services.runs.list_runs()).items)


async def test_webhook_signature_stale_and_replay(api: Api) -> None:
    async with api.client(Role.admin) as admin:
        await admin.put("/api/v1/flows/hooks", json={"spec": _hook_flow()})
    body = json.dumps({"ref": "main"}).encode()
    url = "/api/v1/webhooks/hooks/push"
    async with api.client(None) as anyone:
        wrong = await anyone.post(url, content=body, headers=signing.sign("other-key", body))
        assert wrong.status_code == 401
        assert wrong.json()["code"] == "webhook_rejected"
        unsigned = await anyone.post(url, content=body)
        assert unsigned.status_code == 401
        stale_headers = signing.sign(SIGNING_KEY, body, timestamp=time.time() - 3600)
        stale = await anyone.post(url, content=body, headers=stale_headers)
        assert stale.status_code == 401
        assert "away from now" in stale.json()["detail"]
        assert await _runs(api) == 0

        headers = signing.sign(SIGNING_KEY, body)
        ok = await anyone.post(url, content=body, headers=headers)
        assert ok.status_code == 201, ok.text
        assert ok.json()["inputs"] == {"ref": "main"}
        assert ok.json()["trigger"] == "webhook"
        replay = await anyone.post(url, content=body, headers=headers)
        assert replay.status_code == 409
        assert replay.json()["code"] == "webhook_replayed"
        assert await _runs(api) == 1
        unknown = await anyone.post(
            "/api/v1/webhooks/hooks/nope", content=body, headers=signing.sign(SIGNING_KEY, body)
        )
        assert unknown.status_code == 404


async def test_callback_completes_once_and_heartbeat_extends(api: Api) -> None:
    async with api.client(Role.admin) as admin:
        await admin.put("/api/v1/flows/slow", json={"spec": _async_flow()})
        run_id = (await admin.post("/api/v1/flows/slow/runs", json={})).json()["id"]
    urls = await api.next_callback()
    callback = httpx.URL(urls["url"]).path
    heartbeat = httpx.URL(urls["heartbeat_url"]).path
    result = json.dumps({"status": "SUCCESS", "output": {"rows": 3}, "logs": ["done"]}).encode()
    async with api.client(None) as backend:
        forged = await backend.post(callback, content=result, headers=signing.sign("x", result))
        assert forged.status_code == 401
        beat = await backend.post(heartbeat, content=b"", headers=signing.sign(SIGNING_KEY, b""))
        assert beat.status_code == 200, beat.text
        assert beat.json()["deadline"] is not None
        first = await backend.post(
            callback, content=result, headers=signing.sign(SIGNING_KEY, result)
        )
        assert first.status_code == 200, first.text
        second = await backend.post(
            callback, content=result, headers=signing.sign(SIGNING_KEY, result)
        )
        assert second.status_code == 409
    run = await api.wait_run(run_id)
    assert run.status.value == "SUCCEEDED"
    async with api.client(Role.viewer) as viewer:
        detail = (await viewer.get(f"/api/v1/runs/{run_id}")).json()
    assert detail["steps"][0]["output"] == {"rows": 3}
    assert detail["steps"][0]["logs"] == ["done"]


async def test_run_stream_sends_events_and_logs_then_ends(api: Api) -> None:
    async with api.client(Role.admin) as admin:
        await admin.put("/api/v1/flows/report", json={"spec": flow_spec()})
        run_id = (
            await admin.post("/api/v1/flows/report/runs", json={"inputs": {"to": "x"}})
        ).json()["id"]
        async with asyncio.timeout(10):
            response = await admin.get(f"/api/v1/runs/{run_id}/stream")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [
        line.removeprefix("event: ")
        for line in response.text.splitlines()
        if line.startswith("event: ")
    ]
    assert events[0] == "run_created"
    assert events.count("log") == 3
    assert events[-1] == "end"
    assert '"status": "SUCCEEDED"' in response.text
    data = [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith('data: {"id"')
    ]
    ids = [d["id"] for d in data]
    assert ids == sorted(ids)
    async with api.client(Role.admin) as admin:
        resumed = await admin.get(
            f"/api/v1/runs/{run_id}/stream", headers={"Last-Event-ID": str(ids[-2])}
        )
    assert resumed.text.count('data: {"id"') == 1
