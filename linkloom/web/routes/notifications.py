"""The notifications page: recent deliveries with their attempts (viewers), the channels with
masked secrets and a "Send test message" button (admins)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from linkloom.access import Role
from linkloom.errors import Unavailable
from linkloom.web import rendering, session
from linkloom.web.routes.pages import _audit, services
from linkloom.web.routing import WebRoute

router = APIRouter(route_class=WebRoute)
RECENT = 50


class NotificationsDisabled(Unavailable):
    """Notifications are disabled; set LOOM_NOTIFICATIONS__ENABLED=true."""

    code = "notifications_disabled"


@router.get("/notifications")
async def notifications_page(request: Request, tested: str = "") -> Response:
    actor = await session.require(request, Role.viewer)
    service = services(request).notifications
    if service is None:
        return rendering.page(
            request, "notifications.html", title="Notifications", enabled=False, rows=[]
        )
    rows: list[dict[str, Any]] = []
    for delivery in await service.list_deliveries(limit=RECENT):
        _, attempts = await service.get_delivery(delivery.id)
        rows.append({"delivery": delivery, "attempts": attempts})
    channels = await service.list_channels()
    names = {c.id: c.name for c in channels}
    return rendering.page(
        request,
        "notifications.html",
        title="Notifications",
        enabled=True,
        rows=rows,
        names=names,
        channels=channels if actor.role.allows(Role.admin) else [],
        tested=tested,
    )


@router.post("/notifications/channels/{channel}/test")
async def send_test_message(request: Request, channel: str) -> Response:
    await session.require(request, Role.admin)
    await session.form(request)
    service = services(request).notifications
    if service is None:
        raise NotificationsDisabled()
    delivery = await service.send_test(channel)
    await _audit(
        request, "notification.channel.test", "notification_channel", delivery.channel_id,
        delivery=delivery.id, status=delivery.status.value,
    )  # fmt: skip
    return RedirectResponse(f"/notifications?tested={delivery.id}", status_code=303)
