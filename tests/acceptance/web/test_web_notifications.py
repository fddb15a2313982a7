"""The notifications page: deliveries of a real failing run with their attempts, channels with
masked secrets and the test button for admins only."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from linkloom.access import Role
from linkloom.notifications.models import ChannelKind, DeliveryStatus, EventKind
from tests.acceptance.api.api_harness import Api, flow_spec
from tests.acceptance.web.web_client import browser, csrf_of
from tests.support.notify_receivers import WebhookReceiver


async def _hook(api: Api, url: str, *, secret: str = "") -> str:
    service = api.services.notifications
    assert service is not None
    channel = await service.create_channel(
        name="hook",
        kind=ChannelKind.WEBHOOK,
        config={"url": url},
        secrets={"secret": secret} if secret else {},
        enabled=True,
    )
    return channel.id


async def test_web_notifications_page_lists_a_failing_runs_delivery(api: Api) -> None:
    service = api.services.notifications
    assert service is not None
    with WebhookReceiver() as receiver:
        await _hook(api, f"{receiver.url}/h")
        await service.create_rule(
            name="r", events=[EventKind.RUN_FAILED], channels=["hook"], flow_id="report"
        )
        async with api.client(Role.admin) as admin:
            put = await admin.put("/api/v1/flows/report", json={"spec": flow_spec()})
            assert put.status_code == 200, put.text
        api.backend.fail.add("send")
        run = await api.services.runs.trigger("report", inputs={"to": "a@b.c"})
        await api.wait_run(run.id)
        for _ in range(200):
            found = await service.list_deliveries()
            if found and found[0].status is DeliveryStatus.SENT:
                break
            await asyncio.sleep(0.025)
        [delivery] = found
        assert [r.json["kind"] for r in receiver.received] == ["run_failed"]
    async with browser(api, Role.viewer) as client:
        page = await client.get("/notifications")
    assert page.status_code == 200
    assert 'href="/notifications" aria-current="page"' in page.text
    assert f'data-delivery="{delivery.id}"' in page.text
    assert f'href="/runs/{run.id}"' in page.text
    assert "run_failed" in page.text
    assert 'st-sent">sent<' in page.text
    assert 'data-attempt="1">#1 ok · 200' in page.text
    assert "Send test message" not in page.text  # viewers see no channels and no button
    assert "Channels" not in page.text


async def test_web_notifications_test_button_records_a_delivery(api: Api) -> None:
    with WebhookReceiver() as receiver:
        channel_id = await _hook(api, f"{receiver.url}/h", secret="hush-abcdefgh")
        async with browser(api, Role.viewer) as viewer:
            page = await viewer.get("/notifications")
            denied = await viewer.post(
                f"/notifications/channels/{channel_id}/test", data={"csrf": csrf_of(page.text)}
            )
            assert denied.status_code == 403
        async with browser(api, Role.admin) as admin:
            page = await admin.get("/notifications")
            assert "Send test message" in page.text
            assert "****efgh" in page.text  # masked as the API masks it
            assert "hush-abcdefgh" not in page.text
            no_csrf = await admin.post(f"/notifications/channels/{channel_id}/test")
            assert no_csrf.status_code == 403
            sent = await admin.post(
                f"/notifications/channels/{channel_id}/test", data={"csrf": csrf_of(page.text)}
            )
            assert sent.status_code == 303
            delivery_id = sent.headers["location"].split("tested=", 1)[1]
            after = await admin.get(sent.headers["location"])
        assert [r.json["kind"] for r in receiver.received] == ["test"]
    service = api.services.notifications
    assert service is not None
    delivery, attempts = await service.get_delivery(delivery_id)
    assert delivery.status is DeliveryStatus.SENT
    assert delivery.notification.kind is EventKind.TEST
    assert [a.ok for a in attempts] == [True]
    assert f'data-delivery="{delivery_id}" class="highlight"' in after.text


async def test_web_notifications_disabled_say_so(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from linkloom.web.routes import notifications

    wired = dataclasses.replace(api.services, notifications=None)
    monkeypatch.setattr(notifications, "services", lambda request: wired)
    async with browser(api, Role.admin) as client:
        page = await client.get("/notifications")
        assert page.status_code == 200
        assert "Notifications are disabled" in page.text
        sent = await client.post(
            "/notifications/channels/hook/test", data={"csrf": csrf_of(page.text)}
        )
        assert sent.status_code == 503
