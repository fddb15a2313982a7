"""Token login and logout, dead letters with re-drive, and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from linkloom import auth
from linkloom.access import AuditFilter, Role
from linkloom.errors import InvalidInput
from linkloom.web import rendering, session
from linkloom.web.routes.pages import _audit, services
from linkloom.web.routing import WebRoute

router = APIRouter(route_class=WebRoute)


@router.get("/login")
async def login_form(request: Request, next: str = "/") -> Response:  # query name
    if not session.enabled(request) or await session.actor_or_none(request) is not None:
        return RedirectResponse(session.safe_next(next), status_code=303)
    return rendering.page(request, "login.html", title="Sign in", next=session.safe_next(next))


@router.post("/login")
async def login(request: Request) -> Response:
    session.check_origin(request)
    data = await request.form()
    token = str(data.get("token", "")).strip()
    target = session.safe_next(str(data.get("next", "/")))
    authenticator = services(request).auth
    try:
        actor = await authenticator.actor(f"Bearer {token}" if token else None)
    except auth.MissingToken:
        return _login_error(request, target, "Paste an API token to sign in.")
    except auth.TokenInvalid:
        return _login_error(
            request, target, "That token is unknown or revoked; ask an admin for a new one."
        )
    response = RedirectResponse(target, status_code=303)
    await session.sign_in(request, response, actor)
    request.state.actor = actor
    await _audit(request, "session.login", "token", actor.token_id, via="web")
    return response


def _login_error(request: Request, target: str, message: str) -> Response:
    return rendering.page(
        request, "login.html", status_code=401, title="Sign in", next=target, error=message
    )


@router.post("/logout")
async def logout(request: Request) -> Response:
    await session.form(request)
    actor = await session.actor_or_none(request)
    response = RedirectResponse("/login", status_code=303)
    await session.sign_out(request, response)
    if actor is not None and actor.token_id is not None:
        await _audit(request, "session.logout", "token", actor.token_id, via="web")
    return response


@router.get("/dead-letters")
async def dead_letters(request: Request, flow: str = "", redriven: bool = False) -> Response:
    await session.require(request, Role.viewer)
    letters = await services(request).runs.list_dead_letters(
        flow_id=flow or None, include_redriven=redriven, limit=200
    )
    return rendering.page(
        request,
        "dead_letters.html",
        title="Dead letters",
        letters=letters,
        flow=flow,
        redriven=redriven,
    )


@router.post("/dead-letters/redrive")
async def redrive(request: Request) -> Response:
    actor = await session.require(request, Role.author)
    form = await session.form(request)
    ids = form.get("id") or []
    ids = [ids] if isinstance(ids, str) else list(ids)
    if not ids:
        raise InvalidInput("choose at least one dead letter to re-drive")
    on = str(form.get("on") or "failed_version")
    runs = await services(request).runs.redrive(ids, on=on, actor=actor.name)
    for letter_id in ids:
        await _audit(
            request,
            "dead_letter.redrive",
            "dead_letter",
            letter_id,
            on=on,
            runs=[r.id for r in runs],
        )
    if len(runs) == 1:
        return RedirectResponse(f"/runs/{runs[0].id}", status_code=303)
    return RedirectResponse("/dead-letters", status_code=303)


@router.get("/audit")
async def audit_log(
    request: Request,
    actor: str = "",
    action: str = "",
    object_type: str = "",
    cursor: str | None = None,
) -> Response:
    await session.require(request, Role.reviewer)
    filters = AuditFilter(
        actor=actor or None, action=action or None, object_type=object_type or None
    )
    entries, next_cursor = await services(request).audit.list(filters, limit=100, cursor=cursor)
    return rendering.page(
        request,
        "audit.html",
        title="Audit log",
        entries=entries,
        next_cursor=next_cursor,
        filters={"actor": actor, "action": action, "object_type": object_type},
        now=datetime.now(UTC),
    )
