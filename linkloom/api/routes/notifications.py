"""Notifications: channels and rules (admins), deliveries and their attempts (viewers), and a
test message to a channel. Channel secrets are accepted and never answered back unmasked."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from linkloom.access import Role
from linkloom.api.deps import Audit, Services, require_role
from linkloom.api.schemas.common import AUTHED, Page, problem_responses
from linkloom.api.schemas.notifications import (
    AttemptOut,
    ChannelIn,
    ChannelOut,
    ChannelPatch,
    DeliveryDetailOut,
    DeliveryOut,
    MessageIn,
    RuleIn,
    RuleOut,
    RulePatch,
)
from linkloom.errors import Unavailable
from linkloom.notifications.models import DeliveryStatus
from linkloom.notifications.service import NotificationService
from linkloom.wiring import Services as WiredServices

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])
ONE = problem_responses(*AUTHED, 404)
CHANGE = problem_responses(*AUTHED, 404, 409)


class NotificationsDisabled(Unavailable):
    """Notifications are disabled; set LOOM_NOTIFICATIONS__ENABLED=true."""

    code = "notifications_disabled"


def _service(services: WiredServices) -> NotificationService:
    if services.notifications is None:
        raise NotificationsDisabled()
    return services.notifications


# ---- channels ---------------------------------------------------------------------------------
@router.get(
    "/channels",
    summary="List notification channels (secrets masked)",
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED, 503),
)
async def list_channels(services: Services) -> Page[ChannelOut]:
    found = await _service(services).list_channels()
    return Page(items=[ChannelOut.from_domain(c) for c in found])


@router.post(
    "/channels",
    summary="Create a channel: webhook, slack or email",
    status_code=201,
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED, 409, 503),
)
async def create_channel(body: ChannelIn, services: Services, audit: Audit) -> ChannelOut:
    channel = await _service(services).create_channel(
        name=body.name,
        kind=body.kind,
        config=body.config,
        secrets=body.secrets,
        enabled=body.enabled,
    )
    await audit(
        "notification.channel.create", "notification_channel", channel.id,
        name=channel.name, kind=channel.kind.value,
    )  # fmt: skip
    return ChannelOut.from_domain(channel)


@router.get(
    "/channels/{channel}",
    summary="One channel, by id or name (secrets masked)",
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED, 404, 503),
)
async def get_channel(channel: str, services: Services) -> ChannelOut:
    return ChannelOut.from_domain(await _service(services).get_channel(channel))


@router.patch(
    "/channels/{channel}",
    summary="Change a channel (a secret left out is kept)",
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED, 404, 409, 503),
)
async def update_channel(
    channel: str, body: ChannelPatch, services: Services, audit: Audit
) -> ChannelOut:
    updated = await _service(services).update_channel(
        channel, name=body.name, config=body.config, secrets=body.secrets, enabled=body.enabled
    )
    changed = sorted(body.model_dump(exclude_unset=True))
    await audit("notification.channel.update", "notification_channel", updated.id, fields=changed)
    return ChannelOut.from_domain(updated)


@router.delete(
    "/channels/{channel}",
    summary="Delete a channel (rules stop sending to it)",
    status_code=204,
    response_class=Response,
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED, 404, 503),
)
async def delete_channel(channel: str, services: Services, audit: Audit) -> Response:
    service = _service(services)
    found = await service.get_channel(channel)
    await service.delete_channel(found.id)
    await audit("notification.channel.delete", "notification_channel", found.id, name=found.name)
    return Response(status_code=204)


@router.post(
    "/channels/{channel}/test",
    summary="Send a test message to a channel now",
    description="Answers the delivery after its one attempt: `status` is `sent` or `failed`, "
    "with `last_error` saying why.",
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED, 404, 503),
)
async def send_test_message(
    channel: str,
    services: Services,
    audit: Audit,
    body: Annotated[MessageIn | None, Body()] = None,
) -> DeliveryOut:
    delivery = await _service(services).send_test(channel, text=body.text if body else "")
    await audit(
        "notification.channel.test", "notification_channel", delivery.channel_id,
        delivery=delivery.id, status=delivery.status.value,
    )  # fmt: skip
    return DeliveryOut.from_domain(delivery)


# ---- rules ------------------------------------------------------------------------------------
@router.get(
    "/rules",
    summary="List notification rules",
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED, 503),
)
async def list_rules(
    services: Services,
    flow: Annotated[str | None, Query(description="Only this flow's and global rules.")] = None,
) -> Page[RuleOut]:
    found = await _service(services).list_rules()
    if flow is not None:
        found = [r for r in found if r.flow_id in (None, flow)]
    return Page(items=[RuleOut.from_domain(r) for r in found])


@router.post(
    "/rules",
    summary="Create a rule: which events of which flow go to which channels",
    status_code=201,
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED, 404, 503),
)
async def create_rule(body: RuleIn, services: Services, audit: Audit) -> RuleOut:
    rule = await _service(services).create_rule(
        name=body.name,
        events=body.events,
        channels=body.channels,
        flow_id=body.flow_id,
        quiet_seconds=body.quiet_seconds,
        sla_seconds=body.sla_seconds,
        enabled=body.enabled,
    )
    await audit(
        "notification.rule.create", "notification_rule", rule.id,
        flow_id=rule.flow_id, events=[e.value for e in rule.events],
    )  # fmt: skip
    return RuleOut.from_domain(rule)


@router.get(
    "/rules/{rule_id}",
    summary="One rule",
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED, 404, 503),
)
async def get_rule(rule_id: str, services: Services) -> RuleOut:
    return RuleOut.from_domain(await _service(services).get_rule(rule_id))


@router.patch(
    "/rules/{rule_id}",
    summary="Change a rule",
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED, 404, 503),
)
async def update_rule(rule_id: str, body: RulePatch, services: Services, audit: Audit) -> RuleOut:
    changes = body.model_dump(exclude_unset=True)
    service = _service(services)
    if "flow_id" in changes and changes["flow_id"] is None:
        changes["flow_id"] = ""  # explicit null: make the rule global
    rule = await service.update_rule(rule_id, **changes)
    await audit("notification.rule.update", "notification_rule", rule.id, fields=sorted(changes))
    return RuleOut.from_domain(rule)


@router.delete(
    "/rules/{rule_id}",
    summary="Delete a rule",
    status_code=204,
    response_class=Response,
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED, 404, 503),
)
async def delete_rule(rule_id: str, services: Services, audit: Audit) -> Response:
    await _service(services).delete_rule(rule_id)
    await audit("notification.rule.delete", "notification_rule", rule_id)
    return Response(status_code=204)


# ---- deliveries -------------------------------------------------------------------------------
@router.get(
    "/deliveries",
    summary="Deliveries, newest first",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404, 503),
)
async def list_deliveries(
    services: Services,
    channel: Annotated[str | None, Query(description="Only this channel's (id or name).")] = None,
    status: Annotated[DeliveryStatus | None, Query(description="Only in this status.")] = None,
    flow: Annotated[str | None, Query(description="Only about this flow.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[DeliveryOut]:
    found = await _service(services).list_deliveries(
        channel=channel, status=status, flow_id=flow, limit=limit
    )
    return Page(items=[DeliveryOut.from_domain(d) for d in found])


@router.get(
    "/deliveries/{delivery_id}",
    summary="One delivery with every attempt",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED, 404, 503),
)
async def get_delivery(delivery_id: str, services: Services) -> DeliveryDetailOut:
    delivery, attempts = await _service(services).get_delivery(delivery_id)
    base = DeliveryOut.from_domain(delivery).model_dump()
    return DeliveryDetailOut(**base, log=[AttemptOut.from_domain(a) for a in attempts])
