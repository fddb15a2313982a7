from __future__ import annotations

import httpx
from fastapi import FastAPI
from flask import Flask

from linkloom.sdk import InMemoryIdempotencyStore, TaskRequest
from linkloom.sdk.fastapi import LoomRouter
from linkloom.sdk.flask import loom_blueprint
from linkloom.sdk.testing import signed_delivery, task_envelope

KEY = "adapter-key"


async def test_loom_router_serves_tasks_in_any_fastapi_app() -> None:
    router = LoomRouter(signing_key=KEY, idempotency=InMemoryIdempotencyStore(), prefix="/api")
    calls: list[str] = []

    @router.task("/tasks/fetch-data")
    async def fetch_data(task: TaskRequest) -> dict[str, int]:
        calls.append(task.step_id or "")
        task.log("Fetched 2 records")
        return {"count": 2}

    app = FastAPI()
    app.include_router(router)
    body, headers = signed_delivery(task_envelope(step_id="fetch_data"), key=KEY)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://backend") as http:
        ok = await http.post("/api/tasks/fetch-data", content=body, headers=headers)
        again = await http.post("/api/tasks/fetch-data", content=body, headers=headers)
        unsigned = await http.post("/api/tasks/fetch-data", json=task_envelope())
        schema = (await http.get("/openapi.json")).json()
    assert ok.status_code == 200
    assert ok.json() == {"status": "SUCCESS", "output": {"count": 2}, "logs": ["Fetched 2 records"]}
    assert again.json() == ok.json()
    assert again.headers["X-Loom-Idempotent-Replay"] == "true"
    assert calls == ["fetch_data"]
    assert unsigned.status_code == 401
    assert "invalid signature" in unsigned.json()["error"]
    assert "/api/tasks/fetch-data" in schema["paths"]


def test_flask_blueprint_has_the_same_semantics() -> None:
    bp = loom_blueprint(signing_key=KEY, idempotency=InMemoryIdempotencyStore())
    calls: list[int] = []

    @bp.task("/api/tasks/process")
    def process(task: TaskRequest) -> dict[str, int]:
        calls.append(1)
        task.log("Processed data, 3 valid")
        return {"valid": 3}

    @bp.task("/api/tasks/boom")
    def boom() -> None:
        raise KeyError("records")

    app = Flask(__name__)
    app.register_blueprint(bp)
    http = app.test_client()
    body, headers = signed_delivery(task_envelope(step_id="process"), key=KEY)
    ok = http.post("/api/tasks/process", data=body, headers=headers)
    again = http.post("/api/tasks/process", data=body, headers=headers)
    body, headers = signed_delivery(task_envelope(step_id="boom"), key=KEY)
    failed = http.post("/api/tasks/boom", data=body, headers=headers)
    unsigned = http.post("/api/tasks/process", json=task_envelope())
    assert ok.status_code == 200
    assert ok.get_json() == {
        "status": "SUCCESS",
        "output": {"valid": 3},
        "logs": ["Processed data, 3 valid"],
    }
    assert again.get_json() == ok.get_json()
    assert calls == [1]
    assert failed.get_json()["status"] == "FAILED"
    assert failed.get_json()["error"] == "KeyError: 'records'"
    assert unsigned.status_code == 401


def test_flask_blueprint_runs_async_tasks_on_a_background_thread() -> None:
    import json

    from linkloom.sdk import CallbackSender

    posted: list[tuple[str, dict]] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        posted.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={})

    sender = CallbackSender(signing_key=KEY, transport=httpx.MockTransport(receiver))
    bp = loom_blueprint(signing_key=KEY, callbacks=sender, heartbeat_interval=0.02)

    @bp.task("/api/tasks/slow", async_task=True)
    async def slow(task: TaskRequest) -> dict[str, bool]:
        import asyncio

        await asyncio.sleep(0.1)
        return {"done": True}

    app = Flask(__name__)
    app.register_blueprint(bp)
    callback = {"url": "http://loom.test/cb/t", "heartbeat_url": "http://loom.test/cb/t/heartbeat"}
    body, headers = signed_delivery(task_envelope(callback=callback), key=KEY)
    reply = app.test_client().post("/api/tasks/slow", data=body, headers=headers)
    assert reply.status_code == 202
    bp.dispatcher.join(timeout=5)
    assert posted[-1] == ("/cb/t", {"status": "SUCCESS", "output": {"done": True}, "logs": []})
    assert ("/cb/t/heartbeat", {}) in posted
