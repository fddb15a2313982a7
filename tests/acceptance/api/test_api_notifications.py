"""Notification routes: admins manage channels and rules, viewers read deliveries; secrets go in
and come back masked only; every mutation is audited; the test route reaches a real receiver."""

from __future__ import annotations

import asyncio
from typing import Any

from api_harness import Api, flow_spec

from linkloom.access import AuditFilter, Role
from linkloom.notifications.models import DeliveryStatus
from tests.support.notify_receivers import WebhookReceiver, free_port

SLACK_URL = "https://hooks.slack.example/services/T000/B000/SECRETSECRET"


async def _audit_count(api: Api) -> int:
    entries, _ = await api.services.audit.list(AuditFilter(), limit=1000)
    return len(entries)


async def test_api_notifications_channels_are_admin_only_and_secrets_stay_masked(api: Api) -> None:
    async with api.client(Role.reviewer) as reviewer:
        denied = await reviewer.post(
            "/api/v1/notifications/channels",
            json={"name": "s", "kind": "slack", "secrets": {"url": SLACK_URL}},
        )
        assert denied.status_code == 403
        assert (await reviewer.get("/api/v1/notifications/channels")).status_code == 403
    async with api.client(Role.admin) as admin:
        made = await admin.post(
            "/api/v1/notifications/channels",
            json={"name": "ops-slack", "kind": "slack", "secrets": {"url": SLACK_URL}},
        )
        assert made.status_code == 201, made.text
        assert made.json()["secrets"] == {"url": "****CRET"}
        listed = await admin.get("/api/v1/notifications/channels")
        patched = await admin.patch(
            "/api/v1/notifications/channels/ops-slack", json={"enabled": False}
        )
        fetched = await admin.get(f"/api/v1/notifications/channels/{made.json()['id']}")
        for response in (made, listed, patched, fetched):
            assert "SECRETSECRET" not in response.text
        assert patched.json()["enabled"] is False
        assert fetched.json()["secrets"] == {"url": "****CRET"}  # kept: the patch named none
        duplicate = await admin.post(
            "/api/v1/notifications/channels",
            json={"name": "ops-slack", "kind": "slack", "secrets": {"url": SLACK_URL}},
        )
        assert duplicate.status_code == 409
        bad = await admin.post(
            "/api/v1/notifications/channels",
            json={"name": "mail", "kind": "email", "config": {"host": "smtp.example"}},
        )
        assert bad.status_code == 422
        assert "config.to must be a non-empty list" in bad.json()["detail"]
    notifications = api.services.notifications
    assert notifications is not None
    stored = await notifications.get_channel("ops-slack")
    assert stored.secrets == {"url": SLACK_URL}  # readable inside the service
    async with api.services.db.read() as conn:
        from sqlalchemy import text

        raw = (await conn.execute(text("SELECT secrets FROM notification_channels"))).scalar()
    assert raw is not None
    assert "SECRET" not in raw  # encrypted at rest


