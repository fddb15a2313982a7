"""Access control: every route × every role, tokens, and an audit entry for every mutation."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest
from api_harness import SIGNING_KEY, Api, flow_spec

from linkloom import signing
from linkloom.access import Role
from linkloom.api.deps import PUBLIC_ROUTES, api_routes
from linkloom.api.routes import access, deadletters, flows, inbound, runs

STREAMS = {"/api/v1/stream", "/api/v1/runs/{run_id}/stream"}


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


async def _call(client: httpx.AsyncClient, method: str, path: str) -> int:
    url = _fill(path)
    if path in STREAMS:
        try:
            async with asyncio.timeout(0.25):
                return (await client.request(method, url)).status_code
        except TimeoutError:
            return 200  # the stream opened: the role was let through
    return (await client.request(method, url)).status_code


def test_every_api_route_declares_a_role_or_is_signed(api: Api) -> None:
    """A new route without ``require_role`` (and not a signed public route) fails here."""
    routes = api_routes(api.app)
    assert len(routes) > 30
    unguarded = [(m, p) for m, p, role in routes if role is None and (m, p) not in PUBLIC_ROUTES]
    assert unguarded == []
    assert {(m, p) for m, p, role in routes if role is None} == set(PUBLIC_ROUTES)


@pytest.mark.slow
async def test_role_matrix_every_route_every_role(api: Api) -> None:
    """Below the route's role: 403; at or above: past the role check; no token: 401."""
    checked = 0
    clients = {role: api.client(role) for role in Role}
    anonymous = api.client(None)
    try:
        for method, path, needed in api_routes(api.app):
            if needed is None:
                continue
            assert await _call(anonymous, method, path) == 401, (method, path)
            for role, client in clients.items():
                status = await _call(client, method, path)
                if role.allows(needed):
                    assert status not in (401, 403), (method, path, role, status)
                else:
                    assert status == 403, (method, path, role, status)
                checked += 1
    finally:
        for client in clients.values():
            await client.aclose()
        await anonymous.aclose()
    assert checked >= 4 * 30


async def test_signed_routes_ignore_tokens_and_need_signatures(api: Api) -> None:
    async with api.client(Role.admin) as admin:
        for method, path in PUBLIC_ROUTES:
            response = await admin.request(method, _fill(path), content=b"{}")
            assert response.status_code in (401, 404, 503), (path, response.text)
            if response.status_code == 401:
                assert response.json()["code"] in ("signature_rejected", "webhook_rejected")


async def test_token_lifecycle_and_revocation(api: Api) -> None:
    async with api.client(Role.admin) as admin:
        created = await admin.post("/api/v1/tokens", json={"name": "ci", "role": "author"})
        assert created.status_code == 201
        secret = created.json()["secret"]
        token_id = created.json()["id"]
        assert secret.startswith("loom_")
        listed = (await admin.get("/api/v1/tokens")).json()
        assert "secret" not in json.dumps(listed)
        assert secret not in json.dumps(listed)
        headers = {"Authorization": f"Bearer {secret}"}
        me = await admin.get("/api/v1/me", headers=headers)
        assert me.json() == {"name": "ci", "role": "author", "token_id": token_id}
        revoked = await admin.delete(f"/api/v1/tokens/{token_id}")
        assert revoked.json()["revoked_at"] is not None
        after = await admin.get("/api/v1/me", headers=headers)
        assert after.status_code == 401
        assert after.json()["code"] == "token_invalid"
        assert after.headers["www-authenticate"] == "Bearer"
    stored = await api.app.state.tokens.list(include_revoked=True)
    assert all(secret not in repr(t) for t in stored)


async def test_role_too_low_says_what_is_needed(api: Api) -> None:
    async with api.client(Role.viewer) as viewer:
        response = await viewer.post("/api/v1/flows/report/runs", json={"inputs": {}})
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert "author" in response.json()["detail"]


