"""Identity, API tokens (admin) and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from linkloom.access import AuditFilter, Role
from linkloom.api.deps import Actor, Audit, Services, get_services, require_role
from linkloom.api.schemas.access import AuditOut, MeOut, TokenCreatedOut, TokenIn, TokenOut
from linkloom.api.schemas.common import AUTHED, Page, problem_responses

router = APIRouter(prefix="/api/v1", tags=["access"])


@router.get(
    "/me",
    summary="Who the token belongs to and its role",
    dependencies=[require_role(Role.viewer)],
    responses=problem_responses(*AUTHED),
)
async def me(actor: Actor) -> MeOut:
    return MeOut(name=actor.name, role=actor.role, token_id=actor.token_id)


@router.get(
    "/tokens",
    summary="List API tokens (never their secrets)",
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED),
)
async def list_tokens(
    request: Request,
    include_revoked: Annotated[bool, Query(description="Also revoked tokens.")] = False,
) -> list[TokenOut]:
    tokens = await get_services(request).tokens.list(include_revoked=include_revoked)
    return [TokenOut.from_domain(t) for t in tokens]


@router.post(
    "/tokens",
    summary="Create an API token; its secret is in this response only",
    status_code=201,
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED),
)
async def create_token(
    body: TokenIn, request: Request, services: Services, audit: Audit
) -> TokenCreatedOut:
    secret, token = await services.tokens.create(
        name=body.name, role=body.role, now=services.runs.clock.now()
    )
    await audit("token.create", "token", token.id, name=token.name, role=token.role.value)
    return TokenCreatedOut(**TokenOut.from_domain(token).model_dump(), secret=secret)


@router.delete(
    "/tokens/{token_id}",
    summary="Revoke an API token",
    dependencies=[require_role(Role.admin)],
    responses=problem_responses(*AUTHED, 404),
)
async def revoke_token(
    token_id: str, request: Request, services: Services, audit: Audit
) -> TokenOut:
    token = await services.tokens.revoke(token_id, now=services.runs.clock.now())
    await audit("token.revoke", "token", token_id, name=token.name)
    return TokenOut.from_domain(token)


@router.get(
    "/audit",
    summary="The audit log: who did what, to which object, when (newest first)",
    dependencies=[require_role(Role.reviewer)],
    responses=problem_responses(*AUTHED),
)
async def list_audit(
    request: Request,
    actor: Annotated[str | None, Query(description="Only this actor's (token name).")] = None,
    action: Annotated[str | None, Query(description="e.g. run.trigger, flow.apply.")] = None,
    object_type: Annotated[str | None, Query(description="flow, run, token, …")] = None,
    object_id: Annotated[str | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="At or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Before (ISO 8601).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> Page[AuditOut]:
    filters = AuditFilter(
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        since=_utc(since),
        until=_utc(until),
    )
    audit_log = get_services(request).audit
    entries, next_cursor = await audit_log.list(filters, limit=limit, cursor=cursor)
    return Page(items=[AuditOut.from_domain(e) for e in entries], next_cursor=next_cursor)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