async def test_api_notifications_rules_deliveries_and_test_route(api: Api) -> None:
    port = free_port()
    async with api.client(Role.admin) as admin:
        hook = await admin.post(
            "/api/v1/notifications/channels",
            json={
                "name": "hook",
                "kind": "webhook",
                "config": {"url": f"http://127.0.0.1:{port}/h"},
            },
        )
        rule = await admin.post(
            "/api/v1/notifications/rules",
            json={"name": "r", "flow_id": "report", "events": ["run_failed"], "channels": ["hook"]},
        )
        assert rule.status_code == 201, rule.text
        assert rule.json()["channels"] == [hook.json()["id"]]
        assert rule.json()["quiet_seconds"] == 300
        unknown = await admin.post(
            "/api/v1/notifications/rules",
            json={"name": "r", "events": ["run_failed"], "channels": ["nope"]},
        )
        assert unknown.status_code == 404
        sla = await admin.post(
            "/api/v1/notifications/rules",
            json={"name": "r", "events": ["sla_exceeded"], "channels": ["hook"]},
        )
        assert sla.status_code == 422
        assert "sla_seconds" in sla.json()["detail"]

        refused = await admin.post("/api/v1/notifications/channels/hook/test")
        assert refused.status_code == 200
        assert refused.json()["status"] == "failed"
        assert "Connect call failed" in refused.json()["last_error"]
        with WebhookReceiver(port=port) as receiver:
            sent = await admin.post(
                "/api/v1/notifications/channels/hook/test", json={"text": "hello ops"}
            )
            assert sent.json()["status"] == "sent"
            assert [r.json["text"] for r in receiver.received] == ["hello ops"]

    async with api.client(Role.viewer) as viewer:
        listed = await viewer.get("/api/v1/notifications/deliveries", params={"channel": "hook"})
        assert [d["status"] for d in listed.json()["items"]] == ["sent", "failed"]
        detail = await viewer.get(f"/api/v1/notifications/deliveries/{sent.json()['id']}")
        assert [(a["number"], a["ok"]) for a in detail.json()["log"]] == [(1, True)]
        missing = await viewer.get("/api/v1/notifications/deliveries/nope")
        assert missing.status_code == 404
        assert missing.json()["code"] == "delivery_not_found"
        assert (await viewer.get("/api/v1/notifications/rules")).status_code == 403
    failed = await api.services.notifications.list_deliveries(status=DeliveryStatus.FAILED)
    assert len(failed) == 1


async def test_api_notifications_every_mutation_is_audited(api: Api) -> None:
    calls: list[tuple[str, str, dict[str, Any]]] = [
        (
            "POST",
            "/api/v1/notifications/channels",
            {"json": {"name": "c", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/x"}}},
        ),
        ("PATCH", "/api/v1/notifications/channels/c", {"json": {"enabled": True}}),
        ("POST", "/api/v1/notifications/channels/c/test", {}),
        (
            "POST",
            "/api/v1/notifications/rules",
            {"json": {"name": "r", "events": ["run_failed"], "channels": ["c"]}},
        ),
    ]
    async with api.client(Role.admin) as admin:
        for method, url, kwargs in calls:
            before = await _audit_count(api)
            response = await admin.request(method, url, **kwargs)
            assert response.is_success, (url, response.text)
            assert await _audit_count(api) == before + 1, url
            if url.endswith("/rules") and method == "POST":
                rule_id = response.json()["id"]
        for method, url in (
            ("PATCH", f"/api/v1/notifications/rules/{rule_id}"),
            ("DELETE", f"/api/v1/notifications/rules/{rule_id}"),
            ("DELETE", "/api/v1/notifications/channels/c"),
        ):
            before = await _audit_count(api)
            kwargs = {"json": {"quiet_seconds": 5}} if method == "PATCH" else {}
            response = await admin.request(method, url, **kwargs)
            assert response.is_success, (url, response.text)
            assert await _audit_count(api) == before + 1, url


async def test_api_notifications_failing_run_is_delivered(api: Api) -> None:
    with WebhookReceiver() as receiver:
        async with api.client(Role.admin) as admin:
            await admin.put("/api/v1/flows/report", json={"spec": flow_spec()})
            await admin.post(
                "/api/v1/notifications/channels",
                json={"name": "h", "kind": "webhook", "config": {"url": f"{receiver.url}/h"}},
            )
            await admin.post(
                "/api/v1/notifications/rules",
                json={"name": "r", "events": ["run_failed"], "channels": ["h"]},
            )
            api.backend.fail.add("send")
            run = await admin.post("/api/v1/flows/report/runs", json={"inputs": {"to": "a"}})
            await api.wait_run(run.json()["id"])
            async with api.client(Role.viewer) as viewer:
                for _ in range(200):
                    found = (await viewer.get("/api/v1/notifications/deliveries")).json()["items"]
                    if found and found[0]["status"] == "sent":
                        break
                    await asyncio.sleep(0.025)
        assert found[0]["run_id"] == run.json()["id"]
        assert found[0]["link"].endswith(f"/runs/{run.json()['id']}")
        assert [r.json["kind"] for r in receiver.received] == ["run_failed"]
        assert "step 'send' failed: /send is broken" in receiver.received[0].json["text"]