def _signed(body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, {**signing.sign(SIGNING_KEY, raw), "Content-Type": "application/json"}


async def test_every_mutating_route_writes_an_audit_entry(api: Api) -> None:
    """Call each POST/PUT/DELETE route once, successfully; each call adds an audit entry.
    Heartbeats are exempt: they keep a step alive and change nothing anyone decided."""
    async_flow = flow_spec(
        "hooks",
        inputs={},
        triggers=[{"type": "webhook", "id": "push"}],
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
    exercised: set[tuple[str, str]] = set()

    async def step(method: str, template: str, url: str, **kwargs: Any) -> httpx.Response:
        before = await api.app.state.audit.list(_all(), limit=1000)
        response = await client.request(method, url, **kwargs)
        assert response.is_success, (template, response.status_code, response.text)
        after = await api.app.state.audit.list(_all(), limit=1000)
        assert len(after[0]) > len(before[0]), template
        exercised.add((method, template))
        return response

    api.backend.fail.add("send")
    async with api.client(Role.admin) as client:
        v = "/api/v1/flows/{flow_id}"
        await step("PUT", v, "/api/v1/flows/report", json={"spec": flow_spec()})
        await step("PUT", v, "/api/v1/flows/report", json={"spec": flow_spec(name="Report 2")})
        await step("POST", v + "/rollback", "/api/v1/flows/report/rollback", json={"version": 1})
        await step("POST", v + "/pause", "/api/v1/flows/report/pause")
        await step("POST", v + "/resume", "/api/v1/flows/report/resume")
        run = await step(
            "POST", v + "/runs", "/api/v1/flows/report/runs", json={"inputs": {"to": "a"}}
        )
        run_id = run.json()["id"]
        await api.wait_run(run_id)
        letter = (await client.get("/api/v1/dead-letters")).json()["items"][0]["id"]
        await step(
            "POST",
            "/api/v1/dead-letters/redrive",
            "/api/v1/dead-letters/redrive",
            json={"ids": [letter], "on": "current_version"},
        )
        await step("POST", "/api/v1/runs/{run_id}/retry", f"/api/v1/runs/{run_id}/retry")
        await api.wait_run(run_id)
        await step(
            "POST",
            v + "/backfill",
            "/api/v1/flows/report/backfill",
            json={"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z"},
        )
        token = await step(
            "POST", "/api/v1/tokens", "/api/v1/tokens", json={"name": "t", "role": "viewer"}
        )
        await step("DELETE", "/api/v1/tokens/{token_id}", f"/api/v1/tokens/{token.json()['id']}")

        await step("PUT", v, "/api/v1/flows/hooks", json={"spec": async_flow})
        body, headers = _signed({"ref": "main"})
        hook = await step(
            "POST",
            "/api/v1/webhooks/{flow_id}/{trigger_id}",
            "/api/v1/webhooks/hooks/push",
            content=body,
            headers=headers,
        )
        callback_url = httpx.URL((await api.next_callback())["url"]).path
        body, headers = _signed({"status": "SUCCESS", "output": {"ok": True}})
        await step("POST", "/api/v1/callbacks/{token}", callback_url, content=body, headers=headers)
        assert (await api.wait_run(hook.json()["id"])).status.value == "SUCCEEDED"
        # A run waiting for its callback is still running: cancel it.
        waiting = await client.post("/api/v1/flows/hooks/runs", json={})
        await step(
            "POST",
            "/api/v1/runs/{run_id}/cancel",
            f"/api/v1/runs/{waiting.json()['id']}/cancel",
        )
        await step("DELETE", v, "/api/v1/flows/report")

    # The routers of this package (the GitOps routers test their own audit entries).
    ours = [flows.router, runs.router, deadletters.router, access.router, inbound.router]
    mutating = {
        (method, route.path)
        for router in ours
        for route in router.routes
        for method in getattr(route, "methods", ())
        if method in ("POST", "PUT", "DELETE", "PATCH")
    }
    assert mutating - exercised == {("POST", "/api/v1/callbacks/{token}/heartbeat")}


def _all() -> Any:
    from linkloom.access import AuditFilter

    return AuditFilter()
