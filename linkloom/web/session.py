"""Who is using the UI: server-side sign-in sessions, role checks and CSRF protection.

* ``POST /login`` takes an API token (``loom token create``) and checks it with the API's
  ``Authenticator``; the token itself is then forgotten. The server starts a session
  (``store.web_sessions``: a random secret whose SHA-256 only is stored, tied to the token)
  and puts the secret in the ``loom_session`` cookie: ``HttpOnly`` (scripts never see it),
  ``SameSite=Strict`` (other sites' requests never carry it), ``Secure`` behind https. The
  cookie is no API token: the API refuses it as a Bearer token.
* Signing in always starts a new session and ends, on the server, the one whose cookie the
  browser sent (if any, whoever's): no cookie value known before a sign-in works after it.
* A session ends at sign-out (``POST /logout`` revokes it on the server, so a copied cookie
  stops working too), at the next sign-in from that browser, when its token is revoked, after
  ``server.session_idle_seconds`` without a request and ``server.session_max_seconds`` after
  sign-in, whichever comes first.
* Every page resolves the cookie to the same ``Actor`` the API would give the session's
  token, and checks roles with the API's ``Actor.require`` (viewer < author < reviewer < admin).
* CSRF: both defences. Every form carries a token derived from the session
  (HMAC-SHA256 of the cookie with the server's signing key); every POST must send it back and,
  when the browser sends an ``Origin`` header, that origin must be this server's.
* With ``server.auth`` off (loopback development) everyone is the anonymous admin.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request

from linkloom import auth
from linkloom.access import Role
from linkloom.errors import InvalidInput, LinkloomError, NotAuthenticated, NotPermitted
from linkloom.http import context

COOKIE = "loom_session"


class LoginRequired(Exception):  # control flow: the route class redirects
    """No valid session: the page redirects to /login."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class CsrfRejected(NotPermitted):
    """The form was not sent from this site's own page; reload the page and try again."""

    code = "csrf_rejected"


def enabled(request: Request) -> bool:
    return context.services(request).auth.enabled


async def actor_or_none(request: Request) -> auth.Actor | None:
    """The actor of the session cookie, or None (no cookie; unknown, expired or signed-out
    session; revoked token)."""
    cached = getattr(request.state, "web_actor", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    services = context.services(request)
    authenticator = services.auth
    if not authenticator.enabled:
        actor = auth.ANONYMOUS
    else:
        found = await services.web_sessions.authenticate(
            request.cookies.get(COOKIE, ""),
            now=authenticator.clock.now(),
            idle=services.settings.server.session_idle_seconds,
        )
        if found is None:
            return None
        await authenticator.touch(found.token_id)  # 'loom token list' shows the last use
        actor = auth.Actor(name=found.token_name, role=found.role, token_id=found.token_id)
    request.state.web_actor = actor
    request.state.actor = actor  # the API's audit writer reads this
    return actor


async def sign_in(request: Request, response: Any, actor: auth.Actor) -> None:
    """Start a server-side session for the token ``actor`` signed in with; set its cookie.

    The session is always new, with a new secret, and every session cookie the browser sent
    ends on the server (whoever's it was): a cookie value someone knew before the sign-in (one
    they planted: session fixation) or an earlier session of this browser never outlives it."""
    services = context.services(request)
    server = services.settings.server
    if actor.token_id is None:  # auth off: nobody needs a session
        return
    secret, _ = await services.web_sessions.create(
        token_id=actor.token_id,
        now=services.auth.clock.now(),
        lifetime=server.session_max_seconds,
        replacing=sent_cookies(request),
    )
    response.set_cookie(
        COOKIE,
        secret,
        max_age=int(server.session_max_seconds),
        httponly=True,
        samesite="strict",
        # Behind a TLS proxy the app may see http: the public URL says what the browser uses.
        secure=request.url.scheme == "https" or server.public_url.startswith("https://"),
        path="/",
    )


async def sign_out(request: Request, response: Any) -> None:
    """End this browser's session on the server and clear its cookie."""
    services = context.services(request)
    for secret in sent_cookies(request):
        await services.web_sessions.revoke(secret, now=services.auth.clock.now())
    clear_cookie(response)


def sent_cookies(request: Request) -> list[str]:
    """Every ``loom_session`` value in the request's ``Cookie`` header: a browser sends more
    than one when another one was set for a narrower path or a parent domain."""
    found = []
    for header in request.headers.getlist("cookie"):
        for pair in header.split(";"):
            name, _, value = pair.strip().partition("=")
            if name == COOKIE and value.strip('"'):
                found.append(value.strip('"'))
    return found


async def require(request: Request, role: Role = Role.viewer) -> auth.Actor:
    """The signed-in actor, if it has ``role``; else redirect to login (or 403)."""
    actor = await actor_or_none(request)
    if actor is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    actor.require(role)
    return actor


def csrf_token(request: Request) -> str:
    secret = request.cookies.get(COOKIE, "") or "anonymous"
    return _mac(request, "csrf|" + secret)


def _mac(request: Request, message: str) -> str:
    key = context.services(request).settings.security.signing_key.get_secret_value()
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()[:40]


def check_origin(request: Request) -> None:
    """Refuse a POST whose ``Origin`` (or ``Referer``) names another site."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        if origin == "null":
            raise CsrfRejected()
        return
    allowed = {request.headers.get("host", "")}
    public = context.services(request).settings.public_url  # behind a proxy
    if public:
        allowed.add(urlsplit(public).netloc)
    if urlsplit(origin).netloc not in allowed:
        raise CsrfRejected()


async def form(request: Request) -> dict[str, Any]:
    """The POSTed form, after the origin and CSRF checks; multi-valued fields become lists."""
    check_origin(request)
    data = await request.form()
    sent = str(data.get("csrf", ""))
    if not hmac.compare_digest(sent, csrf_token(request)):
        raise CsrfRejected()
    out: dict[str, Any] = {}
    for key in data:
        values = data.getlist(key)
        out[key] = values if len(values) > 1 else values[0]
    return out


async def json_body(request: Request) -> dict[str, Any]:
    """A POSTed JSON object (the editor's calls), after the origin and CSRF checks; the token
    travels in the ``X-CSRF-Token`` header."""
    check_origin(request)
    sent = request.headers.get("x-csrf-token", "")
    if not hmac.compare_digest(sent, csrf_token(request)):
        raise CsrfRejected()
    try:
        data = await request.json()
    except ValueError as exc:
        raise InvalidInput("the request body is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidInput("the request body must be a JSON object")
    return data


def safe_next(target: str | None) -> str:
    """Only same-site paths: ``/runs/x`` yes, ``//evil.test`` or ``https://…`` no."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def clear_cookie(response: Any) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def is_auth_error(exc: LinkloomError) -> bool:
    return isinstance(exc, NotAuthenticated)
