"""What each user chooses to be told about, and how: ``/me/notifications``.

* The preferences (``PersonalEvent``: watched flows failing or recovering, proposals waiting
  for my review, my proposals approved or promoted) and the watched flows, a form.
* ``GET /me/notifications/live``: the open app's stream of the user's new notifications
  (Server-Sent Events ``note``); the page shows each as an OS notification through the service
  worker. ``?after=`` (or ``Last-Event-ID``) resumes after the last one seen.
* Web Push for when the app is closed: ``GET /me/push/key`` (the server's VAPID public key),
  ``POST /me/push/subscribe`` (the browser's ``PushSubscription`` JSON) and
  ``POST /me/push/unsubscribe``; JSON with the CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from sse_starlette import EventSourceResponse

from linkloom.access import Role
from linkloom.errors import InvalidInput, LinkloomError, Unavailable
from linkloom.notifications.personal import DESCRIPTIONS, PersonalEvent, Preferences
from linkloom.web import rendering, session
from linkloom.web.routes.pages import services
from linkloom.web.routing import STATUS, WebRoute

router = APIRouter(route_class=WebRoute)

POLL_SECONDS = 0.5


def _store(request: Request) -> Any:
    personal = services(request).personal
    if personal is None:
        raise Unavailable("notifications are disabled on this server (notifications.enabled)")
    return personal.store


@router.get("/me/notifications")
async def my_notifications(request: Request, saved: bool = False) -> Response:
    actor = await session.require(request, Role.viewer)
    personal = services(request).personal
    prefs = None
    subscriptions: list[Any] = []
    if personal is not None:
        prefs = await personal.store.preferences(actor.name)
        subscriptions = await personal.store.subscriptions(actor.name)
    flows = sorted(f.id for f in await services(request).runs.list_flows() if f.deleted_at is None)
    return rendering.page(
        request,
        "me_notifications.html",
        title="My notifications",
        enabled=personal is not None,
        prefs=prefs,
        chosen={e.value for e in prefs.events} if prefs else set(),
        watched=set(prefs.flows) if prefs else set(),
        events=[(e.value, DESCRIPTIONS[e]) for e in PersonalEvent],
        flows=flows,
        subscriptions=subscriptions,
        saved=saved,
    )


@router.post("/me/notifications")
async def save_notifications(request: Request) -> Response:
    actor = await session.require(request, Role.viewer)
    form = await session.form(request)

    def many(name: str) -> list[str]:
        value = form.get(name) or []
        return [value] if isinstance(value, str) else list(value)

    known = {e.value for e in PersonalEvent}
    unknown = [e for e in many("event") if e not in known]
    if unknown:
        raise InvalidInput(f"unknown notification choice(s): {', '.join(unknown)}")
    prefs = Preferences(
        actor=actor.name,
        role=actor.role,
        events=tuple(PersonalEvent(e) for e in many("event")),
        flows=tuple(dict.fromkeys(f for f in many("flow") if f)),
    )
    await _store(request).save_preferences(prefs, now=services(request).runs.clock.now())
    personal = services(request).personal
    if personal is not None:  # never None here: _store refused a server without it
        personal.forget_preferences()
    return RedirectResponse("/me/notifications?saved=1", status_code=303)


@router.get("/me/notifications/live")
async def live_notes(
    request: Request,
    after: int | None = None,
    last_event_id: str | None = Header(default=None),
) -> Response:
    actor = await session.require(request, Role.viewer)
    store = _store(request)
    if last_event_id and last_event_id.isdigit():
        start = int(last_event_id)
    elif after is not None:
        start = after
    else:
        start = await store.last_note_id(actor.name)  # only what happens from now on

    async def stream() -> AsyncIterator[dict[str, Any]]:
        last = start
        yield {"event": "ready", "data": json.dumps({"after": last})}
        while True:
            for note in await store.notes_after(actor.name, last):
                last = note.id or last
                yield {"event": "note", "id": str(note.id), "data": json.dumps(note.payload())}
            await asyncio.sleep(POLL_SECONDS)

    return EventSourceResponse(stream(), ping=15, headers={"Cache-Control": "no-store"})


# ---- Web Push subscriptions (JSON calls from the page) -------------------------------------


@router.get("/me/push/key")
async def push_key(request: Request) -> Response:
    try:
        await session.require(request, Role.viewer)
        keys = await _store(request).vapid_keys(now=services(request).runs.clock.now())
    except (LinkloomError, session.LoginRequired) as exc:
        return _error(exc)
    return JSONResponse({"publicKey": keys.public_key}, headers=rendering.SECURITY_HEADERS)


@router.post("/me/push/subscribe")
async def push_subscribe(request: Request) -> Response:
    try:
        actor = await session.require(request, Role.viewer)
        data = await session.json_body(request)
        endpoint, p256dh, auth = _subscription_fields(request, data)
        sub = await _store(request).add_subscription(
            actor=actor.name,
            endpoint=endpoint,
            p256dh=p256dh,
            auth=auth,
            now=services(request).runs.clock.now(),
        )
    except (LinkloomError, session.LoginRequired) as exc:
        return _error(exc)
    return JSONResponse({"id": sub.id}, status_code=201, headers=rendering.SECURITY_HEADERS)


@router.post("/me/push/unsubscribe")
async def push_unsubscribe(request: Request) -> Response:
    try:
        actor = await session.require(request, Role.viewer)
        data = await session.json_body(request)
        endpoint = str(data.get("endpoint") or "")
        removed = await _store(request).remove_subscription(endpoint, actor=actor.name)
    except (LinkloomError, session.LoginRequired) as exc:
        return _error(exc)
    return JSONResponse({"removed": removed}, headers=rendering.SECURITY_HEADERS)


def _subscription_fields(request: Request, data: dict[str, Any]) -> tuple[str, str, str]:
    endpoint = data.get("endpoint")
    given = data.get("keys")
    keys = given if isinstance(given, dict) else {}
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    if not isinstance(endpoint, str) or not endpoint or len(endpoint) > 2000:
        raise InvalidInput("send the browser's PushSubscription: 'endpoint' is missing")
    if not (isinstance(p256dh, str) and isinstance(auth, str) and 40 <= len(p256dh) <= 200):
        raise InvalidInput("send the browser's PushSubscription: 'keys.p256dh' and 'keys.auth'")
    parts = urlsplit(endpoint)
    insecure = services(request).settings.notifications.web_push_insecure_endpoints
    if parts.scheme == "https" and parts.hostname:
        return endpoint, p256dh, auth
    if parts.scheme == "http" and insecure and _loopback(parts.hostname or ""):
        return endpoint, p256dh, auth
    raise InvalidInput(
        "a push endpoint must be an https URL (a browser push service's); plain http is "
        "accepted only on this machine with notifications.web_push_insecure_endpoints"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error(exc: Exception) -> Response:
    if isinstance(exc, session.LoginRequired):
        return JSONResponse({"error": "sign in again", "code": "not_authenticated"}, 401)
    assert isinstance(exc, LinkloomError)
    status = next((c for cat, c, _ in STATUS if isinstance(exc, cat)), 500)
    body = {"error": str(exc), "code": exc.code}
    return JSONResponse(body, status_code=status, headers=rendering.SECURITY_HEADERS)
