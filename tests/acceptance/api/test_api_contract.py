"""The API's documented contract: every operation has a response model and examples; errors
are problem+json; unexpected failures are opaque 500s."""

from __future__ import annotations

from typing import Any

import structlog
from api_harness import Api, flow_spec

from linkloom.access import Role
from linkloom.api.routes import access, deadletters, flows, inbound, runs

SSE = "text/event-stream"


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref") or (schema.get("items") or {}).get("$ref")
    if not ref:
        return schema
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_every_operation_documents_a_response_model_with_examples(api: Api) -> None:
    """For this package's routers (the GitOps routers are checked by their own tests)."""
    spec = api.app.openapi()
    ours = {
        route.path
        for router in (flows.router, runs.router, deadletters.router, access.router, inbound.router)
        for route in router.routes
    }
    missing: list[str] = []
    for path, operations in spec["paths"].items():
        if path not in ours:
            continue
        for method, operation in operations.items():
            name = f"{method.upper()} {path}"
            if not operation.get("summary"):
                missing.append(f"{name}: no summary")
            ok = {k: v for k, v in operation["responses"].items() if k.startswith("2")}
            assert ok, name
            status, response = next(iter(ok.items()))
            if status == "204":
                continue
            content = response.get("content", {})
            if SSE in content:
                continue
            schema = content.get("application/json", {}).get("schema")
            if not schema:
                missing.append(f"{name}: no response schema")
                continue
            target = _resolve(spec, schema)
            if target.get("title", "").startswith("Page["):
                target = _resolve(spec, target["properties"]["items"])
            if target.get("type") == "object" and "examples" not in target:
                missing.append(f"{name}: response model {target.get('title')} has no example")
            errors = [k for k in operation["responses"] if k[0] in "45"]
            if not errors:
                missing.append(f"{name}: no error responses documented")
    assert missing == []


async def test_unexpected_errors_are_opaque_500s_with_the_traceback_logged(api: Api) -> None:
    async def broken() -> Any:
        raise RuntimeError("database password is hunter2")

    api.services.runs.list_flows = broken  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logged:
        async with api.client(Role.viewer) as viewer:
            response = await viewer.get("/api/v1/flows")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "internal_error"
    assert "hunter2" not in response.text
    assert "X-Request-ID" in response.json()["detail"]
    failed = [e for e in logged if e["event"] == "request_failed"]
    assert failed[0]["error"] == "RuntimeError"
    assert failed[0]["path"] == "/api/v1/flows"


async def test_request_validation_errors_are_problems_naming_the_fields(api: Api) -> None:
    async with api.client(Role.admin) as admin:
        response = await admin.post("/api/v1/tokens", json={"name": "", "role": "boss"})
        not_json = await admin.post(
            "/api/v1/tokens", content=b"{nope", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json()["code"] == "request_invalid"
    assert any("name" in p for p in response.json()["problems"])
    assert any("role" in p for p in response.json()["problems"])
    assert not_json.status_code == 422
    assert not_json.headers["content-type"] == "application/problem+json"


async def test_flow_read_endpoints_show_versions_schedules_and_triggers(api: Api) -> None:
    spec = flow_spec(
        schedules=[{"id": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Kyiv"}],
        triggers=[{"type": "webhook", "id": "push", "secret": "HOOK"}],
    )
    async with api.client(Role.admin) as admin:
        await admin.put("/api/v1/flows/report", json={"spec": spec})
        await admin.put("/api/v1/flows/report", json={"spec": {**spec, "name": "Two"}})
        flow = (await admin.get("/api/v1/flows/report")).json()
        versions = (await admin.get("/api/v1/flows/report/versions")).json()
        first = (await admin.get("/api/v1/flows/report/versions/1")).json()
        schedules = (await admin.get("/api/v1/flows/report/schedules", params={"n": 2})).json()
        triggers = (await admin.get("/api/v1/flows/report/triggers")).json()
        tagged = (await admin.get("/api/v1/flows", params={"tag": "nope"})).json()
        rolled = (await admin.post("/api/v1/flows/report/rollback", json={"version": 1})).json()
        huge = await admin.post("/api/v1/flows/report/rollback", json={"version": 2**63})
    assert huge.status_code == 422  # not a 500 from the database's integer type
    assert flow["version"] == 2
    assert flow["name"] == "Two"
    assert [v["version"] for v in versions] == [1, 2]
    assert first["spec"]["name"] == "Report"
    assert len(schedules[0]["next_fire_times"]) == 2
    assert triggers == [
        {
            "id": "push",
            "type": "webhook",
            "url": "/api/v1/webhooks/report/push",
            "config": triggers[0]["config"],
        }
    ]
    assert "secret" not in triggers[0]["config"]
    assert tagged["items"] == []
    assert rolled["version"] == 3
    assert rolled["source"] == "rollback"
