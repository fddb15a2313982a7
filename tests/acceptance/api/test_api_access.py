"""Access control in process: every route declares a role or a signature, tokens, and the
refusal's wording. The role × route matrix and the audit entry of every mutation are proven
on a real server in tests/security/test_roles.py."""

from __future__ import annotations

import json
import re

from api_harness import Api

from linkloom.access import Role
from linkloom.api.deps import PUBLIC_ROUTES, api_routes


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_api_route_declares_a_role_or_is_signed(api: Api) -> None:
    """A new route without ``require_role`` (and not a signed public route) fails here."""
    routes = api_routes(api.app)
    assert len(routes) > 30
    unguarded = [(m, p) for m, p, role in routes if role is None and (m, p) not in PUBLIC_ROUTES]
    assert unguarded == []
    assert {(m, p) for m, p, role in routes if role is None} == set(PUBLIC_ROUTES)


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
    stored = await api.services.tokens.list(include_revoked=True)
    assert all(secret not in repr(t) for t in stored)


async def test_role_too_low_says_what_is_needed(api: Api) -> None:
    async with api.client(Role.viewer) as viewer:
        response = await viewer.post("/api/v1/flows/report/runs", json={"inputs": {}})
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert "author" in response.json()["detail"]
